"""Functional MLPs and fresh-sample generators shared by the teacher and tabular tasks."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Params
from .digits import linear_init

__all__ = ["ACTIVATIONS", "mlp_init", "mlp_apply", "step_generator"]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": torch.relu, "tanh": torch.tanh, "gelu": F.gelu}


def mlp_init(gen: torch.Generator, dims: Sequence[int], scale: float = 1.0) -> Params:
    """Layers ``i = 0 .. len(dims) - 2``: ``w{i} = scale * U(+-1/sqrt(fan_in))`` (torch.nn.Linear's
    default, scaled), ``b{i} = 0``. A last layer of width 1 is stored as a vector ``[fan_in]``
    (see `mlp_apply`)."""
    p: Params = {}
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        p[f"w{i}"] = scale * linear_init(gen, a, a, b)
        p[f"b{i}"] = torch.zeros(b)
    last = len(dims) - 2
    if dims[-1] == 1:
        p[f"w{last}"] = p[f"w{last}"][:, 0].contiguous()
    return p


def mlp_apply(p: Params, x: Tensor, layers: int, act: Callable[[Tensor], Tensor]) -> Tensor:
    """``h <- act(h w_i + b_i)`` for the ``layers - 1`` hidden layers, then a linear output.

    A vector output weight gives ``[B]`` outputs computed elementwise, ``(h * w).sum(-1)``, not
    ``h @ w``: under vmap a matrix-vector product becomes one GEMM over the copies whose
    rounding depends on the copy count (as in `tasks.deep`)."""
    h = x
    for i in range(layers - 1):
        h = act(h @ p[f"w{i}"] + p[f"b{i}"])
    w, b = p[f"w{layers - 1}"], p[f"b{layers - 1}"]
    return (h * w).sum(-1) + b if w.ndim == 1 else h @ w + b


def step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    """A CPU generator for the fresh data of ``step`` under evaluation ``seed``; ``stream``
    separates the data of different tasks and variants (distinct for ``step < 1_000_003``)."""
    return torch.Generator().manual_seed(1_000_003 * (1_000 * int(seed) + int(stream)) + int(step))
