"""The tuned AdamW baselines a run needs, computed once and shipped to the workers as values.

Every (task, seed) the run evaluates: each search stage's tasks at the evaluator's seeds
``seed .. seed + repeats - 1``, the validation tasks at ``validation_repeats`` seeds and the
test tasks at ``test_repeats`` seeds (what the search's validation and test jobs ask for). They are tuned where the workers' device type
is: in the calling process, or (for GPU workers) in one Ray task with a worker's resources, so
a baseline is measured on the same device and dtype as the programs compared with it.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Iterable, Mapping, Optional, TextIO

from .config import SearchConfig
from .worker import TaskEvaluator, default_stages, test_tasks, validation_tasks

if TYPE_CHECKING:
    from tasks import Baseline

__all__ = ["needed", "compute", "compute_remote"]


def needed(config: SearchConfig, seed: int = 0) -> tuple[tuple[str, int], ...]:
    """Sorted (task, seed) pairs a run evaluates; ``seed``: the evaluator's first seed."""
    stage_tasks = {t for stage in (config.stages or default_stages()) for t in stage}
    pairs = {(t, seed + k) for t in stage_tasks for k in range(config.repeats)}
    pairs |= {(t, seed + k) for t in validation_tasks(config) for k in range(config.validation_repeats)}
    pairs |= {(t, seed + k) for t in test_tasks(config) for k in range(config.test_repeats)}
    return tuple(sorted(pairs))


def compute(evaluator: TaskEvaluator, pairs: Iterable[tuple[str, int]],
            known: Mapping[str, "Baseline"] = {}, out: Optional[TextIO] = None) -> tuple["Baseline", ...]:
    """The baseline of each pair on this process's device, with the evaluator's settings (size,
    dtype, steps); taken from ``known`` (by key) when there, else tuned."""
    from tasks.baselines import remember

    remember(known)
    cfg = replace(evaluator, baselines=None).eval_config()
    got = []
    for name, seed in pairs:
        if out is not None:
            print(f"  baseline: {name} seed {seed} ({cfg.device}, {cfg.dtype}, size {cfg.size}) ...",
                  end="", file=out, flush=True)
        b = cfg.baseline(cfg.task(name), seed=seed)
        if out is not None:
            print(f" AdamW lr={b.lr:.3g} loss={b.loss:.4g}", file=out, flush=True)
        got.append(b)
    return tuple(got)


def _job(evaluator: TaskEvaluator, pairs: tuple[tuple[str, int], ...],
         known: Mapping[str, "Baseline"]) -> tuple["Baseline", ...]:
    import torch

    from .shipping import import_task_modules

    torch.set_num_threads(1)
    import_task_modules(evaluator.modules)   # the user's tasks, on the node that tunes them
    return compute(evaluator, pairs, known, out=sys.stderr)


def compute_remote(evaluator: TaskEvaluator, pairs: Iterable[tuple[str, int]], known: Mapping[str, "Baseline"] = {},
                   num_cpus: float = 1.0, num_gpus: float = 0.0) -> tuple["Baseline", ...]:
    """`compute` in one Ray task with a worker's resources (Ray must be initialized), so GPU
    workers' baselines are tuned on a GPU, once, not by each worker."""
    import ray

    # Only the keys the job may need travel (the driver's file can hold many other runs' entries).
    task_names = {name for name, _ in pairs}
    known = {k: b for k, b in known.items() if b.task in task_names}
    job = ray.remote(_job).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=1)
    return tuple(ray.get(job.remote(evaluator, tuple(pairs), known)))
