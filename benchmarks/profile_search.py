"""Where search time goes: one default-style search profiled by component.

Runs a local (in-process) search under cProfile and attributes time to evaluation (training
candidates), mutation, fingerprinting, structural hashing, printing/logging, checkpoints and the
hall of fame's symbolic equivalence; then runs the same search through Ray with one worker to
measure Ray's overhead per evaluation.

    .venv/bin/python benchmarks/profile_search.py [--evals 60]
"""
from __future__ import annotations

import argparse
import dataclasses
import cProfile
import pstats
import tempfile
import time

from evolve.config import SearchConfig
from evolve.executor import LocalExecutor
from evolve.launch import _same_rule, prepare_baselines
from evolve.search import Search
from evolve.worker import TaskEvaluator

COMPONENTS = {  # (file fragment, function) -> component; cumulative time of the outermost match
    "evaluation": [("tasks/fitness.py", "evaluate")],
    "mutation": [("evolve/mutate.py", "mutate")],
    "fingerprint": [("evolve/cache.py", "fingerprint")],
    "hashing": [("dsl/program.py", "hash"), ("dsl/program.py", "key")],
    "printing + log": [("dsl/printer.py", "to_text"), ("evolve/rundir.py", "append")],
    "checkpoints": [("evolve/search.py", "checkpoint")],
    "hall of fame (simplify/equivalence)": [("evolve/hall_of_fame.py", "add")],
}


def config(out: str, evals: int, workers: int = 1) -> SearchConfig:
    return SearchConfig(population=16, tournament=4, max_evals=evals, batch_size=4, workers=workers,
                        out=out, validate=False, test_top=0, progress=False, checkpoint_every=20)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evals", type=int, default=60)
    a = ap.parse_args()
    evaluator = TaskEvaluator.from_config(config("unused", a.evals), device="cpu")
    evaluator = dataclasses.replace(evaluator, baselines=prepare_baselines(config("unused", a.evals), evaluator))
    with tempfile.TemporaryDirectory() as tmp:
        search = Search.start(config(f"{tmp}/local", a.evals), LocalExecutor(evaluator()),
                              same_rule=_same_rule())
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.runcall(search.run)
        local = time.perf_counter() - t0
        stats = pstats.Stats(prof).stats
        print(f"# profile of a local search: {a.evals} evaluations ({search.trained} trained), {local:.1f}s")
        print(f"{'component':38s} {'seconds':>8s} {'share':>6s}")
        accounted = 0.0
        for comp, keys in COMPONENTS.items():
            sec = 0.0
            for (fname, line, func), (cc, nc, tt, ct, callers) in stats.items():
                if any(fname.endswith(f) and func == fn for f, fn in keys):
                    # count only calls not made from another function of the same component
                    outer = {k: v for k, v in callers.items()
                             if not any(k[0].endswith(f) and k[2] == fn for f, fn in keys)}
                    sec += sum(v[3] for v in outer.values()) if outer else ct
            accounted += sec
            print(f"{comp:38s} {sec:8.2f} {100 * sec / local:5.1f}%")
        print(f"{'other (driver loop, parsing, ...)':38s} {local - accounted:8.2f} {100 * (local - accounted) / local:5.1f}%")

        from evolve.ray_executor import RayExecutor, init_ray

        init_ray(num_cpus=2)
        cfg = config(f"{tmp}/ray", a.evals)
        ex = RayExecutor(evaluator, 1)
        t0 = time.perf_counter()
        ray_search = Search.start(cfg, ex, same_rule=_same_rule())
        ray_search.run()
        ray_time = time.perf_counter() - t0
        ex.close()
        print(f"\nsame search on Ray, 1 worker: {ray_time:.1f}s vs local {local:.1f}s (local was profiled: "
              f"cProfile slows it); Ray overhead ~{max(0.0, ray_time - local) / max(1, ray_search.trained) * 1e3:.0f} ms "
              "per trained candidate, actor start-up included")


if __name__ == "__main__":
    main()
