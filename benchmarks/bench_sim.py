"""The real search loop on a simulated cluster: are W workers kept busy, and do islands help?

`evolve.simulate.SimulatedExecutor`: W virtual workers, each evaluation lognormal around 1 s
(sigma 0.5, seeded); the driver's measured compute time (its CPU time) is charged to the virtual
clock.
Fitness: cosine similarity of a program's updates with Lion's on fixed inputs (AdamW, the
seed, scores 0.69; 1.0 is the optimum). "busy" is over the whole run; "busy while proposing"
leaves out the final drain (the search has stopped proposing and the last, longest evaluations
finish while the other workers idle), which depends on the run's length, not on the driver. For each W, one island vs the automatic layout
(``islands = ceil(W / 16)``, at least 4), the same number of candidates (``--per-worker`` x W).

    PYTHONPATH=$PWD python benchmarks/bench_sim.py [--workers 8,64,512] [--per-worker 40]
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time

from evolve.config import SearchConfig
from evolve.search import Search
from evolve.simulate import SimulatedExecutor, target_fitness


def best_at(history: list, evals: int) -> float:
    """Best score reached by ``evals`` candidates (history: (evaluations, best) at each change)."""
    out = float("nan")
    for n, b in history:
        if n <= evals:
            out = b
    return out


def run(workers: int, islands: int, evals: int, target: str, seed: int, out: str) -> dict:
    ex = SimulatedExecutor(workers, target_fitness(target), seconds=1.0, sigma=0.5, seed=seed)
    cfg = SearchConfig(max_evals=evals, batch_size=1, islands=islands, out=out, validate=False, test_top=0,
                       progress=False, stages=(("sim",),), seed=seed, restart_after=0)
    t0 = time.perf_counter()
    search = Search.start(cfg, ex, overwrite=True)
    res = search.run()
    real = time.perf_counter() - t0
    s = res.stats
    return {"W": workers, "islands": s["islands"], "population": s["population"], "evals": s["evaluations"],
            "trained": s["trained"], "virtual": ex.now, "busy": ex.busy_fraction(),
            "busy_proposing": ex.busy_fraction(until=ex.last_submit),
            "per_s": s["evals_per_second"], "driver_ms": 1e3 * ex.driver_seconds / max(1, s["evaluations"]),
            "real": real, "best": [best_at(search.history, int(evals * f)) for f in (0.25, 0.5, 1.0)],
            "migrations": s["migrations"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", default="8,64,512")
    ap.add_argument("--per-worker", type=int, default=40, help="candidates per worker in each run")
    ap.add_argument("--target", default="lion", help="'lion' or 'signsgd'")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print("| W | islands | population/island | candidates | trained | virtual time | busy | busy while proposing "
          "| candidates/s (virtual) | driver CPU ms/candidate | best @25% | @50% | @100% | migrations |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for w in (int(x) for x in a.workers.split(",")):
            for islands in (1, max(4, math.ceil(w / 16))):
                r = run(w, islands, a.per_worker * w, a.target, a.seed, f"{tmp}/{w}-{islands}")
                b = r["best"]
                print(f"| {r['W']} | {r['islands']} | {r['population']} | {r['evals']:,} | {r['trained']:,} "
                      f"| {r['virtual']:.1f} s | {100 * r['busy']:.1f}% | {100 * r['busy_proposing']:.1f}% | {r['per_s']:.1f} | {r['driver_ms']:.2f} "
                      f"| {b[0]:.3f} | {b[1]:.3f} | {b[2]:.3f} | {r['migrations']} |", flush=True)


if __name__ == "__main__":
    main()
