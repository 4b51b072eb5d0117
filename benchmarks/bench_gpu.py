"""Evaluations per second with K programs side by side on one device (a GPU by default).

    python benchmarks/bench_gpu.py [--device cuda] [--programs 1,4,16,64] [--sizes 1,4]
                                   [--dtypes float32,bfloat16] [--stage stage1] [--steps N] [--procs 1,2,4]
    python benchmarks/bench_gpu.py --device cpu --programs 1,4 --sizes 1 --steps 20   # smoke check

An evaluation is one program on every task of the stage at 3 lr multipliers (K programs =
3K copies trained side by side, ``max_batch = 3K``), as a search worker runs its batch. The
programs are the known methods (`seeds`), cycled, so every one of them trains (a search's
mutants often fail early, which would make K=1 vs K=64 compare different work). For each task
size and dtype: evaluations/s at each K and the ratio to K=1 (what batching buys on this
device). The tuned AdamW baselines are computed first, on the same device and dtype, and not
timed; a warm-up pass (few steps) precedes the clock.

``--procs 1,2,4``: that many processes on the device at once, each evaluating its own K
programs (what ``GPU_WORKERS_PER_GPU`` actors sharing a GPU do): the total evaluations/s and
its ratio to one process, at the largest K. A cell that fails (an op missing for a dtype on
this device, out of memory) prints its error instead of a figure.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import seeds  # noqa: E402
import tasks  # noqa: E402


def programs(k: int) -> list:
    names = seeds.names()
    return [seeds.load(names[i % len(names)]) for i in range(k)]


def config(device: str, size: int, dtype: str, steps, k: int) -> tasks.EvalConfig:
    return tasks.EvalConfig(device=device, size=size, dtype=dtype, steps=steps,
                            max_batch=k * len(tasks.DEFAULT_LR_MULTIPLIERS))


def baselines(names, device: str, size: int, dtype: str, steps) -> dict:
    cfg = config(device, size, dtype, steps, 1)
    bs = [cfg.baseline(cfg.task(n)) for n in names]
    return {b.key: b for b in bs}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rate(names, device: str, size: int, dtype: str, steps, k: int, known: dict, repeat: int = 1) -> float:
    """Evaluations per second of ``k`` programs side by side (best of ``repeat``)."""
    progs = programs(k)
    tasks.evaluate(progs, names, config(device, size, dtype, 3, k), baselines=None)  # warm-up, untimed
    best = float("inf")
    for _ in range(repeat):
        _sync(device)
        t = time.perf_counter()
        tasks.evaluate(progs, names, config(device, size, dtype, steps, k), baselines=known)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return k / best


def _proc(args) -> float:
    names, device, size, dtype, steps, k, known, threads, barrier = args
    torch.set_num_threads(threads)
    progs = programs(k)
    tasks.evaluate(progs, names, config(device, size, dtype, 3, k))  # warm-up, untimed
    barrier.wait()
    t = time.perf_counter()
    tasks.evaluate(progs, names, config(device, size, dtype, steps, k), baselines=known)
    _sync(device)
    return k / (time.perf_counter() - t)


def concurrent(n: int, names, device, size, dtype, steps, k, known, threads) -> float:
    """Total evaluations/s of ``n`` processes evaluating ``k`` programs each, started together."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as m:
        barrier = m.Barrier(n)
        with ctx.Pool(n) as pool:
            rates = pool.map(_proc, [(names, device, size, dtype, steps, k, known, threads, barrier)] * n)
    return sum(rates)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--programs", default="1,4,16,64", help="K values, comma-separated")
    ap.add_argument("--sizes", default="1,4", help="task size factors")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--stage", default="stage1")
    ap.add_argument("--steps", type=int, default=None, help="steps per task (default: each task's budget)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    ap.add_argument("--procs", default="1", help="processes sharing the device, e.g. 1,2,4 (at the largest K)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    ks = [int(x) for x in a.programs.split(",")]
    procs = [int(x) for x in a.procs.split(",")]
    names = tasks.resolve(a.stage)
    dev = a.device
    if dev.startswith("cuda"):
        if not torch.cuda.is_available():
            ap.error("--device cuda but torch sees no GPU (use --device cpu for a smoke check)")
        dev_name = torch.cuda.get_device_name()
    else:
        dev_name = f"{dev}, {a.threads} thread(s)"
    print(f"# {a.stage} ({', '.join(names)}), {len(tasks.DEFAULT_LR_MULTIPLIERS)} lr multipliers per program, "
          f"steps {a.steps or 'per task'}; device {dev_name}; torch {torch.__version__}")
    print(f"{'size':>4s} {'dtype':>9s} " + "".join(f"{f'K={k} ev/s':>12s}" for k in ks)
          + "".join(f"{f'K={k}/K=1':>10s}" for k in ks[1:]) + f"{'peak MiB':>10s}")
    for size in (int(x) for x in a.sizes.split(",")):
        for dtype in a.dtypes.split(","):
            row = f"{size:4d} {dtype:>9s} "
            try:
                if dev.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                known = baselines(names, dev, size, dtype, a.steps)
                rates = [rate(names, dev, size, dtype, a.steps, k, known, a.repeat) for k in ks]
            except Exception as e:  # noqa: BLE001  (a dtype or size this device cannot run: say so)
                print(row + f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}", flush=True)
                continue
            peak = f"{torch.cuda.max_memory_allocated() / 2 ** 20:10.0f}" if dev.startswith("cuda") else f"{'-':>10s}"
            print(row + "".join(f"{r:12.3f}" for r in rates) + "".join(f"{r / rates[0]:9.2f}x" for r in rates[1:])
                  + peak, flush=True)
            if procs != [1]:
                k = ks[-1]
                totals = {n: concurrent(n, names, dev, size, dtype, a.steps, k, known, a.threads) for n in procs}
                base = totals[procs[0]]
                print(f"{'':15s}processes sharing the device at K={k}: " + ", ".join(
                    f"{n}: {t:.3f} ev/s ({t / base:.2f}x)" for n, t in totals.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
