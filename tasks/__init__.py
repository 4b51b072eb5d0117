"""Proxy tasks and fitness for optimizer programs.

>>> import tasks, dsl
>>> tasks.names()[:3]
['autoencoder_digits', 'breast_cancer_fullbatch', 'char_lm']
>>> results = tasks.evaluate([dsl.parse(tasks.ADAMW_TEXT)], "stage1")   # doctest: +SKIP
>>> results[0].aggregate                                                   # doctest: +SKIP
0.0

Add a task in a few lines (a factory of ``size``, ``device``, ``dtype`` returning a `Task`)::

    @tasks.register("my_quadratic")
    def my_quadratic(size=1, device="cpu", dtype=torch.float32):
        return tasks.Task(name="my_quadratic", description="0.5 |w - 1|^2",
                          init=lambda gen: {"w": torch.randn(10 * size, generator=gen)},
                          loss=lambda p, batch: 0.5 * ((p["w"] - 1.0) ** 2).sum(),
                          steps=100, device=device, dtype=dtype)

Modules: `base` (Task), `registry`, `schedules`, `data`, the built-in tasks (`synthetic`,
`digits`, `charlm`, `sparse`, `recurrent`, `regularization`, `deep`, `teacher`, `tabular`,
`lstm`, `factorization`, `vit`), `mlp` (their shared MLP helpers), `variants` (seeded task
variants), `train` (batched trainer), `results` (scores and records),
`baselines` (tuned AdamW, cached), `fitness` (`evaluate`), `stages`, `replay` (CLI support).
"""
# import the built-in task modules so that they register
from . import (charlm, deep, digits, factorization, lstm, recurrent, regularization, sparse,  # noqa: F401
               synthetic, tabular, teacher, vit)
from .base import DEFAULT_LR_GRID, Task
from .baselines import ADAMW_TEXT, adamw_program, baseline
from .fitness import DEFAULT_LR_MULTIPLIERS, EvalConfig, evaluate, evaluate_task
from .registry import get, names, register, unregister
from .results import SCORE_CLIP, WORST_SCORE, Baseline, FitnessResult, TaskResult, score
from .schedules import Constant, WarmupCosine
from .stages import STAGES, resolve
from .train import STATUSES, Run, RunOutcome, StopRules, train_batched

__all__ = [
    "ADAMW_TEXT", "Baseline", "Constant", "DEFAULT_LR_GRID", "DEFAULT_LR_MULTIPLIERS", "EvalConfig",
    "FitnessResult", "Run", "RunOutcome", "SCORE_CLIP", "STAGES", "STATUSES", "StopRules", "Task",
    "TaskResult", "WORST_SCORE", "WarmupCosine", "adamw_program", "baseline", "evaluate", "evaluate_task",
    "get", "names", "register", "resolve", "score", "train_batched", "unregister",
]
