# Nesterov: SGD with Nesterov momentum.
# Papers: Y. Nesterov, "A method for solving the convex programming problem with convergence
#   rate O(1/k^2)", Soviet Mathematics Doklady 27, 1983; in the form of I. Sutskever,
#   J. Martens, G. Dahl, G. Hinton, "On the importance of initialization and momentum in deep
#   learning", ICML 2013.
# Reference implementation: torch.optim.SGD(momentum=0.9, nesterov=True) (dampening=0,
#   weight_decay=0); default lr 1e-3.
# Not expressed: weight_decay (default 0), maximize.
def nesterov(w, g, lr, t, m=0.0, *, momentum=0.9):
    m = momentum * m + g
    return lr * (g + momentum * m)
