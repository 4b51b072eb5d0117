# Rprop: per-weight step sizes adapted by gradient sign agreement (iRprop- variant).
# Papers: M. Riedmiller and H. Braun, "A direct adaptive method for faster backpropagation
#   learning: the RPROP algorithm", IEEE ICNN 1993; iRprop- from C. Igel and M. Huesken,
#   "Improving the Rprop Learning Algorithm", NC 2000.
# Reference implementation: torch.optim.Rprop with its defaults (etas=(0.5, 1.2),
#   step_sizes=(1e-6, 50)); default lr 1e-2. Step sizes start at lr; after a sign flip the
#   gradient is taken as 0 (no step for that weight, and no adaptation on the next step).
#   (torch zeroes the gradient where the factor equals eta_minus; that is "where the signs
#   disagree" unless eta_minus is set to 1 or to eta_plus.)
def rprop(w, g, lr, t, s=0.0, g_prev=0.0, *, eta_minus=0.5, eta_plus=1.2, step_size_min=1e-6,
          step_size_max=50.0):
    agree = g * g_prev
    factor = where(agree > 0, eta_plus, where(agree < 0, eta_minus, 1))
    s = clip(where(t > 1, s, lr) * factor, step_size_min, step_size_max)
    g_prev = where(agree < 0, 0, g)
    return s * sign(g_prev)
