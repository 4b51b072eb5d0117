"""Build the executor for a config and run or resume a search (what `evolve search` calls)."""
from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional, TextIO

from .config import SearchConfig
from .executor import Executor, LocalExecutor
from .search import Search, SearchResult
from .shipping import TaskModule, load_task_module
from .worker import TaskEvaluator, resolve_device, suite_of

if TYPE_CHECKING:
    from tasks import Baseline

__all__ = ["make_executor", "run_search", "resume_search", "baseline_cache_path", "report", "load_tasks"]


def baseline_cache_path() -> str:
    """Where tuned AdamW baselines are kept between runs on this machine."""
    env = os.environ.get("OPTSEARCH_BASELINE_CACHE")
    if env:
        return env
    return str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "optsearch" / "baselines.json")


def prepare_baselines(config: SearchConfig, evaluator: TaskEvaluator, num_gpus: float = 0.0,
                      out: TextIO = sys.stderr) -> tuple["Baseline", ...]:
    """Tune AdamW once per (task, seed) the run evaluates, on the workers' device type: here for
    cpu workers (or the local executor), else in one Ray task with a worker's GPU share. The
    driver's file (`baseline_cache_path`) keeps them between runs; workers get them as values."""
    from tasks.baselines import read_cache, write_cache

    from .baseline_job import compute, compute_remote, needed

    pairs = needed(config, evaluator.seed)
    path = baseline_cache_path()
    known = read_cache(path)
    if num_gpus > 0:
        print(f"  baselines: {len(pairs)} (task, seed) pairs on one {evaluator.device} worker ...",
              file=out, flush=True)
        got = compute_remote(evaluator, pairs, known, num_cpus=1, num_gpus=num_gpus)
    else:
        got = compute(evaluator, pairs, known, out=out)
    write_cache(path, [b for b in got if b.key not in known])
    return got


def load_tasks(config: SearchConfig) -> tuple[TaskModule, ...]:
    """Import the config's task modules on the driver and check that every task it names exists
    and that no task is in two roles (here, before any baseline is tuned or worker started)."""
    from tasks import registry
    from tasks.stages import check_roles

    modules = tuple(load_task_module(m) for m in config.tasks_modules)
    suite = suite_of(config)
    check_roles(suite)
    wanted = [*suite.search_tasks, *suite.validation, *suite.test]
    known = set(registry.names())
    unknown = sorted({t for t in wanted if not registry.exists(t)})
    if unknown:
        hint = "" if config.tasks_modules else "; tasks of your own need --tasks-module FILE.py"
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}{hint}")
    return modules


def make_executor(config: SearchConfig, local: bool = False, modules: tuple[TaskModule, ...] = ()) -> Executor:
    """In-process (``local``) or Ray actors: embedded local Ray, or the cluster at ``config.address``
    (the project's packages and ``modules`` are shipped to the workers, see `evolve.shipping`)."""
    if local:
        evaluator = TaskEvaluator.from_config(config, device=resolve_device(config.device),
                                              modules=tuple(m.name for m in modules))
        evaluator = replace(evaluator, baselines=prepare_baselines(config, evaluator))
        return LocalExecutor(evaluator())
    import ray

    from .placement import gpu_share, worker_count, worker_device
    from .ray_executor import RayExecutor, init_ray

    init_ray(config.address, num_cpus=None if config.address else (os.cpu_count() or 1), task_modules=modules)
    resources = ray.cluster_resources()
    num_gpus = gpu_share(config, resources.get("GPU", 0.0))
    evaluator = TaskEvaluator.from_config(config, device=worker_device(config, num_gpus),
                                          modules=tuple(m.name for m in modules))
    evaluator = replace(evaluator, baselines=prepare_baselines(config, evaluator, num_gpus))
    workers = worker_count(config, resources, num_gpus)
    return RayExecutor(evaluator, max(1, workers), num_cpus=1, num_gpus=num_gpus,
                       candidate_timeout=config.candidate_timeout, start_timeout=config.worker_start_timeout)


def run_search(config: SearchConfig, local: bool = False, overwrite: bool = False,
               out: Optional[TextIO] = None) -> SearchResult:
    config = config.replace(out=str(Path(config.out).expanduser().resolve()))
    modules = load_tasks(config)
    executor = make_executor(config, local, modules)
    try:
        search = Search.start(config, executor, overwrite=overwrite, same_rule=_same_rule())
        _announce(search)
        result = search.run()
    finally:
        executor.close()
    report(result, out)
    return result


def resume_search(path: str, local: bool = False, out: Optional[TextIO] = None, **overrides) -> SearchResult:
    from .rundir import RunDir

    config = SearchConfig.from_run(RunDir(path).config())
    config = config.replace(**overrides)
    modules = load_tasks(config)
    executor = make_executor(config, local, modules)
    try:
        search = Search.resume(path, executor, same_rule=_same_rule(),
                               **{k: v for k, v in overrides.items() if v is not None})
        _announce(search)
        result = search.run()
    finally:
        executor.close()
    report(result, out)
    return result


def _announce(search: Search) -> None:
    c, lay = search.config, search.layout
    limit = f"{c.time_limit:.0f}s or " if c.time_limit else ""
    islands = f"{lay.islands} islands x " if lay.islands > 1 else ""
    print(f"search: {limit}{c.max_evals} evaluations, {islands}population {lay.population}, tournament "
          f"{lay.tournament}, seeds {','.join(c.seeds)}, {search.executor.workers_alive() or 'starting'} workers "
          f"-> {c.out}", file=sys.stderr)
    suite = suite_of(c)
    print(f"  search stages {'; '.join(','.join(st) for st in suite.stages)} | validation "
          f"{','.join(suite.validation) or 'none'} | test {','.join(suite.test) or 'none'} | aggregate {c.aggregate}",
          file=sys.stderr)


def _same_rule():
    """Symbolic equivalence for the hall of fame, where sympy can decide it quickly."""
    try:
        from dsl import equivalent
    except ImportError:
        return None

    def same(a, b) -> bool:
        try:
            return equivalent(a, b, timeout=2.0)
        except Exception:
            return False

    return same


def report(result: SearchResult, out: Optional[TextIO] = None, top: int = 3, simplify_timeout: float = 5.0) -> None:
    """Print the run's figures, then its best programs (the winner, chosen by validation, first)
    as code, as mutation left them and simplified, each with its search, validation and test
    scores (`evolve.scores`), then the test rows (reported only)."""
    out = out or sys.stdout
    import dsl
    from dsl import to_text

    from .heldout import row_text
    from .scores import score_line

    s = result.stats
    c = s["cache"]
    print(f"\n{s['evaluations']} evaluations ({s['trained']} trained) in {s['elapsed']:.0f}s: "
          f"{s['evals_per_second']:.2f} evals/s; cache hits {100 * c['hit_rate']:.0f}% "
          f"(structural {c['structural_hits']}, functional {c['functional_hits']}, in flight {c['inflight_hits']}); "
          f"workers lost {s['workers_lost']}", file=out)
    if s.get("validations"):
        stop = "; stopped by validation patience (meta-overfit)" if s.get("meta_overfit_stop") else ""
        print(f"{s['validations']} programs validated; the winner is the best by validation{stop}", file=out)
    print(f"run directory: {result.run_dir}\n", file=out)
    tests = {row.get("id"): row for row in result.test if row.get("id") is not None}
    how = result.aggregate
    for rank, ind in enumerate(result.best[:top], 1):
        f = ind.fitness
        stages = result.stages or None
        last = f.last_stage_scores(stages)
        search = {"score": f.score, "mean": sum(last.values()) / len(last) if last else f.score,
                  "won": f.won(stages), "lost": f.lost(stages)}
        line = score_line(search, result.validations.get(ind.id), tests.get(ind.id), how, f.stages_reached)
        tag = "winner: " if rank == 1 and result.validations.get(ind.id) else ""
        print(f"# {rank}. {tag}{line}", file=out)
        print(f"#    length {ind.program.length} | memory {ind.program.memory} | id {ind.id}", file=out)
        print("#    search tasks: " + ", ".join(f"{k} {v:+.3f}" for k, v in f.task_scores.items()), file=out)
        val = result.validations.get(ind.id)
        if val and val.get("task_scores"):
            print("#    validation tasks: " + ", ".join(f"{k} {v:+.3f}" for k, v in val["task_scores"].items()),
                  file=out)
        print(to_text(ind.program, readable=True), file=out)
        simplified = dsl.simplified_text(ind.program, timeout=simplify_timeout)
        if simplified:   # "# simplified (length N):" and the program, or "# not simplified: why"
            print(simplified.rstrip("\n"), file=out)
    if result.test:
        print("test tasks (reported only: nothing was chosen by them), mean log(loss_AdamW / loss) over tasks, "
              "tasks won/lost vs tuned AdamW:", file=out)
        for row in result.test:
            print(row_text(row, how), file=out)
