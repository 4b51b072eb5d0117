"""The Ray execution layer: evaluation actors that keep their task data, replaced when they die.

One code path for a laptop and a cluster: ``address=None`` starts an embedded local Ray;
``"auto"`` or ``"ray://host:port"`` joins an existing cluster. Each actor builds its evaluator
(task data on its device) once and evaluates batches of jobs. Faults:
- an actor that dies (its process or its node) is replaced and its batch is run again;
- a batch that runs past its time limit kills its actor; its jobs are retried one by one,
  and a job that times out alone is scored as failed (``timeout``);
- a program that raises is scored as failed inside the worker (see `safe_evaluate`).
"""
from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .candidate import Fitness, Job
from .executor import EvaluateFn, safe_evaluate

__all__ = ["RayExecutor", "init_ray"]

log = logging.getLogger(__name__)

MAX_RETRIES = 3


def init_ray(address: Optional[str] = None, num_cpus: Optional[int] = None, **kw: Any) -> None:
    """Join ``address`` or start an embedded local Ray (idempotent)."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True, **kw)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING, **kw)


class _Worker:
    """The actor: builds the evaluator once (task data stays on its device)."""

    def __init__(self, factory: Callable[[], EvaluateFn], name: str):
        import torch

        torch.set_num_threads(1)
        self.name = name
        self.evaluate = factory()

    def run(self, jobs: list[Job]) -> list[dict]:
        return [f.to_dict() for f in safe_evaluate(self.evaluate, jobs, self.name)]

    def ready(self) -> str:
        return self.name


@dataclass
class _Slot:
    name: str
    actor: Any
    jobs: Optional[list[Job]] = None
    ref: Any = None
    started: float = 0.0
    retries: dict = field(default_factory=dict)


class RayExecutor:
    """``workers`` actors, each with ``num_cpus`` CPUs and ``num_gpus`` (fractional) GPUs."""

    def __init__(self, factory: Callable[[], EvaluateFn], workers: int, num_cpus: float = 1.0,
                 num_gpus: float = 0.0, candidate_timeout: float = 120.0):
        import ray

        self.ray = ray
        self.factory = factory
        self.timeout = candidate_timeout
        self.options = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_restarts": 0}
        self._names = itertools.count()
        self._remote = ray.remote(_Worker)
        self.slots = [self._spawn() for _ in range(workers)]
        self.retry: list[list[Job]] = []     # batches to run again (worker lost)
        self.done: list[tuple[Job, Fitness]] = []
        self.lost_workers = 0
        self.attempts: dict[int, int] = {}   # job id -> times its worker was lost under it

    def _spawn(self) -> _Slot:
        name = f"worker-{next(self._names)}"
        actor = self._remote.options(**self.options).remote(self.factory, name)
        return _Slot(name, actor)

    # ------------------------------------------------------------------ protocol
    def capacity(self) -> int:
        self._drain_retries()
        return sum(1 for s in self.slots if s.jobs is None)

    def submit(self, jobs: list[Job]) -> None:
        slot = next((s for s in self.slots if s.jobs is None), None)
        if slot is None:
            self.retry.append(list(jobs))
            return
        self._start(slot, list(jobs))

    def in_flight(self) -> int:
        return sum(len(s.jobs) for s in self.slots if s.jobs) + sum(len(b) for b in self.retry)

    def workers_alive(self) -> int:
        return len(self.slots)

    def wait(self, timeout: Optional[float] = None) -> list[tuple[Job, Fitness]]:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while not self.done:
            self._drain_retries()
            busy = [s for s in self.slots if s.jobs is not None]
            if not busy:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _ = self.ray.wait([s.ref for s in busy], num_returns=1, timeout=min(left, 1.0))
            for ref in ready:
                slot = next(s for s in busy if s.ref is ref)
                self._collect(slot)
            self._check_timeouts()
        out, self.done = self.done, []
        return out

    def close(self) -> None:
        for s in self.slots:
            try:
                self.ray.kill(s.actor)
            except Exception:
                pass
        self.slots = []

    # ------------------------------------------------------------------ internals
    def _start(self, slot: _Slot, jobs: list[Job]) -> None:
        slot.jobs = jobs
        slot.started = time.monotonic()
        slot.ref = slot.actor.run.remote(jobs)

    def _collect(self, slot: _Slot) -> None:
        jobs = slot.jobs
        try:
            results = self.ray.get(slot.ref)
            self.done.extend((j, Fitness.from_dict(r)) for j, r in zip(jobs, results))
            slot.jobs = slot.ref = None
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError,
                self.ray.exceptions.ObjectLostError, self.ray.exceptions.NodeDiedError) as e:
            log.warning("%s died (%s); replacing it and running its %d jobs again",
                        slot.name, type(e).__name__, len(jobs))
            self._replace(slot)
            self._requeue(jobs, "lost", f"worker died: {type(e).__name__}")
        except self.ray.exceptions.RayTaskError as e:  # should not happen: safe_evaluate catches
            slot.jobs = slot.ref = None
            self.done.extend((j, Fitness.failed("error", str(e)[:2000], worker=slot.name)) for j in jobs)

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.jobs is None:
                continue
            limit = self.timeout * len(slot.jobs)
            if now - slot.started <= limit:
                continue
            jobs = slot.jobs
            log.warning("%s ran past %.0fs on %d jobs; killing it", slot.name, limit, len(jobs))
            self._replace(slot)
            if len(jobs) == 1:
                self.done.append((jobs[0], Fitness.failed("timeout", f"ran past {limit:.0f}s", limit, slot.name)))
            else:  # find the slow one: run each alone
                self.retry.extend([j] for j in jobs)

    def _replace(self, slot: _Slot) -> None:
        try:
            self.ray.kill(slot.actor)
        except Exception:
            pass
        self.lost_workers += 1
        fresh = self._spawn()
        slot.name, slot.actor, slot.jobs, slot.ref = fresh.name, fresh.actor, None, None

    def _requeue(self, jobs: list[Job], status: str, reason: str) -> None:
        """Run a lost batch again; a job lost more than MAX_RETRIES times is scored as failed."""
        again = []
        for j in jobs:
            self.attempts[j.id] = n = self.attempts.get(j.id, 0) + 1
            if n > MAX_RETRIES:
                self.done.append((j, Fitness.failed(status, f"{reason} ({n} times)")))
            else:
                again.append(j)
        if again:
            self.retry.append(again)

    def _drain_retries(self) -> None:
        while self.retry:
            slot = next((s for s in self.slots if s.jobs is None), None)
            if slot is None:
                return
            self._start(slot, self.retry.pop(0))
