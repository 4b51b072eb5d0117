"""The best distinct programs of a run, and the Pareto front of score vs length vs memory."""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Optional

from dsl import to_text

from .candidate import Individual

__all__ = ["HallOfFame"]


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

    def __init__(self, size: int = 10, same_rule: Optional[Callable] = None, memo: int = 10_000):
        self.size = size
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

    def pareto(self) -> list[Individual]:
        return sorted(self.front.values(), key=lambda i: (i.program.length, i.program.memory))

    def to_json(self) -> dict:
        def row(ind: Individual) -> dict:
            return {"id": ind.id, "text": to_text(ind.program, readable=True), "flat": to_text(ind.program),
                    "hash": ind.program.hash, "score": ind.fitness.score,
                    "stage_scores": list(ind.fitness.stage_scores), "task_scores": ind.fitness.task_scores,
                    "length": ind.program.length, "memory": ind.program.memory,
                    "parent": ind.candidate.parent, "mutation": ind.candidate.mutation}

        return {"best": [row(i) for i in self.best()], "pareto": [row(i) for i in self.pareto()]}

    def state_dict(self) -> dict:
        return {"entries": {k: v.to_dict() for k, v in self.entries.items()},
                "front": {k: v.to_dict() for k, v in self.front.items()}}

    def load_state_dict(self, d: dict) -> None:
        self.entries = {k: Individual.from_dict(v) for k, v in d["entries"].items()}
        self.front = {k: Individual.from_dict(v) for k, v in d["front"].items()}
