"""Regularized evolution (aging tournament selection), steady state and asynchronous.

Real et al. 2019, as used for Lion (Chen et al. 2023): a population of P programs; each cycle
samples T members at random, copies the best (ties go to the shorter program), mutates the
copy and evaluates it; the evaluated child joins and the oldest member leaves. Proposals and
results are decoupled (`propose` / `report`), so many evaluations can be in flight.

Pure Python: randomness comes only from the ``random.Random`` passed in, so a run is a function
of its seed and the order results arrive in.
"""
from __future__ import annotations

import random
import statistics
from collections import deque
from typing import Callable, Optional

from dsl import Program

from .candidate import Candidate, Fitness, Individual

__all__ = ["Evolution"]

Mutator = Callable[[Program, random.Random], tuple[Program, str]]


class Evolution:
    def __init__(self, seeds: list[Program], mutator: Mutator, rng: random.Random, population: int = 32,
                 tournament: int = 8, funnel_margin: float = 0.0, restart_after: int = 0,
                 funnel_floor: float = 0.0, stages: int = 0):
        if not seeds:
            raise ValueError("need at least one seed program")
        self.seeds = list(seeds)
        self.mutator = mutator
        self.rng = rng
        self.size = population
        self.tournament = tournament
        self.funnel_margin = funnel_margin
        self.funnel_floor = funnel_floor
        self.stages = stages  # funnel stages, when known: a mutant with no parent still meets the floor
        self.restart_after = restart_after
        self.population: deque[Individual] = deque()
        self.next_id = 0
        self.seeded = 0            # seed candidates proposed so far
        self.best: Optional[Individual] = None
        self.since_best = 0        # reports since the best improved
        self.restarts = 0
        self.reported = 0

    # ------------------------------------------------------------------ proposing
    def propose(self) -> Candidate:
        """Next candidate: a seed while the population fills up, then a mutated tournament winner."""
        if self.seeded < self.size:
            program = self.seeds[self.seeded % len(self.seeds)]
            self.seeded += 1
            return self._candidate(program, None, "seed", ())
        if not self.population:  # everything proposed is still in flight: mutate a seed
            parent_program, parent = self.seeds[self.rng.randrange(len(self.seeds))], None
        else:
            parent = self.select()
            parent_program = parent.program
        child, kind = self.mutator(parent_program, self.rng)
        bars = self.thresholds(parent) if parent else (self.funnel_floor,) * max(0, self.stages - 1)
        return self._candidate(child, parent.id if parent else None, kind, bars)

    def select(self) -> Individual:
        """Tournament: best of T random members by (stages reached, score), shorter on ties."""
        members = list(self.population)
        k = min(self.tournament, len(members))
        picks = [members[i] for i in self.rng.sample(range(len(members)), k)]
        return max(picks, key=lambda ind: (ind.fitness.rank, -ind.program.length, -ind.id))

    def thresholds(self, parent: Optional[Individual]) -> tuple[float, ...]:
        """Funnel: stage k+1 is reached if stage k scores at least the parent's stage-k score
        minus ``funnel_margin`` (population median where the parent has no such score), and
        at least ``funnel_floor`` (scores are relative to tuned AdamW: 0 = as good as AdamW).

        The floor is what makes ranking by stages reached sound. With thresholds relative to
        the parent alone, the children of a bad parent pass its low bar, reach the last stage
        and outrank good programs whose children failed their parents' high bar: in a
        30-minute run from AdamW the population's best stage-1 score fell from +0.29 to -3.3
        as such a lineage took over (RESULTS.md)."""
        if parent is None:
            return ()
        out = []
        depth = max((ind.fitness.stages_reached for ind in self.population), default=0)
        for k in range(depth):
            if k < parent.fitness.stages_reached and parent.fitness.ok:
                bar = parent.fitness.stage_scores[k] - self.funnel_margin
            else:
                vals = [ind.fitness.stage_scores[k] for ind in self.population
                        if ind.fitness.stages_reached > k]
                bar = statistics.median(vals) - self.funnel_margin if vals else float("-inf")
            out.append(max(bar, self.funnel_floor))
        return tuple(out)

    def _candidate(self, program: Program, parent: Optional[int], kind: str,
                   thresholds: tuple[float, ...]) -> Candidate:
        c = Candidate(self.next_id, program, parent, kind, thresholds)
        self.next_id += 1
        return c

    # ------------------------------------------------------------------ results
    def report(self, candidate: Candidate, fitness: Fitness) -> Individual:
        """Fold a result in: the child joins, the oldest member leaves (aging)."""
        ind = Individual(candidate, fitness)
        self.population.append(ind)
        while len(self.population) > self.size:
            self.population.popleft()
        self.reported += 1
        if self.best is None or _better(ind, self.best):
            self.best = ind
            self.since_best = 0
        else:
            self.since_best += 1
            if self.restart_after and self.since_best >= self.restart_after:
                self.restart()
        return ind

    def leader(self) -> Optional[Individual]:
        """The best current member (what migrates to another island), by the tournament's order."""
        if not self.population:
            return None
        return max(self.population, key=lambda ind: (ind.fitness.rank, -ind.program.length, -ind.id))

    def immigrate(self, ind: Individual) -> None:
        """A member from another island joins as the youngest; the oldest leaves. Not a report:
        the counters of evaluations stay, but a migrant better than this island's best becomes
        its best (restarts go back to it)."""
        self.population.append(ind)
        while len(self.population) > self.size:
            self.population.popleft()
        if self.best is None or _better(ind, self.best):
            self.best = ind
            self.since_best = 0

    def restart(self) -> None:
        """Replace the population by copies of the best so far (search restarts from it)."""
        assert self.best is not None
        self.population = deque([self.best] * min(self.size, max(1, len(self.population))))
        self.since_best = 0
        self.restarts += 1

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict:
        return {
            "population": [ind.to_dict() for ind in self.population],
            "next_id": self.next_id, "seeded": self.seeded,
            "best": self.best.to_dict() if self.best else None,
            "since_best": self.since_best, "restarts": self.restarts, "reported": self.reported,
            "rng": _rng_to_json(self.rng.getstate()),
        }

    def load_state_dict(self, d: dict) -> None:
        self.population = deque(Individual.from_dict(x) for x in d["population"])
        self.next_id, self.seeded = d["next_id"], d["seeded"]
        self.best = Individual.from_dict(d["best"]) if d["best"] else None
        self.since_best, self.restarts, self.reported = d["since_best"], d["restarts"], d["reported"]
        self.rng.setstate(_rng_from_json(d["rng"]))


def _better(a: Individual, b: Individual) -> bool:
    return (a.fitness.rank, -a.program.length) > (b.fitness.rank, -b.program.length)


def _rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_from_json(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
