"""A tiny float64 regression problem that seed tests replay optimizers on (shared by
test_seeds.py and test_seeds_matrix.py)."""
import torch
from torch import nn

__all__ = ["X", "Y", "mlp"]


def _data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=gen, dtype=torch.float64)
    y = torch.stack([torch.sin(x[:, 0] + x[:, 1]), x[:, 2] * x[:, 3]], dim=1)
    return x, y


X, Y = _data()


def mlp() -> nn.Module:
    """4-6-2 tanh MLP: weights (6, 4) and (2, 6), biases (6,) and (2,); the same weights every call."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).double()
