"""Optimizer step time: our compiled AdamW and Lion programs vs torch.optim.AdamW (foreach, fused)
and lion-pytorch's Lion, on a ~10M-parameter model. Prints ms per step and ratios.

    .venv/bin/python benchmarks/bench_step.py [--device cpu|cuda] [--steps 30] [--rounds 3] [--threads 2]
    .venv/bin/python benchmarks/bench_step.py --set matrix [--width 512]
    .venv/bin/python benchmarks/bench_step.py --compile --threads 1

``--compile``: the AdamW and Lion programs stepped by ``ProgramOptimizer(compile=True)`` (the whole
step through ``torch.compile``; compile time printed apart, not in the step times) vs
torch.optim.AdamW fused and foreach and the uncompiled programs.

``--set matrix``: the Muon and Adafactor programs vs torch.optim.Muon and torch.optim.Adafactor
on the same MLP shape at hidden width ``--width`` (Newton-Schulz costs 15 matrix products per
matrix and step: at the default width 2048 a CPU step takes seconds). Muon on the matrices only
(torch.optim.Muon takes nothing else), Adafactor on every parameter.

Each optimizer runs in a process of its own (they would otherwise share the allocator: one
that frees large tensors leaves memory that spares the next one page faults), and the
optimizers take turns, ``rounds`` times, so a change of machine load hits them all alike;
the figure is the median step time over all rounds. On a machine whose cores other
processes also use, timings with several threads mostly measure the scheduler (a parallel
region can wait a time slice for a preempted thread): compare with ``--threads 1`` there.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

import torch

import dsl
import seeds


WIDTH = 2048


def model(device: str, width: int = 0) -> torch.nn.Module:
    """An MLP of ~10.5M parameters in 8 tensors (width 2048), a common shape for optimizer benchmarks."""
    w = width or WIDTH
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(w // 2, w), torch.nn.ReLU(),
        torch.nn.Linear(w, w), torch.nn.ReLU(),
        torch.nn.Linear(w, w // 2), torch.nn.ReLU(),
        torch.nn.Linear(w // 2, w // 2)).to(device)


def _matrices(ps):
    return [p for p in ps if p.ndim == 2]


def _muon_float32(ps):
    """torch.optim.Muon with its Newton-Schulz in float32 (the dtype the program runs it in):
    separates the cost of bfloat16 vs float32 matrix products from the rest."""
    import torch.optim._muon as tm

    def ns(grad, coefficients, steps, eps):
        a, b, c = coefficients
        x = grad.float()
        tall = grad.size(0) > grad.size(1)
        x = x.T if tall else x
        x = x / x.norm().clamp(min=eps)
        for _ in range(steps):
            gram = x @ x.T
            x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
        return x.T if tall else x

    tm._zeropower_via_newtonschulz = ns
    return torch.optim.Muon(_matrices(ps), lr=1e-3)


def matrix_optimizers() -> dict:
    """``--set matrix``: Muon and Adafactor, torch's and the seed programs."""
    muon, adafactor = seeds.load("muon"), seeds.load("adafactor")
    return {
        "torch.optim.Muon": lambda ps: torch.optim.Muon(_matrices(ps), lr=1e-3),
        "torch.optim.Muon float32 NS": _muon_float32,
        "dsl Muon program": lambda ps: dsl.ProgramOptimizer(_matrices(ps), muon, lr=1e-3),
        "torch.optim.Adafactor foreach": lambda ps: torch.optim.Adafactor(ps, lr=1e-2, foreach=True),
        "torch.optim.Adafactor for-loop": lambda ps: torch.optim.Adafactor(ps, lr=1e-2, foreach=False),
        "dsl Adafactor program": lambda ps: dsl.ProgramOptimizer(ps, adafactor, lr=1e-2),
    }


def compiled_optimizers() -> dict:
    """``--compile``: the programs compiled vs torch's AdamW."""
    adamw, lion = seeds.load("adamw"), seeds.load("lion")
    return {
        "torch.optim.AdamW foreach": lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=True),
        "torch.optim.AdamW fused": lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True),
        "dsl AdamW program": lambda ps: dsl.ProgramOptimizer(ps, adamw, lr=1e-3),
        "dsl AdamW compiled": lambda ps: dsl.ProgramOptimizer(ps, adamw, lr=1e-3, compile=True),
        "dsl Lion program": lambda ps: dsl.ProgramOptimizer(ps, lion, lr=1e-4),
        "dsl Lion compiled": lambda ps: dsl.ProgramOptimizer(ps, lion, lr=1e-4, compile=True),
    }


def optimizers(which: str = "adamw") -> dict:
    """Name -> factory of every optimizer compared (those whose package is missing left out)."""
    if which == "matrix":
        return matrix_optimizers()
    if which == "compiled":
        return compiled_optimizers()
    adamw, lion = seeds.load("adamw"), seeds.load("lion")
    rows = {
        "torch.optim.AdamW foreach": lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=True),
        "torch.optim.AdamW fused": lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True),
        "torch.optim.AdamW for-loop": lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=False),
        "dsl AdamW program": lambda ps: dsl.ProgramOptimizer(ps, adamw, lr=1e-3),
    }
    try:
        from lion_pytorch import Lion

        rows["lion_pytorch.Lion"] = lambda ps: Lion(ps, lr=1e-4)
    except ImportError:
        pass
    rows["dsl Lion program"] = lambda ps: dsl.ProgramOptimizer(ps, lion, lr=1e-4)
    return rows


def time_steps(make_opt, device: str, steps: int, warmup: int = 3, width: int = 0) -> list[float]:
    """Seconds of each of ``steps`` steps after ``warmup`` untimed ones (for a compiled optimizer,
    ``time_steps.compile_s``: its compile time, spent in the first warmup step)."""
    m = model(device, width)
    for p in m.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    opt = make_opt(m.parameters())
    times = []
    for i in range(warmup + steps):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    time_steps.compile_s = getattr(opt, "compile_seconds", 0.0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per optimizer, split among the rounds")
    ap.add_argument("--rounds", type=int, default=3, help="turns taken by the optimizers")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--set", default="adamw", choices=["adamw", "matrix", "compiled"],
                    help="which optimizers (module doc)")
    ap.add_argument("--compile", action="store_true", help="same as --set compiled (module doc)")
    ap.add_argument("--width", type=int, default=0, help="hidden width of the MLP (default 2048; --set matrix: 512)")
    ap.add_argument("--only", help=argparse.SUPPRESS)  # one optimizer, in a child process
    a = ap.parse_args()
    if a.compile:
        a.set = "compiled"
    if a.set == "matrix" and not a.width:
        a.width = 512
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.only:
        try:
            times = time_steps(optimizers(a.set)[a.only], a.device, a.steps, width=a.width)
            print(json.dumps({"times": times, "compile_s": time_steps.compile_s}))
        except (RuntimeError, TypeError) as e:  # e.g. fused AdamW unsupported on this device
            print(json.dumps(str(e).splitlines()[0][:80]))
        return
    n = sum(p.numel() for p in model("cpu", a.width).parameters())
    print(f"# optimizer step, {n / 1e6:.1f}M parameters, device {a.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    times: dict[str, list[float]] = {name: [] for name in optimizers(a.set)}
    unavailable: dict[str, str] = {}
    compile_s: dict[str, list[float]] = {name: [] for name in times}
    for _ in range(a.rounds):
        for name in times:
            if name in unavailable:
                continue
            cmd = [sys.executable, __file__, "--only", name, "--device", a.device,
                   "--steps", str(max(a.steps // a.rounds, 1)), "--threads", str(torch.get_num_threads()),
                   "--set", a.set, "--width", str(a.width)]
            out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            if isinstance(out, str):
                unavailable[name] = out
            else:
                times[name] += out["times"]
                compile_s[name].append(out["compile_s"])
    for name, why in unavailable.items():
        print(f"{name:30s}  unavailable: {why}")
    results = {name: statistics.median(ts) * 1e3 for name, ts in times.items() if name not in unavailable}
    if a.set == "matrix":
        print(f"{'optimizer':30s} {'ms/step':>9s}")
        for name, ms in results.items():
            print(f"{name:30s} {ms:9.2f}")
        for ours, theirs in [("dsl Muon program", "torch.optim.Muon"), ("dsl Muon program", "torch.optim.Muon float32 NS"),
                             ("dsl Adafactor program", "torch.optim.Adafactor foreach"),
                             ("dsl Adafactor program", "torch.optim.Adafactor for-loop")]:
            if ours in results and theirs in results:
                print(f"{ours} / {theirs}: {results[ours] / results[theirs]:.2f}x")
        return
    if a.set == "compiled":
        fused = results.get("torch.optim.AdamW fused")
        print(f"{'optimizer':30s} {'ms/step':>9s} {'vs AdamW fused':>15s} {'compile s':>10s}")
        for name, ms in results.items():
            cs = statistics.median(compile_s[name])
            print(f"{name:30s} {ms:9.2f} {ms / fused if fused else float('nan'):14.2f}x "
                  f"{cs:10.1f}")
        for ours, theirs in [("dsl AdamW compiled", "torch.optim.AdamW fused"),
                             ("dsl AdamW compiled", "torch.optim.AdamW foreach"),
                             ("dsl AdamW compiled", "dsl AdamW program"),
                             ("dsl Lion compiled", "torch.optim.AdamW fused"),
                             ("dsl Lion compiled", "dsl Lion program")]:
            if ours in results and theirs in results:
                print(f"{ours} / {theirs}: {results[ours] / results[theirs]:.2f}x")
        return
    base = results["torch.optim.AdamW foreach"]
    print(f"{'optimizer':30s} {'ms/step':>9s} {'vs AdamW foreach':>17s}")
    for name, ms in results.items():
        print(f"{name:30s} {ms:9.2f} {ms / base:16.2f}x")
    if "lion_pytorch.Lion" in results:
        print(f"dsl Lion / lion_pytorch.Lion: {results['dsl Lion program'] / results['lion_pytorch.Lion']:.2f}x")


if __name__ == "__main__":
    main()
