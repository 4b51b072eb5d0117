"""Which aggregate of per-task scores should rank candidates? Evidence from validation tasks.

A search ranks candidates by an aggregate of their per-task scores ``log(L_AdamW / L_program)``
on the search tasks; what we want is the ranking that holds on tasks the search never saw. So:
score a fixed, diverse set of programs (every known method plus seeded mutants of AdamW and
Lion, as a search proposes them) on the last search stage and on the validation tasks, and
for each aggregate (`tasks.results.AGGREGATES`) measure how well the aggregate of the search
scores predicts the validation mean: Spearman's rank correlation over the competitive programs
(search mean above ``--floor``: failures are easy to rank under any aggregate) and the
validation mean of the top ``--top`` programs each aggregate would pick. Test tasks are never
used: the default is chosen on validation only.

    PYTHONPATH=$PWD python benchmarks/aggregate_evidence.py [--mutants 40] [--seed 0] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import torch
from scipy.stats import spearmanr

import dsl
import seeds as seed_library
import tasks
from evolve.mutate import mutate
from tasks.results import AGGREGATES, aggregate


def programs(n_mutants: int, seed: int) -> list[tuple[str, dsl.Program]]:
    """Every seed, then mutants of AdamW and Lion (chains of 1-3 mutations), distinct by hash."""
    out = [(name, p) for name, p in seed_library.load_all().items()]
    seen, known = {p.hash for _, p in out}, len(out)
    rng = random.Random(seed)
    parents = [seed_library.load("adamw"), seed_library.load("lion")]
    while len(out) < known + n_mutants:
        p = rng.choice(parents)
        for _ in range(rng.randint(1, 3)):
            p, _kind = mutate(p, rng)
        if p.hash not in seen:
            seen.add(p.hash)
            out.append((f"mutant{len(out) - known}", p))
    return out


def bootstrap(agg: dict, vmean: dict, names: list[str], seed: int, n: int = 1000) -> tuple[float, float]:
    """90% interval of Spearman's rho over programs resampled with replacement."""
    rng = np.random.default_rng(seed)
    x, y = np.array([agg[k] for k in names]), np.array([vmean[k] for k in names])
    rhos = [spearmanr(x[i], y[i]).statistic for i in (rng.integers(0, len(x), len(x)) for _ in range(n))]
    return float(np.nanpercentile(rhos, 5)), float(np.nanpercentile(rhos, 95))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--floor", type=float, default=-1.0, help="competitive: search mean above this")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--search", default=None, help="comma list (default: the suite's last stage)")
    ap.add_argument("--validation", default=None, help="comma list (default: the suite's validation tasks)")
    ap.add_argument("--out", default=None, help="write per-program scores as JSON")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    progs = programs(a.mutants, a.seed)
    from tasks.stages import SUITE

    search = tuple(a.search.split(",")) if a.search else tuple(SUITE.stages[-1])
    valid = tuple(a.validation.split(",")) if a.validation else tuple(SUITE.validation)
    print(f"{len(progs)} programs; search tasks {', '.join(search)}; validation tasks {', '.join(valid)}")
    t0 = time.perf_counter()
    scores: dict[str, dict[str, float]] = {name: {} for name, _ in progs}
    for task in search + valid:
        t1 = time.perf_counter()
        for (name, _), r in zip(progs, tasks.evaluate([p for _, p in progs], [task])):
            scores[name][task] = r.results[0].score
        print(f"  {task:28s} {time.perf_counter() - t1:6.1f} s", flush=True)
    print(f"evaluated in {time.perf_counter() - t0:.0f} s")
    names = [n for n, _ in progs]
    smean = {n: float(np.mean([scores[n][t] for t in search])) for n in names}
    vmean = {n: float(np.mean([scores[n][t] for t in valid])) for n in names}
    comp = [n for n in names if smean[n] > a.floor]
    print(f"\n{len(comp)} competitive programs (search mean > {a.floor:g}) of {len(names)}\n")
    print(f"| aggregate | Spearman vs validation mean (competitive) | all programs | "
          f"validation mean of its top {a.top} | its top {a.top} |")
    print("|---|---:|---:|---:|---|")
    summary = {}
    for how in AGGREGATES:
        agg = {n: aggregate([scores[n][t] for t in search], how) for n in names}
        rho_c = spearmanr([agg[n] for n in comp], [vmean[n] for n in comp]).statistic
        lo, hi = bootstrap(agg, vmean, comp, a.seed)
        rho_a = spearmanr([agg[n] for n in names], [vmean[n] for n in names]).statistic
        top = sorted(comp, key=lambda n: -agg[n])[:a.top]
        vtop = float(np.mean([vmean[n] for n in top]))
        summary[how] = {"spearman_competitive": rho_c, "spearman_all": rho_a, "top": top, "validation_top": vtop}
        print(f"| {how} | {rho_c:+.3f} [{lo:+.2f}, {hi:+.2f}] | {rho_a:+.3f} | {vtop:+.3f} | {', '.join(top)} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"search": search, "validation": valid, "scores": scores,
                       "programs": {n: dsl.to_text(p) for n, p in progs}, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
