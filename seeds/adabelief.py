# AdaBelief: Adam with the second moment of the gradient's deviation from its EMA ("belief").
# Paper: J. Zhuang, T. Tang, Y. Ding, S. Tatikonda, N. Dvornek, X. Papademetris, J. Duncan,
#   "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients",
#   NeurIPS 2020, arXiv:2010.07468.
# Reference implementation: pytorch_optimizer.AdaBelief (pytorch-optimizer 4.1) with its
#   defaults (betas=(0.9, 0.999), eps=1e-16, weight_decay=0, rectify=False, ams_bound=False,
#   adam_debias=False); default lr 1e-3. eps is added twice, as in the reference: into the
#   stored s, and to sqrt(s_hat).
# Not expressed: weight_decay (default 0), rectify, ams_bound, adanorm, maximize.
def adabelief(w, g, lr, t, m=0.0, s=0.0, *, beta1=0.9, beta2=0.999, eps=1e-16):
    m = interp(g, m, beta1)
    s = interp(square(g - m), s, beta2) + eps
    denom = sqrt(s) / sqrt(1 - beta2 ** t) + eps
    return lr / (1 - beta1 ** t) * m / denom
