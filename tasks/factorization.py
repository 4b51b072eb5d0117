"""Matrix factorization of a noisy low-rank matrix: sparse gradients through embedding tables.

A minibatch holds a few hundred observed entries ``(i, j)``, so only the rows of the user and
item tables indexed in it get a nonzero gradient; the rest see exact zeros that step. How a
rule treats zero gradients (momentum carrying on, second moments decaying, decay applied to
untouched rows) is what this task measures, as recommender models and language-model
embeddings do at scale.
"""
from __future__ import annotations

import math

import torch

from .base import Task
from .data import rows_batches
from .registry import register
from .schedules import WarmupCosine
from .variants import draw

__all__ = ["matrix_factorization"]

USERS, ITEMS = 300, 200
VAL_ENTRIES = 2000


@register("matrix_factorization")
def matrix_factorization(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 1000,
                         variant: int = 0) -> Task:
    """Mean squared error of ``U[i] . V[j]`` against observed entries ``y = M_ij + noise * eps``.

    Ground truth: ``M = A B^T / sqrt(rank)`` (``A [300, rank]``, ``B [200, rank]`` ~ N(0, 1)),
    entries of unit variance, so predicting 0 scores ~1. A fraction ``density`` of the 60000
    entries is observed: 2000 of them (clean, ``M_ij``) validate, the rest (noisy) train in
    minibatches of ``batch`` entries. Model: ``U [300, k]``, ``V [200, k]`` with
    ``k = width * size`` (the model's rank; ``k < rank`` underfits), both
    ``~ N(0, init_scale^2 / k)``, so the prediction ``(U[i] * V[j]).sum(-1)`` starts with standard
    deviation ``init_scale^2 / sqrt(k)`` (0.25 by default). A batch of 64 entries touches about
    19% of the user rows and 27% of the item rows; the others get a zero gradient.

    Variant axes: rank 8/4/12, width 16/8/32, observed density 0.3/0.2/0.45, label noise
    0.1/0.3, batch size 64/32/256, init scale 1/0.3/2, data 0..3 (the matrix and which
    entries are observed). AdamW at lr 3e-2: 1.05 -> 0.025 (lr 1e-2: 0.45). Variants 1-5 cost
    1.0x to 1.2x the default's time; variant 2 (rank 12, 20% observed) is hard (0.57).
    """
    v = draw("matrix_factorization", variant, rank=(8, 4, 12), width=(16, 8, 32), density=(0.3, 0.2, 0.45),
             noise=(0.1, 0.3), batch_size=(64, 32, 256), init_scale=(1.0, 0.3, 2.0), data=(0, 1, 2, 3))
    r, k, scale = v["rank"], v["width"] * size, v["init_scale"]
    g = torch.Generator().manual_seed(3000 + v["data"])
    a = torch.randn(USERS, r, generator=g, dtype=torch.float64)
    b = torch.randn(ITEMS, r, generator=g, dtype=torch.float64)
    m = (a @ b.T / math.sqrt(r)).flatten()
    observed = torch.randperm(USERS * ITEMS, generator=g)[:round(v["density"] * USERS * ITEMS)]
    y = m[observed] + v["noise"] * torch.randn(len(observed), generator=g, dtype=torch.float64)
    users, items = (observed // ITEMS).to(device), (observed % ITEMS).to(device)
    y = y.to(device=device, dtype=dtype)
    val = (users[:VAL_ENTRIES], items[:VAL_ENTRIES], m[observed[:VAL_ENTRIES]].to(device=device, dtype=dtype))
    train = (users[VAL_ENTRIES:], items[VAL_ENTRIES:], y[VAL_ENTRIES:])

    def init(gen):
        std = scale / math.sqrt(k)
        return {"users": torch.randn(USERS, k, generator=gen) * std, "items": torch.randn(ITEMS, k, generator=gen) * std}

    def loss(p, batch):
        i, j, target = batch
        return (((p["users"][i] * p["items"][j]).sum(-1) - target) ** 2).mean()

    desc = (f"rank-{k} factorization of a noisy rank-{r} {USERS}x{ITEMS} matrix, {v['density']:g} observed, "
            f"noise {v['noise']:g}, batch {v['batch_size']} entries (sparse row gradients)")
    if variant:
        desc += f", variant {variant}"
    return Task(name="matrix_factorization", description=desc, init=init, loss=loss,
                train_batch=rows_batches(train, v["batch_size"]), val_batch=val, steps=steps,
                schedule=WarmupCosine(0.05), device=device, dtype=dtype)
