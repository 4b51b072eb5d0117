# RMSprop: divide the gradient by a running RMS of recent gradients.
# Source: T. Tieleman and G. Hinton, "Lecture 6.5 - rmsprop: Divide the gradient by a running
#   average of its recent magnitude", COURSERA: Neural Networks for Machine Learning, 2012.
# Reference implementation: torch.optim.RMSprop with its defaults (alpha=0.99, eps=1e-8,
#   weight_decay=0, momentum=0, centered=False); default lr 1e-2. eps is added outside sqrt.
# Not expressed: momentum, centered, weight_decay (all off by default), maximize.
def rmsprop(w, g, lr, t, v=0.0, *, alpha=0.99, eps=1e-8):
    v = interp(square(g), v, alpha)
    return lr * g / (sqrt(v) + eps)
