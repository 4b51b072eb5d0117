"""Synthetic objectives: an ill-conditioned noisy quadratic and the extended Rosenbrock function."""
from __future__ import annotations

import math

import torch

from .base import Task
from .registry import register
from .schedules import WarmupCosine
from .variants import draw

__all__ = ["quadratic", "rosenbrock"]


@register("quadratic")
def quadratic(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 400, variant: int = 0) -> Task:
    """Noisy quadratic ``0.5 (w - w* - c)^T H (w - w* - c)``, ``H = Q diag(h) Q^T``, ``d = dim * size``.

    ``h`` is log-spaced in ``[1 / condition, 1]`` and ``Q`` a fixed random rotation (so the
    ill-conditioning is not axis-aligned). The optimum ``w* ~ N(0, I)`` is fixed per variant
    (drawn after ``Q`` from the ``problem`` seed): with the optimum at the origin, pure decay
    ``lr * w`` solved the task exactly (version 1); now stopping at 0 costs ``0.5 w*^T H w*``
    (about half the initial loss). Each step draws ``c = Q (noise * z / sqrt(h))``,
    ``z ~ N(0, I)``, giving gradient noise with covariance ``noise^2 H`` (the noisy quadratic
    model). Start ``w ~ init_scale * N(0, I)``. Validation loss: the noise-free
    ``0.5 (w - w*)^T H (w - w*)``; ``w*`` is the validation batch, so it is in the fingerprint.

    Variant axes: dim 100/50/200, condition 1e3/1e2/1e4, noise 0.3/0.1/1, init scale 1/0.5/2,
    problem 0..3 (the seed of ``Q`` and ``w*``). Variants 1-5 cost 1.0x to 1.3x the default's time.
    """
    v = draw("quadratic", variant, dim=(100, 50, 200), condition=(1e3, 1e2, 1e4), noise=(0.3, 0.1, 1.0),
             init_scale=(1.0, 0.5, 2.0), problem=(0, 1, 2, 3))
    d, condition, noise, scale = v["dim"] * size, v["condition"], v["noise"], v["init_scale"]
    gen = torch.Generator().manual_seed(1234 + v["problem"])
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    opt = torch.randn(d, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    h = torch.logspace(-math.log10(condition), 0.0, d, dtype=torch.float64)
    hess = ((q * h) @ q.T).to(device=device, dtype=dtype)
    noise_basis = (q * (noise / h.sqrt())).to(device=device, dtype=dtype)  # c = noise_basis @ z

    def train_batch(step: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(1_000_003 * int(seed) + step)
        z = torch.randn(d, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
        return opt + noise_basis @ z

    def quad(r):
        # (hess * r).sum(-1) == hess @ r, written elementwise: under vmap a matrix-vector
        # product folds the copies into one GEMM whose rounding depends on the copy count.
        return 0.5 * (r * (hess * r).sum(-1)).sum()

    def loss(p, target):
        return quad(p["w"] - target)

    desc = f"noisy quadratic, d={d}, condition {condition:g}, rotated, optimum off the origin"
    if variant:
        desc += f", noise {noise:g}, init x{scale:g}, problem {v['problem']}, variant {variant}"
    return Task(
        name="quadratic", description=desc,
        init=lambda g: {"w": scale * torch.randn(d, generator=g)},
        loss=loss, val_batch=opt, train_batch=train_batch, steps=steps,
        schedule=WarmupCosine(0.05), loss_floor=1e-4, device=device, dtype=dtype, version=2)


@register("rosenbrock")
def rosenbrock(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 1000, variant: int = 0) -> Task:
    """Extended Rosenbrock ``f(x) = sum_i a (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`` in ``dims * size`` dims.

    Start: ``x_i = -1.2 (i even), 1 (i odd)`` plus ``init_scale * N(0, 1)``. Minimum 0 at
    ``x = 1``. With ``noise = 0`` (the default) deterministic, full batch; else each step's
    training loss is ``f(x + noise * z)``, ``z ~ N(0, I)`` drawn per (seed, step): gradient
    noise that grows with the curvature (large across the valley, small along it), as minibatch
    noise does. Validation: the noise-free ``f(x)``. ``loss_floor = 0.1`` (the start is ~1700):
    below it the function counts as solved, so the log-ratio score does not reward ever tinier
    losses (which would let this one task dominate a stage's mean).

    Variant axes: dims 8/4/12/16, valley steepness a 100/30/300 (the conditioning: curvature across
    the valley ~ 8a, along it ~ 1), noise 0/0.003/0.01, init scale 0.1/0.03/0.3. Variants 1-5 cost
    1.0x to 1.1x the default's time.
    """
    v = draw("rosenbrock", variant, dims=(8, 4, 12, 16), valley=(100.0, 30.0, 300.0), noise=(0.0, 0.003, 0.01),
             init_scale=(0.1, 0.03, 0.3))
    n, a, noise, scale = v["dims"] * size, v["valley"], v["noise"], v["init_scale"]

    def init(g):
        base = torch.tensor([-1.2 if i % 2 == 0 else 1.0 for i in range(n)])
        return {"x": base + scale * torch.randn(n, generator=g)}

    def f(x):
        return (a * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2).sum()

    def train_batch(step: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(1_000_003 * int(seed) + step)
        return (noise * torch.randn(n, generator=g, dtype=torch.float64)).to(device=device, dtype=dtype)

    def loss(p, z):
        return f(p["x"] if z is None else p["x"] + z)

    desc = f"extended Rosenbrock function, {n} dims"
    if a != 100.0:
        desc += f", valley {a:g}"
    if noise:
        desc += f", noise {noise:g}"
    if scale != 0.1:
        desc += f", start noise {scale:g}"
    if variant:
        desc += f", variant {variant}"
    return Task(
        name="rosenbrock", description=desc, init=init, loss=loss,
        train_batch=train_batch if noise else None, steps=steps, schedule=WarmupCosine(0.05), loss_floor=0.1,
        device=device, dtype=dtype)
