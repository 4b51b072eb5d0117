"""How many candidates per second one driver sustains when evaluation costs nothing.

The search runs on an instant evaluator (a deterministic pseudo-fitness from the program's
hash: the driver's own work is all that is timed: propose, mutate, fingerprint, cache, hall of
fame, log, checkpoints). Prints candidates per second over each span (1k, 10k, 100k
candidates; per wall second and per CPU second of this process, the figure that other load
on a shared machine does not change), the checkpoint's size and the driver's peak memory, with and without the hall of
fame's sympy equivalence check, for population 32 and 1000.

    PYTHONPATH=$PWD python benchmarks/bench_driver.py [--sizes 1000,10000,100000] [--populations 32,1000]
    PYTHONPATH=$PWD python benchmarks/bench_driver.py --profile 2000    # cProfile of one run
"""
from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import pstats
import resource
import tempfile
import time

from evolve.candidate import Fitness, Job
from evolve.config import SearchConfig
from evolve.executor import LocalExecutor
from evolve.search import Search


def instant(jobs: list[Job]) -> list[Fitness]:
    """Pseudo-fitness in [-1, 1) from the program text's hash: deterministic, free."""
    out = []
    for j in jobs:
        s = int(hashlib.blake2b(j.text.encode(), digest_size=4).hexdigest(), 16) / 2 ** 31 - 1.0
        out.append(Fitness(s, (s,), {"pseudo": s}))
    return out


def same_rule():
    from evolve.launch import _same_rule

    return _same_rule()


def run(n: int, population: int, equivalence: bool, out: str, checkpoints: tuple[int, ...]) -> list[dict]:
    """One search of ``n`` candidates; figures at each of ``checkpoints`` candidates."""
    rows = []
    cfg = SearchConfig(population=population, max_evals=checkpoints[0], out=out, validate=False, test_top=0,
                       progress=False, stages=(("pseudo",),), seed=0)
    search = Search.start(cfg, LocalExecutor(instant), overwrite=True,
                          same_rule=same_rule() if equivalence else None)
    done_before, t_before = 0, 0.0
    for stop in checkpoints:
        search.config = search.config.replace(max_evals=stop)
        t0, c0 = time.perf_counter(), time.process_time()
        search.run()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        rows.append({"candidates": stop, "per_second": (stop - done_before) / dt,
                     "cpu_per_second": (stop - done_before) / cpu,
                     "checkpoint_kb": os.path.getsize(search.run_dir.checkpoint_path) / 1024,
                     "log_mb": os.path.getsize(search.run_dir.log_path) / 2 ** 20,
                     "cache": len(search.cache.by_hash), "trained": search.trained,
                     "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                     "hof_checks": getattr(search.hof, "checks", -1)})
        done_before, t_before = stop, t_before + dt
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--populations", default="32,1000")
    ap.add_argument("--equivalence", default="on,off", help="'on', 'off' or 'on,off'")
    ap.add_argument("--profile", type=int, default=0, help="profile one run of this many candidates instead")
    a = ap.parse_args()
    sizes = tuple(int(x) for x in a.sizes.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        if a.profile:
            prof = cProfile.Profile()
            prof.runcall(run, a.profile, 32, True, f"{tmp}/p", (a.profile,))
            pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
            return
        print("| population | sympy equivalence | candidates | candidates/s (this span) | per CPU second | "
              "checkpoint | log.jsonl | cache entries | trained | equivalence checks | peak RSS |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for pop in (int(x) for x in a.populations.split(",")):
            for eq in a.equivalence.split(","):
                for r in run(sizes[-1], pop, eq == "on", f"{tmp}/{pop}{eq}", sizes):
                    print(f"| {pop} | {eq} | {r['candidates']:,} | {r['per_second']:,.0f} | {r['cpu_per_second']:,.0f} | "
                          f"{r['checkpoint_kb']:,.0f} KB | {r['log_mb']:.1f} MB | {r['cache']:,} | "
                          f"{r['trained']:,} | {r['hof_checks']:,} | {r['rss_mb']:,.0f} MB |", flush=True)


if __name__ == "__main__":
    main()
