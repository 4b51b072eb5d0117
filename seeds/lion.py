# Lion: EvoLved Sign Momentum.
# Paper: X. Chen, C. Liang, D. Huang, E. Real, et al., "Symbolic Discovery of Optimization
#   Algorithms", NeurIPS 2023, arXiv:2302.06675 (Algorithm 2).
# Reference implementation: lion_pytorch.Lion (lion-pytorch 0.2.5, lucidrains) with its defaults
#   (betas=(0.9, 0.99), weight_decay=0.0, decoupled_weight_decay=False); default lr 1e-4.
#   Weight decay is decoupled and scaled by lr: w <- w * (1 - lr * weight_decay) before the step.
def lion(w, g, lr, t, m=0.0, *, beta1=0.9, beta2=0.99, weight_decay=0.0):
    direction = sign(interp(g, m, beta1))
    m = interp(g, m, beta2)
    return lr * (direction + weight_decay * w)
