# Delta-bar-delta: per-weight learning-rate gains adapted by gradient sign agreement.
# Paper: R. A. Jacobs, "Increased rates of convergence through learning rate adaptation",
#   Neural Networks 1(4), 1988 (additive increase, multiplicative decrease of per-weight rates);
#   in the simplified "individual learning rates" form of G. Hinton, COURSERA: Neural Networks
#   for Machine Learning, Lecture 6d, 2012: gain += 0.05 while the gradient sign agrees with
#   the previous gradient, gain *= 0.95 when it flips, gains kept in [0.1, 10].
# Reference implementation: none in torch / pytorch_optimizer; tests/test_seeds.py checks it
#   against a hand computation. When the product of the two gradients is 0 (e.g. on the first
#   step) the gain is kept. Gains start at 1.
def delta_bar_delta(w, g, lr, t, gain=1.0, g_prev=0.0, *, increase=0.05, decay=0.95, gain_min=0.1,
                    gain_max=10.0):
    agree = g * g_prev
    gain = clip(where(agree > 0, gain + increase, where(agree < 0, gain * decay, gain)), gain_min, gain_max)
    g_prev = g
    return lr * gain * g
