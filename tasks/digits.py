"""Tasks on scikit-learn's 8x8 digits: logistic regression, MLP, conv net, autoencoder.

Models are pure functions of a parameter dict. The conv net uses ``unfold`` + matmul
(im2col) rather than ``conv2d``: under ``vmap`` that keeps each copy's arithmetic identical
whatever the number of copies (batched conv2d picks different kernels for different K).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Task
from .data import digits, rows_batches
from .registry import register
from .schedules import WarmupCosine
from .variants import draw

__all__ = ["logreg_digits", "mlp_digits", "conv_digits", "autoencoder_digits", "linear_init"]


def linear_init(gen: torch.Generator, fan_in: int, *shape: int) -> Tensor:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (torch.nn.Linear's default)."""
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(*shape, generator=gen) * 2 - 1) * bound


SUBSET_FRACTION = 0.8


def _data(device, dtype, subset: int = 0):
    """Digits on ``device``: ``subset`` 0 trains on all 1437 training rows, ``k > 0`` on a seeded
    80% of them (the first 1149 of a permutation seeded by ``2000 + k``); validation is fixed."""
    xt, yt, xv, yv = digits()
    if subset:
        rows = np.random.default_rng(2000 + subset).permutation(len(xt))[:int(SUBSET_FRACTION * len(xt))]
        xt, yt = xt[rows], yt[rows]
    f = lambda a: torch.as_tensor(a).to(device=device, dtype=dtype)  # noqa: E731
    i = lambda a: torch.as_tensor(a).to(device=device)  # noqa: E731
    return f(xt), i(yt), f(xv), i(yv)


def classification(logits_fn):
    """``(loss, accuracy)`` of a classifier ``logits_fn(params, x)`` on ``(x, y)`` batches:
    cross-entropy, and the fraction of argmax hits (in ``x``'s dtype)."""
    def loss(p, batch):
        x, y = batch
        return F.cross_entropy(logits_fn(p, x), y)

    def accuracy(p, batch):
        x, y = batch
        return (logits_fn(p, x).argmax(-1) == y).to(x.dtype).mean()

    return loss, accuracy


def _describe(base: str, v: dict, variant: int) -> str:
    """``base`` for variant 0 (today's descriptions), else with batch size, init scale and subset."""
    if not variant:
        return base
    return f"{base}, batch {v['batch_size']}, init x{v['init_scale']:g}, subset {v['subset']}, variant {variant}"


def _classifier(name, description, init, logits, steps, v, device, dtype) -> Task:
    xt, yt, xv, yv = _data(device, dtype, v["subset"])
    loss, accuracy = classification(logits)
    return Task(name=name, description=description, init=init, loss=loss,
                train_batch=rows_batches((xt, yt), v["batch_size"]), val_batch=(xv, yv), steps=steps,
                schedule=WarmupCosine(0.05), metric=accuracy, metric_name="accuracy",
                device=device, dtype=dtype)


# Axes every digits task varies (first choice: the default task).
BATCH_SIZES = (64, 32, 128)
INIT_SCALES = (1.0, 0.5, 2.0)
SUBSETS = (0, 1, 2, 3, 4)


@register("logreg_digits")
def logreg_digits(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 300, variant: int = 0) -> Task:
    """Multinomial logistic regression on digits: ``softmax(x W + b)``, cross-entropy.

    ``size`` is accepted for uniformity; the model is fixed (650 parameters).
    Variant axes: batch size 64/32/128, init scale 1/0.5/2 (multiplies ``W``'s default init),
    subset 0..4 (0: all training rows, k: a seeded 80% of them), inputs raw/centered (centered:
    pixels minus their mean over the training split, a better-conditioned problem: the raw
    pixels' mean direction dominates the Hessian). Variants 1-5 cost 0.9x to 1.1x the default's time.
    """
    v = draw("logreg_digits", variant, batch_size=BATCH_SIZES, init_scale=INIT_SCALES, subset=SUBSETS,
             inputs=("raw", "centered"))
    scale = v["init_scale"]
    centered = v["inputs"] == "centered"
    mean = torch.as_tensor(digits()[0].mean(0)).to(device=device, dtype=dtype)  # of the whole training split
    init = lambda g: {"w": scale * linear_init(g, 64, 64, 10), "b": torch.zeros(10)}  # noqa: E731
    logits = lambda p, x: ((x - mean) if centered else x) @ p["w"] + p["b"]  # noqa: E731
    desc = "logistic regression on 8x8 digits" + (" (centered pixels)" if centered else "")
    return _classifier("logreg_digits", _describe(desc, v, variant), init, logits, steps, v, device, dtype)


@register("mlp_digits")
def mlp_digits(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 300, variant: int = 0) -> Task:
    """MLP classifier on digits: ``depth`` hidden layers of ``width * size`` units, then linear.

    ``h <- act(h W_i + b_i)``; ``W_i ~ init_scale * U(+-1/sqrt(fan_in))``, biases at the
    default init. Variant axes: width 64/32/96, depth 1/2, activation relu/tanh, batch size
    64/32/128, init scale 1/0.5/2, subset 0..4 (0: all training rows, k: a seeded 80%).
    Variants 1-5 cost 1.0x to 1.3x the default's time.
    """
    v = draw("mlp_digits", variant, width=(64, 32, 96), depth=(1, 2), activation=("relu", "tanh"),
             batch_size=BATCH_SIZES, init_scale=INIT_SCALES, subset=SUBSETS)
    hid, scale = v["width"] * size, v["init_scale"]
    act = torch.relu if v["activation"] == "relu" else torch.tanh
    dims = [64] + [hid] * v["depth"] + [10]

    def init(g):
        p = {}
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]), 1):
            p[f"w{i}"], p[f"b{i}"] = scale * linear_init(g, a, a, b), linear_init(g, a, b)
        return p

    def logits(p, x):
        h = x
        for i in range(1, len(dims) - 1):
            h = act(h @ p[f"w{i}"] + p[f"b{i}"])
        return h @ p[f"w{len(dims) - 1}"] + p[f"b{len(dims) - 1}"]

    shape = "-".join(map(str, dims))
    return _classifier("mlp_digits", _describe(f"MLP {shape} ({v['activation']}) on 8x8 digits", v, variant),
                       init, logits, steps, v, device, dtype)


@register("conv_digits")
def conv_digits(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 300, variant: int = 0) -> Task:
    """Conv net on 8x8 digit images: conv3x3(c1) act, conv3x3 stride 2 (c2) act, linear.

    ``c1 = channels * size``, ``c2 = 2 * c1``; convolutions as im2col matmuls; weights
    ``init_scale * U(+-1/sqrt(fan_in))``. Variant axes: channels 8/6/10, batch size 64/32/80
    (cost grows as channels x batch: 12 channels at batch 128 took 2.5x the default's time),
    activation relu/tanh, init scale 1/0.5/2, subset 0..4 (0: all training rows, k: a seeded 80%).
    Variants 1-5 cost 0.9x to 1.6x the default's time.
    """
    v = draw("conv_digits", variant, channels=(8, 6, 10), batch_size=(64, 32, 80), activation=("relu", "tanh"),
             init_scale=INIT_SCALES, subset=SUBSETS)
    c1, scale = v["channels"] * size, v["init_scale"]
    c2 = 2 * c1
    act = torch.relu if v["activation"] == "relu" else torch.tanh

    def init(g):
        return {"k1": scale * linear_init(g, 9, c1, 9), "b1": linear_init(g, 9, c1, 1),
                "k2": scale * linear_init(g, 9 * c1, c2, 9 * c1), "b2": linear_init(g, 9 * c1, c2, 1),
                "w3": scale * linear_init(g, 16 * c2, 16 * c2, 10), "b3": linear_init(g, 16 * c2, 10)}

    def logits(p, x):
        b = x.shape[0]
        cols = F.unfold(x.view(b, 1, 8, 8), 3, padding=1)                  # [B, 9, 64]
        h = act(p["k1"] @ cols + p["b1"])                                  # [B, c1, 64]
        cols = F.unfold(h.view(b, c1, 8, 8), 3, padding=1, stride=2)       # [B, 9 c1, 16]
        h = act(p["k2"] @ cols + p["b2"])                                  # [B, c2, 16]
        return h.reshape(b, 16 * c2) @ p["w3"] + p["b3"]

    desc = f"conv net ({c1}, {c2} channels) on 8x8 digit images"
    desc = _describe(desc + (", tanh" if v["activation"] == "tanh" else ""), v, variant)
    return _classifier("conv_digits", desc, init, logits, steps, v, device, dtype)


@register("autoencoder_digits")
def autoencoder_digits(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 400,
                       variant: int = 0) -> Task:
    """MLP autoencoder 64-h-c-h-64 (tanh, sigmoid output), ``h = width * size``; loss: mean squared
    reconstruction error of the pixels (in [0, 1]). Weights ``init_scale * U(+-1/sqrt(fan_in))``.

    Variant axes: width 32/24/48, code c 8/4/12/16, batch size 64/32/128, init scale 1/0.5/2,
    subset 0..4 (0: all training rows, k: a seeded 80%). Variants 1-5 cost 0.9x to 1.0x the
    default's time.
    """
    v = draw("autoencoder_digits", variant, width=(32, 24, 48), code=(8, 4, 12, 16), batch_size=BATCH_SIZES,
             init_scale=INIT_SCALES, subset=SUBSETS)
    hid, code, scale = v["width"] * size, v["code"], v["init_scale"]
    dims = [64, hid, code, hid, 64]
    xt, _, xv, _ = _data(device, dtype, v["subset"])

    def init(g):
        p = {}
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            p[f"w{i}"], p[f"b{i}"] = scale * linear_init(g, a, a, b), linear_init(g, a, b)
        return p

    def loss(p, batch):
        (x,) = batch
        h = x
        for i in range(len(dims) - 1):
            h = h @ p[f"w{i}"] + p[f"b{i}"]
            h = torch.tanh(h) if i < len(dims) - 2 else torch.sigmoid(h)
        return ((h - x) ** 2).mean()

    desc = _describe(f"MLP autoencoder 64-{hid}-{code}-{hid}-64 on digits", v, variant)
    return Task(name="autoencoder_digits", description=desc,
                init=init, loss=loss, train_batch=rows_batches((xt,), v["batch_size"]), val_batch=(xv,),
                steps=steps, schedule=WarmupCosine(0.05), device=device, dtype=dtype)
