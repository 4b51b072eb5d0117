# Adagrad: per-coordinate step sizes from the sum of squared gradients.
# Paper: J. Duchi, E. Hazan, Y. Singer, "Adaptive Subgradient Methods for Online Learning and
#   Stochastic Optimization", JMLR 12, 2011.
# Reference implementation: torch.optim.Adagrad with its defaults (lr_decay=0, weight_decay=0,
#   initial_accumulator_value=0, eps=1e-10); default lr 1e-2.
# Not expressed: lr_decay (default 0), weight_decay (default 0), maximize; the slot's initial
#   value 0.0 is initial_accumulator_value.
def adagrad(w, g, lr, t, v=0.0, *, eps=1e-10):
    v = v + square(g)
    return lr * g / (sqrt(v) + eps)
