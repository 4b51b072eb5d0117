# signSGD: step along the sign of the gradient.
# Paper: J. Bernstein, Y.-X. Wang, K. Azizzadenesheli, A. Anandkumar, "signSGD: Compressed
#   Optimisation for Non-Convex Problems", ICML 2018, arXiv:1802.04434.
# Reference implementation: pytorch_optimizer.SignSGD (pytorch-optimizer 4.1) configured with
#   momentum=0 (its default momentum is 0.9, which is the signum seed); other defaults
#   (weight_decay=0); default lr 1e-3.
# Not expressed: weight_decay (default 0), maximize.
def signsgd(w, g, lr, t):
    return lr * sign(g)
