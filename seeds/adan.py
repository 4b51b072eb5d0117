# Adan: adaptive Nesterov momentum with gradient-difference moments.
# Paper: X. Xie, P. Zhou, H. Li, Z. Lin, S. Yan, "Adan: Adaptive Nesterov Momentum Algorithm for
#   Faster Optimizing Deep Models", IEEE TPAMI 2024, arXiv:2208.06677 (Algorithm 1).
# Reference implementation: pytorch_optimizer.Adan (pytorch-optimizer 4.1) with its defaults
#   (betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0, weight_decouple=False,
#   max_grad_norm=0, no adanorm / gradient centralization); default lr 1e-3. The betas are
#   1 - the paper's betas. The gradient difference is 0 on the first step. Weight decay is the
#   paper's proximal form w <- (w - step) / (1 + lr * weight_decay), written as an update.
# The previous gradient on step 1 is picked with where(t > 1, g_prev, g) (difference 0).
def adan(w, g, lr, t, m=0.0, n=0.0, v=0.0, g_prev=0.0, *, beta1=0.98, beta2=0.92, beta3=0.99,
         eps=1e-8, weight_decay=0.0):
    diff = g - where(t > 1, g_prev, g)
    m = interp(g, m, beta1)
    n = interp(diff, n, beta2)
    v = interp(square(g + beta2 * diff), v, beta3)
    denom = sqrt(v) / sqrt(1 - beta3 ** t) + eps
    step = lr * (m / (1 - beta1 ** t) + beta2 * n / (1 - beta2 ** t)) / denom
    g_prev = g
    return (step + lr * weight_decay * w) / (1 + lr * weight_decay)
