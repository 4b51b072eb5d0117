# Muon for matrices, AdamW for everything else (biases, gains): the usual way Muon is used.
# Paper: K. Jordan et al., "Muon: An optimizer for hidden layers in neural networks" (2024);
#   I. Loshchilov and F. Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
# Reference implementation: torch.optim.Muon on the parameters with >= 2 dims and
#   torch.optim.AdamW on the others, both with their defaults and one lr (is_matrix picks).
#   The Muon momentum and the AdamW first moment share the slot m (each tensor uses one).
#   Muon's lr factor sqrt(max(1, rows / cols)) (adjust_lr_fn=None) is sqrt(maximum(1, aspect(w))).
# Not expressed: separate learning rates.
def muon_adamw(w, g, lr, t, m=0.0, v=0.0, *, momentum=0.95, muon_decay=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    mat = is_matrix(w)
    m = interp(g, m, where(mat, momentum, beta1))
    v = interp(square(g), v, beta2)
    muon = sqrt(maximum(1, aspect(w))) * orthogonalize(interp(g, m, momentum)) + muon_decay * w
    adamw = m / (1 - beta1 ** t) / (sqrt(v / (1 - beta2 ** t)) + eps) + weight_decay * w
    return lr * where(mat, muon, adamw)
