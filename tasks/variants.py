"""Task variants drawn from a seed, in the spirit of AlgoPerf's workload variants.

A family's factory takes ``variant: int = 0`` and calls `draw` with its axes (each a tuple of
choices whose first entry is the default). Variant 0 is the default task; variant ``v > 0``
draws every axis uniformly from ``random.Random(f"{family}/{v}")`` (string seeds are hashed
with SHA-512, so the draw is the same on every machine and Python version >= 3.2), redrawing
until at least one axis differs from the default. ``variant`` is a factory argument, so it is in
``task.config`` and therefore in the baseline cache key: each variant gets its own tuned AdamW.
"""
from __future__ import annotations

import random
from typing import Any, Sequence

__all__ = ["draw"]


def draw(family: str, variant: int, **axes: Sequence[Any]) -> dict[str, Any]:
    """One choice per axis: the defaults for ``variant == 0``, else a seeded draw (not all defaults)."""
    if isinstance(variant, bool) or not isinstance(variant, int) or variant < 0:
        raise ValueError(f"task {family!r}: variant must be an int >= 0, got {variant!r}")
    for name, choices in axes.items():
        if len(choices) == 0:
            raise ValueError(f"task {family!r}: variant axis {name!r} has no choices")
    default = {name: choices[0] for name, choices in axes.items()}
    if variant == 0 or all(len(c) == 1 for c in axes.values()):
        return default
    rng = random.Random(f"{family}/{variant}")
    while True:
        out = {name: rng.choice(tuple(choices)) for name, choices in axes.items()}
        if out != default:
            return out
