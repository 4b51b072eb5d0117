"""The Ray execution layer: evaluation actors that keep their task data, replaced when they die.

One code path for a laptop and a cluster: ``address=None`` starts an embedded local Ray;
``"auto"`` or ``"HOST:PORT"`` or ``"ray://host:port"`` joins an existing cluster. Either way the
project's packages (and the user's task modules) travel with the job (`evolve.shipping`), so
nodes need only the dependencies. Each actor builds its evaluator (task data on its device)
once and evaluates batches of jobs. Faults:

- an actor that dies (its process or its node), or whose evaluator raises (out of memory, a
  failed import: not the program's fault), is replaced and its batch runs again on another
  actor, at most ``MAX_RETRIES`` times; such results are never cached as the program's score;
- a batch that runs past its time limit kills its actor; its jobs are retried one by one, and a
  job that times out alone is scored as failed (``timeout``);
- workers that cannot start (an import error, a missing dependency, a version mismatch, no node
  with the resources asked for) stop the search within ``start_timeout`` seconds, or after
  ``START_DEATHS`` deaths before any actor started, with `WorkerStartupError` naming the cause
  as the worker reported it; actors that keep dying after work began stop it with `WorkerError`.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .candidate import TRANSIENT, Fitness, Job
from .executor import EvaluateFn, safe_evaluate

__all__ = ["RayExecutor", "init_ray", "WorkerError", "WorkerStartupError", "MAX_RETRIES"]

log = logging.getLogger(__name__)

MAX_RETRIES = 3      # a job whose worker failed under it more often is scored as failed (not cached)
START_DEATHS = 3     # actors that died before any actor started: the cause is not transient


class WorkerError(RuntimeError):
    """Evaluation workers keep failing: the search cannot go on."""


class WorkerStartupError(WorkerError):
    """No evaluation worker could start; the message names the cause the worker reported."""


def init_ray(address: Optional[str] = None, num_cpus: Optional[int] = None, *,
             task_modules: tuple = (), runtime_env: Optional[dict] = None, **kw: Any) -> None:
    """Join ``address`` or start an embedded local Ray (idempotent), shipping the project's
    packages and ``task_modules`` (`evolve.shipping.TaskModule`) to every worker."""
    import ray

    from .shipping import runtime_env as shipped_env

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    env = shipped_env(tuple(task_modules), runtime_env)
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True, runtime_env=env, **kw)
    else:
        # "local": always a fresh embedded instance, never a cluster that happens to run on this
        # machine (ray.init() with no address joins the most recently started one)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                 runtime_env=env, **kw)


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


_ERROR_LINE = re.compile(r"^\s*((?:[\w.]+\.)?\w*(?:Error|Exception|Exit|Interrupt)\b.*)$", re.M)


def cause(error: BaseException) -> str:
    """The worker's own error out of a Ray exception: its last ``SomeError: message`` line
    (Ray wraps it in tracebacks of its own), or the exception's first line."""
    text = str(error)
    lines = [m.group(1).strip() for m in _ERROR_LINE.finditer(text)]
    lines = [ln for ln in lines if not ln.startswith(("ray.exceptions.", "RayTaskError", "ActorDiedError"))] or lines
    if lines:
        return lines[-1][:500]
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"{type(error).__name__}: {first}"[:500]


class RayExecutor:
    """``workers`` actors, each with ``num_cpus`` CPUs and ``num_gpus`` (fractional) GPUs.

    Jobs go only to actors that have finished starting (built their task data); an actor that
    cannot be placed yet (its node is gone and the cluster is full) waits for resources, up to
    ``start_timeout`` seconds when no actor has started at all.
    """

    def __init__(self, factory: Callable[[], EvaluateFn], workers: int, num_cpus: float = 1.0,
                 num_gpus: float = 0.0, candidate_timeout: float = 120.0, start_timeout: float = 60.0):
        import ray

        self.ray = ray
        self.factory = factory
        self.timeout = candidate_timeout
        self.start_timeout = start_timeout
        self.options = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_restarts": 0}
        self._names = itertools.count()
        self._remote = ray.remote(_Worker)
        self.created = time.monotonic()
        self.slots = [self._spawn() for _ in range(workers)]
        self.queue: list[list[Job]] = []     # batches waiting for an idle actor
        self.done: list[tuple[Job, Fitness]] = []
        self.lost_workers = 0
        self.attempts: dict[int, int] = {}   # job id -> times its worker failed under it
        self.failures_in_a_row = 0           # infrastructure failures since the last good result
        self.ever_ready = False
        self.last_error = ""

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

    @property
    def size(self) -> int:
        """Actors this executor keeps (started or starting)."""
        return len(self.slots)

    def wait(self, timeout: Optional[float] = None) -> list[tuple[Job, Fitness]]:
        """Results as soon as any batch finishes (not when the slowest does)."""
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
        """Wait up to ``timeout`` for the first actor to start or batch to finish, then take
        every other one that is ready too; False if nothing is pending."""
        refs = {}
        for s in self.slots:
            if not s.ready:
                refs[s.ready_ref] = s
            elif s.jobs is not None:
                refs[s.ref] = s
        if not refs:
            return False
        ready, rest = self.ray.wait(list(refs), num_returns=1, timeout=timeout)
        if ready and rest:
            more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        for ref in ready:
            slot = refs[ref]
            if not slot.ready:
                self._started(slot)
            else:
                self._collect(slot)
        self._check_start()
        self._check_timeouts()
        self._dispatch()
        return True

    def _started(self, slot: _Slot) -> None:
        try:
            self.ray.get(slot.ready_ref)
            slot.ready = True
            self.ever_ready = True
        except self.ray.exceptions.RayError as e:
            log.warning("%s failed to start (%s); replacing it", slot.name, cause(e))
            self._lost(slot, e)

    def _check_start(self) -> None:
        """No actor has started within ``start_timeout``: say why and stop."""
        if self.ever_ready or not self.start_timeout or time.monotonic() - self.created < self.start_timeout:
            return
        raise WorkerStartupError(
            f"no evaluation worker started within {self.start_timeout:.0f}s. "
            + (f"Workers died with: {self.last_error}. " if self.last_error else "")
            + self._placement_hint())

    def _placement_hint(self) -> str:
        want = {"CPU": self.options["num_cpus"], "GPU": self.options["num_gpus"]}
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        fits = any(all(r.get(k, 0.0) >= v for k, v in want.items() if v) for r in nodes)
        have = ", ".join(f"{{CPU: {r.get('CPU', 0):g}, GPU: {r.get('GPU', 0):g}}}" for r in nodes) or "no live nodes"
        asked = f"each worker asks for {{CPU: {want['CPU']:g}, GPU: {want['GPU']:g}}}"
        if not fits:
            return (f"No node can place a worker: {asked}; the nodes have {have}. "
                    "Use --gpus-per-worker 0 on a cluster without GPUs, or add nodes.")
        return (f"{asked}; the nodes have {have}. If they are busy with other jobs, workers wait "
                "for them: raise --worker-start-timeout.")

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
            results = [Fitness.from_dict(r) for r in self.ray.get(ref)]
        except self.ray.exceptions.RayError as e:  # the actor, its process or its node died
            log.warning("%s died (%s); replacing it and running its %d jobs again", slot.name, cause(e), len(jobs))
            self._lost(slot, e)
            self._requeue(jobs, "lost", f"worker died: {cause(e)}")
            return
        crashed = [j for j, f in zip(jobs, results) if f.status == "crash"]
        self.done.extend((j, f) for j, f in zip(jobs, results) if f.status != "crash")
        if crashed:
            # The evaluator itself raised (out of memory, a failed import, a bug), not the
            # program: run those jobs again on a fresh actor.
            reason = next(f.reason for f in results if f.status == "crash")
            last = reason.strip().splitlines()[-1] if reason.strip() else "evaluator raised"
            log.warning("%s: evaluator raised on %d jobs (%s); replacing it", slot.name, len(crashed), last)
            self._lost(slot, last)
            self._requeue(crashed, "crash", reason)
        if len(crashed) < len(jobs):
            self.failures_in_a_row = 0

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.jobs is None:
                continue
            limit = sum(self._limit(j) for j in slot.jobs)
            if now - slot.started <= limit:
                continue
            jobs = slot.jobs
            log.warning("%s ran past %.0fs on %d jobs; killing it", slot.name, limit, len(jobs))
            self._lost(slot, None)
            if len(jobs) == 1:
                self.done.append((jobs[0], Fitness.failed("timeout", f"ran past {limit:.0f}s", limit, slot.name)))
            else:  # find the slow one: run each alone
                self.queue.extend([j] for j in jobs)

    def _limit(self, job: Job) -> float:
        return job.timeout if job.timeout else self.timeout

    def _lost(self, slot: _Slot, error: Any) -> None:
        """Kill and replace the slot's actor; stop when actors keep failing."""
        if error is not None:
            self.failures_in_a_row += 1
            self.last_error = cause(error) if isinstance(error, BaseException) else str(error)
            if not self.ever_ready and self.failures_in_a_row >= START_DEATHS:
                raise WorkerStartupError(
                    f"evaluation workers cannot start: {self.failures_in_a_row} died before any "
                    f"started. The worker's error: {self.last_error}. {_startup_hint(self.last_error)}")
            if self.failures_in_a_row > 2 * max(1, len(self.slots)) + MAX_RETRIES:
                raise WorkerError(f"{self.failures_in_a_row} evaluation workers failed in a row without a "
                                  f"result; the last error: {self.last_error}")
        try:
            self.ray.kill(slot.actor)
        except Exception:
            pass
        self.lost_workers += 1
        fresh = self._spawn()
        slot.name, slot.actor, slot.ready_ref, slot.ready = fresh.name, fresh.actor, fresh.ready_ref, False
        slot.jobs = slot.ref = None

    def _requeue(self, jobs: list[Job], status: str, reason: str) -> None:
        """Run a failed batch again; a job that failed more than MAX_RETRIES times comes back
        with ``status`` (transient: reported, never cached)."""
        assert status in TRANSIENT
        again = []
        for j in jobs:
            self.attempts[j.id] = n = self.attempts.get(j.id, 0) + 1
            if n > MAX_RETRIES:
                self.done.append((j, Fitness.failed(status, f"{reason} ({n} times)")))
            else:
                again.append(j)
        if again:
            self.queue.append(again)


def _startup_hint(error: str) -> str:
    if "No module named" in error:
        mod = re.search(r"No module named '([\w.]+)'", error)
        name = mod.group(1).split(".")[0] if mod else "?"
        from .shipping import PROJECT_PACKAGES

        if name in PROJECT_PACKAGES:
            return ("This project's packages did not reach the worker: inside `ray job submit`, pass "
                    "--working-dir at the project root, or let `evolve search` ship them (it does unless "
                    "the job's runtime_env sets py_modules).")
        return (f"Install {name!r} on every node (the nodes need this project's dependencies, with the "
                "driver's Python and Ray versions), or, if it is your task module, pass it with --tasks-module.")
    if "version" in error.lower():
        return "Each node needs the same Python and Ray versions as the driver."
    return "Fix the cause on the nodes and run again; `evolve resume RUN` continues from the last checkpoint."
