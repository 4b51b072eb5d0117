"""Search configuration: one frozen value, loaded from TOML/YAML and overridden by flags."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

__all__ = ["SearchConfig", "load_config", "DTYPES"]

DTYPES = ("float32", "bfloat16", "float64")
"""Torch dtype names a search may train in (every built-in task runs in them; float16 is left
out: without loss scaling its small gradients underflow)."""


@dataclass(frozen=True)
class SearchConfig:
    """Everything that determines a run. A run is reproducible from this value.

    Evolution (regularized evolution, Real et al. 2019): keep ``population`` programs; each
    cycle samples ``tournament`` of them, mutates a copy of the best, evaluates it, adds it
    and drops the oldest.
    """

    seed: int = 0
    population: int = 0             # members per island; 0 = auto: 32, more with many workers (islands.Layout)
    tournament: int = 0             # 0 = half the population: strong selection, as most mutants are far worse
    max_evals: int = 400            # candidates processed (cache hits included)
    time_limit: float = 0.0         # seconds; 0 = none
    seeds: tuple[str, ...] = ("adamw",)  # warm start; ("all",) for every known method
    restart_after: int = 300        # reports without a new best before restarting from the best; 0 = never
    # mutation
    max_length: int = 30
    max_slots: int = 4
    mutation_weights: dict = field(default_factory=dict)
    # fitness: funnel of stages, each a list of task names
    stages: tuple[tuple[str, ...], ...] = ()     # () = the task suite's default stages
    funnel_margin: float = 0.0      # pass stage k if its score >= parent's stage-k score - margin
    funnel_floor: float = 0.0       # ... and >= this (0 = as good as tuned AdamW on stage k)
    lr_multipliers: tuple[float, ...] = ()        # () = the task suite's default grid
    repeats: int = 1                # seeds per task in the search's stages (scores averaged)
    aggregate: str = "trimmed"      # task scores -> one: mean | median | trimmed (RESULTS.md, "Choosing the aggregate")
    # roles (tasks/stages.py): validation chooses the winner, test is only reported
    validate: bool = True           # False: no validation at all (driver benchmarks, tests); the winner is the search's best
    validation: tuple[str, ...] = ()  # () = the suite's validation tasks
    validation_repeats: int = 1     # seeds per validation task
    validation_top: int = 10        # hall-of-fame programs validated at the end (those not validated yet)
    validation_aggregate: str = "mean"  # validation tasks -> the score that picks the winner; "" = `aggregate`.
                                    # Not trimmed: the 2026-12-01 runs' trimmed validation chose winners that lost
                                    # -1.6 and -2.2 on one validation task over ones that won all six (RESULTS.md)
    validation_patience: int = 0    # stop after this many validations of new bests without a better validation; 0 = never
    test: tuple[str, ...] = ()      # () = the suite's test tasks
    test_top: int = 1               # validation-ranked programs scored on the test tasks (beside AdamW, Lion); 0 = no test
    test_repeats: int = 3           # seeds per test task (each against AdamW tuned at that seed)
    test_timeout: float = 900.0     # seconds per test row (its own budget, not candidate_timeout)
    # execution
    workers: int = 0                # 0 = one per CPU (or per GPU share)
    address: Optional[str] = None   # None = embedded local Ray; "auto", "ray://host:port"
    batch_size: int = 4             # candidates per worker call (the batched evaluator trains them side by side)
    candidate_timeout: float = 120.0  # seconds per candidate before it is scored as failed
    # devices (GPU share, device, task size and dtype: see evolve.launch.make_executor)
    gpus_per_worker: float = 0.0    # GPUs per actor when the cluster has GPUs; 0 = auto (a 1/GPU_WORKERS_PER_GPU share)
    device: str = "auto"            # "auto" = cuda when the worker has a GPU share, else cpu; "cpu" = no GPUs
    task_size: int = 1              # every task's size factor (larger proxies for GPU workers)
    dtype: str = "float32"          # parameters, data and optimizer state: float32, bfloat16 or float64
    compile_tasks: bool = False     # torch.compile each task's forward/backward in the workers: ~1.6x the fast
                                    # trainer's stage-1 rate per core after ~20 s of compiles per worker, results
                                    # within float rounding, not bit-identical (BENCHMARKS.md, issue 13 part 2)
    tasks_modules: tuple[str, ...] = ()  # user task modules (.py files, packages, dotted names): shipped, imported everywhere
    worker_start_timeout: float = 60.0   # seconds for the first worker to start before the search stops with the cause
    # bookkeeping
    out: str = "runs/search"
    checkpoint_every: int = 20      # evaluations between checkpoints
    hall_of_fame: int = 10
    progress: bool = True
    # scale (issue 9): islands with migration, a bounded cache, checkpoint cadence
    islands: int = 0                # populations sharing the workers; 0 = auto: one per 16 workers
    migration_every: int = 0        # results between ring migrations; 0 = islands x population
    cache_size: int = 100_000       # fitness cache entries (LRU, as AutoML-Zero); log.jsonl keeps every result
    checkpoint_seconds: float = 10.0  # checkpoints also at least this far apart (one costs ~ms per 100 members)

    def __post_init__(self) -> None:
        if self.population == 1 or self.population < 0 or self.tournament < 0 \
                or (self.population and self.tournament > self.population):
            raise ValueError("need population >= 2 (0: auto) and 0 <= tournament <= population (0: half of it)")
        if self.islands < 0 or self.migration_every < 0:
            raise ValueError("islands and migration_every must be >= 0 (0: auto)")
        if self.cache_size < 1 or self.checkpoint_seconds < 0:
            raise ValueError("need cache_size >= 1 and checkpoint_seconds >= 0")
        if self.max_evals < 1:
            raise ValueError("max_evals must be >= 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.repeats < 1 or self.validation_repeats < 1 or self.test_repeats < 1:
            raise ValueError("repeats, validation_repeats and test_repeats must be >= 1")
        if self.validation_top < 0 or self.validation_patience < 0 or self.test_top < 0:
            raise ValueError("validation_top, validation_patience and test_top must be >= 0")
        from tasks.results import AGGREGATES

        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate {self.aggregate!r}: expected one of {', '.join(AGGREGATES)}")
        if self.validation_aggregate and self.validation_aggregate not in AGGREGATES:
            raise ValueError(f"validation_aggregate {self.validation_aggregate!r}: expected '' (the aggregate) "
                             f"or one of {', '.join(AGGREGATES)}")
        if self.task_size < 1:
            raise ValueError(f"task_size must be >= 1, got {self.task_size}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r}: expected one of {', '.join(DTYPES)}")
        g = self.gpus_per_worker
        if g < 0 or (g > 1 and g != int(g)):
            raise ValueError(f"gpus_per_worker {g}: expected 0 (auto), a share in (0, 1] or a whole number")

    def replace(self, **changes: Any) -> "SearchConfig":
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **_coerce(changes))

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "SearchConfig":
        """Also reads run directories from before the three roles: ``heldout``, ``heldout_repeats``
        and ``heldout_timeout`` become the test role's; ``heldout_top`` (the held-out step re-scored
        the top programs and reported the best of them: a choice by test score) is dropped."""
        d = dict(d)
        for old, new in _RENAMED.items():
            if old in d:
                value = d.pop(old)
                d.setdefault(new, value)
        d.pop("heldout_top", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**_coerce(d))

    @classmethod
    def from_run(cls, d: dict) -> "SearchConfig":
        """A run directory's config.json: `from_dict`, and a run written before aggregates were
        configurable (no ``aggregate`` key) scored its stages by the mean, whatever today's default;
        one with ``heldout_top = 0`` asked for no held-out rows, so it gets no test rows."""
        d = dict(d)
        d.setdefault("aggregate", "mean")
        d.setdefault("validation_aggregate", "")   # runs before the key validated by their aggregate
        if d.get("heldout_top") == 0:
            d.setdefault("test_top", 0)
        return cls.from_dict(d)


_RENAMED = {"heldout": "test", "heldout_repeats": "test_repeats", "heldout_timeout": "test_timeout"}


def _coerce(d: dict) -> dict:
    out = dict(d)
    for k in ("seeds", "validation", "test", "tasks_modules"):
        if k in out and out[k] is not None:
            out[k] = (out[k],) if isinstance(out[k], str) else tuple(out[k])
    if "lr_multipliers" in out:
        out["lr_multipliers"] = tuple(float(x) for x in out["lr_multipliers"])
    if "stages" in out:
        out["stages"] = tuple(tuple(s) for s in out["stages"])
    return out


def load_config(path: Optional[str]) -> SearchConfig:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file; keys are `SearchConfig` fields."""
    if path is None:
        return SearchConfig()
    p = Path(path)
    text = p.read_text()
    if p.suffix == ".toml":
        import tomllib

        data = tomllib.loads(text)
    elif p.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    elif p.suffix == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"config {path}: expected .toml, .yaml or .json")
    data = data.get("search", data)
    try:
        return SearchConfig.from_dict(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"config {path}: {e}") from None
