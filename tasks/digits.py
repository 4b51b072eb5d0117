"""Tasks on scikit-learn's 8x8 digits: logistic regression, MLP, conv net, autoencoder.

Models are pure functions of a parameter dict. The conv net uses ``unfold`` + matmul
(im2col) rather than ``conv2d``: under ``vmap`` that keeps each copy's arithmetic identical
whatever the number of copies (batched conv2d picks different kernels for different K).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Task
from .data import digits, rows_batches
from .registry import register
from .schedules import WarmupCosine

__all__ = ["logreg_digits", "mlp_digits", "conv_digits", "autoencoder_digits", "linear_init"]


def linear_init(gen: torch.Generator, fan_in: int, *shape: int) -> Tensor:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (torch.nn.Linear's default)."""
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(*shape, generator=gen) * 2 - 1) * bound


def _data(device, dtype):
    xt, yt, xv, yv = digits()
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


def _classifier(name, description, init, logits, steps, batch_size, device, dtype) -> Task:
    xt, yt, xv, yv = _data(device, dtype)
    loss, accuracy = classification(logits)
    return Task(name=name, description=description, init=init, loss=loss,
                train_batch=rows_batches((xt, yt), batch_size), val_batch=(xv, yv), steps=steps,
                schedule=WarmupCosine(0.05), metric=accuracy, metric_name="accuracy",
                device=device, dtype=dtype)


@register("logreg_digits")
def logreg_digits(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 300,
                  batch_size: int = 64) -> Task:
    """Multinomial logistic regression on digits: ``softmax(x W + b)``, cross-entropy.

    ``size`` is accepted for uniformity; the model is fixed (650 parameters).
    """
    init = lambda g: {"w": linear_init(g, 64, 64, 10), "b": torch.zeros(10)}  # noqa: E731
    logits = lambda p, x: x @ p["w"] + p["b"]  # noqa: E731
    return _classifier("logreg_digits", "logistic regression on 8x8 digits", init, logits,
                       steps, batch_size, device, dtype)


@register("mlp_digits")
def mlp_digits(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 300,
               batch_size: int = 64) -> Task:
    """Two-layer MLP classifier on digits: ``relu(x W1 + b1) W2 + b2``, hidden ``64 * size``."""
    hid = 64 * size

    def init(g):
        return {"w1": linear_init(g, 64, 64, hid), "b1": linear_init(g, 64, hid),
                "w2": linear_init(g, hid, hid, 10), "b2": linear_init(g, hid, 10)}

    def logits(p, x):
        return torch.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    return _classifier("mlp_digits", f"MLP 64-{hid}-10 (relu) on 8x8 digits", init, logits,
                       steps, batch_size, device, dtype)


@register("conv_digits")
def conv_digits(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 300,
                batch_size: int = 64) -> Task:
    """Conv net on 8x8 digit images: conv3x3(c1) relu, conv3x3 stride 2 (c2) relu, linear.

    ``c1 = 8 * size``, ``c2 = 16 * size``; convolutions as im2col matmuls.
    """
    c1, c2 = 8 * size, 16 * size

    def init(g):
        return {"k1": linear_init(g, 9, c1, 9), "b1": linear_init(g, 9, c1, 1),
                "k2": linear_init(g, 9 * c1, c2, 9 * c1), "b2": linear_init(g, 9 * c1, c2, 1),
                "w3": linear_init(g, 16 * c2, 16 * c2, 10), "b3": linear_init(g, 16 * c2, 10)}

    def logits(p, x):
        b = x.shape[0]
        cols = F.unfold(x.view(b, 1, 8, 8), 3, padding=1)                  # [B, 9, 64]
        h = torch.relu(p["k1"] @ cols + p["b1"])                           # [B, c1, 64]
        cols = F.unfold(h.view(b, c1, 8, 8), 3, padding=1, stride=2)       # [B, 9 c1, 16]
        h = torch.relu(p["k2"] @ cols + p["b2"])                           # [B, c2, 16]
        return h.reshape(b, 16 * c2) @ p["w3"] + p["b3"]

    return _classifier("conv_digits", f"conv net ({c1}, {c2} channels) on 8x8 digit images", init,
                       logits, steps, batch_size, device, dtype)


@register("autoencoder_digits")
def autoencoder_digits(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 400,
                       batch_size: int = 64) -> Task:
    """MLP autoencoder 64-h-8-h-64 (tanh, sigmoid output), ``h = 32 * size``; loss: mean squared
    reconstruction error of the pixels (in [0, 1])."""
    hid = 32 * size
    dims = [64, hid, 8, hid, 64]
    xt, _, xv, _ = _data(device, dtype)

    def init(g):
        p = {}
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            p[f"w{i}"], p[f"b{i}"] = linear_init(g, a, a, b), linear_init(g, a, b)
        return p

    def loss(p, batch):
        (x,) = batch
        h = x
        for i in range(len(dims) - 1):
            h = h @ p[f"w{i}"] + p[f"b{i}"]
            h = torch.tanh(h) if i < len(dims) - 2 else torch.sigmoid(h)
        return ((h - x) ** 2).mean()

    return Task(name="autoencoder_digits", description=f"MLP autoencoder 64-{hid}-8-{hid}-64 on digits",
                init=init, loss=loss, train_batch=rows_batches((xt,), batch_size), val_batch=(xv,),
                steps=steps, schedule=WarmupCosine(0.05), device=device, dtype=dtype)
