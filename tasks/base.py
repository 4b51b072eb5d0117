"""`Task`: a functional training problem (parameters dict + pure loss) with data, budget and schedule.

A task's model is *functional*: ``init(gen)`` returns a dict of parameter tensors and
``loss(params, batch)`` is a pure function of one copy of them, so the batched evaluator can
run K copies side by side with ``torch.func.vmap`` (each copy stacked as ``[K, *shape]``).

Conventions
- ``init(gen)`` draws from the CPU generator ``gen`` (seeded per evaluation) and returns tensors
  of any floating dtype; `Task.init_params` moves them to the task's device and dtype. Every
  parameter must have at least one dimension (a scalar is shape ``(1,)``).
- ``train_batch(step, seed)`` returns the batch (a tensor, tuple of tensors or ``None``) for the
  0-based ``step``; it must depend only on its arguments (fixed data order per seed).
- ``loss`` returns a non-negative scalar; the fitness compares validation losses by log-ratio.
- Data lives on the task's device; build it on CPU with a seeded generator and move it, so the
  same seed gives the same data on every device.
"""
from __future__ import annotations

import hashlib
from functools import cached_property
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Optional

import torch
from torch import Tensor

from .schedules import Constant, Schedule

__all__ = ["Task", "Params", "Batch", "LossFn", "DEFAULT_LR_GRID"]

Params = dict[str, Tensor]
Batch = Any  # a tensor, a tuple of tensors, or None
LossFn = Callable[[Params, Batch], Tensor]

DEFAULT_LR_GRID: tuple[float, ...] = tuple(10.0 ** (e / 2) for e in range(-8, 2))
"""AdamW learning rates tried when tuning a task's baseline: 1e-4 ... 3.16 in half decades."""


@dataclass(frozen=True, eq=False)
class Task:
    """One training problem. Build it in a factory registered with `tasks.register`.

    name: registry name. init: ``gen -> params``. loss: ``(params, batch) -> scalar``.
    steps: step budget. train_batch: ``(step, seed) -> batch`` (``None``: full-batch, batch=None).
    val_batch: fixed validation batch. val_loss: validation loss (default: ``loss``).
    schedule: lr factor per step. evals: number of validation evaluations over the run
    (plus one at step 0). metric/metric_name: optional extra validation metric for reports
    (e.g. accuracy). loss_floor: added to losses before the log-ratio score (for tasks whose
    loss can reach 0). lr_grid: AdamW learning rates tried when tuning the baseline.
    config: the factory's arguments (set by `tasks.get`; part of baseline cache keys).
    version: bump when the task's definition changes, to invalidate cached baselines.
    """

    name: str
    init: Callable[[torch.Generator], Params]
    loss: LossFn
    steps: int
    train_batch: Optional[Callable[[int, int], Batch]] = None
    val_batch: Batch = None
    val_loss: Optional[LossFn] = None
    schedule: Schedule = Constant()
    evals: int = 20
    description: str = ""
    metric: Optional[LossFn] = None
    metric_name: str = ""
    loss_floor: float = 0.0
    lr_grid: tuple[float, ...] = DEFAULT_LR_GRID
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    config: Mapping[str, Any] = field(default_factory=dict)
    version: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", torch.device(self.device))
        if self.steps < 1:
            raise ValueError(f"task {self.name!r}: steps must be >= 1")

    # ------------------------------------------------------------------ model and data
    def init_params(self, seed: int = 0) -> Params:
        """Initial parameters for ``seed`` on the task's device and dtype."""
        gen = torch.Generator().manual_seed(int(seed))
        params = self.init(gen)
        out = {}
        for k, v in params.items():
            if v.ndim == 0:
                raise ValueError(f"task {self.name!r}: parameter {k!r} is 0-dim; use shape (1,)")
            out[k] = v.detach().to(device=self.device, dtype=self.dtype).contiguous()
        return out

    def batch(self, step: int, seed: int = 0) -> Batch:
        """Training batch for 0-based ``step`` (``None`` for full-batch tasks)."""
        return None if self.train_batch is None else self.train_batch(step, seed)

    def validation_loss(self, params: Params) -> Tensor:
        return (self.val_loss or self.loss)(params, self.val_batch)

    def eval_steps(self, steps: Optional[int] = None) -> tuple[int, ...]:
        """Steps at which the validation loss is measured: 0 and ``evals`` points up to ``steps``."""
        n = self.steps if steps is None else steps
        return tuple(sorted({round(i * n / self.evals) for i in range(self.evals + 1)}))

    def lr_factor(self, step: int, steps: Optional[int] = None) -> float:
        return self.schedule.factor(step, self.steps if steps is None else steps)

    # ------------------------------------------------------------------ facts
    @cached_property
    def num_params(self) -> int:
        return sum(v.numel() for v in self.init_params(0).values())

    def with_config(self, config: Mapping[str, Any]) -> "Task":
        return replace(self, config=dict(config))

    @cached_property
    def fingerprint(self) -> str:
        """Hash of the task's definition as seen from outside: config, budget, schedule, shapes,
        initial parameters and validation data. Keys cached baselines."""
        h = hashlib.sha256()
        h.update(repr((self.name, sorted(self.config.items()), self.steps, self.evals, self.schedule,
                       self.loss_floor, self.lr_grid, str(self.dtype), self.version)).encode())
        for k, v in sorted(self.init_params(0).items()):
            h.update(k.encode())
            h.update(v.detach().cpu().to(torch.float64).numpy().tobytes())
        for t in _leaves(self.val_batch):
            t = t.detach().cpu()
            h.update((t.to(torch.float64) if t.is_floating_point() else t).contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Task({self.name!r}, steps={self.steps}, device={self.device}, dtype={self.dtype})"


def _leaves(batch: Batch) -> list[Tensor]:
    if batch is None:
        return []
    if isinstance(batch, Tensor):
        return [batch]
    if isinstance(batch, (tuple, list)):
        return [t for b in batch for t in _leaves(b)]
    if isinstance(batch, dict):
        return [t for k in sorted(batch) for t in _leaves(batch[k])]
    return []
