# LARS: layer-wise adaptive rate scaling for matrices, plain momentum for biases.
# Paper: Y. You, I. Gitman and B. Ginsburg, "Large Batch Training of Convolutional Networks",
#   arXiv:1708.03888.
# Reference implementation: pytorch_optimizer.LARS (pytorch-optimizer 3.x) with its defaults
#   (momentum=0.9, dampening=0.0, trust_coefficient=1e-3, weight_decay=0.0, nesterov=False);
#   default lr 1e-3. Tensors of >= 2 dims get (g + wd * w) * tc * ||w|| / (||g|| + wd * ||w||)
#   (ratio 1 when a norm is 0); others the plain gradient, without weight decay.
# Not expressed: nesterov.
def lars(w, g, lr, m=0.0, *, momentum=0.9, dampening=0.0, trust_coefficient=0.001, weight_decay=0.0):
    wn = norm(w)
    den = norm(g) + weight_decay * wn
    ratio = where(wn > 0, where(den > 0, trust_coefficient * wn / den, 1.0), 1.0)
    m = m * momentum + where(is_matrix(w), (g + weight_decay * w) * ratio, g) * (1 - dampening)
    return lr * m
