"""A task with sparse, unevenly scaled gradients: an embedding-bag classifier over Zipf tokens."""
from __future__ import annotations

import torch

from .base import Task
from .data import MinibatchIndex
from .digits import classification, linear_init
from .registry import register
from .schedules import WarmupCosine
from .variants import draw

__all__ = ["zipf_bag"]


@register("zipf_bag")
def zipf_bag(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 300, classes: int = 8,
             variant: int = 0) -> Task:
    """Classify bags of ``bag`` token ids drawn from a Zipf law over ``V = vocab * size`` tokens.

    ``P(token i) ∝ (i + 1) ** -exponent``. Labels come from a random teacher:
    ``y = argmax(mean_j T[id_j] + 0.1 n)``. Model: ``logits = (counts / bag) E W + b`` with an
    embedding table ``E [V, dim]`` (an embedding bag written as a dense count-matrix product):
    a token's row of ``E`` gets gradient only in batches containing it, so gradient scale per
    row spans orders of magnitude; per-coordinate adaptivity matters. Init:
    ``E ~ 0.1 init_scale N(0, 1)``, ``W ~ init_scale U(+-1/sqrt(dim))``, ``b = 0``.

    Variant axes: exponent 1.1/0.9/1.3, vocab 1000/500/1500, bag 16/8/32, dim 16/8/24, batch
    size 64/32/96, init scale 1/0.5/2, data 0..3 (the seed of the teacher and the samples).
    Variants 1-5 cost 1.1x to 1.8x the default's time.
    """
    v = draw("zipf_bag", variant, exponent=(1.1, 0.9, 1.3), vocab=(1000, 500, 1500), bag=(16, 8, 32),
             dim=(16, 8, 24), batch_size=(64, 32, 96), init_scale=(1.0, 0.5, 2.0), data=(0, 1, 2, 3))
    V, exponent, bag, dim, scale = v["vocab"] * size, v["exponent"], v["bag"], v["dim"], v["init_scale"]
    gen = torch.Generator().manual_seed(4321 + v["data"])
    probs = (torch.arange(V, dtype=torch.float64) + 1.0) ** -exponent
    teacher = torch.randn(V, classes, generator=gen, dtype=torch.float64)

    def sample(n):
        ids = torch.multinomial(probs, n * bag, replacement=True, generator=gen).view(n, bag)
        scores = teacher[ids].mean(1) + 0.1 * torch.randn(n, classes, generator=gen, dtype=torch.float64)
        return ids, scores.argmax(1)

    def counts(ids):
        c = torch.zeros(ids.shape[0], V, device=device, dtype=dtype)
        return c.scatter_add_(1, ids, torch.ones(ids.shape, device=device, dtype=dtype)) / bag

    ids_tr, y_tr = sample(8192)
    ids_va, y_va = sample(1024)
    ids_tr, y_tr = ids_tr.to(device), y_tr.to(device)
    val_batch = (counts(ids_va.to(device)), y_va.to(device))
    index = MinibatchIndex(len(ids_tr), v["batch_size"], device)

    def train_batch(step: int, seed: int):
        i = index.index(step, seed)
        return counts(ids_tr[i]), y_tr[i]

    def init(g):
        return {"emb": torch.randn(V, dim, generator=g) * (0.1 * scale),
                "w": scale * linear_init(g, dim, dim, classes),
                "b": torch.zeros(classes)}

    def logits(p, x):
        return (x @ p["emb"]) @ p["w"] + p["b"]

    loss, accuracy = classification(logits)

    desc = f"embedding bag over Zipf({exponent:g}) tokens, V={V}"
    if variant:
        desc += (f", bag {bag}, dim {dim}, batch {v['batch_size']}, init x{scale:g}, data {v['data']}, "
                 f"variant {variant}")
    return Task(name="zipf_bag", description=desc, init=init, loss=loss, train_batch=train_batch,
                val_batch=val_batch, steps=steps, schedule=WarmupCosine(0.05), metric=accuracy,
                metric_name="accuracy", device=device, dtype=dtype)
