"""Optimizer step time: our compiled AdamW and Lion programs vs torch.optim.AdamW (foreach, fused)
and lion-pytorch's Lion, on a ~10M-parameter model. Prints ms per step and ratios.

    .venv/bin/python benchmarks/bench_step.py [--device cpu|cuda] [--steps 30] [--rounds 3] [--threads 2]

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


def model(device: str) -> torch.nn.Module:
    """An MLP of ~10.5M parameters in 8 tensors, a common shape for optimizer benchmarks."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(1024, 2048), torch.nn.ReLU(),
        torch.nn.Linear(2048, 2048), torch.nn.ReLU(),
        torch.nn.Linear(2048, 1024), torch.nn.ReLU(),
        torch.nn.Linear(1024, 1024)).to(device)


def optimizers() -> dict:
    """Name -> factory of every optimizer compared (those whose package is missing left out)."""
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


def time_steps(make_opt, device: str, steps: int, warmup: int = 3) -> list[float]:
    """Seconds of each of ``steps`` steps after ``warmup`` untimed ones."""
    m = model(device)
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
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per optimizer, split among the rounds")
    ap.add_argument("--rounds", type=int, default=3, help="turns taken by the optimizers")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--only", help=argparse.SUPPRESS)  # one optimizer, in a child process
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.only:
        try:
            print(json.dumps(time_steps(optimizers()[a.only], a.device, a.steps)))
        except (RuntimeError, TypeError) as e:  # e.g. fused AdamW unsupported on this device
            print(json.dumps(str(e).splitlines()[0][:80]))
        return
    n = sum(p.numel() for p in model("cpu").parameters())
    print(f"# optimizer step, {n / 1e6:.1f}M parameters, device {a.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    times: dict[str, list[float]] = {name: [] for name in optimizers()}
    unavailable: dict[str, str] = {}
    for _ in range(a.rounds):
        for name in times:
            if name in unavailable:
                continue
            cmd = [sys.executable, __file__, "--only", name, "--device", a.device,
                   "--steps", str(max(a.steps // a.rounds, 1)), "--threads", str(torch.get_num_threads())]
            out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            if isinstance(out, str):
                unavailable[name] = out
            else:
                times[name] += out
    for name, why in unavailable.items():
        print(f"{name:30s}  unavailable: {why}")
    results = {name: statistics.median(ts) * 1e3 for name, ts in times.items() if name not in unavailable}
    base = results["torch.optim.AdamW foreach"]
    print(f"{'optimizer':30s} {'ms/step':>9s} {'vs AdamW foreach':>17s}")
    for name, ms in results.items():
        print(f"{name:30s} {ms:9.2f} {ms / base:16.2f}x")
    if "lion_pytorch.Lion" in results:
        print(f"dsl Lion / lion_pytorch.Lion: {results['dsl Lion program'] / results['lion_pytorch.Lion']:.2f}x")


if __name__ == "__main__":
    main()
