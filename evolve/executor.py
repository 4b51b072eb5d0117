"""Where evaluations run. The search talks to an `Executor`; Ray is one implementation of it.

An executor takes batches of jobs (`submit`) and hands back finished ones (`wait`). It must
never lose a job: a job whose worker died is run again, and a job that cannot finish comes back
as a failed `Fitness` with the reason.
"""
from __future__ import annotations

import time
import traceback
from collections import deque
from typing import Callable, Optional, Protocol

from .candidate import Fitness, Job

__all__ = ["Executor", "LocalExecutor", "EvaluateFn", "run_all"]

EvaluateFn = Callable[[list[Job]], list[Fitness]]


class Executor(Protocol):
    def capacity(self) -> int:
        """How many more batches can be submitted now."""

    def submit(self, jobs: list[Job]) -> None: ...

    def wait(self, timeout: Optional[float] = None) -> list[tuple[Job, Fitness]]:
        """Results of at least one finished batch, or ``[]`` after ``timeout`` seconds."""

    def in_flight(self) -> int: ...

    def workers_alive(self) -> int: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Runs batches one at a time in this process (no Ray): tests, debugging, one-core runs."""

    def __init__(self, evaluate: EvaluateFn, name: str = "local"):
        self.evaluate = evaluate
        self.name = name
        self.queue: deque[list[Job]] = deque()

    def capacity(self) -> int:
        return 0 if self.queue else 1

    def submit(self, jobs: list[Job]) -> None:
        self.queue.append(list(jobs))

    def wait(self, timeout: Optional[float] = None) -> list[tuple[Job, Fitness]]:
        if not self.queue:
            return []
        jobs = self.queue.popleft()
        return list(zip(jobs, safe_evaluate(self.evaluate, jobs, self.name)))

    def in_flight(self) -> int:
        return sum(len(b) for b in self.queue)

    def workers_alive(self) -> int:
        return 1

    def close(self) -> None:
        self.queue.clear()


def run_all(executor: Executor, jobs: list[Job], batch_size: int, wait_s: float = 1.0) -> dict[int, Fitness]:
    """Every job's result, by job id: batches of ``batch_size`` submitted as workers free up, results
    taken as each batch finishes (held-out rows, distillation: a fixed set of jobs, no search)."""
    n = max(1, batch_size)
    queue = deque(jobs[i:i + n] for i in range(0, len(jobs), n))
    want = {j.id for j in jobs}
    results: dict[int, Fitness] = {}
    while len(results) < len(want):
        while queue and executor.capacity() > 0:
            executor.submit(queue.popleft())
        for job, fit in executor.wait(timeout=wait_s):
            if job.id in want:
                results[job.id] = fit
    return results


def safe_evaluate(evaluate: EvaluateFn, jobs: list[Job], worker: str) -> list[Fitness]:
    """Evaluate a batch; if the batch raises, evaluate each job alone so one bad program
    fails alone, with its error recorded.

    The evaluator scores the program's own failures (NaN, divergence, a raising op) itself; an
    exception that escapes it is the evaluator's (out of memory, a failed import, a bug), so
    such a job comes back as ``crash``: transient, run again elsewhere, never cached."""
    t0 = time.perf_counter()
    try:
        out = evaluate(jobs)
        if len(out) != len(jobs):
            raise RuntimeError(f"evaluator returned {len(out)} results for {len(jobs)} jobs")
        return [_stamp(f, worker) for f in out]
    except Exception:
        if len(jobs) == 1:
            return [Fitness.failed("crash", traceback.format_exc(limit=3), time.perf_counter() - t0, worker)]
    return [safe_evaluate(evaluate, [j], worker)[0] for j in jobs]


def _stamp(f: Fitness, worker: str) -> Fitness:
    if f.worker:
        return f
    return Fitness(f.score, f.stage_scores, f.task_scores, f.status, f.reason, f.seconds, worker)
