# AdamW: Adam with decoupled weight decay.
# Paper: I. Loshchilov and F. Hutter, "Decoupled Weight Decay Regularization", ICLR 2019,
#   arXiv:1711.05101.
# Reference implementation: torch.optim.AdamW with its defaults (betas=(0.9, 0.999), eps=1e-8,
#   weight_decay=1e-2, amsgrad=False); default lr 1e-3. torch first scales the weights by
#   (1 - lr * weight_decay), then takes the Adam step: together the update below.
# Not expressed: amsgrad, maximize.
def adamw(w, g, lr, t, m=0.0, v=0.0, *, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    m = interp(g, m, beta1)
    v = interp(square(g), v, beta2)
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * w)
