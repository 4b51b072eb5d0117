"""Replay programs on a task with the real optimizer API (the CLI's ``evolve replay`` / ``evolve tasks``).

`run_replay` trains the task once per program with `dsl.ProgramOptimizer` (and once with a
reference ``torch.optim``-style class if asked, at the same learning rate and schedule),
prints the validation-loss curves side by side, final loss, metric and score against tuned
AdamW, the largest weight difference to the reference, and optionally saves a PNG.
"""
from __future__ import annotations

import importlib
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, TextIO

import torch

import dsl

from . import registry
from .base import Params, Task
from .baselines import adamw_program
from .fitness import EvalConfig, evaluate_task
from .results import score
from .train import DIVERGED, NAN, OK, Run, StopRules, train_batched

__all__ = ["ReplayRun", "train_with_optimizer", "run_replay", "list_tasks", "import_class", "seconds_per_evaluation"]


@dataclass(frozen=True)
class ReplayRun:
    """One training run through a torch optimizer: curve ``((step, val_loss), ...)``, final loss
    (mean of the last ``final_evals`` validation losses), final metric, weights, status."""

    label: str
    lr: float
    curve: tuple[tuple[int, float], ...]
    loss: float
    metric: Optional[float]
    status: str
    reason: str
    params: Params
    seconds: float


def train_with_optimizer(task: Task, make_optimizer: Callable[[list[torch.Tensor], float], torch.optim.Optimizer],
                         lr: float, *, steps: Optional[int] = None, seed: int = 0, final_evals: int = 3,
                         diverge_factor: float = 10.0, label: str = "") -> ReplayRun:
    """Train one copy of ``task`` with ``make_optimizer(params, lr)``; the schedule sets each
    group's lr to ``lr * factor(step)`` before every step. Stops at a non-finite loss or one
    above ``diverge_factor`` x its initial value."""
    t0 = time.perf_counter()
    steps = steps or task.steps
    params = {k: v.clone().requires_grad_(True) for k, v in task.init_params(seed).items()}
    opt = make_optimizer(list(params.values()), lr)
    evals = set(task.eval_steps(steps))
    curve: list[tuple[int, float]] = []
    status, reason, first = OK, "", None
    for step in range(steps + 1):
        if step in evals:
            with torch.no_grad():
                v = float(task.validation_loss(params))
            curve.append((step, v))
            if not math.isfinite(v):
                status, reason = NAN, f"validation loss is {v} at step {step}"
                break
        if step == steps:
            break
        for group in opt.param_groups:
            group["lr"] = lr * task.lr_factor(step, steps)
        opt.zero_grad(set_to_none=True)
        loss = task.loss(params, task.batch(step, seed))
        loss.backward()
        lv = loss.item()
        first = lv if first is None else first
        if not math.isfinite(lv):
            status, reason = NAN, f"training loss is {lv} at step {step}"
            break
        if lv > diverge_factor * first:
            status = DIVERGED
            reason = f"training loss {lv:.4g} > {diverge_factor:g} x initial {first:.4g} at step {step}"
            break
        opt.step()
    metric = None
    if task.metric is not None and status == OK:
        with torch.no_grad():
            metric = float(task.metric(params, task.val_batch))
    tail = [v for _, v in curve[-final_evals:]]
    loss = sum(tail) / len(tail) if status == OK else (curve[-1][1] if curve else math.nan)
    return ReplayRun(label, lr, tuple(curve), loss, metric, status, reason,
                     {k: v.detach() for k, v in params.items()}, time.perf_counter() - t0)


def import_class(path: str) -> type:
    """``"torch.optim.AdamW"`` -> the class (any importable ``module.attr`` path)."""
    module, _, name = path.rpartition(".")
    if not module:
        raise ValueError(f"expected a dotted path like torch.optim.AdamW, got {path!r}")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def run_replay(program_paths: Sequence[str], task: str, reference: Optional[str] = None,
               steps: Optional[int] = None, lr: Optional[float] = None, plot: Optional[str] = None,
               out: TextIO = sys.stdout, *, seed: int = 0, size: int = 1, device: str = "cpu",
               cache_path: Optional[str] = None) -> int:
    """Replay programs on ``task`` and print curves, scores and reference differences.

    lr: the learning rate (before the schedule) for every run; by default each program gets
    the best of the evaluator's lr multipliers times the task's tuned AdamW lr, and the
    reference gets the first program's lr. Exit code: 0 if every run finished, 1 if a run
    failed (nan or diverged), 2 for bad arguments (unreadable program, unknown task or class).
    """
    try:
        programs = [dsl.load(p) for p in program_paths]
        if not programs:
            raise ValueError("no program files given")
        config = EvalConfig(seed=seed, steps=steps, size=size, device=device)
        t = config.task(task)
        ref_cls = import_class(reference) if reference else None
    except (dsl.ParseError, KeyError, ValueError, ImportError, AttributeError) as e:
        print(f"error: {e}", file=out)
        return 2
    steps = steps or t.steps
    base = config.baseline(t, cache_path)
    print(f"task {t.name}: {t.description}; {t.num_params} parameters, {steps} steps", file=out)
    print(f"AdamW baseline: lr {base.lr:.3g}, final validation loss {base.loss:.5g}", file=out)

    lrs = []
    if lr is None:
        picks = evaluate_task(programs, t, config, base)
        lrs = [p.lr if p.status == OK else base.lr for p in picks]
    else:
        lrs = [float(lr)] * len(programs)
    runs = []
    for path, p, plr in zip(program_paths, programs, lrs):
        make = lambda ps, a, p=p: dsl.ProgramOptimizer(ps, p, lr=a)  # noqa: E731
        runs.append(train_with_optimizer(t, make, plr, steps=steps, seed=seed, label=p.name))
    ref_run = None
    if ref_cls is not None:
        ref_run = train_with_optimizer(t, lambda ps, a: ref_cls(ps, lr=a), lrs[0], steps=steps, seed=seed,
                                       label=reference.rpartition(".")[2])

    _print_table(runs + ([ref_run] if ref_run else []), t, base, out)
    if ref_run is not None:
        for r in runs:
            diff = max((r.params[k] - ref_run.params[k]).abs().max().item() for k in r.params)
            print(f"largest weight difference {r.label} vs {ref_run.label}: {diff:.3g}", file=out)
    if plot:
        _plot(runs + ([ref_run] if ref_run else []), t, base, plot)
        print(f"saved {plot}", file=out)
    return 0 if all(r.status == OK for r in runs) else 1


def _print_table(runs: list[ReplayRun], task: Task, base, out: TextIO) -> None:
    labels = [r.label[:14] for r in runs]
    width = max(10, *(len(x) for x in labels)) + 2
    head = "step".rjust(8) + "".join(x.rjust(width) for x in labels) + "baseline".rjust(width)
    print(head, file=out)
    base_curve = dict(base.curve)
    steps = sorted({s for r in runs for s, _ in r.curve} | set(base_curve))
    curves = [dict(r.curve) for r in runs]
    every = max(1, len(steps) // 10)
    shown = steps[::every] + ([steps[-1]] if (len(steps) - 1) % every else [])
    for s in shown:
        cells = [f"{c[s]:.4g}" if s in c else "-" for c in curves + [base_curve]]
        print(str(s).rjust(8) + "".join(x.rjust(width) for x in cells), file=out)
    rows = [("lr", [f"{r.lr:.3g}" for r in runs] + [f"{base.lr:.3g}"]),
            ("final", [f"{r.loss:.5g}" for r in runs] + [f"{base.loss:.5g}"]),
            ("score", [f"{score(r.loss, base.loss, task.loss_floor):+.3f}" if r.status == OK else "-" for r in runs]
             + ["+0.000"]),
            ("status", [r.status for r in runs] + [OK]),
            ("sec", [f"{r.seconds:.1f}" for r in runs] + ["-"])]
    if task.metric is not None:
        rows.insert(2, (task.metric_name[:8], [f"{r.metric:.4f}" if r.metric is not None else "-" for r in runs]
                        + ["-"]))
    for name, cells in rows:
        print(name.rjust(8) + "".join(x.rjust(width) for x in cells), file=out)
    for r in runs:
        if r.reason:
            print(f"{r.label}: {r.reason}", file=out)


def _plot(runs: list[ReplayRun], task: Task, base, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        xs, ys = zip(*r.curve) if r.curve else ((), ())
        ax.plot(xs, ys, label=f"{r.label} (lr {r.lr:.2g})")
    xs, ys = zip(*base.curve)
    ax.plot(xs, ys, "k--", label=f"AdamW baseline (lr {base.lr:.2g})")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.set_title(task.name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def seconds_per_evaluation(task: Task, copies: int = 3) -> float:
    """Wall time of one program's evaluation on ``task``: AdamW at ``copies`` learning rates side
    by side for the full budget (what `tasks.evaluate` spends per program and task)."""
    prog = adamw_program()
    runs = [Run(prog, 1e-3 * 3.0 ** i) for i in range(copies)]
    rules = StopRules(hopeless_fraction=0.0, diverge_factor=math.inf)
    train_batched(task, runs, steps=2, rules=rules)  # warm up
    t0 = time.perf_counter()
    train_batched(task, runs, rules=rules)
    return time.perf_counter() - t0


def list_tasks(out: TextIO = sys.stdout, *, measure: bool = True, size: int = 1, device: str = "cpu") -> None:
    """Print a table of the registered tasks: name, role in the default suite (`tasks.stages`:
    the first stage that holds the family, validation or test; variants of the family in other
    roles after a ``+``), parameters, steps, seconds per evaluation (one program at 3 learning
    rates, measured now on this machine: runs each task once), description."""
    from .stages import SUITE

    print(f"{'task':24s} {'role':18s} {'params':>8s} {'steps':>6s} {'sec/eval':>9s}  description", file=out)
    for name in registry.names():
        role = _role(name, SUITE)
        try:
            t = registry.get(name, size=size, device=device)
            sec = f"{seconds_per_evaluation(t):.2f}" if measure else "-"
            print(f"{name:24s} {role:18s} {t.num_params:8d} {t.steps:6d} {sec:>9s}  {t.description}", file=out)
        except Exception as e:  # a broken user task should not hide the others
            print(f"{name:24s} {role:18s} {'-':>8s} {'-':>6s} {'-':>9s}  error: {type(e).__name__}: {e}", file=out)


def _role(family: str, suite) -> str:
    """``"stage2"``, ``"validation+test@1"``, ``"-"``: where ``family`` and its variants sit."""
    roles = [(f"stage{k}", stage) for k, stage in enumerate(suite.stages, 1)]
    roles += [("validation", suite.validation), ("test", suite.test)]
    own, variants = None, []
    for role, names in roles:
        for n in names:
            base, _, v = n.partition("@")
            if base != family:
                continue
            if v:
                variants.append(f"{role}@{v}")
            elif own is None:
                own = role
    variants = list(dict.fromkeys(variants))
    return "+".join([own or "-"] + variants) if (own or variants) else "-"
