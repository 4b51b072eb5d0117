# Muon: momentum orthogonalized by Newton-Schulz, for the matrices of hidden layers.
# Paper: K. Jordan et al., "Muon: An optimizer for hidden layers in neural networks" (2024),
#   kellerjordan.github.io/posts/muon; J. Liu et al., "Muon is Scalable for LLM Training",
#   arXiv:2502.16982.
# Reference implementation: torch.optim.Muon (torch 2.13) with its defaults (momentum=0.95,
#   nesterov=True, weight_decay=0.1, ns_coefficients=(3.4445, -4.775, 2.0315), ns_steps=5,
#   eps=1e-7, adjust_lr_fn=None); default lr 1e-3. torch scales the weights by (1 - lr * wd), then
#   subtracts lr * sqrt(max(1, rows / cols)) * orthogonalize(lerp(g, m, momentum)) (the factor of
#   adjust_lr_fn=None, 'original': aspect(w) is rows / cols). torch runs the iteration in bfloat16;
#   orthogonalize runs it in the parameters' dtype. torch.optim.Muon takes 2-D parameters only;
#   orthogonalize flattens more dims as (d0, d1 * ...) and treats 1-D tensors as 1 x n rows.
#   On > 2-D tensors aspect(w) is d0 / (d1 * ...), the flattened matrix orthogonalize uses.
# Not expressed: nesterov=False (drop the second interp), ns_* other than the defaults, and
#   adjust_lr_fn='match_rms_adamw' (0.2 * sqrt(max(rows, cols)): no size input).
def muon(w, g, lr, m=0.0, *, momentum=0.95, weight_decay=0.1):
    m = interp(g, m, momentum)
    return lr * (weight_decay * w + sqrt(maximum(1, aspect(w))) * orthogonalize(interp(g, m, momentum)))
