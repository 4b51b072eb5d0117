"""Evaluation throughput with Ray: 1 worker vs 2 workers on the default stage (stage 1).

The same fixed set of candidates (mutants of AdamW, seeded) is evaluated by RayExecutor actors in
batches; actors are warmed up first (task data built, baselines read), so the figure is the
steady state of a search. Prints evaluations per second and the ratio.

    .venv/bin/python benchmarks/bench_workers.py [--candidates 48] [--batch 4]
"""
from __future__ import annotations

import argparse
import os
import random
import time

import dsl
import seeds
from evolve.candidate import Job
from evolve.launch import baseline_cache_path
from evolve.mutate import mutate
from evolve.ray_executor import RayExecutor, init_ray
from evolve.worker import TaskEvaluator


def candidates(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    parent, out, seen = seeds.load("adamw"), [], set()
    while len(out) < n:
        child, _ = mutate(parent, rng)
        if child.hash not in seen:
            seen.add(child.hash)
            out.append(dsl.to_text(child))
        if rng.random() < 0.3:
            parent = child
    return out


def throughput(workers: int, texts: list[str], batch: int, evaluator: TaskEvaluator) -> float:
    ex = RayExecutor(evaluator, workers)
    try:
        warm = [Job(-1 - i, texts[i], ()) for i in range(workers)]
        for j in warm:
            ex.submit([j])
        got = 0
        while got < len(warm):
            got += len(ex.wait(timeout=5))
        jobs = [Job(i, t, ()) for i, t in enumerate(texts)]
        t0 = time.perf_counter()
        pending = [jobs[i:i + batch] for i in range(0, len(jobs), batch)]
        done = 0
        while done < len(jobs):
            while pending and ex.capacity() > 0:
                ex.submit(pending.pop(0))
            done += len(ex.wait(timeout=1.0))
        return len(jobs) / (time.perf_counter() - t0)
    finally:
        ex.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=48)
    ap.add_argument("--batch", type=int, default=4)
    a = ap.parse_args()
    from tasks import STAGES, EvalConfig

    stage = tuple(STAGES["stage1"])
    cfg = EvalConfig()
    # tune baselines once, before the clock starts; the workers get them as values
    bases = tuple(cfg.baseline(cfg.task(name), cache_path=baseline_cache_path()) for name in stage)
    evaluator = TaskEvaluator((stage,), device="cpu", baselines=bases)
    texts = candidates(a.candidates)
    init_ray(num_cpus=os.cpu_count())
    print(f"# Ray evaluation throughput, stage1 {stage}, {a.candidates} candidates, batches of {a.batch}, "
          f"{os.cpu_count()} CPUs")
    r1 = throughput(1, texts, a.batch, evaluator)
    r2 = throughput(2, texts, a.batch, evaluator)
    print(f"1 worker : {r1:.2f} evals/s")
    print(f"2 workers: {r2:.2f} evals/s")
    print(f"ratio    : {r2 / r1:.2f}x")


if __name__ == "__main__":
    main()
