"""Stage-1 evaluations per second per core: the reference trainer vs the fast one, in one run.

    python benchmarks/bench_eval.py [--stage stage1] [--programs 4] [--repeat 3] [--mutants 24]
                                    [--breakdown] [--compare paths|batching|all] [--threads 1]

``paths`` (default; issue 13): P fixed programs (default 4, the search's batch) x 3 lr
multipliers on every task of the stage with three trainers, taking turns task by task and
round by round: the reference batched trainer (``EvalConfig(fast=False)``), the fast one
(`tasks.train_fast`, the default: bit-identical results, checked here) and the fast one with
the forward/backward and validation passes compiled (``compile=True``: results within float
rounding, compared here). Times are CPU seconds of the (single-threaded) process, medians over
``--repeat`` rounds, so figures are per core and load from other processes on a shared machine
moves them less than wall time. Compiles (first calls) happen in a warm-up and are reported
apart, with the number of evaluations after which they pay for themselves.
``--mutants N``: also N seeded mutants of AdamW in batches of P (many stop early, as in a
search, so copy counts change and new compiled sizes appear; their compiles count there).
``--breakdown``: where one stage evaluation's time goes on each path.
``batching``: the first round's comparison, one copy at a time vs all copies side by side.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import dsl  # noqa: E402
import tasks  # noqa: E402
from tasks import compiled_model  # noqa: E402

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
CLOCK = time.process_time


def _strip(d):
    if isinstance(d, dict):
        return {k: _strip(v) for k, v in d.items() if k != "seconds"}
    if isinstance(d, list):
        return [_strip(v) for v in d]
    return d


def _timed(programs, names, cfg) -> tuple[float, list]:
    t = CLOCK()
    res = tasks.evaluate(programs, list(names), cfg)
    return CLOCK() - t, res


def _agreement(a: list, b: list) -> tuple[bool, float, str]:
    """(same statuses everywhere, largest relative difference of a final loss, where) of two
    evaluations."""
    same, worst, where = True, 0.0, ""
    for fa, fb in zip(a, b):
        for ra, rb in zip(fa.results, fb.results):
            same &= ra.status == rb.status and [g[1] for g in ra.grid] == [g[1] for g in rb.grid]
            for (m, sa, la), (_, sb, lb) in zip(ra.grid, rb.grid):
                d = abs(la - lb) / max(abs(la), 1e-30)
                if sa == sb == "ok" and d > worst:
                    worst, where = d, f"{fa.name} on {ra.task} at {m:.3g} x lr"
    return same, worst, where


def compare_paths(programs: list, names: tuple, device: str, repeat: int) -> bool:
    """Reference vs fast vs compiled on fixed programs (module doc); prints the table."""
    paths = {"reference": tasks.EvalConfig(fast=False, device=device), "fast": tasks.EvalConfig(device=device),
             "compiled": tasks.EvalConfig(compile=True, device=device)}
    p = len(programs)
    before, w0 = compiled_model.stats(), time.perf_counter()
    results = {(label, n): _timed(programs, [n], cfg)[1] for n in names for label, cfg in paths.items()}
    comp = compiled_model.stats()
    compiles, compile_s = comp.compiles - before.compiles, comp.seconds - before.seconds
    print(f"warm-up {time.perf_counter() - w0:.1f}s wall, of which {compiles} compiles {compile_s:.1f}s "
          f"({comp.failures - before.failures} failed)")
    times = {(label, n): [] for label in paths for n in names}
    for _ in range(repeat):
        for n in names:
            for label, cfg in paths.items():
                sec, res = _timed(programs, [n], cfg)
                times[(label, n)].append(sec)
                results[(label, n)] = res
    med = {k: statistics.median(v) for k, v in times.items()}
    identical = all(_strip([r.to_dict() for r in results[("reference", n)]])
                    == _strip([r.to_dict() for r in results[("fast", n)]]) for n in names)
    agree = max((_agreement(results[("fast", n)], results[("compiled", n)]) for n in names), key=lambda x: x[1])
    same_status = all(_agreement(results[("fast", n)], results[("compiled", n)])[0] for n in names)

    k = p * len(tasks.DEFAULT_LR_MULTIPLIERS)
    print(f"\n{p} programs x {len(tasks.DEFAULT_LR_MULTIPLIERS)} lr multipliers (K={k}), CPU seconds, "
          f"median of {repeat}")
    print(f"{'task':14s}{'reference':>11s}{'fast':>9s}{'ratio':>8s}{'compiled':>10s}{'ratio':>8s}")
    for n in names:
        r, f, c = (med[(x, n)] for x in paths)
        print(f"{n:14s}{r:10.3f}s{f:8.3f}s{r / f:7.2f}x{c:9.3f}s{r / c:7.2f}x")
    tot = {x: sum(med[(x, n)] for n in names) for x in paths}
    r, f, c = tot.values()
    print(f"{'stage total':14s}{r:10.3f}s{f:8.3f}s{r / f:7.2f}x{c:9.3f}s{r / c:7.2f}x")
    print("stage evaluations/s per core: " + ", ".join(f"{x} {p / tot[x]:.2f}" for x in paths)
          + f"; fast/reference {r / f:.2f}x, compiled/reference {r / c:.2f}x")
    print(f"results identical, reference vs fast: {identical}")
    print(f"compiled vs fast: same statuses {same_status}, largest relative difference of a final loss "
          f"{agree[1]:.2e} ({agree[2]})")
    saved = (f - c) / p
    if saved > 0 and compile_s > 0:
        print(f"compiles ({compile_s:.1f}s for {compiles}) pay for themselves after {compile_s / saved:.0f} "
              f"evaluations ({saved * 1e3:.0f} ms saved per evaluation against fast)")
    return identical


def compare_mutants(n: int, batch: int, names: tuple, device: str) -> bool:
    """``n`` mutants of AdamW in batches of ``batch`` on each path (module doc)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_workers import candidates

    progs = [dsl.parse(t) for t in candidates(n)]
    paths = {"reference": tasks.EvalConfig(fast=False, device=device), "fast": tasks.EvalConfig(device=device),
             "compiled": tasks.EvalConfig(compile=True, device=device)}
    out, res = {}, {}
    for label, cfg in paths.items():
        before, w0 = compiled_model.stats(), time.perf_counter()
        sec, r = 0.0, []
        for i in range(0, n, batch):
            s, x = _timed(progs[i:i + batch], names, cfg)
            sec, r = sec + s, r + x
        st = compiled_model.stats()
        out[label] = (sec, time.perf_counter() - w0, st.compiles - before.compiles, st.seconds - before.seconds,
                      st.cpu_seconds - before.cpu_seconds)
        res[label] = r
    statuses = [t.status for f in res["fast"] for t in f.results]
    print(f"\n{n} mutants of AdamW in batches of {batch} ({statuses.count('ok')} of {len(statuses)} task runs ok)")
    r = out["reference"][0]
    for label, (sec, wall, nc, cs, ccpu) in out.items():
        print(f"{label:10s} {sec:7.2f} CPU s ({wall:6.1f}s wall) {n / sec:6.2f} evaluations/s per core "
              f"{r / sec:5.2f}x")
        if nc:
            s = sec - ccpu
            print(f"{'':10s} of which {nc} compiles ({ccpu:.1f} CPU s, {cs:.1f}s wall); without them "
                  f"{s:.2f} CPU s, {n / s:.2f} evaluations/s per core, {r / s:.2f}x")
    identical = _strip([x.to_dict() for x in res["reference"]]) == _strip([x.to_dict() for x in res["fast"]])
    same, worst, where = _agreement(res["fast"], res["compiled"])
    print(f"results identical, reference vs fast: {identical}; compiled vs fast: same statuses {same}, "
          f"largest relative difference of a final loss {worst:.2e} ({where})")
    return identical


def breakdown(programs: list, names: tuple, device: str) -> None:
    """CPU seconds of one stage evaluation by phase, on each path (instrumented trainers)."""
    from dsl.runner import BatchedRunner
    from tasks import train, train_fast

    acc: dict[str, float] = {}

    def timed(f, key):
        def g(*a, **k):
            t = CLOCK()
            try:
                return f(*a, **k)
            finally:
                acc[key] = acc.get(key, 0.0) + CLOCK() - t
        return g

    patches = []

    def patch(obj, attr, key):
        patches.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, timed(getattr(obj, attr), key))

    def setup(orig):
        def s(self):
            orig(self)
            self.vloss = timed(self.vloss, "forward")
            if not isinstance(self, train_fast.FastTrainer):
                self.vval = timed(self.vval, "validation")
        return s

    patches.append((train._Trainer, "setup", train._Trainer.setup))
    patches.append((train_fast.FastTrainer, "setup", train_fast.FastTrainer.setup))
    train._Trainer.setup = setup(train._Trainer.setup)
    train_fast.FastTrainer.setup = setup(train_fast.FastTrainer.setup)
    patch(torch.autograd, "grad", "backward")
    for obj, attr in ((train, "_apply"), (train, "_apply_group"), (BatchedRunner, "run_one"),
                      (BatchedRunner, "run_group"), (train_fast, "_write")):
        patch(obj, attr, "programs")
    patch(train_fast.FastTrainer, "val_losses", "validation")
    patch(compiled_model.CompiledModel, "__call__", "forward+backward (compiled)")
    try:
        cols = ["forward", "backward", "forward+backward (compiled)", "programs", "validation", "rest"]
        print(f"\nwhere a stage evaluation's CPU time goes ({len(programs)} programs x 3 lrs, after a warm-up)")
        print(f"{'path':10s}{'total':>8s}" + "".join(f"{c:>30s}" for c in cols[:-1]) + f"{'rest':>16s}")
        for label, cfg in (("reference", tasks.EvalConfig(fast=False, device=device)),
                           ("fast", tasks.EvalConfig(device=device)),
                           ("compiled", tasks.EvalConfig(compile=True, device=device))):
            tasks.evaluate(programs, list(names), cfg)
            acc.clear()
            total, _ = _timed(programs, names, cfg)
            acc["rest"] = total - sum(acc.values())
            print(f"{label:10s}{total:7.3f}s" + "".join(
                f"{acc.get(c, 0.0):22.3f}s ({acc.get(c, 0.0) / total:4.0%})" for c in cols[:-1])
                + f"{acc['rest']:8.3f}s ({acc['rest'] / total:4.0%})")
    finally:
        for obj, attr, orig in reversed(patches):
            setattr(obj, attr, orig)


def compare_batching(programs: list, names: tuple, device: str, repeat: int) -> bool:
    """One at a time vs all side by side for these programs (fast trainer); prints a table."""
    k = len(programs) * len(tasks.DEFAULT_LR_MULTIPLIERS)
    configs = {"one at a time": tasks.EvalConfig(max_batch=1, device=device),
               f"batched (K={k})": tasks.EvalConfig(max_batch=k, device=device)}
    per_task: dict[str, dict[str, float]] = {label: {} for label in configs}
    results = {}
    for label, cfg in configs.items():
        for n in names:
            best = float("inf")
            for _ in range(repeat):
                sec, res = _timed(programs, [n], cfg)
                best = min(best, sec)
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
    ap.add_argument("--compare", choices=("paths", "batching", "all"), default="paths")
    ap.add_argument("--mutants", type=int, default=0, help="also this many AdamW mutants (paths)")
    ap.add_argument("--breakdown", action="store_true", help="time by phase on each path")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    counts = [int(x) for x in args.programs.split(",")]
    if max(counts) > len(PROGRAMS):
        ap.error(f"--programs: at most {len(PROGRAMS)}")
    programs = [dsl.parse(t) for t in PROGRAMS]
    names = tasks.resolve(args.stage)
    print(f"stage {args.stage}: {', '.join(names)}; device {args.device}, {args.threads} thread(s); "
          f"torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    t0 = time.perf_counter()
    cfg0 = tasks.EvalConfig(device=args.device)
    for n in names:
        cfg0.baseline(cfg0.task(n))
    print(f"baselines tuned in {time.perf_counter() - t0:.1f}s (not timed below)")
    for n in names:  # warm up (allocator, vmap tracing caches)
        for fast in (False, True):
            tasks.evaluate(programs[:1], [n], replace(cfg0, steps=3, fast=fast))
    ok = []
    if args.compare in ("paths", "all"):
        ok += [compare_paths(programs[:c], names, args.device, args.repeat) for c in counts]
        if args.mutants:
            ok.append(compare_mutants(args.mutants, counts[0], names, args.device))
    if args.compare in ("batching", "all"):
        ok += [compare_batching(programs[:c], names, args.device, args.repeat) for c in counts]
    if args.breakdown:
        breakdown(programs[:counts[0]], names, args.device)
    return 0 if all(ok) else 1


if __name__ == "__main__":
    raise SystemExit(main())
