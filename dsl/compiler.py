"""Compile a `Program` into torch functions.

Two entry points share one instruction list:
- `CompiledProgram.step_foreach` steps a list of parameters at once with ``torch._foreach_*``
  ops where the op table has a fast path (per-tensor loops otherwise): the optimizer's path.
  It runs a plan from `dsl.fastpath` (fused statements, buffers reused by static liveness,
  slots updated in place) and falls back to the plain statement-by-statement loop when a
  plan cannot run (tensor hyperparameters, mixed dtypes, autograd recording).
- `CompiledProgram.apply_group` runs the rule on a parameter group's tensors side by side, each
  op per tensor except whole-group functions (``global_norm``), which see them all. With
  ``reduce_dims`` it treats leading dims as independent copies (the batched evaluator stacks K
  models as ``[K, ...]`` tensors and passes per-copy learning rates as ``[K, 1, ...]``
  tensors); reductions stay per copy. `CompiledProgram.apply` is a group of one tensor.

Statements whose arguments are all scalars (``1 - 0.9 ** t``) are computed once per call in
float64 with IEEE semantics.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from . import fastpath
from .ops import OPS, Op, scalar_eval
from .program import Arg, Program
from .values import as_tensor, fit, materialize, owns_input, slot_values

__all__ = ["CompiledProgram", "compile"]

Scalar = Union[float, Tensor]


@dataclass(frozen=True)
class _Instr:
    target: str
    op: Op
    args: tuple[Arg, ...]


def compile(program: Program) -> "CompiledProgram":  # noqa: A001 - the DSL's verb
    """A callable form of ``program`` (cached on the program value)."""
    cp = program._cache.get("compiled")
    if cp is None:
        cp = program._cache["compiled"] = CompiledProgram(program)
    return cp


def _value(env: Mapping[str, Any], a: Arg) -> Any:
    return a if isinstance(a, float) else env[a]


class CompiledProgram:
    def __init__(self, program: Program):
        self.program = program
        self.instrs = tuple(_Instr(s.target, OPS[s.op], s.args) for s in program.body)
        self.defaults = dict(program.hparams)
        # Statements of t, hyperparameters and constants only (bias corrections like 1 - b ** t)
        # are the same for every tensor of a step: computed once per (t, hyperparameters).
        static: set[str] = {"t", *self.defaults}
        for ins in self.instrs:
            if not ins.op.never_scalar and all(isinstance(a, float) or a in static for a in ins.args):
                static.add(ins.target)
        self.static = tuple(i for i in self.instrs if i.target in static)
        self.dynamic = tuple(i for i in self.instrs if i.target not in static)
        self._memo: tuple = (None, {})
        self._plans: dict[bool, Any] = {}

    def _static_values(self, t: float, hp: Mapping[str, Any]) -> Optional[dict[str, float]]:
        """Values of the static statements, or None when a hyperparameter is a tensor."""
        if any(isinstance(v, Tensor) for v in hp.values()):
            return None
        key = (t, tuple(hp.values()))
        memo_key, values = self._memo
        if memo_key == key:
            return values
        env: dict[str, Any] = {"t": t, **hp}
        for ins in self.static:
            env[ins.target] = scalar_eval(ins.op, [_value(env, a) for a in ins.args])
        values = {ins.target: env[ins.target] for ins in self.static}
        self._memo = (key, values)
        return values

    def _prepare(self, env: dict, t: float, hparams: Optional[Mapping[str, Any]]) -> tuple:
        """Put hyperparameters and static values into ``env``; return the instructions left to run."""
        hp = self.hparams(hparams)
        env.update(hp)
        static = self._static_values(float(t), hp)
        if static is None:
            return self.instrs
        env.update(static)
        return self.dynamic

    def hparams(self, overrides: Optional[Mapping[str, float]] = None) -> dict[str, Any]:
        hp = dict(self.defaults)
        if overrides:
            unknown = set(overrides) - set(hp)
            if unknown:
                raise KeyError(f"unknown hyperparameters {sorted(unknown)} for program "
                               f"{self.program.name!r} (has {sorted(hp)})")
            hp.update(overrides)
        return hp

    def init_state(self, w: Tensor) -> dict[str, Tensor]:
        """Fresh state slots for a parameter (or a stack of copies), filled with initial values."""
        return {x: torch.full_like(w, fit(v, torch.finfo(w.dtype).max), memory_format=torch.preserve_format)
                for x, v in self.program.slots}

    # ---------------------------------------------------------------- one tensor / K copies
    @property
    def uses_group(self) -> bool:
        """Does the program call a whole-group function (`global_norm`)? Its per-tensor `apply`
        then treats the one tensor as the whole group; step groups with `apply_group`."""
        return any(ins.op.group is not None for ins in self.instrs)

    def apply(self, w: Tensor, g: Tensor, lr: Scalar, t: float, state: Mapping[str, Tensor],
              hparams: Optional[Mapping[str, Any]] = None,
              reduce_dims: Optional[Sequence[int]] = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Return ``(update, next_state)`` for one tensor; nothing is modified in place.

        ``reduce_dims=None`` reduces over the whole tensor; a tuple reduces over those dims only.
        ``lr`` and hyperparameters may be tensors broadcastable against ``w``. Group functions
        (`global_norm`) see this tensor as the whole group: `apply_group` for a real group.
        """
        dims = None if reduce_dims is None else [tuple(reduce_dims)]
        ups, nxt = self.apply_group([w], [g], [lr] if isinstance(lr, Tensor) else lr, t, [state], hparams, dims)
        return ups[0], nxt[0]

    def apply_group(self, ws: Sequence[Tensor], gs: Sequence[Tensor], lr: Any, t: float,
                    states: Sequence[Mapping[str, Tensor]], hparams: Optional[Mapping[str, Any]] = None,
                    reduce_dims: Optional[Sequence[Sequence[int]]] = None) -> tuple[list, list]:
        """``([update per tensor], [next state per tensor])`` for a parameter group; nothing is
        modified in place. Per tensor as `apply` (``reduce_dims``: one tuple per tensor, or None);
        group functions see every tensor. ``lr``: a float, or a list with one value per tensor;
        tensor hyperparameters are shared by every tensor.
        """
        n = len(ws)
        dims = [None] * n if reduce_dims is None else [tuple(d) for d in reduce_dims]
        fmax = torch.finfo(ws[0].dtype).max if n else 0.0
        env: dict[str, Any] = {"w": list(ws), "g": list(gs), "lr": lr, "t": float(t)}
        for x, _ in self.program.slots:
            env[x] = [st[x] for st in states]
        instrs = self._prepare(env, t, hparams)
        for k, v in list(env.items()):
            if isinstance(v, Tensor):  # shared tensors (hyperparameters): one entry per tensor
                env[k] = [v] * n
        for ins in instrs:
            args = [_value(env, a) for a in ins.args]
            if not ins.op.never_scalar and not any(isinstance(a, list) for a in args):
                env[ins.target] = scalar_eval(ins.op, args)
                continue
            args = [fit(a, fmax) for a in args]
            if ins.op.group is not None:
                out = ins.op.run_group(args[0], ws, None if reduce_dims is None else dims)
            else:
                out = [ins.op.run([a[i] if isinstance(a, list) else a for a in args], dims[i], ws[i])
                       for i in range(n)]
            # an op may pick a scalar argument (where with a scalar condition): keep tensors
            env[ins.target] = [o if isinstance(o, Tensor) else as_tensor(o, w) for o, w in zip(out, ws)]
        u = _value(env, self.program.update)
        updates = [as_tensor(u[i] if isinstance(u, list) else u, ws[i]) for i in range(n)]
        nxt: list[dict] = [{} for _ in range(n)]
        for (x, _), a in zip(self.program.slots, self.program.next_state):
            v = _value(env, a)
            for i in range(n):
                vi = v[i] if isinstance(v, list) else v
                nxt[i][x] = materialize(vi, ws[i], copy=owns_input(vi, ws[i], gs[i]))
        return updates, nxt

    # ---------------------------------------------------------------- many tensors at once
    reuse_slots: bool = True
    """Whether `step_foreach` may overwrite slot tensors in place (see `dsl.fastpath`)."""

    def plan(self, reuse_slots: bool = True):
        """The `dsl.fastpath.Plan` of this program (built once); ``print`` it to see the steps."""
        plan = self._plans.get(reuse_slots)
        if plan is None:
            plan = self._plans[reuse_slots] = fastpath.build_plan(self, reuse_slots)
        return plan

    def step_foreach(self, params: list[Tensor], grads: list[Tensor], states: list[dict],
                     lr: float, t: float, hparams: Optional[Mapping[str, Any]] = None) -> None:
        """Apply the rule to every parameter in place: ``p -= update``; slots in ``states`` updated.

        All tensors must share device and dtype (and the step ``t``). Slot tensors may be
        overwritten in place (as ``torch.optim`` does); ``states`` then holds the new values.
        """
        if not params:
            return
        hp = self.hparams(hparams)
        static = self._static_values(float(t), hp)
        if static is not None:
            plan = self.plan(self.reuse_slots)
            ok, slots_writable = fastpath.check(params, grads, states, self.program.slot_names,
                                                plan.writes_slots)
            if ok:
                if plan.writes_slots and not slots_writable:
                    plan = self.plan(False)
                env: dict[str, Any] = {"lr": float(lr), "t": float(t), **hp, **static}
                plan.run(params, grads, states, env)
                return
        self._step_foreach_plain(params, grads, states, lr, t, hparams)

    def _step_foreach_plain(self, params: list[Tensor], grads: list[Tensor], states: list[dict],
                            lr: float, t: float, hparams: Optional[Mapping[str, Any]] = None) -> None:
        """`step_foreach` one statement at a time, each into a fresh list of tensors."""
        env: dict[str, Any] = {"w": params, "g": grads, "lr": float(lr), "t": float(t)}
        for x, _ in self.program.slots:
            env[x] = [st[x] for st in states]
        n = len(params)
        fmax = torch.finfo(params[0].dtype).max
        for ins in self._prepare(env, t, hparams):
            args = [_value(env, a) for a in ins.args]
            if not ins.op.never_scalar and not any(isinstance(a, list) for a in args):
                env[ins.target] = scalar_eval(ins.op, args)
                continue
            args = [fit(a, fmax) for a in args]
            if ins.op.group is not None:
                out = ins.op.run_group(args[0], params)
            else:
                out = ins.op.foreach(*args) if ins.op.foreach is not None else None
            if out is None:
                out = [ins.op.run([a[i] if isinstance(a, list) else a for a in args], None, params[i])
                       for i in range(n)]
                # an op may pick a scalar argument (where with a scalar condition): keep lists of tensors
                out = [o if isinstance(o, Tensor) else as_tensor(o, p) for o, p in zip(out, params)]
            env[ins.target] = list(out)
        # copied per tensor: a list other than params may hold parameter tensors (where with a
        # scalar condition returns its argument), which the update below changes in place
        new = [(x, slot_values(_value(env, a), params, grads))
               for (x, _), a in zip(self.program.slots, self.program.next_state)]
        update = _value(env, self.program.update)
        for x, vals in new:
            for st, vi in zip(states, vals):
                st[x] = vi
        if isinstance(update, list):
            torch._foreach_sub_(params, update)
        else:
            torch._foreach_sub_(params, float(update))
