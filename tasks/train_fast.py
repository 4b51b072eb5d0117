"""The batched trainer with less work per step around the same arithmetic: `FastTrainer`.

Where a stage-1 evaluation of 12 copies went with the reference trainer
(`benchmarks/bench_eval.py --breakdown`, 2026-12-01, one thread, CPU time): the programs'
updates 29% (about 4 us of interpreter Python around each 1-2 us op), the vmapped forward 24%
and backward 19% (vmap's and autograd's per-op cost on tiny models; compute on zipf_bag),
validation 9%, the rest (concatenating and splitting each group's tensors, bookkeeping) 18%.
This trainer cuts the first by 42% and the last by 44% (1.31x in all, BENCHMARKS.md);
``compile=True`` the forward, backward and validation passes (2.08x).

- One buffer ``P [K, D]`` holds every copy's parameters, a row per copy in group order, the
  model's tensors side by side (``D`` their total size). An elementwise program steps its rows
  ``P[k0:k1]`` directly (the reference concatenated and split them for each group and step),
  and updates are written in place into the buffer. The task's loss, the validation and the
  programs with shaped ops see the reference's contiguous ``[K, *shape]`` tensors (one copy of
  each view per step, none for a model of one tensor), so every op sees the tensors it sees
  in the reference.
- Programs run through `dsl.runner.BatchedRunner` (same ops, arguments and order as
  `dsl.CompiledProgram.apply_group`, a fraction of its Python).

Both change only where numbers are stored: results are bit for bit those of the reference
trainer (`tasks.train._Trainer`; tested for every seed, programs with reductions, whole-group
and shaped functions, transcendental ops, failing ones and the stop rules).

``compile=True`` runs the forward/backward and validation passes compiled by Inductor
(`tasks.compiled_model`). Its kernels sum in another order than eager torch: losses and
gradients agree within float rounding, not bit for bit, and early stopping is decided on those
numbers, so an unstable run at the edge of diverging or hopeless can end otherwise (4 of 576
copies of 48 AdamW mutants, BENCHMARKS.md).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import Tensor

import dsl
from dsl.runner import BatchedRunner

from . import compiled_model
from .base import Task
from .train import ERROR, Run, StopRules, _err, _Group, _Trainer

__all__ = ["FastTrainer"]


class _FastGroup(_Group):
    """A group with its program runner and, set by `FastTrainer._layout`, its rows
    ``start:stop`` of the buffer and the views of them a step writes (``w``: rows of ``P`` for a
    flat group, else one view per parameter tensor) and reads its learning rates from (``lr``)."""

    def __init__(self, cp: dsl.CompiledProgram, rows: list[int]):
        super().__init__(cp, rows)
        # the runner reimplements CompiledProgram.apply_group: a subclass keeps its own methods
        self.runner = BatchedRunner(cp) if type(cp) is dsl.CompiledProgram else _Apply(cp, self.flat)
        self.start = self.stop = 0
        self.w: Any = None
        self.lr: Any = None


class FastTrainer(_Trainer):
    """`tasks.train._Trainer` on one parameter buffer (module doc); ``compile``: the forward and
    backward pass compiled (falls back to eager, with a warning, where compilation fails)."""

    def __init__(self, task: Task, runs: list[Run], seed: int, steps: int, final_evals: int, rules: StopRules,
                 reference: Optional[Mapping[int, float]], compile: bool = False):  # noqa: A002
        super().__init__(task, runs, seed, steps, final_evals, rules, reference)
        self.compile = compile

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        task = self.task
        init = task.init_params(self.seed)
        self.names = list(init)
        self.shapes = {n: tuple(v.shape) for n, v in init.items()}
        self.groups: list[_FastGroup] = self.group_runs(_FastGroup)
        rows = self.rows()
        k = len(rows)
        self.spans, start = {}, 0
        for n, v in init.items():
            self.spans[n] = (start, start + v.numel())
            start += v.numel()
        flat = torch.cat([v.reshape(1, -1) for v in init.values()], 1)
        self.P = flat.repeat(k, 1)
        self.base_lr = torch.tensor([self.runs[i].lr for i in rows], dtype=task.dtype, device=task.device)
        self._views()
        start = 0
        for grp in self.groups:
            stop = start + len(grp.rows)
            try:
                if grp.flat:
                    grp.state = {"": grp.cp.init_state(self.P[start:stop])}
                else:
                    grp.state = {n: grp.cp.init_state(self.params[n][start:stop]) for n in self.names}
            except Exception as e:
                for i in grp.rows:
                    self.fail(i, ERROR, _err(e), 0)
            start = stop
        self.reduce = {n: tuple(range(1, len(s) + 1)) for n, s in self.shapes.items()}
        self._layout()
        self.compact()
        self.vloss = torch.func.vmap(task.loss, in_dims=(0, None))
        self.vval = torch.func.vmap(task.val_loss or task.loss, in_dims=(0, None))
        self.model = compiled_model.get(task) if self.compile else None

    def _layout(self) -> None:
        """Per group, its rows ``start:stop`` and the views a step reads and writes (the buffer
        and the learning rates change in place, so these stay valid until the next compaction)."""
        self.any_flat = any(g.flat for g in self.groups)
        K = self.P.shape[0]
        self.lr_now = torch.empty_like(self.base_lr)
        lr_by_ndim = {nd: self.lr_now.view(K, *([1] * (nd - 1)))
                      for nd in {2, *(len(s) + 1 for s in self.shapes.values())}}
        start = 0
        for grp in self.groups:
            stop = start + len(grp.rows)
            grp.start, grp.stop = start, stop
            grp.w = self.P[start:stop] if grp.flat else [self.params[n][start:stop] for n in self.names]
            grp.lr = (lr_by_ndim[2][start:stop] if grp.flat else
                      [lr_by_ndim[len(self.shapes[n]) + 1][start:stop] for n in self.names])
            start = stop

    def _views(self, P: Optional[Tensor] = None) -> dict[str, Tensor]:
        """Per-tensor views ``[K, *shape]`` of ``P`` (default: the buffer; then also ``self.params``)."""
        src = self.P if P is None else P
        k = src.shape[0]
        views = {n: src[:, a:b].view(k, *self.shapes[n]) for n, (a, b) in self.spans.items()}
        if P is None:
            self.params = views
        return views

    def compact(self) -> None:
        """Drop failed copies from the buffer, the groups and their states."""
        if not self.dirty:
            return
        self.check_train()
        self.dirty = False
        rows = self.rows()
        keep = [p for p, i in enumerate(rows) if i not in self.failed]
        if len(keep) == len(rows):
            return
        idx = torch.tensor(keep, dtype=torch.long, device=self.task.device)
        self.P = self.P.index_select(0, idx)
        self._views()
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
        self._layout()

    # ------------------------------------------------------------------ the loop
    def contiguous(self) -> dict[str, Tensor]:
        """Each parameter tensor of every copy as a contiguous ``[K, *shape]`` tensor, the layout
        of the reference trainer (views of the buffer that are contiguous are not copied):
        the model and the programs with shaped ops see exactly the reference's tensors."""
        return {n: v.detach().contiguous() for n, v in self.params.items()}

    def val_losses(self) -> Tensor:
        """Validation losses ``[K]``: compiled, or on the reference's contiguous tensors."""
        if self.model is not None:
            vals = self.model.validation(self.P, self.spans, self.shapes)
            if vals is not None:
                return vals
        return self.vval(self.contiguous(), self.task.val_batch)

    def gradients(self, batch: Any) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor], Optional[Tensor]]:
        """Per-copy training losses ``[K]``, parameters and gradients ``{name: [K, *shape]}`` and,
        when a group steps flat, the gradients as one ``[K, D]`` buffer (else None)."""
        K = self.P.shape[0]
        if self.model is not None:
            out = self.model(self.P, self.spans, self.shapes, batch)
            if out is not None:
                losses, G = out
                return losses, self.params, self._views(G), G
            self.model = None  # compilation unavailable: warned once, eager from here on
        ps = {n: v.requires_grad_(True) for n, v in self.contiguous().items()}
        losses = self.vloss(ps, batch)
        grads = torch.autograd.grad(losses.sum(), [ps[n] for n in self.names], allow_unused=True)
        grads = {n: (torch.zeros_like(ps[n]) if g is None else g) for n, g in zip(self.names, grads)}
        G = None
        if self.any_flat:
            G = (grads[self.names[0]].reshape(K, -1) if len(self.names) == 1 else
                 torch.cat([grads[n].reshape(K, -1) for n in self.names], 1))
        return losses.detach(), {n: v.detach() for n, v in ps.items()}, grads, G

    def step(self, step: int) -> None:
        task = self.task
        losses, params, grads, G = self.gradients(task.batch(step, self.seed))
        self.pending.append((step, losses))
        torch.mul(self.base_lr, task.lr_factor(step, self.steps), out=self.lr_now)
        t = float(step + 1)
        names = self.names
        one = len(names) == 1
        with torch.no_grad():
            for grp in self.groups:
                start, stop = grp.start, grp.stop
                try:
                    if grp.flat:   # every tensor of the model side by side: rows of the buffer
                        upd, st = grp.runner.run_one(grp.w, G[start:stop], grp.lr, t, grp.state[""], (1,))
                        _write([grp.w], [upd])
                        grp.state = {"": st}
                    elif one:
                        (n,) = names
                        w = params[n][start:stop]
                        upd, st = grp.runner.run_one(w, grads[n][start:stop], grp.lr[0], t, grp.state[n],
                                                     self.reduce[n])
                        _write([w], [upd], grp.w)
                        grp.state = {n: st}
                    else:
                        ws = [params[n][start:stop] for n in names]
                        ups, sts = grp.runner.run_group(ws, [grads[n][start:stop] for n in names], grp.lr, t,
                                                        [grp.state[n] for n in names], [self.reduce[n] for n in names])
                        _write(ws, ups, grp.w)
                        grp.state = dict(zip(names, sts))
                except Exception as e:
                    for i in grp.rows:
                        self.fail(i, ERROR, f"{_err(e)} (step {step})", step)


class _Apply:
    """`dsl.runner.BatchedRunner`'s calls answered by the compiled program's own ``apply``
    (flat groups) and ``apply_group``, as the reference trainer calls them."""

    def __init__(self, cp: dsl.CompiledProgram, flat: bool):
        self.cp, self.flat = cp, flat

    def run_one(self, w: Tensor, g: Tensor, lr: Tensor, t: float, state: dict, dims: tuple) -> tuple:
        if self.flat:
            return self.cp.apply(w, g, lr, t, state, reduce_dims=dims)
        ups, sts = self.cp.apply_group([w], [g], [lr], t, [state], reduce_dims=[dims])
        return ups[0], sts[0]

    def run_group(self, ws: list, gs: list, lrs: list, t: float, states: list, dims: list) -> tuple:
        return self.cp.apply_group(ws, gs, lrs, t, states, reduce_dims=dims)


def _write(ws: list[Tensor], ups: list[Tensor], outs: Optional[list[Tensor]] = None) -> None:
    """``out = w - update`` (default: ``w`` in place) as the reference's ``(w - u).to(w.dtype)``;
    ``outs`` are views of the buffer.

    Every update is checked before any is written, so a failing group leaves its rows as they
    were; an update that does not broadcast to its parameter raises the reference's error."""
    for w, u in zip(ws, ups):
        if u.shape != w.shape and (w - u).shape != w.shape:  # the reference's arithmetic and errors
            raise ValueError(f"update of shape {tuple(u.shape)} for parameters of shape {tuple(w.shape)}")
    for w, u, out in zip(ws, ups, outs or ws):
        if u.dtype == w.dtype:
            torch.sub(w, u, out=out)
        else:
            out.copy_(w - u)
