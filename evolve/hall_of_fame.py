"""The best distinct programs of a run, and the Pareto front of score vs length vs memory."""
from __future__ import annotations

import statistics
from collections import OrderedDict
from typing import Callable, Mapping, Optional, Sequence

from dsl import to_text

from .candidate import Individual

__all__ = ["HallOfFame", "row"]

Stages = Optional[tuple[tuple[str, ...], ...]]


def row(ind: Individual, fingerprint: Optional[str] = None, validation: Optional[Mapping] = None,
        stages: Stages = None) -> dict:
    """A program as ``hall_of_fame.json`` lists it: code, search score (the stage aggregate) with
    the mean and tasks won/lost of its last stage (``stages``: the run's funnel), and its
    validation (a `evolve.validation.Validation` as a dict; None: not validated)."""
    f = ind.fitness
    last = f.last_stage_scores(stages)
    out = {"id": ind.id, "text": to_text(ind.program, readable=True), "flat": to_text(ind.program),
           "hash": ind.program.hash, "fingerprint": fingerprint, "score": f.score,
           "stage_scores": list(f.stage_scores), "task_scores": f.task_scores,
           "mean": statistics.fmean(last.values()) if last else None, "won": f.won(stages), "lost": f.lost(stages),
           "length": ind.program.length, "memory": ind.program.memory,
           "parent": ind.candidate.parent, "mutation": ind.candidate.mutation, "validation": None}
    if validation is not None:
        out["validation"] = {k: validation[k] for k in ("score", "mean", "won", "lost", "task_scores", "status")}
    return out


def _key(ind: Individual) -> tuple:
    return (ind.fitness.rank, -ind.program.length, -ind.program.memory, -ind.id)


def _dominates(a: Individual, b: Individual) -> bool:
    """a is no worse in score (rank), length and memory, and better in one."""
    ra, rb = a.fitness.rank, b.fitness.rank
    la, lb = a.program.length, b.program.length
    ma, mb = a.program.memory, b.program.memory
    return ra >= rb and la <= lb and ma <= mb and (ra > rb or la < lb or ma < mb)


def _same_scores(a: Individual, b: Individual) -> bool:
    """The same score on every task evaluated: the same behaviour on the search tasks."""
    sa, sb = a.fitness.task_scores, b.fitness.task_scores
    return bool(sa) and sa.keys() == sb.keys() and all(abs(sa[t] - sb[t]) <= 1e-12 for t in sa)


class HallOfFame:
    """Top ``size`` programs, one entry per rule: distinct by functional fingerprint, by
    symbolic equivalence (``same_rule``) and by behaviour (identical scores on every task, as
    when a mutation only changes a slot's first value or the sign of a positive ``lr``).

    ``same_rule`` (sympy, a thread per call with a time limit) costs milliseconds to seconds, so
    it runs only for a candidate that would enter the list (it beats the current last entry,
    or the list is not full), and each decision is remembered by the pair of program hashes
    (at most ``memo`` pairs): 2,000 candidates took 45 s of checks before, most of them for
    candidates that could not enter."""

    def __init__(self, size: int = 10, same_rule: Optional[Callable] = None, memo: int = 10_000,
                 stages: Stages = None):
        self.size = size
        self.stages = stages        # the run's funnel (for the last stage's tasks won/lost)
        self.entries: dict[str, Individual] = {}      # fingerprint -> best individual with it
        self.front: dict[str, Individual] = {}        # fingerprint -> Pareto-optimal individual
        self.same_rule = same_rule
        self.memo = memo
        self._same: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self.checks = 0        # same_rule calls made (memo misses)

    def add(self, ind: Individual, fp: str) -> bool:
        """Offer an evaluated individual; True if it entered the top list."""
        if not ind.fitness.ok:
            return False
        self._add_front(ind, fp)
        key = _key(ind)
        old = self.entries.get(fp)
        if old is not None and _key(old) >= key:
            return False
        if old is None and len(self.entries) >= self.size and key <= min(map(_key, self.entries.values())):
            return False      # would be the one dropped: no equivalence checks needed
        if old is None:
            for k, other in self.entries.items():
                if _same_scores(other, ind) or self._same_rule(other, ind):
                    if _key(other) >= key:
                        return False
                    del self.entries[k]
                    break
        self.entries[fp] = ind
        if len(self.entries) > self.size:
            worst = min(self.entries, key=lambda k: _key(self.entries[k]))
            del self.entries[worst]
        return fp in self.entries

    def _same_rule(self, a: Individual, b: Individual) -> bool:
        if self.same_rule is None:
            return False
        ha, hb = a.program.hash, b.program.hash
        pair = (ha, hb) if ha <= hb else (hb, ha)
        hit = self._same.get(pair)
        if hit is None:
            self.checks += 1
            hit = self._same[pair] = bool(self.same_rule(a.program, b.program))
            if len(self._same) > self.memo:
                self._same.popitem(last=False)
        return hit

    def _add_front(self, ind: Individual, fp: str) -> None:
        old = self.front.get(fp)
        if old is not None and _key(old) >= _key(ind):
            return
        if any(_dominates(o, ind) for o in self.front.values()):
            return
        self.front = {k: o for k, o in self.front.items() if not _dominates(ind, o)}
        self.front[fp] = ind

    def best(self) -> list[Individual]:
        return sorted(self.entries.values(), key=_key, reverse=True)

    def ranked(self) -> list[tuple[str, Individual]]:
        """(fingerprint, individual), best by search first."""
        return sorted(self.entries.items(), key=lambda kv: _key(kv[1]), reverse=True)

    def pareto(self) -> list[Individual]:
        return sorted(self.front.values(), key=lambda i: (i.program.length, i.program.memory))

    def to_json(self, validations: Mapping[str, Mapping] = {},
                best: Optional[Sequence[tuple[str, Individual]]] = None) -> dict:
        """``best``: the entries by search (``order`` "search"), or the given (fingerprint,
        individual) list, ordered by validation by the caller (``order`` "validation")."""
        ranked = self.ranked() if best is None else list(best)
        fps = {id(ind): fp for fp, ind in self.front.items()}
        return {"order": "search" if best is None else "validation",
                "best": [row(i, fp, validations.get(fp), self.stages) for fp, i in ranked],
                "pareto": [row(i, fps.get(id(i)), validations.get(fps.get(id(i), "")), self.stages)
                           for i in self.pareto()]}

    def state_dict(self) -> dict:
        return {"entries": {k: v.to_dict() for k, v in self.entries.items()},
                "front": {k: v.to_dict() for k, v in self.front.items()}}

    def load_state_dict(self, d: dict) -> None:
        self.entries = {k: Individual.from_dict(v) for k, v in d["entries"].items()}
        self.front = {k: Individual.from_dict(v) for k, v in d["front"].items()}
