"""Scores and result records (frozen, JSON-serializable with ``to_dict``).

Fitness of a program on a task (natural log; positive = better than tuned AdamW):

    score = clip(log((L_AdamW + floor) / (L_program + floor)), -SCORE_CLIP, SCORE_CLIP)

where ``L`` is the final validation loss (mean of the last few evaluations), ``L_AdamW`` that of
the AdamW seed at its tuned learning rate, the program's loss is the best over the learning-rate
multipliers tried, and ``floor`` is the task's ``loss_floor``. A failed program (status other
than 'ok') scores ``WORST_SCORE``, below every clipped score. Over a task set, `aggregate`:

    mean     = mean over tasks of score
    median   = median over tasks of score
    trimmed  = mean without the single highest and the single lowest score (>= 3 tasks; else the mean)
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence

__all__ = ["WORST_SCORE", "SCORE_CLIP", "AGGREGATES", "score", "aggregate", "TaskResult", "FitnessResult",
           "Baseline"]

WORST_SCORE = -10.0
"""Score of a failed run (nan, diverged, hopeless, error): finite, below every real score."""

SCORE_CLIP = 5.0
"""Real scores are clipped to ``[-SCORE_CLIP, SCORE_CLIP]`` (a factor of e^5 ~ 148 in loss)."""


_TINY = 1e-30  # guards log(0) for losses that reach exactly 0 with no floor


def score(loss: float, baseline_loss: float, floor: float = 0.0) -> float:
    """``clip(log((baseline_loss + floor) / (loss + floor)), ±SCORE_CLIP)``; WORST_SCORE if not finite."""
    if not (math.isfinite(loss) and math.isfinite(baseline_loss)):
        return WORST_SCORE
    num, den = max(baseline_loss + floor, _TINY), max(loss + floor, _TINY)
    return max(-SCORE_CLIP, min(SCORE_CLIP, math.log(num / den)))


AGGREGATES = ("mean", "median", "trimmed")
"""Ways to combine task scores into one score (`aggregate`)."""


def aggregate(scores: Sequence[float], how: str = "mean") -> float:
    """Task scores -> one score: ``mean``, ``median`` or ``trimmed``.

    Task scores are log loss ratios clipped to +-5 (a failure: -10), so one task can move a mean
    of 4 by more than 1 while the others agree: a rule that wins big on one task and loses on
    the rest can outrank one that wins everywhere. ``trimmed`` drops the single highest and the
    single lowest score (when there are at least 3; with fewer it is the mean), so no one task
    decides alone; ``median`` goes further and ignores magnitudes. Raises ValueError on an
    empty list or an unknown ``how``.
    """
    xs = [float(x) for x in scores]
    if not xs:
        raise ValueError("aggregate of no task scores")
    if how == "mean":
        return sum(xs) / len(xs)
    if how == "median":
        return statistics.median(xs)
    if how == "trimmed":
        if len(xs) < 3:
            return sum(xs) / len(xs)
        xs.sort()
        return sum(xs[1:-1]) / (len(xs) - 2)
    raise ValueError(f"aggregate {how!r}: expected one of {', '.join(AGGREGATES)}")


def _clean(x: Any) -> Any:
    """Non-finite floats -> None, tuples -> lists: strict JSON."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    return x


@dataclass(frozen=True)
class TaskResult:
    """A program on one task.

    score: see module doc. loss: final validation loss of the chosen run (for failures, the
    last one measured). lr_multiplier / lr: of the chosen run (relative to / absolute, before
    the schedule). curve: ``((step, val_loss), ...)`` of the chosen run. status: 'ok', 'nan',
    'diverged', 'hopeless' or 'error' (of the chosen run: the best 'ok' one if any).
    reason: why it failed ('' if ok). steps: steps it ran. seconds: wall time of the batched
    training calls this program took part in, divided by the number of copies in them.
    grid: ``((multiplier, status, loss), ...)`` for every multiplier tried.
    """

    task: str
    score: float
    loss: float
    lr_multiplier: float
    lr: float
    curve: tuple[tuple[int, float], ...]
    status: str
    reason: str
    steps: int
    seconds: float
    grid: tuple[tuple[float, str, float], ...] = ()

    def to_dict(self) -> dict:
        return _clean(asdict(self))


@dataclass(frozen=True)
class FitnessResult:
    """A program on a task set: ``aggregate = mean(score over results)``."""

    program: str  # structural hash
    name: str
    aggregate: float
    results: tuple[TaskResult, ...]
    seconds: float

    @property
    def scores(self) -> dict[str, float]:
        return {r.task: r.score for r in self.results}

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.results)

    def result(self, task: str) -> Optional[TaskResult]:
        return next((r for r in self.results if r.task == task), None)

    def to_dict(self) -> dict:
        d = _clean(asdict(self))
        d["scores"] = _clean(self.scores)
        return d


@dataclass(frozen=True)
class Baseline:
    """AdamW on a task at its tuned learning rate (the fitness reference).

    key: cache key (`tasks.baselines.baseline_key`); lr: the best of the grid; loss: its final
    validation loss; curve: its validation curve; grid: ``((lr, status, loss), ...)`` over the
    tuning grid; seed: initial weights and data order it was tuned at (also part of ``key``).
    """

    task: str
    key: str
    lr: float
    loss: float
    curve: tuple[tuple[int, float], ...]
    grid: tuple[tuple[float, str, float], ...]
    seconds: float
    seed: int = 0

    def to_dict(self) -> dict:
        return _clean(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "Baseline":
        nan = float("nan")
        return cls(task=d["task"], key=d["key"], lr=float(d["lr"]),
                   loss=nan if d["loss"] is None else float(d["loss"]),
                   curve=tuple((int(s), nan if v is None else float(v)) for s, v in d["curve"]),
                   grid=tuple((float(a), str(b), nan if c is None else float(c)) for a, b, c in d["grid"]),
                   seconds=float(d["seconds"]), seed=int(d.get("seed", 0)))
