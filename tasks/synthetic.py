"""Synthetic objectives: an ill-conditioned noisy quadratic and the extended Rosenbrock function."""
from __future__ import annotations

import math

import torch

from .base import Task
from .registry import register
from .schedules import WarmupCosine

__all__ = ["quadratic", "rosenbrock"]


@register("quadratic")
def quadratic(size: int = 1, device="cpu", dtype=torch.float32, condition: float = 1e3,
              noise: float = 0.3, steps: int = 400) -> Task:
    """Noisy quadratic ``0.5 (w - c)^T H (w - c)``, ``H = Q diag(h) Q^T`` in ``d = 100 * size`` dims.

    ``h`` is log-spaced in ``[1 / condition, 1]`` and ``Q`` a fixed random rotation (so the
    ill-conditioning is not axis-aligned). Each step draws ``c = Q (noise * z / sqrt(h))``,
    ``z ~ N(0, I)``, giving gradient noise with covariance ``noise^2 H`` (the noisy quadratic
    model). Validation loss: the noise-free ``0.5 w^T H w``.
    """
    d = 100 * size
    gen = torch.Generator().manual_seed(1234)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    h = torch.logspace(-math.log10(condition), 0.0, d, dtype=torch.float64)
    hess = ((q * h) @ q.T).to(device=device, dtype=dtype)
    noise_basis = (q * (noise / h.sqrt())).to(device=device, dtype=dtype)  # c = noise_basis @ z

    def train_batch(step: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(1_000_003 * int(seed) + step)
        z = torch.randn(d, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
        return noise_basis @ z

    def quad(r):
        # (hess * r).sum(-1) == hess @ r, written elementwise: under vmap a matrix-vector
        # product folds the copies into one GEMM whose rounding depends on the copy count.
        return 0.5 * (r * (hess * r).sum(-1)).sum()

    def loss(p, c):
        return quad(p["w"] - c)

    def val_loss(p, _):
        return quad(p["w"])

    return Task(
        name="quadratic", description=f"noisy quadratic, d={d}, condition {condition:g}, rotated",
        init=lambda g: {"w": torch.randn(d, generator=g)},
        loss=loss, val_loss=val_loss, train_batch=train_batch, steps=steps,
        schedule=WarmupCosine(0.05), loss_floor=1e-4, device=device, dtype=dtype)


@register("rosenbrock")
def rosenbrock(size: int = 1, device="cpu", dtype=torch.float32, dims: int = 8, steps: int = 1000) -> Task:
    """Extended Rosenbrock ``sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`` in ``dims * size`` dims.

    Deterministic (full batch). Start: ``x_i = -1.2 (i even), 1 (i odd)`` plus ``0.1 N(0, 1)``.
    Minimum 0 at ``x = 1``. ``loss_floor = 0.1`` (the start is ~1700): below it the function
    counts as solved, so the log-ratio score does not reward ever tinier losses (which would
    let this one task dominate a stage's mean).
    """
    n = dims * size

    def init(g):
        base = torch.tensor([-1.2 if i % 2 == 0 else 1.0 for i in range(n)])
        return {"x": base + 0.1 * torch.randn(n, generator=g)}

    def loss(p, _):
        x = p["x"]
        return (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2).sum()

    return Task(
        name="rosenbrock", description=f"extended Rosenbrock function, {n} dims",
        init=init, loss=loss, steps=steps, schedule=WarmupCosine(0.05), loss_floor=0.1,
        device=device, dtype=dtype)
