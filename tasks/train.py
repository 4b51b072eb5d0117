"""Train K copies of a task's model side by side, each stepped by its own program and learning rate.

Parameters are stacked as ``[K, *shape]``; one ``vmap`` of the task's loss over the copy
dimension runs the forward pass of all copies as a few large ops, and one backward pass of the
summed losses gives each copy its own gradient (the copies share no parameters). Copies that
run the same program consecutively form a group stepped by one `dsl.CompiledProgram.apply`
call on their slice ``[k0:k1]`` of the stack, with per-copy learning rates as a ``[n, 1, ...]``
tensor and ``reduce_dims`` keeping the program's reductions per copy.

A copy that fails (non-finite or exploding loss, no progress by the checkpoint, or a program
that raises) is recorded and removed from the stack, so it costs nothing afterwards and cannot
disturb the others. With one copy per call this is the one-at-a-time path; a copy's arithmetic
does not depend on which other copies share its batch (tested).

`_Trainer` here is the reference implementation; `train_batched` runs
`tasks.train_fast.FastTrainer` by default, which gives its results bit for bit with less work
per step (one parameter buffer, a leaner program interpreter; issue 13), and can compile the
forward and backward pass (``compile=True``, results within float rounding).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor

import dsl
from dsl import Program

from .base import Task

__all__ = ["Run", "StopRules", "RunOutcome", "train_batched", "OK", "NAN", "DIVERGED", "HOPELESS", "ERROR",
           "STATUSES"]

OK, NAN, DIVERGED, HOPELESS, ERROR = "ok", "nan", "diverged", "hopeless", "error"
STATUSES = (OK, NAN, DIVERGED, HOPELESS, ERROR)


@dataclass(frozen=True)
class Run:
    """One copy to train: a program at a (pre-schedule) learning rate."""

    program: Program
    lr: float


@dataclass(frozen=True)
class StopRules:
    """When a copy stops early.

    diverge_factor: fail ('diverged') when a training or validation loss exceeds
    ``diverge_factor * `` its value at step 0; non-finite losses fail as 'nan'.
    hopeless_fraction: the checkpoint, as a fraction of the budget (rounded up to the next
    validation step; 0 disables). At the checkpoint a copy is 'hopeless' when
    ``L_val > hopeless_ratio * L_val(0)`` or, given a reference curve (AdamW's),
    ``log((L_val + floor) / (L_ref + floor)) > hopeless_gap``.
    check_every: training losses are checked every this many steps (one device sync each).
    """

    diverge_factor: float = 10.0
    hopeless_fraction: float = 0.25
    hopeless_ratio: float = 0.95
    hopeless_gap: Optional[float] = 3.0
    check_every: int = 10


@dataclass(frozen=True)
class RunOutcome:
    """status: one of `STATUSES`; loss: mean of the last ``final_evals`` validation losses for
    'ok', else the last validation loss measured (may be nan); curve: ``((step, val_loss), ...)``;
    steps: steps taken; seconds: wall time of the whole batched call."""

    status: str
    reason: str
    loss: float
    curve: tuple[tuple[int, float], ...]
    steps: int
    seconds: float


_FLAT = "\0all"  # the state key of a group stepped on all parameters at once


class _Group:
    """Consecutive copies running one program: their original indices and state slots.

    ``flat``: the program is elementwise (no per-tensor reduction or other shaped function), so
    one call steps every parameter tensor at once, concatenated as ``[copies, total size]``
    (same numbers, a fraction of the Python overhead of one call per tensor); its state is
    ``state[_FLAT]``. Otherwise one `dsl.CompiledProgram.apply_group` call steps the tensors
    side by side (group functions such as ``global_norm`` see all of them, per copy), with
    ``state[name]`` per parameter tensor.
    """

    def __init__(self, cp: dsl.CompiledProgram, rows: list[int]):
        self.cp, self.rows = cp, rows
        self.flat = not any(ins.op.shaped for ins in cp.instrs)
        self.state: dict[str, dict[str, Tensor]] = {}


def train_batched(task: Task, runs: Sequence[Run], *, seed: int = 0, steps: Optional[int] = None,
                  final_evals: int = 3, rules: StopRules = StopRules(),
                  reference: Optional[Mapping[int, float]] = None, fast: bool = True,
                  compile: bool = False) -> list[RunOutcome]:
    """Train ``len(runs)`` copies of ``task`` from the same initial weights and data order.

    ``steps`` overrides the task's budget; ``reference`` maps validation steps to a reference
    loss (for the hopeless gap rule). Never raises for a program's failure: it is recorded in
    the copy's outcome. The schedule multiplies every copy's lr: ``lr_k(t) = lr_k * factor(t)``.
    ``fast``: `tasks.train_fast.FastTrainer` (the same results bit for bit, less Python per
    step); False: this module's reference trainer. ``compile`` (fast only): the forward and
    backward pass compiled with ``torch.compile`` (results within float rounding; see
    `tasks.compiled_model`).
    """
    args = (task, list(runs), seed, steps or task.steps, final_evals, rules, reference)
    if fast:
        from .train_fast import FastTrainer

        return FastTrainer(*args, compile=compile).run()
    if compile:
        raise ValueError("compile=True needs fast=True (the reference trainer is eager)")
    return _Trainer(*args).run()


class _Trainer:
    def __init__(self, task, runs, seed, steps, final_evals, rules, reference):
        self.task, self.runs, self.seed, self.steps = task, runs, seed, steps
        self.final_evals, self.rules, self.reference = final_evals, rules, reference or {}
        self.t0 = time.perf_counter()
        n = len(runs)
        self.curves: list[list[tuple[int, float]]] = [[] for _ in range(n)]
        self.failed: dict[int, tuple[str, str, int]] = {}  # original index -> (status, reason, step)
        self.init_train: Optional[dict[int, float]] = None  # step-0 training loss per copy
        self.pending: list[tuple[int, Tensor]] = []
        self.dirty = False

    # ------------------------------------------------------------------ setup
    def group_runs(self, group: type) -> list:
        """Consecutive runs of one program share a ``group(compiled, rows)``; a program that does
        not compile fails its run at step 0."""
        groups: list = []
        for i, r in enumerate(self.runs):
            if groups and groups[-1].cp.program is r.program:
                groups[-1].rows.append(i)
                continue
            try:
                cp = dsl.compile(r.program)
            except Exception as e:  # a malformed program value
                self.fail(i, ERROR, _err(e), 0)
                continue
            groups.append(group(cp, [i]))
        return groups

    def setup(self) -> None:
        task = self.task
        init = task.init_params(self.seed)
        self.names = list(init)
        self.groups = self.group_runs(_Group)
        rows = self.rows()
        k = len(rows)
        self.params = {n: v.unsqueeze(0).repeat(k, *([1] * v.ndim)) for n, v in init.items()}
        self.reduce = {n: tuple(range(1, v.ndim)) for n, v in self.params.items()}  # per copy
        self.base_lr = torch.tensor([self.runs[i].lr for i in rows], dtype=task.dtype, device=task.device)
        start = 0
        for grp in self.groups:
            stop = start + len(grp.rows)
            try:
                if grp.flat:
                    grp.state = {_FLAT: grp.cp.init_state(self._cat(self.params, start, stop))}
                else:
                    grp.state = {n: grp.cp.init_state(self.params[n][start:stop]) for n in self.names}
            except Exception as e:
                for i in grp.rows:
                    self.fail(i, ERROR, _err(e), 0)
            start = stop
        self.compact()
        self.vloss = torch.func.vmap(task.loss, in_dims=(0, None))
        self.vval = torch.func.vmap(task.val_loss or task.loss, in_dims=(0, None))

    def _cat(self, tensors: dict[str, Tensor], start: int, stop: int) -> Tensor:
        """Rows ``start:stop`` of every parameter tensor, flattened and concatenated: ``[k, size]``."""
        k = stop - start
        return torch.cat([tensors[n][start:stop].reshape(k, -1) for n in self.names], 1)

    def rows(self) -> list[int]:
        return [i for g in self.groups for i in g.rows]

    def fail(self, i: int, status: str, reason: str, step: int) -> None:
        if i not in self.failed:
            self.failed[i] = (status, reason, step)
            self.dirty = True

    def compact(self) -> None:
        """Drop failed copies from the stack, the groups and their states."""
        if not self.dirty:
            return
        self.check_train()  # pending losses are in the current row order: read them first
        self.dirty = False
        rows = self.rows()
        keep = [p for p, i in enumerate(rows) if i not in self.failed]
        if len(keep) == len(rows):
            return
        idx = torch.tensor(keep, dtype=torch.long, device=self.task.device)
        self.params = {n: v.detach().index_select(0, idx) for n, v in self.params.items()}
        self.base_lr = self.base_lr.index_select(0, idx)
        groups = []
        for grp in self.groups:
            local = [j for j, i in enumerate(grp.rows) if i not in self.failed]
            if not local:
                continue
            if len(local) < len(grp.rows):
                li = torch.tensor(local, dtype=torch.long, device=self.task.device)
                grp.state = {n: {s: v.index_select(0, li) for s, v in st.items()} for n, st in grp.state.items()}
                grp.rows = [grp.rows[j] for j in local]
            groups.append(grp)
        self.groups = groups

    # ------------------------------------------------------------------ checks
    def check_train(self) -> None:
        """Fail copies whose recent training losses are non-finite or exceed the bound."""
        if not self.pending:
            return
        rows = self.rows()
        losses = torch.stack([l for _, l in self.pending]).cpu().to(torch.float64).tolist()
        steps = [s for s, _ in self.pending]
        self.pending = []
        if self.init_train is None:
            self.init_train = {i: losses[0][p] for p, i in enumerate(rows)}
        for p, i in enumerate(rows):
            bound = self.rules.diverge_factor * self.init_train[i]
            for s, row in zip(steps, losses):
                v = row[p]
                if not math.isfinite(v):
                    self.fail(i, NAN, f"training loss is {v} at step {s}", s)
                    break
                if v > bound:
                    self.fail(i, DIVERGED, f"training loss {v:.4g} > {self.rules.diverge_factor:g} x "
                                           f"initial {self.init_train[i]:.4g} at step {s}", s)
                    break

    def validate(self, step: int, checkpoint: Optional[int]) -> None:
        rows = self.rows()
        with torch.no_grad():
            vals = self.val_losses().cpu().to(torch.float64).tolist()
        floor = self.task.loss_floor
        for p, i in enumerate(rows):
            v = vals[p]
            curve = self.curves[i]
            curve.append((step, v))
            v0 = curve[0][1]
            if not math.isfinite(v):
                self.fail(i, NAN, f"validation loss is {v} at step {step}", step)
            elif v > self.rules.diverge_factor * v0:
                self.fail(i, DIVERGED, f"validation loss {v:.4g} > {self.rules.diverge_factor:g} x "
                                       f"initial {v0:.4g} at step {step}", step)
            elif step == checkpoint:
                ref = self.reference.get(step)
                gap = self.rules.hopeless_gap
                if v > self.rules.hopeless_ratio * v0:
                    self.fail(i, HOPELESS, f"validation loss {v:.4g} at step {step} is not below "
                                           f"{self.rules.hopeless_ratio:g} x initial {v0:.4g}", step)
                elif gap is not None and ref is not None and math.log((v + floor) / (ref + floor)) > gap:
                    self.fail(i, HOPELESS, f"validation loss {v:.4g} at step {step} is more than "
                                           f"exp({gap:g}) x the reference's {ref:.4g}", step)

    def val_losses(self) -> Tensor:
        """Validation loss of every live copy, ``[K]``."""
        return self.vval(self.params, self.task.val_batch)

    # ------------------------------------------------------------------ the loop
    def step(self, step: int) -> None:
        task = self.task
        batch = task.batch(step, self.seed)
        ps = {n: v.detach().requires_grad_(True) for n, v in self.params.items()}
        losses = self.vloss(ps, batch)
        grads = torch.autograd.grad(losses.sum(), [ps[n] for n in self.names], allow_unused=True)
        grads = {n: (torch.zeros_like(ps[n]) if g is None else g) for n, g in zip(self.names, grads)}
        self.pending.append((step, losses.detach()))
        lr_now = self.base_lr * task.lr_factor(step, self.steps)
        t = float(step + 1)
        new = {n: [] for n in self.names}
        start = 0
        with torch.no_grad():
            for grp in self.groups:
                stop = start + len(grp.rows)
                try:
                    parts, states = {}, {}
                    if grp.flat:
                        k = stop - start
                        nw, states[_FLAT] = _apply(grp.cp, self._cat(self.params, start, stop),
                                                   self._cat(grads, start, stop), lr_now[start:stop].view(k, 1), t,
                                                   grp.state[_FLAT], (1,))
                        pieces = torch.split(nw, [self.params[n][0].numel() for n in self.names], 1)
                        parts = {n: x.view(k, *self.params[n].shape[1:]) for n, x in zip(self.names, pieces)}
                    else:
                        ws = [self.params[n][start:stop].detach() for n in self.names]
                        lrs = [lr_now[start:stop].view(-1, *([1] * (w.ndim - 1))) for w in ws]
                        nws, sts = _apply_group(grp.cp, ws, [grads[n][start:stop] for n in self.names], lrs, t,
                                                [grp.state[n] for n in self.names],
                                                [self.reduce[n] for n in self.names])
                        parts, states = dict(zip(self.names, nws)), dict(zip(self.names, sts))
                except Exception as e:
                    for i in grp.rows:
                        self.fail(i, ERROR, f"{_err(e)} (step {step})", step)
                    parts = {n: self.params[n][start:stop].detach() for n in self.names}
                else:
                    grp.state = states
                for n in self.names:
                    new[n].append(parts[n])
                start = stop
        self.params = {n: (v[0] if len(v) == 1 else torch.cat(v)) for n, v in new.items()}

    def run(self) -> list[RunOutcome]:
        try:
            self.setup()
            self.loop()
        except Exception as e:  # task or framework failure: every live copy fails, nothing raises
            for i in self.rows() if hasattr(self, "groups") else range(len(self.runs)):
                self.fail(i, ERROR, f"training failed: {_err(e)}", 0)
        return self.outcomes()

    def loop(self) -> None:
        evals = self.task.eval_steps(self.steps)
        checkpoint = None
        if self.rules.hopeless_fraction > 0:
            later = [s for s in evals if s >= self.rules.hopeless_fraction * self.steps and s > 0]
            checkpoint = later[0] if later else None
        eval_set = set(evals)
        every = max(1, self.rules.check_every)
        for step in range(self.steps + 1):
            if self.pending and (step % every == 0 or step in eval_set):
                self.check_train()
                self.compact()
            if step in eval_set and self.groups:
                self.validate(step, checkpoint)
                self.compact()
            if not self.groups or step == self.steps:
                break
            self.step(step)
            self.compact()  # drops programs that raised (no-op otherwise)
        self.check_train()
        self.compact()

    def outcomes(self) -> list[RunOutcome]:
        seconds = time.perf_counter() - self.t0
        out = []
        for i in range(len(self.runs)):
            curve = tuple(self.curves[i])
            if i in self.failed:
                status, reason, step = self.failed[i]
                last = curve[-1][1] if curve else math.nan
                out.append(RunOutcome(status, reason, last, curve, step, seconds))
            else:
                tail = [v for _, v in curve[-self.final_evals:]]
                out.append(RunOutcome(OK, "", sum(tail) / len(tail), curve, self.steps, seconds))
        return out


def _apply(cp: dsl.CompiledProgram, w: Tensor, g: Tensor, lr: Tensor, t: float, state: dict,
           dims: tuple) -> tuple[Tensor, dict]:
    """``(w - update, next state)`` for stacked copies ``w``; an update of another shape is an error."""
    upd, st = cp.apply(w, g, lr, t, state, reduce_dims=dims)
    nw = w - upd
    if nw.shape != w.shape:
        raise ValueError(f"update of shape {tuple(upd.shape)} for parameters of shape {tuple(w.shape)}")
    return nw.to(w.dtype), st


def _apply_group(cp: dsl.CompiledProgram, ws: list[Tensor], gs: list[Tensor], lrs: list[Tensor], t: float,
                 states: list[dict], dims: list[tuple]) -> tuple[list[Tensor], list[dict]]:
    """`_apply` for every tensor of the model at once (`dsl.CompiledProgram.apply_group`)."""
    ups, sts = cp.apply_group(ws, gs, lrs, t, states, reduce_dims=dims)
    out = []
    for w, upd in zip(ws, ups):
        nw = w - upd
        if nw.shape != w.shape:
            raise ValueError(f"update of shape {tuple(upd.shape)} for parameters of shape {tuple(w.shape)}")
        out.append(nw.to(w.dtype))
    return out, sts


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:500]
