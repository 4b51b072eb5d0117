# Muon: momentum orthogonalized by Newton-Schulz, for the matrices of hidden layers.
# Paper: K. Jordan et al., "Muon: An optimizer for hidden layers in neural networks" (2024),
#   kellerjordan.github.io/posts/muon; J. Liu et al., "Muon is Scalable for LLM Training",
#   arXiv:2502.16982.
# Reference implementation: torch.optim.Muon (torch 2.13) with its defaults (momentum=0.95,
#   nesterov=True, weight_decay=0.1, ns_coefficients=(3.4445, -4.775, 2.0315), ns_steps=5,
#   eps=1e-7, adjust_lr_fn=None); default lr 1e-3. torch scales the weights by (1 - lr * wd), then
#   subtracts lr * orthogonalize(lerp(g, m, momentum)). torch runs the iteration in bfloat16;
#   orthogonalize runs it in the parameters' dtype. torch.optim.Muon takes 2-D parameters only;
#   orthogonalize flattens more dims as (d0, d1 * ...) and treats 1-D tensors as 1 x n rows.
# Not expressed: nesterov=False (drop the second interp), ns_* other than the defaults, and the
#   lr factor sqrt(max(1, rows / cols)) of adjust_lr_fn='original' (1 when rows <= cols).
def muon(w, g, lr, m=0.0, *, momentum=0.95, weight_decay=0.1):
    m = interp(g, m, momentum)
    return lr * (weight_decay * w + orthogonalize(interp(g, m, momentum)))
