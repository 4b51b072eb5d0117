# Adam: bias-corrected first and second moment estimates.
# Paper: D. P. Kingma and J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015,
#   arXiv:1412.6980.
# Reference implementation: torch.optim.Adam with its defaults (betas=(0.9, 0.999), eps=1e-8,
#   weight_decay=0, amsgrad=False); default lr 1e-3. eps is added to sqrt(v_hat), as in torch.
# Not expressed: weight_decay (default 0), amsgrad, maximize.
def adam(w, g, lr, t, m=0.0, v=0.0, *, beta1=0.9, beta2=0.999, eps=1e-8):
    m = interp(g, m, beta1)
    v = interp(square(g), v, beta2)
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return lr * m_hat / (sqrt(v_hat) + eps)
