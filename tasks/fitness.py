"""Fitness of programs on task sets (the search's entry point): `evaluate`.

For each task, every (program, lr multiplier) pair is one copy; copies are trained side by
side in batches of at most ``max_batch`` (`tasks.train.train_batched`), from the same initial
weights and data order. A program's task score is that of its best multiplier; see
`tasks.results` for the formula. Task data and the tuned AdamW baselines are cached in the
process, so a worker builds each task once; a search worker is instead handed its baselines
(``baselines``, by key) and never tunes them itself (see `tasks.baselines`).

Learning-rate multipliers: relative to the task's tuned AdamW lr, default ``(0.1, 0.3, 1.0)``.
1.0 reproduces the baseline (AdamW scores 0); 0.1 and 0.3 cover sign-like updates such as
Lion's, whose per-coordinate step is larger than AdamW's and which wants a 3-10x smaller lr.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Union

import torch

from dsl import Program

from . import registry
from .base import Task
from .baselines import baseline
from .results import WORST_SCORE, Baseline, FitnessResult, TaskResult, score
from .stages import resolve
from .train import ERROR, HOPELESS, DIVERGED, NAN, OK, Run, StopRules, train_batched

__all__ = ["EvalConfig", "evaluate", "evaluate_task", "DEFAULT_LR_MULTIPLIERS"]

DEFAULT_LR_MULTIPLIERS: tuple[float, ...] = (10.0 ** -1.5, 10.0 ** -0.75, 1.0)

# Which failed run represents a program that failed at every multiplier (most informative first).
_FAILURE_ORDER = {HOPELESS: 0, DIVERGED: 1, NAN: 2, ERROR: 3}


@dataclass(frozen=True)
class EvalConfig:
    """How programs are evaluated.

    lr_multipliers: tried per program, relative to the task's tuned AdamW lr.
    seed: initial weights and data order. repeats: seeds ``seed, seed + 1, ...`` per task; a
    task's score is then the mean over seeds of the per-seed score against AdamW tuned at
    that seed (the multiplier is chosen once, by that mean), which averages out runs that
    are chaotic at the tuned lr. steps: budget override (None: each task's own).
    final_evals: validation losses averaged into the final loss. rules: early stopping.
    max_batch: copies trained side by side (1: one at a time).
    size, device, dtype: passed to every task factory.
    fast, compile: the trainer (`tasks.train.train_batched`): ``fast=False`` the reference one,
    ``compile`` the forward and backward pass compiled (results within float rounding).
    """

    lr_multipliers: tuple[float, ...] = DEFAULT_LR_MULTIPLIERS
    seed: int = 0
    repeats: int = 1
    steps: Optional[int] = None
    final_evals: int = 3
    rules: StopRules = field(default_factory=StopRules)
    max_batch: int = 48
    size: int = 1
    device: str = "cpu"
    dtype: str = "float32"
    fast: bool = True
    compile: bool = False

    def task(self, name: str) -> Task:
        """The task built with this config's size, device and dtype (those its factory accepts)."""
        kw = {"size": self.size, "device": self.device, "dtype": getattr(torch, self.dtype)}
        params = inspect.signature(registry.factory(name)).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kw = {k: v for k, v in kw.items() if k in params}
        return registry.get(name, **kw)

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"EvalConfig.repeats must be >= 1, got {self.repeats}")

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.repeats))

    def baseline(self, task: Task, cache_path: Optional[str] = None, seed: Optional[int] = None,
                 baselines: Optional[Mapping[str, Baseline]] = None) -> Baseline:
        """Tuned AdamW on ``task`` at ``seed`` (default: this config's); ``baselines``: see `evaluate`."""
        return baseline(task, seed=self.seed if seed is None else seed, steps=self.steps,
                        final_evals=self.final_evals, rules=self.rules, path=cache_path, known=baselines)


def evaluate(programs: Sequence[Program], task_names: Union[str, Sequence[str]] = "stage1",
             config: EvalConfig = EvalConfig(), *, cache_path: Optional[str] = None,
             baselines: Optional[Mapping[str, Baseline]] = None) -> list[FitnessResult]:
    """Fitness of each program on the tasks (a list of names or a `tasks.STAGES` name).

    Returns one `FitnessResult` per program, in order; never raises for a program's failure
    (an unknown task name raises KeyError).
    ``cache_path``: optional JSON file for tuned baselines (see `tasks.baselines`).
    ``baselines``: tuned baselines by key, the only ones used when given: one missing from it
    raises `tasks.baselines.MissingBaseline` (it is not tuned here).
    """
    names = resolve(task_names)
    if not programs:
        return []
    t0 = time.perf_counter()
    per_task = []
    for name in names:
        task = config.task(name)
        bases = [config.baseline(task, cache_path, seed, baselines) for seed in config.seeds]
        per_task.append(evaluate_task(programs, task, config, bases))
    seconds = time.perf_counter() - t0
    out = []
    for j, p in enumerate(programs):
        results = tuple(rs[j] for rs in per_task)
        agg = sum(r.score for r in results) / len(results) if results else WORST_SCORE
        out.append(FitnessResult(program=p.hash, name=p.name, aggregate=agg, results=results,
                                 seconds=sum(r.seconds for r in results) if results else seconds))
    return out


def evaluate_task(programs: Sequence[Program], task: Task, config: EvalConfig,
                  base: Union[Baseline, Sequence[Baseline]]) -> list[TaskResult]:
    """Each program on one task at every lr multiplier (and seed), batched; the best multiplier kept.

    ``base``: the tuned AdamW baseline at each of ``config.seeds`` (one `Baseline` when
    ``repeats == 1``). With several seeds, a multiplier counts only if the program trains at
    every seed; its score is the mean of the per-seed scores, its loss the mean loss.
    """
    bases = [base] if isinstance(base, Baseline) else list(base)
    seeds = config.seeds
    if len(bases) != len(seeds):
        raise ValueError(f"{len(bases)} baselines for {len(seeds)} seeds")
    mults = tuple(config.lr_multipliers)
    n = len(mults)
    per_seed, seconds = [], [0.0] * (len(programs) * n)
    for seed, b in zip(seeds, bases):
        runs = [Run(p, b.lr * m) for p in programs for m in mults]
        outcomes = []
        step = max(1, config.max_batch)
        for k in range(0, len(runs), step):
            chunk = runs[k:k + step]
            outs = train_batched(task, chunk, seed=seed, steps=config.steps, final_evals=config.final_evals,
                                 rules=config.rules, reference=dict(b.curve), fast=config.fast,
                                 compile=config.compile)
            outcomes.extend(outs)
            for i in range(k, k + len(outs)):
                seconds[i] += outs[0].seconds / len(chunk)
        per_seed.append(outcomes)
    results = []
    for j in range(len(programs)):
        secs = sum(seconds[j * n:(j + 1) * n])
        cells = []  # per multiplier: (status, mean loss, mean score, the first seed's outcome, a failed one)
        for i in range(n):
            outs = [o[j * n + i] for o in per_seed]
            bad = next((o for o in outs if o.status != OK), None)
            loss = sum(o.loss for o in outs) / len(outs)
            sc = (sum(score(o.loss, b.loss, task.loss_floor) for o, b in zip(outs, bases)) / len(outs)
                  if bad is None else WORST_SCORE)
            cells.append((OK if bad is None else bad.status, loss, sc, outs[0], bad))
        grid = tuple((m, c[0], c[1]) for m, c in zip(mults, cells))
        ok = [i for i, c in enumerate(cells) if c[0] == OK]
        if ok:
            i = max(ok, key=lambda i: (cells[i][2], -i))
            status, loss, s, o, _ = cells[i]
            reason, steps = o.reason, o.steps
        else:
            i = min(range(n), key=lambda i: (_FAILURE_ORDER.get(cells[i][0], 9), i))
            status, loss, s, _, o = cells[i]
            s, reason, steps = WORST_SCORE, o.reason, o.steps
        results.append(TaskResult(task=task.name, score=s, loss=loss, lr_multiplier=mults[i], lr=bases[0].lr * mults[i],
                                  curve=o.curve, status=status, reason=reason, steps=steps, seconds=secs,
                                  grid=grid))
    return results
