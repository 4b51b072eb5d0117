"""Plain values passed between the evolution, the workers and the run log."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from dsl import Program, parse, to_text

__all__ = ["WORST", "TRANSIENT", "Fitness", "Candidate", "Individual", "Job"]

WORST = -10.0
"""Score of a failed candidate: finite, so sorting and means keep working."""

TRANSIENT = frozenset({"timeout", "lost", "crash"})
"""Statuses that say nothing about the program (a slow or dead worker, an evaluator that
raised): reported to the search, never cached as the program's score."""


@dataclass(frozen=True)
class Fitness:
    """How a program did. ``score`` is the aggregate score of the last stage reached: the mean
    (or the configured `tasks.results.aggregate`) over its tasks of ``log(loss_AdamW /
    loss_program)`` (positive = better than tuned AdamW).

    Candidates are ranked by ``(stages reached, score)``: passing the funnel's cheap stage
    outranks failing it.
    """

    score: float
    stage_scores: tuple[float, ...] = ()
    task_scores: dict = field(default_factory=dict)
    status: str = "ok"               # ok | failed | error (the program's own); timeout | lost | crash (TRANSIENT)
    reason: str = ""
    seconds: float = 0.0
    worker: str = ""

    @property
    def stages_reached(self) -> int:
        return len(self.stage_scores)

    @property
    def rank(self) -> tuple[int, float]:
        s = self.score if math.isfinite(self.score) else WORST
        return (self.stages_reached, s)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def last_stage_scores(self, stages: Optional[tuple[tuple[str, ...], ...]] = None) -> dict[str, float]:
        """Task scores of the last stage reached (``stages``: the funnel the fitness came from;
        None: every task scored). Stages need not nest, so the last stage's tasks are not always
        every task scored."""
        if not stages or not self.stage_scores:
            return dict(self.task_scores)
        last = stages[min(self.stages_reached, len(stages)) - 1]
        return {t: self.task_scores[t] for t in last if t in self.task_scores}

    def won(self, stages: Optional[tuple[tuple[str, ...], ...]] = None) -> int:
        """Tasks of the last stage reached where the program beat tuned AdamW (score > 0)."""
        return sum(1 for v in self.last_stage_scores(stages).values() if math.isfinite(v) and v > 0)

    def lost(self, stages: Optional[tuple[tuple[str, ...], ...]] = None) -> int:
        """Tasks of the last stage reached where tuned AdamW did better (score < 0; a non-finite
        score counts as lost)."""
        return sum(1 for v in self.last_stage_scores(stages).values() if not (math.isfinite(v) and v >= 0))

    @classmethod
    def failed(cls, status: str, reason: str, seconds: float = 0.0, worker: str = "") -> "Fitness":
        return cls(WORST, (WORST,), {}, status, reason[:2000], seconds, worker)

    def to_dict(self) -> dict:
        return {"score": self.score, "stage_scores": list(self.stage_scores),
                "task_scores": dict(self.task_scores), "status": self.status, "reason": self.reason,
                "seconds": self.seconds, "worker": self.worker}

    @classmethod
    def from_dict(cls, d: dict) -> "Fitness":
        return cls(float(d["score"]), tuple(float(x) for x in d.get("stage_scores", ())),
                   dict(d.get("task_scores", {})), d.get("status", "ok"), d.get("reason", ""),
                   float(d.get("seconds", 0.0)), d.get("worker", ""))


@dataclass(frozen=True)
class Candidate:
    """A program proposed for evaluation: a seed (``parent is None``) or a mutant."""

    id: int
    program: Program
    parent: Optional[int] = None
    mutation: str = "seed"
    thresholds: tuple[float, ...] = ()   # funnel: minimum stage-k score to go on to stage k+1
    island: int = 0                      # the population that proposed it (see evolve/islands.py)

    def to_dict(self) -> dict:
        d = {"id": self.id, "program": to_text(self.program), "parent": self.parent,
             "mutation": self.mutation, "thresholds": list(self.thresholds)}
        if self.island:
            d["island"] = self.island
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Candidate":
        return cls(d["id"], parse(d["program"]), d.get("parent"), d.get("mutation", "seed"),
                   tuple(d.get("thresholds", ())), d.get("island", 0))


@dataclass(frozen=True)
class Individual:
    """A member of the population: a candidate with its fitness."""

    candidate: Candidate
    fitness: Fitness

    @property
    def id(self) -> int:
        return self.candidate.id

    @property
    def program(self) -> Program:
        return self.candidate.program

    def to_dict(self) -> dict:
        return {"candidate": self.candidate.to_dict(), "fitness": self.fitness.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "Individual":
        return cls(Candidate.from_dict(d["candidate"]), Fitness.from_dict(d["fitness"]))


@dataclass(frozen=True)
class Job:
    """What a worker evaluates: program text (programs travel as text) and funnel thresholds.

    ``stages``, ``repeats`` (seeds per task) and ``timeout`` (seconds) override the worker's
    and the executor's (held-out meta-validation uses them)."""

    id: int
    text: str
    thresholds: tuple[float, ...] = ()
    stages: Optional[tuple[tuple[str, ...], ...]] = None
    repeats: Optional[int] = None
    timeout: Optional[float] = None
