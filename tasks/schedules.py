"""Learning-rate schedules: a factor in [0, 1] per step; the program receives ``lr = base_lr * factor``.

A schedule is any frozen dataclass with ``factor(step, total) -> float`` (``step`` is 0-based,
``total`` the step budget), so its ``repr`` names it fully (it is part of baseline cache keys).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Schedule", "Constant", "WarmupCosine"]


class Schedule(Protocol):
    def factor(self, step: int, total: int) -> float: ...


@dataclass(frozen=True)
class Constant:
    """``factor = 1``."""

    def factor(self, step: int, total: int) -> float:
        return 1.0


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warmup then cosine decay to ``final``.

    With ``W = max(1, round(warmup * total))``:
    ``factor(s) = (s + 1) / W`` for ``s < W``, else
    ``final + (1 - final) * (1 + cos(pi * (s - W) / max(1, total - W))) / 2``.
    """

    warmup: float = 0.05
    final: float = 0.0

    def factor(self, step: int, total: int) -> float:
        w = max(1, round(self.warmup * total))
        if step < w:
            return (step + 1) / w
        progress = min(1.0, (step - w) / max(1, total - w))
        return self.final + (1.0 - self.final) * 0.5 * (1.0 + math.cos(math.pi * progress))
