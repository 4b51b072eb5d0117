# Signum: signSGD with momentum (step along the sign of an EMA of gradients).
# Paper: J. Bernstein, Y.-X. Wang, K. Azizzadenesheli, A. Anandkumar, "signSGD: Compressed
#   Optimisation for Non-Convex Problems", ICML 2018, arXiv:1802.04434 (Algorithm 2, Signum).
# Reference implementation: pytorch_optimizer.SignSGD (pytorch-optimizer 4.1) with its defaults
#   (momentum=0.9, weight_decay=0); default lr 1e-3. The buffer is an EMA:
#   m <- lerp(m, g, 1 - momentum), i.e. interp(g, m, momentum).
# Not expressed: weight_decay (default 0), maximize.
def signum(w, g, lr, t, m=0.0, *, momentum=0.9):
    m = interp(g, m, momentum)
    return lr * sign(m)
