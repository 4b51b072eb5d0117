"""The AdamW reference per task: its learning rate tuned once on a log grid, then cached.

The cache lives in memory (per process) and optionally in a JSON file (``path`` argument, or
the ``OPTSEARCH_BASELINE_CACHE`` environment variable), keyed by a hash of the task name and
config, the task's fingerprint (budget, schedule, initial weights, validation data), the
evaluation settings, the device type, dtype and the torch version. Writers hold an exclusive
lock on ``<path>.lock`` and replace the file atomically, so parallel workers can share it.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from typing import Optional

import torch

import dsl

from .base import Task
from .results import Baseline
from .train import OK, Run, StopRules, train_batched

__all__ = ["ADAMW_TEXT", "adamw_program", "baseline", "baseline_key", "clear_memory_cache", "CACHE_ENV"]

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


def clear_memory_cache() -> None:
    with _LOCK:
        _MEMORY.clear()


def baseline(task: Task, *, seed: int = 0, steps: Optional[int] = None, final_evals: int = 3,
             rules: StopRules = StopRules(), path: Optional[str] = None) -> Baseline:
    """Tuned AdamW on ``task``: every lr of ``task.lr_grid`` trained side by side, best kept."""
    steps = steps or task.steps
    key, _ = baseline_key(task, seed=seed, steps=steps, final_evals=final_evals, rules=rules)
    hit = _MEMORY.get(key)
    if hit is not None:
        return hit
    path = path or os.environ.get(CACHE_ENV) or None
    if path:
        hit = _read(path).get(key)
        if hit is not None:
            b = Baseline.from_dict(hit)
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
                    grid=tuple((lr, o.status, o.loss) for lr, o in zip(grid, outs)), seconds=best.seconds)


# ---------------------------------------------------------------------- the JSON file
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
