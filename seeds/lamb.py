# LAMB: Adam directions scaled per tensor by the trust ratio ||w|| / ||update||.
# Paper: Y. You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
#   ICLR 2020, arXiv:1904.00962.
# Reference implementation: pytorch_optimizer.Lamb (pytorch-optimizer 3.x) with its defaults
#   (betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, weight_decouple=True, grad_averaging=True,
#   rectify=False, adam=False, pre_norm=False, clamp=10); default lr 1e-3. Weights are decayed
#   first, the trust ratio is min(||w_decayed||, 10) / (||u|| + eps) (1 when either norm is 0) and
#   the step lr / (1 - beta1 ** t) (no second-moment bias correction).
# Not expressed: rectify, adam=True (ratio 1), pre_norm, weight_decouple=False.
def lamb(w, g, lr, t, m=0.0, v=0.0, *, beta1=0.9, beta2=0.999, eps=1e-06, weight_decay=0.0, clamp=10.0):
    m = interp(g, m, beta1)
    v = interp(square(g), v, beta2)
    u = m / (sqrt(v) + eps)
    wn = minimum(norm(w * (1 - lr * weight_decay)), clamp)
    un = norm(u)
    ratio = where(wn > 0, where(un > 0, wn / (un + eps), 1.0), 1.0)
    return lr * weight_decay * w + lr / (1 - beta1 ** t) * ratio * u
