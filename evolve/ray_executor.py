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
from dataclasses import dataclass
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
    """One actor: starting (``ready_ref`` pending), idle, or running ``jobs``."""

    name: str
    actor: Any
    ready_ref: Any = None
    ready: bool = False
    jobs: Optional[list[Job]] = None
    ref: Any = None
    started: float = 0.0


class RayExecutor:
    """``workers`` actors, each with ``num_cpus`` CPUs and ``num_gpus`` (fractional) GPUs.

    Jobs go only to actors that have finished starting (built their task data); an actor that
    cannot be placed yet (its node is gone and the cluster is full) simply waits for resources.
    """

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
        self.queue: list[list[Job]] = []     # batches waiting for an idle actor
        self.done: list[tuple[Job, Fitness]] = []
        self.lost_workers = 0
        self.attempts: dict[int, int] = {}   # job id -> times its worker was lost under it
        self.deaths_in_a_row = 0             # actors lost since the last result: a broken factory shows here

    def _spawn(self) -> _Slot:
        name = f"worker-{next(self._names)}"
        actor = self._remote.options(**self.options).remote(self.factory, name)
        return _Slot(name, actor, ready_ref=actor.ready.remote())

    # ------------------------------------------------------------------ protocol
    def capacity(self) -> int:
        self._poll(0.0)
        return max(0, sum(1 for s in self.slots if s.ready and s.jobs is None) - len(self.queue))

    def submit(self, jobs: list[Job]) -> None:
        self.queue.append(list(jobs))
        self._dispatch()

    def in_flight(self) -> int:
        return sum(len(s.jobs) for s in self.slots if s.jobs) + sum(len(b) for b in self.queue)

    def workers_alive(self) -> int:
        return sum(1 for s in self.slots if s.ready)

    def wait(self, timeout: Optional[float] = None) -> list[tuple[Job, Fitness]]:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while not self.done:
            left = deadline - time.monotonic()
            if left <= 0 or not self._poll(min(left, 1.0)):
                break
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
    def _poll(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for an actor to start or a batch to finish; False if idle."""
        refs = {}
        for s in self.slots:
            if not s.ready:
                refs[s.ready_ref] = s
            elif s.jobs is not None:
                refs[s.ref] = s
        if not refs:
            return False
        ready, _ = self.ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
        for ref in ready:
            slot = refs[ref]
            if not slot.ready:
                self._started(slot)
            else:
                self._collect(slot)
        self._check_timeouts()
        self._dispatch()
        return True

    def _started(self, slot: _Slot) -> None:
        try:
            self.ray.get(slot.ready_ref)
            slot.ready = True
        except self.ray.exceptions.RayError as e:
            log.warning("%s failed to start (%s); replacing it", slot.name, type(e).__name__)
            self._lost(slot, e)

    def _dispatch(self) -> None:
        for slot in self.slots:
            if not self.queue:
                return
            if slot.ready and slot.jobs is None:
                slot.jobs = self.queue.pop(0)
                slot.started = time.monotonic()
                slot.ref = slot.actor.run.remote(slot.jobs)

    def _collect(self, slot: _Slot) -> None:
        jobs = slot.jobs
        slot.jobs, ref, slot.ref = None, slot.ref, None
        try:
            results = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:  # not expected: safe_evaluate catches errors
            self.done.extend((j, Fitness.failed("error", str(e)[:2000], worker=slot.name)) for j in jobs)
            return
        except self.ray.exceptions.RayError as e:      # the actor, its process or its node died
            log.warning("%s died (%s); replacing it and running its %d jobs again",
                        slot.name, type(e).__name__, len(jobs))
            self._lost(slot, e)
            self._requeue(jobs, "lost", f"worker died: {type(e).__name__}")
            return
        self.done.extend((j, Fitness.from_dict(r)) for j, r in zip(jobs, results))
        self.deaths_in_a_row = 0

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
            self._lost(slot, None)
            if len(jobs) == 1:
                self.done.append((jobs[0], Fitness.failed("timeout", f"ran past {limit:.0f}s", limit, slot.name)))
            else:  # find the slow one: run each alone
                self.queue.extend([j] for j in jobs)

    def _lost(self, slot: _Slot, error: Optional[Exception]) -> None:
        """Kill and replace the slot's actor."""
        if error is not None:
            self.deaths_in_a_row += 1
            if self.deaths_in_a_row > 3 * max(1, len(self.slots)) + MAX_RETRIES:
                raise RuntimeError(f"{self.deaths_in_a_row} evaluation actors died in a row without a result; "
                                   f"the last error: {error}") from error
        try:
            self.ray.kill(slot.actor)
        except Exception:
            pass
        self.lost_workers += 1
        fresh = self._spawn()
        slot.name, slot.actor, slot.ready_ref, slot.ready = fresh.name, fresh.actor, fresh.ready_ref, False
        slot.jobs = slot.ref = None

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
            self.queue.append(again)
