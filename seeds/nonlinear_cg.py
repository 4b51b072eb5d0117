# Nonlinear conjugate gradient, Polak-Ribiere direction (PR+), fixed step instead of a line search.
# Papers: E. Polak and G. Ribiere, "Note sur la convergence de methodes de directions conjuguees",
#   RIRO 3(16), 1969; B. T. Polyak, "The conjugate gradient method in extremal problems",
#   USSR Comp. Math. Math. Phys. 9(4), 1969; PR+ (beta clipped at 0, an automatic restart):
#   J. C. Gilbert and J. Nocedal, SIAM J. Optim. 2(1), 1992; J. Nocedal and S. Wright,
#   "Numerical Optimization", 2nd ed., eq. (5.44)-(5.45).
# Reference implementation: none (torch has none); tests/test_seeds.py checks it against a hand
#   computation. d is the direction in gradient sign: d = g + beta * d_prev, w <- w - lr * d.
#   beta uses per-tensor dot products (each parameter tensor is its own CG problem).
#   On step 1 there is no previous gradient (beta = 0/0) and d = g.
#   Caveat: a tensor whose previous gradient is exactly zero everywhere gives beta = nan.
def nonlinear_cg(w, g, lr, t, d=0.0, g_prev=0.0):
    beta = maximum(dot(g, g - g_prev) / dot(g_prev, g_prev), 0)
    d = where(t > 1, g + beta * d, g)
    g_prev = g
    return lr * d
