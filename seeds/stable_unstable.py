# Stable/unstable split: momentum steps where the gradient agrees with the momentum, small
#   plain-gradient steps where it disagrees.
# Source: a seed designed for this project (no single published rule). Related ideas: sign
#   agreement between gradient and history as in Rprop / delta-bar-delta (R. A. Jacobs,
#   Neural Networks 1(4), 1988), and masking updates that disagree with the gradient in
#   K. Liang, L. Chen, B. Liu, Q. Liu, "Cautious Optimizers: Improving Training with One Line
#   of Code", arXiv:2411.16085, 2024.
# Reference implementation: none; tests/test_seeds.py checks it against a hand computation.
#   A weight is "stable" when g and the updated momentum m have the same (nonzero) sign: it
#   steps lr * m; the other, "unstable" weights step lr * unstable_scale * g.
def stable_unstable(w, g, lr, t, m=0.0, *, beta=0.9, unstable_scale=0.1):
    m = interp(g, m, beta)
    stable = g * m > 0
    return lr * where(stable, m, unstable_scale * g)
