"""A normalization-free deep narrow MLP on a regression target (a random teacher)."""
from __future__ import annotations

import math

import torch

from .base import Task
from .data import rows_batches
from .registry import register
from .schedules import WarmupCosine
from .variants import draw

__all__ = ["deep_narrow_mlp"]

INPUTS = 16


@register("deep_narrow_mlp")
def deep_narrow_mlp(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 400,
                    variant: int = 0) -> Task:
    """Mean squared error of a ``depth``-layer MLP of width ``width * size`` without normalization.

    Data: ``x ~ N(0, I_16)``, ``y = s(sum_j a_j tanh(x . v_j)) + 0.1 eps`` from a fixed random
    teacher of 32 units (``v_j ~ N(0, I / 16)``, ``a_j ~ N(0, 1)``), ``s`` standardising the
    noise-free target to unit variance: a constant predictor scores ~1.01, the noise floor is
    0.01. 4096 training rows, 1024 validation rows. Student: ``h <- act(h W_i + b_i)`` for
    ``depth - 1`` hidden layers, then a linear output; ``W_i ~ N(0, init_scale^2 / fan_in)``,
    biases 0. No normalization and no residuals: the update rule alone copes with the
    layers' differing gradient scales (at init the last hidden layer's gradient norm is 3.8x
    the first's in the default task, 0.5x to 2.3x over variants 1-7).

    Variant axes: depth 10/8/12, width 24/16/32, activation tanh/relu, batch size 64/16/256,
    init scale 1/0.7/1.5, data 0..3 (the seed of the training and validation inputs; the
    teacher is fixed).
    """
    v = draw("deep_narrow_mlp", variant, depth=(10, 8, 12), width=(24, 16, 32), activation=("tanh", "relu"),
             batch_size=(64, 16, 256), init_scale=(1.0, 0.7, 1.5), data=(0, 1, 2, 3))
    depth, width, scale = v["depth"], v["width"] * size, v["init_scale"]
    act = torch.tanh if v["activation"] == "tanh" else torch.relu
    teacher = torch.Generator().manual_seed(777)
    tv = torch.randn(INPUTS, 32, generator=teacher, dtype=torch.float64) / math.sqrt(INPUTS)
    ta = torch.randn(32, generator=teacher, dtype=torch.float64)
    gen = torch.Generator().manual_seed(5000 + v["data"])
    x = torch.randn(4096 + 1024, INPUTS, generator=gen, dtype=torch.float64)
    clean = torch.tanh(x @ tv) @ ta
    y = (clean - clean.mean()) / clean.std() + 0.1 * torch.randn(len(x), generator=gen, dtype=torch.float64)
    x, y = x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)
    train, val = (x[:4096], y[:4096]), (x[4096:], y[4096:])
    dims = [INPUTS] + [width] * (depth - 1) + [1]

    def init(g):
        p = {}
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            p[f"w{i}"] = torch.randn(a, b, generator=g) * (scale / math.sqrt(a))
            p[f"b{i}"] = torch.zeros(b)
        p[f"w{depth - 1}"] = p[f"w{depth - 1}"][:, 0]  # the output layer as a vector: see loss
        return p

    def loss(p, batch):
        x, y = batch
        h = x
        for i in range(depth - 1):
            h = act(h @ p[f"w{i}"] + p[f"b{i}"])
        # elementwise, not h @ w: under vmap a matrix-vector product becomes one GEMM over the
        # copies whose rounding depends on the copy count
        out = (h * p[f"w{depth - 1}"]).sum(-1) + p[f"b{depth - 1}"]
        return ((out - y) ** 2).mean()

    desc = (f"deep narrow MLP {depth}x{width} ({v['activation']}, no normalization, init x{scale:g}, "
            f"batch {v['batch_size']}) regressing a teacher")
    if variant:
        desc += f", variant {variant}"
    return Task(name="deep_narrow_mlp", description=desc, init=init, loss=loss,
                train_batch=rows_batches(train, v["batch_size"]), val_batch=val, steps=steps,
                schedule=WarmupCosine(0.05), device=device, dtype=dtype)
