# Adafactor: factored second moments (row and column means of g**2) and relative step sizes.
# Paper: N. Shazeer and M. Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
#   ICML 2018, arXiv:1804.04235.
# Reference implementation: torch.optim.Adafactor (torch 2.13) with its defaults (beta2_decay=-0.8,
#   eps=(None, 1e-3), d=1.0, weight_decay=0.0); default lr 1e-2. torch's eps1=None means the
#   dtype's machine epsilon: eps1 below is float32's (the search's dtype); pass eps1 for others.
#   Factored over the last two dims for tensors of >= 2 dims (r, c: the row and column statistics,
#   each stored broadcast to the parameter's shape), unfactored (r) for 1-D and 0-dim tensors.
# Not expressed: maximize.
def adafactor(w, g, lr, t, r=0.0, c=0.0, *, beta2_decay=-0.8, eps1=1.1920928955078125e-07, eps2=0.001, d=1.0, weight_decay=0.0):
    beta = t ** beta2_decay
    alpha = maximum(eps2, rms(w)) * minimum(lr, 1 / sqrt(t))
    r = interp(r, row_mean(square(g)), beta)
    c = interp(c, col_mean(square(g)), beta)
    v = where(is_matrix(w), r * c / maximum(col_mean(r), eps1), r)
    u = g / sqrt(maximum(v, eps1 * eps1))
    return lr * weight_decay * w + alpha / maximum(1.0, rms(u) / d) * u
