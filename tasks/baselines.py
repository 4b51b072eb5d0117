"""The AdamW reference per task: its learning rate tuned once on a log grid, then cached.

The cache lives in memory (per process) and optionally in a JSON file (``path`` argument, or
the ``OPTSEARCH_BASELINE_CACHE`` environment variable), keyed by a hash of the task name and
config (size and dtype among it), the task's fingerprint (budget, schedule, initial weights,
validation data), the evaluation settings, the device type, dtype and the torch version.
Writers hold an exclusive lock on ``<path>.lock`` and replace the file atomically.

Search workers do not tune: the driver (or one worker on the workers' device type) tunes every
baseline a run needs and ships them to the workers as values (``known``, a mapping key ->
`Baseline`); a baseline missing from it raises `MissingBaseline` instead of being re-tuned,
since tuning inside a worker's first batch is slow and silently breaks the run's timings.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import replace
from typing import Mapping, Optional

import torch

import dsl

from .base import Task
from .results import Baseline
from .train import OK, Run, StopRules, train_batched

__all__ = ["ADAMW_TEXT", "adamw_program", "baseline", "baseline_key", "clear_memory_cache", "CACHE_ENV",
           "MissingBaseline", "read_cache", "remember", "write_cache"]

CACHE_ENV = "OPTSEARCH_BASELINE_CACHE"

ADAMW_TEXT = '''\
def adamw(w, g, lr, t, m=0.0, v=0.0):
    m = interp(g, m, 0.9)
    v = interp(square(g), v, 0.999)
    m_hat = m / (1 - 0.9 ** t)
    v_hat = v / (1 - 0.999 ** t)
    return lr * (m_hat / (sqrt(v_hat) + 1e-8) + 0.01 * w)
'''
"""The reference optimizer (fixed here so a change to a seed file cannot move every score)."""

_MEMORY: dict[str, Baseline] = {}
_LOCK = threading.Lock()


def adamw_program() -> dsl.Program:
    return dsl.parse(ADAMW_TEXT)


def baseline_key(task: Task, *, seed: int, steps: int, final_evals: int, rules: StopRules) -> tuple[str, dict]:
    """``(hash, readable fields)`` identifying a baseline."""
    fields = {"task": task.name, "config": {k: repr(v) for k, v in sorted(task.config.items())},
              "fingerprint": task.fingerprint, "seed": seed, "steps": steps, "final_evals": final_evals,
              "diverge_factor": rules.diverge_factor, "device": task.device.type, "dtype": str(task.dtype),
              "torch": torch.__version__, "program": adamw_program().hash}
    blob = json.dumps(fields, sort_keys=True)
    return f"{task.name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}", fields


class MissingBaseline(LookupError):
    """A baseline that was not among those shipped to this process (it is never tuned there)."""


def _missing(task: Task, seed: int, key: str, available: int) -> MissingBaseline:
    size = task.config.get("size", "-")
    dtype = str(task.dtype).replace("torch.", "")
    return MissingBaseline(
        f"no tuned AdamW baseline for task {task.name!r} seed {seed} (size {size}, device {task.device.type}, "
        f"dtype {dtype}, torch {torch.__version__}; key {key}) among the {available} shipped to this process; "
        f"the driver tunes every (task, seed) a run evaluates, on the workers' device type and dtype "
        f"(evolve.launch.prepare_baselines): a mismatch of device, dtype, task size or torch version shows here")


def remember(baselines: "Mapping[str, Baseline] | list[Baseline] | tuple[Baseline, ...]") -> None:
    """Put ``baselines`` in this process's memory cache (as if tuned here)."""
    with _LOCK:
        for b in (baselines.values() if isinstance(baselines, Mapping) else baselines):
            _MEMORY[b.key] = b


def clear_memory_cache() -> None:
    with _LOCK:
        _MEMORY.clear()


def baseline(task: Task, *, seed: int = 0, steps: Optional[int] = None, final_evals: int = 3,
             rules: StopRules = StopRules(), path: Optional[str] = None,
             known: Optional[Mapping[str, Baseline]] = None) -> Baseline:
    """Tuned AdamW on ``task``: every lr of ``task.lr_grid`` trained side by side, best kept.

    ``known``: baselines shipped to this process, by key. When given, it is the only source
    (no memory cache, file or tuning): a key missing from it raises `MissingBaseline`.
    """
    steps = steps or task.steps
    key, _ = baseline_key(task, seed=seed, steps=steps, final_evals=final_evals, rules=rules)
    if known is not None:
        hit = known.get(key)
        if hit is None:
            raise _missing(task, seed, key, len(known))
        return hit
    hit = _MEMORY.get(key)
    if hit is not None:
        return hit if hit.seed == seed else replace(hit, seed=seed)
    path = path or os.environ.get(CACHE_ENV) or None
    if path:
        hit = _read(path).get(key)
        if hit is not None:
            b = replace(Baseline.from_dict(hit), seed=seed)  # files written before Baseline.seed lack it
            with _LOCK:
                _MEMORY[key] = b
            return b
    b = _tune(task, key, seed, steps, final_evals, rules)
    with _LOCK:
        _MEMORY[key] = b
    if path:
        _write(path, key, b)
    return b


def _tune(task: Task, key: str, seed: int, steps: int, final_evals: int, rules: StopRules) -> Baseline:
    prog = adamw_program()
    grid = tuple(task.lr_grid)
    no_hopeless = StopRules(diverge_factor=rules.diverge_factor, hopeless_fraction=0.0,
                            check_every=rules.check_every)
    outs = train_batched(task, [Run(prog, lr) for lr in grid], seed=seed, steps=steps,
                         final_evals=final_evals, rules=no_hopeless)
    ok = [(o.loss, j) for j, o in enumerate(outs) if o.status == OK]
    if not ok:
        reasons = "; ".join(f"lr={lr:g}: {o.status} {o.reason}" for lr, o in zip(grid, outs))
        raise RuntimeError(f"AdamW fails on task {task.name!r} at every lr of its grid: {reasons}")
    _, j = min(ok)
    best = outs[j]
    return Baseline(task=task.name, key=key, lr=grid[j], loss=best.loss, curve=best.curve,
                    grid=tuple((lr, o.status, o.loss) for lr, o in zip(grid, outs)), seconds=best.seconds, seed=seed)


# ---------------------------------------------------------------------- the JSON file
def read_cache(path: str) -> dict[str, Baseline]:
    """Every baseline in the JSON file at ``path`` (``{}`` if it is missing or unreadable)."""
    return {k: Baseline.from_dict(v) for k, v in _read(path).items()}


def write_cache(path: str, baselines: "Mapping[str, Baseline] | list[Baseline] | tuple[Baseline, ...]") -> None:
    """Add ``baselines`` to the JSON file at ``path`` (under its lock)."""
    for b in (baselines.values() if isinstance(baselines, Mapping) else baselines):
        _write(path, b.key, b)


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(path: str, key: str, b: Baseline) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with _FileLock(path + ".lock"):
        data = _read(path)
        data[key] = b.to_dict()
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".baselines-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)


class _FileLock:
    """An exclusive ``flock`` on a lock file (no-op where ``fcntl`` is unavailable)."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        self.fh = open(self.path, "a")
        try:
            import fcntl

            fcntl.flock(self.fh, fcntl.LOCK_EX)
        except ImportError:
            pass
        return self

    def __exit__(self, *exc):
        self.fh.close()  # releases the lock
