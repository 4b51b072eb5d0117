# Momentum: SGD with heavy-ball momentum.
# Paper: B. T. Polyak, "Some methods of speeding up the convergence of iteration methods",
#   USSR Computational Mathematics and Mathematical Physics 4(5), 1964; in the form of
#   I. Sutskever, J. Martens, G. Dahl, G. Hinton, "On the importance of initialization and
#   momentum in deep learning", ICML 2013.
# Reference implementation: torch.optim.SGD(momentum=0.9) (dampening=0, weight_decay=0);
#   default lr 1e-3. torch sets the buffer to a copy of g on the first step, which
#   m = momentum * m + g from m = 0 gives exactly.
# Not expressed: dampening (default 0), weight_decay (default 0), maximize.
def momentum(w, g, lr, t, m=0.0, *, momentum=0.9):
    m = momentum * m + g
    return lr * m
