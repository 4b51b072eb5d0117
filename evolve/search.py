"""The search driver: islands of evolution + cache + funnel + executor + run directory.

    propose (round robin over islands) -> fingerprint (memoized by structural hash)
    -> cache lookup (structural hash, then functional fingerprint) -> batch -> executor
    executor result -> cache -> island.report -> hall of fame -> log (-> checkpoint)
    a new best that reached the last stage -> validation job -> validation.jsonl (-> patience)
    end: validate the hall of fame's top -> winner = best by validation -> test rows (reported)

The driver owns all state; the executor only evaluates. Results are folded in as each batch
comes back (the executor's ``wait`` returns whatever has finished) and free workers are refilled
at once. With one worker and a fixed seed the sequence of candidates and scores is the same on
every run.

Per candidate the driver's own work must stay far below an evaluation's time divided by the
number of workers (1 s / 512 workers ~ 2 ms); benchmarks/bench_driver.py measures it. Memory
and checkpoints stay bounded as a run grows: the cache is an LRU of ``cache_size`` entries, the
checkpoint holds the populations, hall of fame, random state, counters and in-flight candidates
but not the cache, and a resume refills the cache from the last ``cache_size`` lines of
``log.jsonl`` (the full record). Rebuilding from the log rather than checkpointing the cache's
keys keeps each checkpoint O(population) whatever the cache size, and costs one backwards read
of the log's tail once per resume.

Validation (`evolve.validation`) goes through the executor like every job: a validation job is
sent before new candidates whenever a worker is free, and the search keeps proposing meanwhile.
The run ends when proposals are over (count, time, or validation patience), every job is back
and the hall of fame's top ``validation_top`` programs are validated; its winner is the best by
validation, and only that winner (with ``test_top - 1`` runners-up and the references) is
scored on the test tasks, which choose nothing.
"""
from __future__ import annotations

import random
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

import seeds as seed_library
from dsl import Program, to_text
from tasks.stages import check_roles

from .cache import FitnessCache, fingerprint
from .candidate import Candidate, Fitness, Individual, Job
from .config import SearchConfig
from .executor import Executor
from .hall_of_fame import HallOfFame
from .islands import Islands, Layout
from .mutate import MutationWeights, mutate
from .progress import Progress
from .rundir import RunDir
from .validation import Validator
from .worker import default_stages, suite_of, test_tasks, validation_tasks

__all__ = ["Search", "SearchResult", "seed_programs", "worker_count"]


def seed_programs(names: tuple[str, ...]) -> list[Program]:
    """Warm-start programs by seed name; ``("all",)`` means every known method."""
    if tuple(names) == ("all",):
        names = tuple(seed_library.names())
    return [seed_library.load(n) for n in names]


def worker_count(config: SearchConfig, executor: Executor) -> int:
    """Workers the executor runs: its ``size`` (simulated workers, Ray actors), else
    ``config.workers``, else the workers alive now (1 for the in-process executor)."""
    n = getattr(executor, "size", None)
    if not n:
        n = config.workers or executor.workers_alive()
    return max(1, int(n))


@dataclass(frozen=True)
class SearchResult:
    """``best``: the final ranking, winner first (validated programs by validation score, then
    the hall of fame by search score); ``validations``: `Validation` dicts by program id;
    ``test``: the test rows (`evolve.heldout`); ``stages``: the run's funnel."""

    run_dir: str
    best: list[Individual]
    stats: dict
    test: list[dict] = field(default_factory=list)
    validations: dict = field(default_factory=dict)
    stages: tuple = ()
    aggregate: str = "mean"

    @property
    def winner(self) -> Optional[Individual]:
        return self.best[0] if self.best else None


class Search:
    """A run in a directory. Build with `Search.start` or `Search.resume`, then `run()`.

    Time (the time limit, the log's ``time``, evaluations per second) is the executor's
    ``clock()`` where it has one (a simulated executor's virtual seconds), else the wall clock.
    """

    def __init__(self, config: SearchConfig, run: RunDir, executor: Executor,
                 same_rule: Optional[Callable] = None, layout: Optional[Layout] = None):
        self.config = config
        self.run_dir = run
        self.executor = executor
        self.clock: Callable[[], float] = getattr(executor, "clock", None) or time.monotonic
        self.layout = layout or Layout.resolve(config.islands, config.population, config.tournament,
                                               config.migration_every, worker_count(config, executor),
                                               config.batch_size)
        self.stages = tuple(config.stages or default_stages())
        self.evolution = Islands(
            seed_programs(config.seeds), self._mutate, config.seed, self.layout, config.funnel_margin,
            config.restart_after, config.funnel_floor, len(self.stages))
        self.weights = MutationWeights.from_dict(config.mutation_weights) if config.mutation_weights \
            else MutationWeights()
        self.cache = FitnessCache(config.cache_size)
        self.hof = HallOfFame(config.hall_of_fame, same_rule, stages=self.stages)
        self.validator = Validator(validation_tasks(config), config.validation_repeats, config.validation_patience,
                                   aggregate=config.validation_aggregate or config.aggregate)
        self.finished = False    # the end's validations are in: the hall of fame is ordered by validation
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
        self._fp_memo: OrderedDict[str, list] = OrderedDict()   # structural hash -> [fingerprint, text] (LRU)
        self._resubmit: deque[Candidate] = deque()
        self._elapsed = 0.0
        self._last_checkpoint = time.monotonic()

    # ------------------------------------------------------------------ construction
    @classmethod
    def start(cls, config: SearchConfig, executor: Executor, overwrite: bool = False, **kw) -> "Search":
        check_roles(suite_of(config))      # before the run directory exists: a clear error, no run
        run = RunDir(config.out)
        run.create(config.to_dict(), overwrite=overwrite)
        return cls(config, run, executor, **kw)

    @classmethod
    def resume(cls, path: str, executor: Executor, **overrides) -> "Search":
        """Continue a stopped or killed run from its last checkpoint (``overrides`` may extend
        ``max_evals`` or ``time_limit``; ``same_rule`` is passed to the hall of fame). The
        islands keep the layout they started with, whatever the workers now."""
        same_rule = overrides.pop("same_rule", None)
        run = RunDir(path)
        config = SearchConfig.from_run(run.config())
        if overrides:
            config = config.replace(**overrides)
        check_roles(suite_of(config))
        state = run.load_checkpoint()
        if state is None:  # killed before its first checkpoint: start over in place
            run.create(config.to_dict(), overwrite=True)
            return cls(config, run, executor, same_rule)
        lay = state["evolution"].get("layout")
        s = cls(config, run, executor, same_rule, Layout(**lay) if lay else None)
        s.evolution.load_state_dict(state["evolution"])
        # (checkpoints from before the LRU held the whole cache under "cache": the log has it too)
        s.cache.load_stats(state.get("cache_stats") or state.get("cache", {}).get("stats", {}))
        for entry in run.tail(config.cache_size, state["log_bytes"]):
            s._remember(entry)
        for entry in run.truncate_log(state["log_bytes"]):
            if entry.get("cached") is None:  # finished after the checkpoint: keep the work
                s._remember(entry)
        s.hof.load_state_dict(state["hall_of_fame"])
        run.truncate_validations(state.get("validation_bytes", 0))
        if "validation" in state:
            s.validator.load_state_dict(state["validation"])
        s.proposed, s.done, s.trained = state["proposed"], state["done"], state["trained"]
        s.elapsed_before = s._elapsed = state["elapsed"]
        s.history = [tuple(x) for x in state["history"]]
        s._resubmit = deque(Candidate.from_dict(c) for c in state["in_flight"])
        return s

    def _remember(self, entry: dict) -> None:
        """A logged result back into the cache (timeouts and lost workers are not kept)."""
        self.cache.store(entry["hash"], entry["fingerprint"], Fitness.from_dict(entry["fitness"]))

    # ------------------------------------------------------------------ main loop
    def run(self) -> SearchResult:
        cfg = self.config
        t0 = self.clock()
        progress = Progress(cfg.max_evals, cfg.progress, clock=self.clock, time_limit=cfg.time_limit,
                            elapsed_before=self.elapsed_before)
        end_requested = False
        try:
            while True:
                out_of_time = bool(cfg.time_limit) and (self.clock() - t0 + self.elapsed_before) > cfg.time_limit
                can_propose = not out_of_time and self.proposed < cfg.max_evals and not self.validator.stopped
                self._submit_validations()
                while (self._resubmit or can_propose) and self.executor.capacity() > 0:
                    if not self._fill_batch(can_propose):
                        break
                    can_propose = can_propose and self.proposed < cfg.max_evals
                if not self.pending and not self.waiting and not self._resubmit and self.validator.idle \
                        and self.executor.in_flight() == 0 and not can_propose:
                    if end_requested:
                        break
                    end_requested = True       # the search is over: validate the hall of fame's top
                    for fp, ind in self.hof.ranked()[:cfg.validation_top]:
                        self.validator.request(ind, fp, self.done, at_end=True)
                    continue
                for job, fit in self.executor.wait(timeout=1.0):
                    self._finish(job, fit)
                self._elapsed = self.clock() - t0 + self.elapsed_before
                self._progress(progress)
                if self.since_checkpoint >= cfg.checkpoint_every and \
                        time.monotonic() - self._last_checkpoint >= cfg.checkpoint_seconds:
                    self.checkpoint()
            self.finished = True
        finally:
            self._elapsed = self.clock() - t0 + self.elapsed_before
            self._progress(progress, force=True)
            progress.close()
            self.checkpoint()
        test = self.score_test() if test_tasks(cfg) else []
        self.run_dir.close()
        vals = self.validator.by_fingerprint()
        return SearchResult(str(self.run_dir.path), [ind for _, ind in self.ranking()], self.stats(), test,
                            {vals[fp].id: vals[fp].to_dict() for fp in vals}, self.stages, cfg.aggregate)

    def _progress(self, progress: Progress, force: bool = False) -> None:
        best_val = self.validator.best.score if self.validator.best is not None else None
        progress.update(self.done, self.trained, self._best_score(), self.cache.stats.hit_rate,
                        self.executor.workers_alive(), force=force, validation=best_val)

    def _submit_validations(self) -> None:
        """Queued validation jobs go first to free workers, one job per batch."""
        while self.executor.capacity() > 0:
            job = self.validator.take()
            if job is None:
                return
            self.executor.submit([job])

    def ranking(self) -> list[tuple[str, Individual]]:
        """(fingerprint, individual), winner first: the validated programs with a score by
        validation (ties: search rank), then the hall of fame's other entries by search score;
        at most ``hall_of_fame`` of them. Without validations: the hall of fame by search."""
        vals = self.validator.by_fingerprint()
        validated = sorted(((fp, ind) for fp, ind in self.validator.programs.items() if vals[fp].score is not None),
                           key=lambda kv: vals[kv[0]].rank, reverse=True)
        seen = {fp for fp, _ in validated}
        rest = [(fp, ind) for fp, ind in self.hof.ranked() if fp not in seen]
        return (validated + rest)[:max(1, self.config.hall_of_fame)]

    def _fill_batch(self, propose: bool = True) -> bool:
        """Gather one batch (candidates in flight at the checkpoint first, then new proposals)
        and submit it; cache hits are folded in at once. False if there was nothing to submit."""
        batch: list[Candidate] = []
        while len(batch) < self.config.batch_size:
            if self._resubmit:
                cand = self._resubmit.popleft()
            elif propose and self.proposed < self.config.max_evals:
                cand = self.evolution.propose()
                self.proposed += 1
            else:
                break
            if self._lookup(cand):
                continue
            batch.append(cand)
        if batch:
            self._submit(batch)
        return bool(batch)

    def _fingerprint(self, program: Program) -> str:
        """`fingerprint`, memoized by structural hash (it compiles and runs the program on small
        tensors: the largest share of the driver's time per new program, ~0.2-0.5 ms here), under
        ``inference_mode`` (no autograd bookkeeping: 12% cheaper, the same numbers)."""
        return self._memo(program)[0]

    def _text(self, program: Program) -> str:
        """``to_text``, memoized with the fingerprint (a trained program is printed for its job and
        its log line). The text is that of the first program seen with this structural hash: the
        same computation, maybe with other names, so cache hits print their own text."""
        m = self._memo(program)
        if m[1] is None:
            m[1] = to_text(program)
        return m[1]

    def _memo(self, program: Program) -> list:
        h = program.hash
        m = self._fp_memo.get(h)
        if m is not None:
            self._fp_memo.move_to_end(h)
            return m
        fp = self.cache.fingerprint_of(h)
        if fp is None:
            with torch.inference_mode():
                fp = fingerprint(program)
        m = self._fp_memo[h] = [fp, None]
        if len(self._fp_memo) > self.config.cache_size:
            self._fp_memo.popitem(last=False)
        return m

    def _lookup(self, cand: Candidate) -> bool:
        """Fold in a cached result or attach to an identical program in flight; False if new."""
        fp = self._fingerprint(cand.program)
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
        self.executor.submit([Job(c.id, self._text(c.program), c.thresholds) for c in batch])

    def _finish(self, job: Job, fit: Fitness) -> None:
        if job.id in self.validator.inflight:
            rec = self.validator.finish(job, fit, self.done, self._elapsed)
            if rec is not None:
                self.run_dir.append_validation(rec.to_dict())
            return
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
        lead = self.evolution.best
        if lead is not None and lead.id == cand.id and fit.ok and fit.stages_reached >= len(self.stages):
            self.validator.request(ind, fp, self.done)    # a new best by search score: validate it
        self.run_dir.append({
            "eval": self.done, "id": cand.id, "parent": cand.parent, "mutation": cand.mutation,
            "island": cand.island,
            "hash": cand.program.hash, "fingerprint": fp, "program": to_text(cand.program) if cached else self._text(cand.program),
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
                "cache": self.cache.stats.to_dict(), "cache_entries": len(self.cache),
                "restarts": self.evolution.restarts,
                "islands": self.layout.islands, "population": self.layout.population,
                "migrations": self.evolution.migrations,
                "workers_alive": self.executor.workers_alive(),
                "workers_lost": getattr(self.executor, "lost_workers", 0),
                "best_score": self._best_score(), "validations": len(self.validator.records),
                "best_validation": self.validator.best.score if self.validator.best is not None else None,
                "meta_overfit_stop": self.validator.stopped}

    def checkpoint(self) -> None:
        in_flight = [c.to_dict() for c, _ in self.pending.values()]
        in_flight += [c.to_dict() for dups in self.waiting.values() for c in dups]
        in_flight += [c.to_dict() for c in self._resubmit]
        self.run_dir.save_checkpoint({
            "evolution": self.evolution.state_dict(), "cache_stats": self.cache.stats.to_dict(),
            "hall_of_fame": self.hof.state_dict(), "proposed": self.proposed, "done": self.done,
            "trained": self.trained, "elapsed": self._elapsed,
            "history": self.history, "in_flight": in_flight, "stats": self.stats(),
            "validation": self.validator.state_dict(),
        })
        vals = {fp: r.to_dict() for fp, r in self.validator.by_fingerprint().items()}
        hof = self.hof.to_json(vals, self.ranking() if self.finished else None)
        self.run_dir.save_hall_of_fame(dict(hof, stats=self.stats(), history=self.history))
        self.since_checkpoint = 0
        self._last_checkpoint = time.monotonic()

    # ------------------------------------------------------------------ test
    def score_test(self) -> list[dict]:
        """The winner (and the next ``test_top - 1`` by validation) on the test tasks, beside
        AdamW and Lion (`evolve.heldout`): reported, never used to choose."""
        from .heldout import score_test

        vals = {r.id: r.to_dict() for r in self.validator.records}
        return score_test(self.executor, self.config, [ind for _, ind in self.ranking()], test_tasks(self.config),
                          self.run_dir, vals)

    def _mutate(self, parent: Program, rng: random.Random) -> tuple[Program, str]:
        return mutate(parent, rng, self.weights, max_length=self.config.max_length,
                      max_slots=self.config.max_slots)

