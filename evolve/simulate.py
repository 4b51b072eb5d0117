"""A simulated cluster: the real `Search` loop against W virtual workers, in virtual time.

`SimulatedExecutor` implements the `Executor` protocol. A submitted batch occupies one worker
for the sum of its jobs' durations, each drawn from a lognormal around ``seconds`` (seeded);
``wait`` advances the virtual clock to the next completion. The driver's own real compute time
(everything the search does between two executor calls: propose, mutate, fingerprint, cache,
hall of fame, log, checkpoints; by default its CPU time, so that other programs on a shared
machine do not count) is charged to the virtual clock, so a driver too slow for W
workers shows as idle workers, as it would on a cluster. The evaluation itself (``fitness``,
computed at submit time) is the workers' time and is not charged.

`target_fitness` is a cheap synthetic fitness with a known optimum that evolution can climb:
the cosine similarity between a program's updates and a target rule's (signSGD: ``sign(g)``,
or Lion) on fixed inputs, averaged over steps and tensors. 1.0 is the optimum (any positive
multiple of the target's update); AdamW scores 0.57 against signSGD and 0.69 against Lion.
"""
from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from typing import Callable, Optional

import torch

import dsl
from dsl import Program

from .candidate import Fitness, Job

__all__ = ["SimulatedExecutor", "target_fitness", "TARGETS"]

_STEPS = 8
_LRS = tuple(0.01 * (1 + 0.1 * math.sin(k)) for k in range(_STEPS))


def _inputs() -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Weights and a gradient sequence with a persistent direction plus noise (so momentum matters)."""
    gen = torch.Generator().manual_seed(20230213)
    shapes = [(4, 6), (9,)]
    ws = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    drift = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    gs = [[0.5 * d + torch.randn(s, generator=gen, dtype=torch.float64) for d, s in zip(drift, shapes)]
          for _ in range(_STEPS)]
    return ws, gs


_W, _G = _inputs()

TARGETS = ("signsgd", "lion")


def _updates(program: Program) -> Optional[list[torch.Tensor]]:
    """The program's update at every step on every tensor (weights move by it), or None if it fails."""
    try:
        cp = dsl.compile(program)
        out = []
        with torch.inference_mode():
            for i, w0 in enumerate(_W):
                w = w0.clone()
                state = cp.init_state(w)
                for step in range(_STEPS):
                    upd, state = cp.apply(w, _G[step][i], _LRS[step], float(step + 1), state)
                    upd = upd.expand_as(w)
                    if not torch.isfinite(upd).all():
                        return None
                    w = w - upd
                    out.append(upd.flatten().clone())
        return out
    except Exception:  # noqa: BLE001 - a program that cannot run scores the worst
        return None


def _reference(target: str) -> list[torch.Tensor]:
    if target == "signsgd":
        src = "def signsgd(g, lr):\n    return lr * sign(g)\n"
        return _updates(dsl.parse(src))  # type: ignore[return-value]
    if target == "lion":
        import seeds

        return _updates(seeds.load("lion"))  # type: ignore[return-value]
    raise ValueError(f"unknown target {target!r}; known: {', '.join(TARGETS)}")


def target_fitness(target: str = "signsgd") -> Callable[[Job], Fitness]:
    """score = mean over steps and tensors of cos(update, target update); 1.0 is the optimum.
    A program that fails or returns non-finite updates gets the worst score."""
    ref = _reference(target)

    def fitness(job: Job) -> Fitness:
        try:
            ups = _updates(dsl.parse(job.text))
        except Exception as e:  # noqa: BLE001
            return Fitness.failed("error", f"{type(e).__name__}: {e}")
        if ups is None:
            return Fitness.failed("failed", "the program fails or its updates are not finite")
        cos = []
        for u, r in zip(ups, ref):
            nu, nr = float(u.norm()), float(r.norm())
            cos.append(float(u @ r) / (nu * nr) if nu > 0 and nr > 0 else 0.0)
        s = sum(cos) / len(cos)
        return Fitness(s, (s,), {f"cos_{target}": s})

    return fitness


class SimulatedExecutor:
    """``workers`` virtual workers; job durations lognormal(median ``seconds``, ``sigma``).

    Figures: ``busy_seconds`` (worker time spent evaluating), ``driver_seconds`` (real driver
    time charged), ``busy_fraction()`` = busy / (workers x virtual time so far)."""

    def __init__(self, workers: int, fitness: Callable[[Job], Fitness], seconds: float = 1.0,
                 sigma: float = 0.5, seed: int = 0, charge_driver: bool = True, driver_clock: str = "cpu"):
        if workers < 1 or seconds <= 0 or sigma < 0:
            raise ValueError("need workers >= 1, seconds > 0 and sigma >= 0")
        if driver_clock not in ("cpu", "wall"):
            raise ValueError(f"driver_clock must be 'cpu' or 'wall', got {driver_clock!r}")
        # "cpu": the process's CPU time (all its threads), what the driver computes, unaffected by
        # other programs sharing the machine; "wall": elapsed time (also counts waiting for the CPU,
        # for the disk, for the hall of fame's sympy threads).
        self._timer = time.process_time if driver_clock == "cpu" else time.perf_counter
        self.size = workers
        self.fitness = fitness
        self.seconds, self.sigma = seconds, sigma
        self.rng = random.Random(seed)
        self.charge_driver = charge_driver
        self.now = 0.0
        self.busy_seconds = 0.0
        self.driver_seconds = 0.0
        self.evaluated = 0
        self.intervals: list[tuple[float, float]] = []   # (start, end) of every batch, virtual seconds
        self.last_submit = 0.0
        self._running: list[tuple[float, int, list[Job], list[Fitness]]] = []   # heap by finish time
        self._seq = itertools.count()
        self._mark = self._timer()

    # The driver's real time between two executor calls goes onto the virtual clock.
    def _enter(self) -> None:
        if self.charge_driver:
            dt = self._timer() - self._mark
            self.now += dt
            self.driver_seconds += dt

    def _leave(self) -> None:
        self._mark = self._timer()

    def clock(self) -> float:
        self._enter()
        self._leave()
        return self.now

    def capacity(self) -> int:
        self._enter()
        free = self.size - len(self._running)
        self._leave()
        return max(0, free)

    def submit(self, jobs: list[Job]) -> None:
        self._enter()
        if len(self._running) >= self.size:
            self._leave()
            raise RuntimeError(f"all {self.size} simulated workers are busy: check capacity() first")
        duration = sum(self.seconds * math.exp(self.sigma * self.rng.gauss(0.0, 1.0)) for _ in jobs)
        results = [self.fitness(j) for j in jobs]
        heapq.heappush(self._running, (self.now + duration, next(self._seq), list(jobs), results))
        self.busy_seconds += duration
        self.evaluated += len(jobs)
        self.intervals.append((self.now, self.now + duration))
        self.last_submit = self.now
        self._leave()

    def wait(self, timeout: Optional[float] = None) -> list[tuple[Job, Fitness]]:
        """Everything finished by now; if nothing has, advance to the next completion (or by
        ``timeout`` virtual seconds if that comes first, returning nothing)."""
        self._enter()
        out: list[tuple[Job, Fitness]] = []
        if self._running:
            first = self._running[0][0]
            if first > self.now:
                if timeout is not None and first > self.now + timeout:
                    self.now += timeout
                else:
                    self.now = first
            while self._running and self._running[0][0] <= self.now:
                _, _, jobs, results = heapq.heappop(self._running)
                out.extend(zip(jobs, results))
        self._leave()
        return out

    def in_flight(self) -> int:
        return sum(len(r[2]) for r in self._running)

    def workers_alive(self) -> int:
        return self.size

    def busy_fraction(self, until: Optional[float] = None) -> float:
        """Worker time spent evaluating over worker time elapsed (batches still running count in
        full); with ``until``, over ``[0, until]`` only: ``until=last_submit`` leaves out the
        final drain, when the search has stopped proposing and the last, longest evaluations
        finish while other workers idle (the drain depends on the run's length and the spread
        of evaluation times, not on the driver)."""
        end = self.now if until is None else until
        if end <= 0:
            return 0.0
        if until is None:
            return self.busy_seconds / (self.size * end)
        busy = sum(max(0.0, min(b, end) - a) for a, b in self.intervals)
        return busy / (self.size * end)

    def close(self) -> None:
        self._running.clear()
