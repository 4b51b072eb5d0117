"""Optimizer step time: our compiled AdamW and Lion programs vs torch.optim.AdamW (foreach, fused)
and lion-pytorch's Lion, on a ~10M-parameter model. Prints ms per step and ratios.

    .venv/bin/python benchmarks/bench_step.py [--device cpu|cuda] [--steps 30] [--threads 2]
"""
from __future__ import annotations

import argparse
import platform
import statistics
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


def time_steps(make_opt, device: str, steps: int, warmup: int = 3) -> float:
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
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    n = sum(p.numel() for p in model("cpu").parameters())
    print(f"# optimizer step, {n / 1e6:.1f}M parameters, device {a.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    adamw, lion = seeds.load("adamw"), seeds.load("lion")
    rows = [
        ("torch.optim.AdamW foreach", lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=True)),
        ("torch.optim.AdamW fused", lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True)),
        ("torch.optim.AdamW for-loop", lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=False)),
        ("dsl AdamW program", lambda ps: dsl.ProgramOptimizer(ps, adamw, lr=1e-3)),
    ]
    try:
        from lion_pytorch import Lion

        rows.append(("lion_pytorch.Lion", lambda ps: Lion(ps, lr=1e-4)))
    except ImportError:
        pass
    rows.append(("dsl Lion program", lambda ps: dsl.ProgramOptimizer(ps, lion, lr=1e-4)))
    results = {}
    for name, make in rows:
        try:
            results[name] = time_steps(make, a.device, a.steps)
        except (RuntimeError, TypeError) as e:  # e.g. fused AdamW unsupported on this device
            print(f"{name:30s}  unavailable: {str(e).splitlines()[0][:80]}")
    base = results["torch.optim.AdamW foreach"]
    print(f"{'optimizer':30s} {'ms/step':>9s} {'vs AdamW foreach':>17s}")
    for name, ms in results.items():
        print(f"{name:30s} {ms:9.2f} {ms / base:16.2f}x")
    if "lion_pytorch.Lion" in results:
        print(f"dsl Lion / lion_pytorch.Lion: {results['dsl Lion program'] / results['lion_pytorch.Lion']:.2f}x")


if __name__ == "__main__":
    main()
