"""Validation during the search: new bests scored on tasks the search never trains on.

The search climbs its stage score; a rule can keep climbing it while getting worse everywhere
else (meta-overfitting: the Lion paper's figure 3). So whenever a program becomes the best by
search score having reached the last stage, the driver sends one more job through the executor:
the program on the validation tasks (``validation_repeats`` seeds each, against AdamW tuned at
each seed). Its result is one line of ``validation.jsonl``; the run's winner is the best by
validation score (ties: the search rank), never the best by search score, and never chosen by
a test score (`evolve.heldout`).

- Job ids are ``VALIDATION_ID_BASE - k``: negative (candidates count up from 0) and below the
  test rows' ids (-1, -2, ...), so no two jobs of a run share an id.
- A transient failure (a timeout, a lost worker, a crashed evaluator: `candidate.TRANSIENT`)
  says nothing about the program: the job is sent again, up to ``MAX_TRIES`` times; after that
  the line is written with its status and no score, and the program is not tried again.
- Patience: with ``patience`` > 0, the search stops proposing once ``patience`` consecutive
  validations of new bests did not beat the best validation score so far. Validations of the
  hall of fame at the end of a run (``at_end``) do not count.
- The state (records, the programs validated, queued and in-flight jobs, the patience count)
  is checkpointed with the search; jobs in flight at a checkpoint are sent again on resume.
"""
from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import asdict, dataclass
from typing import Optional

from dsl import to_text

from .candidate import TRANSIENT, Fitness, Individual, Job

__all__ = ["Validation", "Validator", "VALIDATION_ID_BASE", "MAX_TRIES"]

VALIDATION_ID_BASE = -1_000_000_000
"""Validation job k has id ``VALIDATION_ID_BASE - k``."""

MAX_TRIES = 3
"""Times a validation job is sent before a transient failure is written down as such."""


@dataclass(frozen=True)
class Validation:
    """One validated program (one line of ``validation.jsonl``).

    score: the validation aggregate (the run's ``aggregate`` over the validation tasks; None
    when the job never finished: see status); mean: the mean of the task scores; won / lost:
    validation tasks with a score above / below 0 (tuned AdamW). search / stages: the search
    score and stages reached when it was submitted. eval_submitted / eval_done: the search's
    evaluation count then. at_end: validated as a hall-of-fame entry after the search, not as a
    new best during it.
    """

    id: int
    hash: str
    fingerprint: str
    program: str
    eval_submitted: int
    eval_done: int
    search: float
    stages: int
    score: Optional[float]
    mean: Optional[float]
    won: int
    lost: int
    task_scores: dict
    status: str
    reason: str
    time: float
    at_end: bool = False

    @property
    def rank(self) -> tuple:
        """Winner order: validation score, then the search's (stages reached, score), then the
        earlier program."""
        return (self.score if self.score is not None else -math.inf, self.stages, self.search, -self.id)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Validation":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class _Pending:
    ind: Individual
    fingerprint: str
    eval_submitted: int
    at_end: bool = False
    tries: int = 0

    def to_dict(self) -> dict:
        return {"individual": self.ind.to_dict(), "fingerprint": self.fingerprint,
                "eval_submitted": self.eval_submitted, "at_end": self.at_end, "tries": self.tries}

    @classmethod
    def from_dict(cls, d: dict) -> "_Pending":
        return cls(Individual.from_dict(d["individual"]), d["fingerprint"], d["eval_submitted"],
                   d.get("at_end", False), d.get("tries", 0))


class Validator:
    """The validation state of a search (see module doc). ``tasks`` empty: validates nothing."""

    def __init__(self, tasks: tuple[str, ...], repeats: int = 1, patience: int = 0, timeout: Optional[float] = None,
                 aggregate: Optional[str] = None):
        self.tasks = tuple(tasks)
        self.aggregate = aggregate     # task scores -> a record's score; None: the worker's (the run's aggregate)
        self.repeats = repeats
        self.patience = patience
        self.timeout = timeout
        self.records: list[Validation] = []
        self.programs: dict[str, Individual] = {}    # fingerprint -> the individual validated
        self.queue: deque[_Pending] = deque()
        self.inflight: dict[int, _Pending] = {}      # job id -> pending
        self.next_job = 0
        self.since_improved = 0                      # validations of new bests since the best improved
        self.best: Optional[Validation] = None

    def _score(self, fit: Fitness, scores: dict) -> float:
        """The validation score: ``aggregate`` of the task scores, or the worker's stage score."""
        if self.aggregate is None or not scores or not fit.ok:
            return float(fit.score)
        from tasks.results import aggregate

        return aggregate(list(scores.values()), self.aggregate)

    @property
    def enabled(self) -> bool:
        return bool(self.tasks)

    @property
    def idle(self) -> bool:
        return not self.queue and not self.inflight

    @property
    def stopped(self) -> bool:
        """Patience ran out: the search has meta-overfit and should stop proposing."""
        return self.patience > 0 and self.since_improved >= self.patience

    def known(self, fingerprint: str) -> bool:
        """Validated, queued or in flight."""
        return fingerprint in self.programs or any(p.fingerprint == fingerprint for p in self.queue) \
            or any(p.fingerprint == fingerprint for p in self.inflight.values())

    def request(self, ind: Individual, fingerprint: str, eval_count: int, at_end: bool = False) -> bool:
        """Queue ``ind`` for validation unless a program with its fingerprint was; True if queued."""
        if not self.enabled or self.known(fingerprint):
            return False
        self.queue.append(_Pending(ind, fingerprint, eval_count, at_end))
        return True

    def take(self) -> Optional[Job]:
        """The next queued validation as a job (now in flight), or None."""
        if not self.queue:
            return None
        p = self.queue.popleft()
        job = Job(VALIDATION_ID_BASE - self.next_job, to_text(p.ind.program), (), (self.tasks,), self.repeats,
                  self.timeout)
        self.next_job += 1
        p.tries += 1
        self.inflight[job.id] = p
        return job

    def finish(self, job: Job, fit: Fitness, eval_count: int, elapsed: float) -> Optional[Validation]:
        """Fold in a finished validation job: the record (also kept here), or None when a transient
        failure sends it again."""
        p = self.inflight.pop(job.id)
        transient = fit.status in TRANSIENT
        if transient and p.tries < MAX_TRIES:
            self.queue.appendleft(p)
            return None
        scores = {t: float(v) for t, v in fit.task_scores.items()}
        rec = Validation(
            id=p.ind.id, hash=p.ind.program.hash, fingerprint=p.fingerprint, program=to_text(p.ind.program),
            eval_submitted=p.eval_submitted, eval_done=eval_count, search=p.ind.fitness.score,
            stages=p.ind.fitness.stages_reached, score=None if transient else self._score(fit, scores),
            mean=None if transient or not scores else statistics.fmean(scores.values()),
            won=0 if transient else fit.won(), lost=0 if transient else fit.lost(), task_scores=scores,
            status=fit.status, reason=fit.reason, time=round(elapsed, 3), at_end=p.at_end)
        self.records.append(rec)
        self.programs[p.fingerprint] = p.ind
        if rec.score is not None:
            if self.best is None or rec.score > self.best.score:
                self.best, self.since_improved = rec, 0
            elif not rec.at_end:
                self.since_improved += 1
        return rec

    def winner(self) -> Optional[Validation]:
        """The best record with a score by `Validation.rank`, or None."""
        scored = [r for r in self.records if r.score is not None]
        return max(scored, key=lambda r: r.rank) if scored else None

    def by_fingerprint(self) -> dict[str, Validation]:
        return {r.fingerprint: r for r in self.records}

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        pending = [p.to_dict() for p in self.inflight.values()] + [p.to_dict() for p in self.queue]
        return {"records": [r.to_dict() for r in self.records],
                "programs": {fp: ind.to_dict() for fp, ind in self.programs.items()},
                "pending": pending, "next_job": self.next_job, "since_improved": self.since_improved}

    def load_state_dict(self, d: dict) -> None:
        """Restore; jobs that were in flight are queued to be sent again."""
        self.records = [Validation.from_dict(r) for r in d.get("records", [])]
        self.programs = {fp: Individual.from_dict(v) for fp, v in d.get("programs", {}).items()}
        self.queue = deque(_Pending.from_dict(p) for p in d.get("pending", []))
        for p in self.queue:
            p.tries = 0
        self.inflight = {}
        self.next_job = d.get("next_job", 0)
        self.since_improved = d.get("since_improved", 0)
        scored = [r for r in self.records if r.score is not None]
        self.best = None
        for r in scored:                      # the first record of the best score, as `finish` keeps it
            if self.best is None or r.score > self.best.score:
                self.best = r
