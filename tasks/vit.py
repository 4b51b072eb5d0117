"""A tiny vision transformer on scikit-learn's 8x8 digits: attention and layer norm on images.

Patches are cut once from the data (a fixed reshape), so the model sees ``[B, N, p*p]``
patch vectors; attention is written with matmuls and ``softmax`` as in `tasks.charlm`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Task
from .data import digits, rows_batches
from .digits import classification, linear_init
from .registry import register
from .schedules import WarmupCosine
from .variants import draw

__all__ = ["vit_digits", "patches"]


def patches(x: Tensor, p: int) -> Tensor:
    """``[B, 64]`` 8x8 images -> ``[B, (8/p)^2, p*p]`` non-overlapping ``p x p`` patches, row-major."""
    n = 8 // p
    return x.view(-1, n, p, n, p).permute(0, 1, 3, 2, 4).reshape(-1, n * n, p * p)


@register("vit_digits")
def vit_digits(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 300, variant: int = 0) -> Task:
    """Cross-entropy of a vision transformer, width ``d = width * size``, on 8x8 digit images.

    Tokens: ``patch W_e + b_e + pos`` for the ``(8/p)^2`` patches of ``p x p`` pixels. Blocks
    (``depth`` of them, pre-norm): ``h += attn(ln(h)) W_o`` with ``heads`` heads,
    ``h += gelu(ln(h) W_1 + b_1) W_2 + b_2`` (hidden ``2 d``); then ``ln``, the mean over the
    tokens and a linear head to 10 classes. Weights ``init_scale`` times torch.nn.Linear's
    init (the residual outputs ``W_o, W_2`` further ``/ sqrt(2 depth)``), positions
    ``N(0, 0.02^2)``. Data: `tasks.data.digits` (1437 training, 360 validation images).

    Variant axes: patch 4/2 (4 or 16 tokens), depth 1/2, width 32/24/40, heads 2/4, tokens per
    batch 256/128/384 (the batch size is ``tokens // (8/p)^2`` images: 64 of 4x4 patches by
    default, 16 of 2x2; the cost of a step follows the tokens), init scale 1/0.5/2. Variants
    1-5 cost 0.7x to 2.0x the default's time. AdamW at lr 1e-2: 2.44 -> 0.083.
    """
    v = draw("vit_digits", variant, patch=(4, 2), depth=(1, 2), width=(32, 24, 40), heads=(2, 4),
             tokens=(256, 128, 384), init_scale=(1.0, 0.5, 2.0))
    p, depth, d, heads, scale = v["patch"], v["depth"], v["width"] * size, v["heads"], v["init_scale"]
    n, dh = (8 // p) ** 2, d // heads
    batch_size = v["tokens"] // n
    xt, yt, xv, yv = digits()
    f = lambda a: patches(torch.as_tensor(a), p).to(device=device, dtype=dtype)  # noqa: E731
    train = (f(xt), torch.as_tensor(yt).to(device))
    val = (f(xv), torch.as_tensor(yv).to(device))

    def init(g):
        out = {"embed": scale * linear_init(g, p * p, p * p, d), "embed.b": torch.zeros(d),
               "pos": torch.randn(n, d, generator=g) * 0.02, "lnf.w": torch.ones(d), "lnf.b": torch.zeros(d),
               "head": scale * linear_init(g, d, d, 10), "head.b": torch.zeros(10)}
        res = scale / math.sqrt(2 * depth)
        for i in range(depth):
            out.update({f"{i}.ln1.w": torch.ones(d), f"{i}.ln1.b": torch.zeros(d),
                        f"{i}.qkv": scale * linear_init(g, d, d, 3 * d), f"{i}.proj": res * linear_init(g, d, d, d),
                        f"{i}.ln2.w": torch.ones(d), f"{i}.ln2.b": torch.zeros(d),
                        f"{i}.fc1": scale * linear_init(g, d, d, 2 * d), f"{i}.fc1.b": torch.zeros(2 * d),
                        f"{i}.fc2": res * linear_init(g, 2 * d, 2 * d, d), f"{i}.fc2.b": torch.zeros(d)})
        return out

    def logits(q, x: Tensor) -> Tensor:
        b = x.shape[0]
        h = x @ q["embed"] + q["embed.b"] + q["pos"]
        for i in range(depth):
            a = F.layer_norm(h, (d,), q[f"{i}.ln1.w"], q[f"{i}.ln1.b"])
            qq, k, vv = (a @ q[f"{i}.qkv"]).view(b, n, 3, heads, dh).permute(2, 0, 3, 1, 4)
            att = ((qq @ k.transpose(-1, -2)) / math.sqrt(dh)).softmax(-1)
            h = h + (att @ vv).transpose(1, 2).reshape(b, n, d) @ q[f"{i}.proj"]
            a = F.layer_norm(h, (d,), q[f"{i}.ln2.w"], q[f"{i}.ln2.b"])
            h = h + F.gelu(a @ q[f"{i}.fc1"] + q[f"{i}.fc1.b"]) @ q[f"{i}.fc2"] + q[f"{i}.fc2.b"]
        h = F.layer_norm(h, (d,), q["lnf.w"], q["lnf.b"]).mean(1)
        return h @ q["head"] + q["head.b"]

    loss, accuracy = classification(logits)
    desc = (f"vision transformer ({depth} block{'s' if depth > 1 else ''}, d={d}, {heads} heads, {p}x{p} patches, "
            f"init x{scale:g}) on 8x8 digits, batch {batch_size}")
    if variant:
        desc += f", variant {variant}"
    return Task(name="vit_digits", description=desc, init=init, loss=loss,
                train_batch=rows_batches(train, batch_size), val_batch=val, steps=steps,
                schedule=WarmupCosine(0.05), metric=accuracy, metric_name="accuracy", device=device, dtype=dtype)
