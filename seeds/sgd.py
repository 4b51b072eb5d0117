# SGD: plain stochastic gradient descent.
# Paper: H. Robbins and S. Monro, "A Stochastic Approximation Method",
#   Annals of Mathematical Statistics 22(3), 1951.
# Reference implementation: torch.optim.SGD (torch 2.x) with its defaults
#   (momentum=0, dampening=0, weight_decay=0, nesterov=False); default lr 1e-3.
# Not expressed: weight_decay (coupled L2, default 0), maximize.
def sgd(w, g, lr, t):
    return lr * g
