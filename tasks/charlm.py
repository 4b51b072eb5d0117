"""Character-level language model: a small pre-norm transformer on Python stdlib source text."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Task
from .data import MinibatchIndex, stdlib_text
from .digits import linear_init
from .registry import register
from .schedules import WarmupCosine
from .variants import draw

__all__ = ["char_lm"]

VOCAB = 128  # ASCII codes


@register("char_lm")
def char_lm(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 300, heads: int = 2,
            variant: int = 0) -> Task:
    """Next-character cross-entropy of a ``layers``-layer transformer, width ``d = width * size``.

    Text: `tasks.data.stdlib_text` (fixed stdlib files), ASCII codes; one tenth of it (which
    one: the variant's ``val_part``; part 9 is the last 10%, from ``int(0.9 n)``) gives 64 fixed
    validation windows of ``T = context`` characters, the rest trains. Pre-norm blocks
    ``h += attn(ln(h))``, ``h += W2 gelu(W1 ln(h))`` with causal attention; learned positions;
    tied embeddings; ``init_scale`` multiplies the four weight matrices of each block.

    Variant axes: shape (layers, width) 2x32 / 1x48 / 3x24 / 2x40, window (context T, batch size)
    32x8 / 16x16 / 48x4 / 24x8 / 32x12, init scale 1/0.5/2, val_part 9/0/4/7. Shapes and windows
    are paired so that no variant costs much more than the default (independent axes reached
    5.3x at 3 layers of 48 over 16 windows of 48); variants 1-5 cost 0.7x to 1.7x the default's time.
    """
    v = draw("char_lm", variant, shape=((2, 32), (1, 48), (3, 24), (2, 40)),
             window=((32, 8), (16, 16), (48, 4), (24, 8), (32, 12)), init_scale=(1.0, 0.5, 2.0),
             val_part=(9, 0, 4, 7))
    (layers, width), (T, batch_size), scale = v["shape"], v["window"], v["init_scale"]
    d = width * size
    codes = torch.tensor(list(stdlib_text().encode("ascii")), dtype=torch.long)
    n, part = len(codes), v["val_part"]
    lo, hi = (int(0.9 * n), n) if part == 9 else (part * n // 10, (part + 1) * n // 10)
    train, val = torch.cat([codes[:lo], codes[hi:]]).to(device), codes[lo:hi]
    nval = min(64, (len(val) - 1) // (T + 1))
    val = val[:nval * (T + 1)].view(nval, T + 1).to(device)
    val_batch = (val[:, :-1], val[:, 1:])
    starts = MinibatchIndex(len(train) - T - 1, batch_size, device)
    offsets = torch.arange(T + 1, device=device)
    causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()

    def train_batch(step: int, seed: int):
        win = train[starts.index(step, seed)[:, None] + offsets]
        return win[:, :-1], win[:, 1:]

    def init(g):
        p = {"emb": torch.randn(VOCAB, d, generator=g) * 0.02, "pos": torch.randn(T, d, generator=g) * 0.02,
             "lnf.w": torch.ones(d), "lnf.b": torch.zeros(d)}
        for i in range(layers):
            p.update({f"{i}.ln1.w": torch.ones(d), f"{i}.ln1.b": torch.zeros(d),
                      f"{i}.qkv": scale * linear_init(g, d, d, 3 * d),
                      f"{i}.proj": scale * linear_init(g, d, d, d) / math.sqrt(2 * layers),
                      f"{i}.ln2.w": torch.ones(d), f"{i}.ln2.b": torch.zeros(d),
                      f"{i}.fc1": scale * linear_init(g, d, d, 4 * d), f"{i}.fc1.b": torch.zeros(4 * d),
                      f"{i}.fc2": scale * linear_init(g, 4 * d, 4 * d, d) / math.sqrt(2 * layers),
                      f"{i}.fc2.b": torch.zeros(d)})
        return p

    def logits(p, x: Tensor) -> Tensor:
        b, t = x.shape
        h = p["emb"][x] + p["pos"][:t]
        dh = d // heads
        for i in range(layers):
            a = F.layer_norm(h, (d,), p[f"{i}.ln1.w"], p[f"{i}.ln1.b"])
            q, k, v = (a @ p[f"{i}.qkv"]).view(b, t, 3, heads, dh).permute(2, 0, 3, 1, 4)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
            att = att.masked_fill(~causal[:t, :t], float("-inf")).softmax(-1)
            h = h + (att @ v).transpose(1, 2).reshape(b, t, d) @ p[f"{i}.proj"]
            a = F.layer_norm(h, (d,), p[f"{i}.ln2.w"], p[f"{i}.ln2.b"])
            h = h + F.gelu(a @ p[f"{i}.fc1"] + p[f"{i}.fc1.b"]) @ p[f"{i}.fc2"] + p[f"{i}.fc2.b"]
        h = F.layer_norm(h, (d,), p["lnf.w"], p["lnf.b"])
        return h @ p["emb"].T

    def loss(p, batch):
        x, y = batch
        return F.cross_entropy(logits(p, x).reshape(-1, VOCAB), y.reshape(-1))

    desc = f"{layers}-layer transformer char LM (d={d}, T={T}) on stdlib source"
    if variant:
        desc += f", batch {batch_size}, init x{scale:g}, val part {part}, variant {variant}"
    return Task(name="char_lm", description=desc, init=init, loss=loss, train_batch=train_batch,
                val_batch=val_batch, steps=steps, schedule=WarmupCosine(0.05), device=device, dtype=dtype)
