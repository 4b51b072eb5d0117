"""The search driver: evolution + cache + funnel + executor + run directory.

    propose -> cache lookup (structural hash, then functional fingerprint) -> batch -> executor
    executor result -> cache -> evolution.report -> hall of fame -> log (-> checkpoint)

The driver owns all state; the executor only evaluates. With one worker and a fixed seed the
sequence of candidates and scores is the same on every run.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import seeds as seed_library
from dsl import Program, to_text

from .cache import FitnessCache, fingerprint
from .candidate import Candidate, Fitness, Individual, Job
from .config import SearchConfig
from .evolution import Evolution
from .executor import Executor
from .hall_of_fame import HallOfFame
from .mutate import MutationWeights, mutate
from .progress import Progress
from .rundir import RunDir
from .worker import default_stages

__all__ = ["Search", "SearchResult", "seed_programs"]


def seed_programs(names: tuple[str, ...]) -> list[Program]:
    """Warm-start programs by seed name; ``("all",)`` means every known method."""
    if tuple(names) == ("all",):
        names = tuple(seed_library.names())
    return [seed_library.load(n) for n in names]


@dataclass(frozen=True)
class SearchResult:
    run_dir: str
    best: list[Individual]
    stats: dict
    heldout: list[dict] = field(default_factory=list)


class Search:
    """A run in a directory. Build with `Search.start` or `Search.resume`, then `run()`."""

    def __init__(self, config: SearchConfig, run: RunDir, executor: Executor,
                 same_rule: Optional[Callable] = None):
        self.config = config
        self.run_dir = run
        self.executor = executor
        self.evolution = Evolution(
            seed_programs(config.seeds), self._mutate, random.Random(config.seed), config.population,
            config.tournament or max(1, config.population // 2), config.funnel_margin, config.restart_after,
            config.funnel_floor, len(config.stages or default_stages()))
        self.weights = MutationWeights.from_dict(config.mutation_weights) if config.mutation_weights \
            else MutationWeights()
        self.cache = FitnessCache()
        self.hof = HallOfFame(config.hall_of_fame, same_rule)
        self.pending: dict[int, tuple[Candidate, str]] = {}    # job id -> (candidate, fingerprint)
        self.waiting: dict[str, list[Candidate]] = {}          # hash or fingerprint in flight -> duplicates
        self.inflight_keys: dict[int, tuple[str, str]] = {}
        self.proposed = 0
        self.done = 0
        self.trained = 0
        self.elapsed_before = 0.0
        self.since_checkpoint = 0
        self.history: list[tuple[int, float]] = []   # (evaluations, best score) at each improvement
        self._fingerprints: dict[int, str] = {}
        self._resubmit: list[Candidate] = []
        self._elapsed = 0.0

    # ------------------------------------------------------------------ construction
    @classmethod
    def start(cls, config: SearchConfig, executor: Executor, overwrite: bool = False, **kw) -> "Search":
        run = RunDir(config.out)
        run.create(config.to_dict(), overwrite=overwrite)
        return cls(config, run, executor, **kw)

    @classmethod
    def resume(cls, path: str, executor: Executor, **overrides) -> "Search":
        """Continue a stopped or killed run from its last checkpoint (``overrides`` may extend
        ``max_evals`` or ``time_limit``)."""
        run = RunDir(path)
        config = SearchConfig.from_dict(run.config())
        if overrides:
            config = config.replace(**overrides)
        state = run.load_checkpoint()
        s = cls(config, run, executor)
        if state is None:  # killed before its first checkpoint: start over in place
            run.create(config.to_dict(), overwrite=True)
            return s
        s.evolution.load_state_dict(state["evolution"])
        s.cache.load_state_dict(state["cache"])
        for entry in run.truncate_log(state["log_bytes"]):
            if entry.get("cached") is None:  # finished after the checkpoint: keep the work
                s.cache.store(entry["hash"], entry["fingerprint"], Fitness.from_dict(entry["fitness"]))
        s.hof.load_state_dict(state["hall_of_fame"])
        s.proposed, s.done, s.trained = state["proposed"], state["done"], state["trained"]
        s.elapsed_before = s._elapsed = state["elapsed"]
        s.history = [tuple(x) for x in state["history"]]
        s._resubmit = [Candidate.from_dict(c) for c in state["in_flight"]]
        return s

    # ------------------------------------------------------------------ main loop
    def run(self) -> SearchResult:
        cfg = self.config
        t0 = time.monotonic()
        progress = Progress(cfg.max_evals, cfg.progress)
        try:
            if self._resubmit:
                self._dispatch_many(self._resubmit)
                self._resubmit = []
            while True:
                out_of_time = cfg.time_limit and (time.monotonic() - t0 + self.elapsed_before) > cfg.time_limit
                while not out_of_time and self.proposed < cfg.max_evals and self.executor.capacity() > 0:
                    if not self._fill_batch():
                        break
                if not self.pending and not self.waiting and self.executor.in_flight() == 0:
                    if out_of_time or self.proposed >= cfg.max_evals:
                        break
                for job, fit in self.executor.wait(timeout=1.0):
                    self._finish(job, fit)
                self._elapsed = time.monotonic() - t0 + self.elapsed_before
                progress.update(self.done, self.trained, self._best_score(), self.cache.stats.hit_rate,
                                self.executor.workers_alive())
                if self.since_checkpoint >= cfg.checkpoint_every:
                    self.checkpoint()
        finally:
            self._elapsed = time.monotonic() - t0 + self.elapsed_before
            progress.update(self.done, self.trained, self._best_score(), self.cache.stats.hit_rate,
                            self.executor.workers_alive(), force=True)
            progress.close()
            self.checkpoint()
        heldout = self.meta_validate() if cfg.heldout_top > 0 else []
        self.run_dir.close()
        return SearchResult(str(self.run_dir.path), self.hof.best(), self.stats(), heldout)

    def _fill_batch(self) -> bool:
        """Propose until one batch is ready to submit (cache hits are folded in at once)."""
        batch: list[Candidate] = []
        while len(batch) < self.config.batch_size and self.proposed < self.config.max_evals:
            cand = self.evolution.propose()
            self.proposed += 1
            if self._lookup(cand):
                continue
            batch.append(cand)
        if batch:
            self._submit(batch)
        return bool(batch)

    def _lookup(self, cand: Candidate) -> bool:
        """Fold in a cached result or attach to an identical program in flight; False if new."""
        fp = fingerprint(cand.program)
        hit = self.cache.lookup(cand.program.hash, fp)
        if hit is not None:
            self._fold(cand, fp, hit[0], cached=hit[1])
            return True
        for key in (cand.program.hash, fp):
            if key in self.waiting:
                self.waiting[key].append(cand)
                self.cache.stats.inflight_hits += 1
                return True
        self._fingerprints[cand.id] = fp
        self.waiting.setdefault(cand.program.hash, [])
        self.waiting.setdefault(fp, [])
        return False

    def _submit(self, batch: list[Candidate]) -> None:
        for c in batch:
            fp = self._fingerprints.pop(c.id)
            self.pending[c.id] = (c, fp)
            self.inflight_keys[c.id] = (c.program.hash, fp)
        self.executor.submit([Job(c.id, to_text(c.program), c.thresholds) for c in batch])

    def _dispatch_many(self, cands: list[Candidate]) -> None:
        """Candidates that were in flight at the checkpoint: look up (the log tail may hold
        their results), then submit in batches."""
        todo = [c for c in cands if not self._lookup(c)]
        for i in range(0, len(todo), self.config.batch_size):
            self._submit(todo[i:i + self.config.batch_size])

    def _finish(self, job: Job, fit: Fitness) -> None:
        if job.id not in self.pending:
            return
        cand, fp = self.pending.pop(job.id)
        self.trained += 1
        self.cache.store(cand.program.hash, fp, fit)
        self._fold(cand, fp, fit, cached=None)
        for key in self.inflight_keys.pop(job.id):
            for dup in self.waiting.pop(key, []):
                self._fold(dup, fp, fit, cached="inflight")

    def _fold(self, cand: Candidate, fp: str, fit: Fitness, cached: Optional[str]) -> None:
        ind = self.evolution.report(cand, fit)
        self.hof.add(ind, fp)
        self.done += 1
        self.since_checkpoint += 1
        best = self._best_score()
        if not self.history or best != self.history[-1][1]:
            self.history.append((self.done, best))
        self.run_dir.append({
            "eval": self.done, "id": cand.id, "parent": cand.parent, "mutation": cand.mutation,
            "hash": cand.program.hash, "fingerprint": fp, "program": to_text(cand.program),
            "length": cand.program.length, "memory": cand.program.memory,
            "score": fit.score, "stages": fit.stages_reached, "status": fit.status,
            "fitness": fit.to_dict(), "cached": cached,
            "time": round(self._elapsed, 3),
        })

    def _best_score(self) -> float:
        b = self.evolution.best
        return b.fitness.score if b else float("nan")

    # ------------------------------------------------------------------ state
    def stats(self) -> dict:
        elapsed = self._elapsed
        return {"evaluations": self.done, "trained": self.trained, "proposed": self.proposed,
                "elapsed": elapsed, "evals_per_second": self.done / elapsed if elapsed else 0.0,
                "trained_per_second": self.trained / elapsed if elapsed else 0.0,
                "cache": self.cache.stats.to_dict(), "restarts": self.evolution.restarts,
                "workers_alive": self.executor.workers_alive(),
                "workers_lost": getattr(self.executor, "lost_workers", 0),
                "best_score": self._best_score()}

    def checkpoint(self) -> None:
        in_flight = [c.to_dict() for c, _ in self.pending.values()]
        in_flight += [c.to_dict() for dups in self.waiting.values() for c in dups]
        self.run_dir.save_checkpoint({
            "evolution": self.evolution.state_dict(), "cache": self.cache.state_dict(),
            "hall_of_fame": self.hof.state_dict(), "proposed": self.proposed, "done": self.done,
            "trained": self.trained, "elapsed": self._elapsed,
            "history": self.history, "in_flight": in_flight, "stats": self.stats(),
        })
        self.run_dir.save_hall_of_fame(dict(self.hof.to_json(), stats=self.stats(), history=self.history))
        self.since_checkpoint = 0

    # ------------------------------------------------------------------ meta-validation
    def meta_validate(self) -> list[dict]:
        """Re-score the top programs on held-out tasks the search never saw, beside AdamW and
        Lion (`evolve.heldout`)."""
        from .heldout import validate
        from .worker import heldout_stage

        return validate(self.executor, self.config, self.hof.best(), heldout_stage(self.config), self.run_dir)

    def _mutate(self, parent: Program, rng: random.Random) -> tuple[Program, str]:
        return mutate(parent, rng, self.weights, max_length=self.config.max_length,
                      max_slots=self.config.max_slots)

