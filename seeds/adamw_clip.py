# AdamW on gradients clipped by their global norm (over every tensor of the parameter group).
# Paper: I. Loshchilov and F. Hutter, "Decoupled Weight Decay Regularization", ICLR 2019; global
#   norm clipping: R. Pascanu, T. Mikolov and Y. Bengio, "On the difficulty of training recurrent
#   neural networks", ICML 2013.
# Reference implementation: torch.nn.utils.clip_grad_norm_(params, max_norm) (its eps 1e-6 in
#   max_norm / (norm + 1e-6), at most 1) followed by torch.optim.AdamW with its defaults.
# Not expressed: norm types other than 2, clipping over several param groups at once.
def adamw_clip(w, g, lr, t, m=0.0, v=0.0, *, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, max_norm=1.0):
    gc = g * minimum(max_norm / (global_norm(g) + 1e-06), 1.0)
    m = interp(gc, m, beta1)
    v = interp(square(gc), v, beta2)
    return lr * (m / (1 - beta1 ** t) / (sqrt(v / (1 - beta2 ** t)) + eps) + weight_decay * w)
