"""Islands: N regularized-evolution populations that share the workers, with migration.

Each island is an `Evolution` with its own aging tournament and its own random stream; the
islands take turns to propose (round robin), a result goes back to the island that proposed it,
and every ``migration_every`` results each island sends its best member to the next island of
a ring, where it joins as the youngest member (the oldest leaves, as for any child).

Why a ring (PySR and AutoML-Zero's distributed runs exchange members between populations
too): a good program reaches the other islands one hop per migration, so a lucky lineage takes
over all N islands only after N - 1 migrations, while the other lineages keep evolving; with a
hub (every island receives the global best at once) the islands would become one population
after a single migration and lose the diversity that makes them worth having. A ring costs
N moves per migration, needs no global ranking, and is deterministic.

Why several islands at all: with W workers each evaluating a batch of B candidates, W * B
candidates are in flight, all proposed from a population that has not seen their results.
With one population of P members and W * B comparable to P, most children are bred from a
stale population and selection weakens (and the driver holds one huge tournament). Splitting
into islands keeps each island's in-flight share small next to its population. `Layout`
picks the sizes.

Pure Python: a run is a function of its seed and of the order results arrive in. With one
island the proposals, ids and random draws are exactly those of a bare `Evolution`.
"""
from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Optional

from dsl import Program

from .candidate import Candidate, Fitness, Individual
from .evolution import Evolution, Mutator, _better

__all__ = ["Islands", "Layout", "WORKERS_PER_ISLAND", "MIN_POPULATION"]

WORKERS_PER_ISLAND = 16
"""Auto layout: one island per 16 workers (PySR runs several populations per core because its
evaluations cost microseconds; ours cost about a second, so an island can feed 8-16 workers and
still breed most children from evaluated members)."""

MIN_POPULATION = 32
"""Auto layout: never fewer members per island than the single-population default."""


@dataclass(frozen=True)
class Layout:
    """The resolved sizes of a run: ``islands`` populations of ``population`` members each,
    tournaments of ``tournament``, migration every ``migration_every`` results (0: never)."""

    islands: int
    population: int
    tournament: int
    migration_every: int

    @classmethod
    def resolve(cls, islands: int, population: int, tournament: int, migration_every: int,
                workers: int, batch_size: int = 1) -> "Layout":
        """Fill in the automatic (0) fields from the number of workers:

            islands    = ceil(W / 16)
            population = max(32, 2 * ceil(W * B / islands))   members per island
            tournament = population // 2
            migration  = islands * population                   results between migrations

        The population is at least twice an island's in-flight candidates (W * B / islands), so
        at most a third of an island's cohort is bred without its siblings' results; migration
        after every island has (on average) replaced its whole population once. W = 1..16
        gives one island of 32, as before islands existed."""
        w = max(1, workers)
        n = islands if islands > 0 else max(1, math.ceil(w / WORKERS_PER_ISLAND))
        pop = population if population > 0 else max(MIN_POPULATION, 2 * math.ceil(w * batch_size / n))
        t = tournament if tournament > 0 else max(1, pop // 2)
        if t > pop:
            raise ValueError(f"tournament {t} is larger than the population per island {pop}")
        mig = migration_every if migration_every > 0 else n * pop
        return cls(n, pop, t, mig if n > 1 else 0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def island_rng(seed: int, island: int) -> random.Random:
    """Island 0 draws from ``Random(seed)`` (a one-island run is the single-population run);
    the others from streams derived from the seed and the island's number."""
    return random.Random(seed) if island == 0 else random.Random(f"optsearch-island:{seed}:{island}")


class Islands:
    """N `Evolution` populations behind the `Evolution` interface (propose / report / best /
    state_dict), with one id counter so candidate ids are unique across islands."""

    def __init__(self, seeds: list[Program], mutator: Mutator, seed: int, layout: Layout,
                 funnel_margin: float = 0.0, restart_after: int = 0, funnel_floor: float = 0.0,
                 stages: int = 0):
        self.layout = layout
        self.islands = [Evolution(seeds, mutator, island_rng(seed, i), layout.population, layout.tournament,
                                  funnel_margin, restart_after, funnel_floor, stages)
                        for i in range(layout.islands)]
        self.next_id = 0
        self.turn = 0              # island that proposes next
        self.since_migration = 0   # results since the last migration
        self.migrations = 0

    # ------------------------------------------------------------------ the Evolution interface
    def propose(self) -> Candidate:
        i = self.turn
        self.turn = (i + 1) % len(self.islands)
        ev = self.islands[i]
        ev.next_id = self.next_id
        cand = ev.propose()
        self.next_id = ev.next_id
        return dataclasses.replace(cand, island=i) if i else cand

    def report(self, candidate: Candidate, fitness: Fitness) -> Individual:
        island = candidate.island if 0 <= candidate.island < len(self.islands) else 0
        ind = self.islands[island].report(candidate, fitness)
        self.since_migration += 1
        if self.layout.migration_every and self.since_migration >= self.layout.migration_every:
            self.migrate()
        return ind

    def migrate(self) -> None:
        """Ring: island i's best member joins island i+1 (all bests chosen before any moves)."""
        bests = [ev.leader() for ev in self.islands]
        n = len(self.islands)
        for i, ind in enumerate(bests):
            if ind is not None and n > 1:
                self.islands[(i + 1) % n].immigrate(ind)
        self.since_migration = 0
        self.migrations += 1

    @property
    def best(self) -> Optional[Individual]:
        out = None
        for ev in self.islands:
            if ev.best is not None and (out is None or _better(ev.best, out)):
                out = ev.best
        return out

    @property
    def restarts(self) -> int:
        return sum(ev.restarts for ev in self.islands)

    @property
    def reported(self) -> int:
        return sum(ev.reported for ev in self.islands)

    @property
    def population(self) -> list[Individual]:
        return [ind for ev in self.islands for ind in ev.population]

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict:
        return {"layout": self.layout.to_dict(), "islands": [ev.state_dict() for ev in self.islands],
                "next_id": self.next_id, "turn": self.turn, "since_migration": self.since_migration,
                "migrations": self.migrations}

    def load_state_dict(self, d: dict) -> None:
        if "islands" not in d:    # a checkpoint from before islands: one population
            d = {"islands": [d], "next_id": d["next_id"], "turn": 0, "since_migration": 0, "migrations": 0}
        if len(d["islands"]) != len(self.islands):
            raise ValueError(f"checkpoint has {len(d['islands'])} islands, this search {len(self.islands)}")
        for ev, s in zip(self.islands, d["islands"]):
            ev.load_state_dict(s)
        self.next_id, self.turn = d["next_id"], d["turn"]
        self.since_migration, self.migrations = d["since_migration"], d["migrations"]
