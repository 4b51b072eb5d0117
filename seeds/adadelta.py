# Adadelta: step = RMS of past updates / RMS of past gradients.
# Paper: M. D. Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701, 2012.
# Reference implementation: torch.optim.Adadelta with its defaults (rho=0.9, eps=1e-6,
#   weight_decay=0); default lr 1.0 (torch scales the delta by lr; the paper has no lr).
# Not expressed: weight_decay (default 0), maximize.
def adadelta(w, g, lr, t, v=0.0, u=0.0, *, rho=0.9, eps=1e-6):
    v = interp(square(g), v, rho)
    delta = sqrt(u + eps) / sqrt(v + eps) * g
    u = interp(square(delta), u, rho)
    return lr * delta
