"""Evaluations per second: one copy at a time vs K copies side by side, on a task stage.

    python benchmarks/bench_eval.py [--stage stage1] [--programs 4,8] [--threads 1] [--device cpu]

For each count P of ``--programs`` (default 4, the search's batch of 4 candidates): P
programs x 3 lr multipliers (K = 3P copies per task) with ``max_batch=1`` (each copy trained
alone) and with ``max_batch=K`` (all side by side). An evaluation is one program on the whole
stage. The tuned AdamW baselines are computed first and not timed. Both paths must give
identical results; the script checks that too.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import dsl  # noqa: E402
import tasks  # noqa: E402

PROGRAMS = [
    tasks.ADAMW_TEXT,
    "def lion(w, g, lr, m=0.0):\n    u = sign(interp(g, m, 0.9))\n    m = interp(g, m, 0.99)\n    return lr * u\n",
    "def momentum(g, lr, m=0.0):\n    m = interp(g, m, 0.9)\n    return lr * m / (rms(m) + 1e-8)\n",
    "def rmsprop(g, lr, v=0.0):\n    v = interp(square(g), v, 0.99)\n    return lr * g / (sqrt(v) + 1e-8)\n",
    "def signum(g, lr, m=0.0):\n    m = interp(g, m, 0.9)\n    return lr * sign(m)\n",
    "def adagrad(g, lr, v=0.0):\n    v = v + square(g)\n    return lr * g / (sqrt(v) + 1e-10)\n",
    "def nesterov(g, lr, m=0.0):\n    m = 0.9 * m + g\n    return lr * (g + 0.9 * m)\n",
    "def clipped(g, lr, m=0.0):\n    m = interp(clip(g, -1, 1), m, 0.9)\n    return lr * m\n",
]


def _strip(d):
    if isinstance(d, dict):
        return {k: _strip(v) for k, v in d.items() if k != "seconds"}
    if isinstance(d, list):
        return [_strip(v) for v in d]
    return d


def compare(programs: list, names: tuple, device: str, repeat: int) -> bool:
    """One at a time vs all side by side for these programs; prints a table, returns agreement."""
    k = len(programs) * len(tasks.DEFAULT_LR_MULTIPLIERS)
    configs = {"one at a time": tasks.EvalConfig(max_batch=1, device=device),
               f"batched (K={k})": tasks.EvalConfig(max_batch=k, device=device)}
    per_task: dict[str, dict[str, float]] = {label: {} for label in configs}
    results = {}
    for label, cfg in configs.items():
        for n in names:
            best = float("inf")
            for _ in range(repeat):
                t = time.perf_counter()
                res = tasks.evaluate(programs, [n], cfg)
                best = min(best, time.perf_counter() - t)
            per_task[label][n] = best
            results[(label, n)] = [_strip(r.to_dict()) for r in res]
    labels = list(configs)
    same = all(results[(labels[0], n)] == results[(labels[1], n)] for n in names)

    print(f"\n{len(programs)} programs x {len(tasks.DEFAULT_LR_MULTIPLIERS)} lr multipliers")
    print(f"{'task':20s}" + "".join(f"{x:>18s}" for x in labels) + f"{'ratio':>8s}")
    for n in names:
        a, b = per_task[labels[0]][n], per_task[labels[1]][n]
        print(f"{n:20s}{a:17.2f}s{b:17.2f}s{a / b:7.2f}x")
    ta, tb = (sum(per_task[x].values()) for x in labels)
    print(f"{'stage total':20s}{ta:17.2f}s{tb:17.2f}s{ta / tb:7.2f}x")
    print("evaluations/s (one program on the whole stage, 3 lrs): "
          + ", ".join(f"{x} {len(programs) / tot:.3f}" for x, tot in zip(labels, (ta, tb)))
          + f"; speed-up {ta / tb:.2f}x")
    print(f"results identical on both paths: {same}")
    return same


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", default="stage1")
    ap.add_argument("--programs", default="4", help="comma-separated program counts (at most %d)" % len(PROGRAMS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    counts = [int(x) for x in args.programs.split(",")]
    if max(counts) > len(PROGRAMS):
        ap.error(f"--programs: at most {len(PROGRAMS)}")
    programs = [dsl.parse(t) for t in PROGRAMS]
    names = tasks.resolve(args.stage)
    print(f"stage {args.stage}: {', '.join(names)}; device {args.device}, {args.threads} thread(s)")
    t0 = time.perf_counter()
    cfg0 = tasks.EvalConfig(device=args.device)
    for n in names:
        cfg0.baseline(cfg0.task(n))
    print(f"baselines tuned in {time.perf_counter() - t0:.1f}s (not timed below)")
    for n in names:  # warm up both paths (allocator, vmap tracing caches)
        for mb in (1, 12):
            tasks.evaluate(programs[:1], [n], tasks.EvalConfig(max_batch=mb, steps=3, device=args.device))
    same = [compare(programs[:c], names, args.device, args.repeat) for c in counts]
    return 0 if all(same) else 1


if __name__ == "__main__":
    raise SystemExit(main())
