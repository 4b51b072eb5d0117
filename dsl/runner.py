"""`CompiledProgram.apply_group` for the batched trainer, with a fraction of its Python per statement.

The batched evaluator (`tasks.train_fast`) steps each program's copies with one call per step,
and on its small models most of that call is the interpreter, not torch: ``apply_group``
resolves every argument through ``_value`` and ``fit``, tests for lists and scalars, and builds
nested lists per statement (about 4 us of Python around a 1-2 us op). `BatchedRunner` makes
those decisions once per program: the trainer always passes ``w``, ``g``, ``lr`` and every slot
as tensors (``lr`` one ``[k, 1, ...]`` tensor per parameter tensor) and never overrides a
hyperparameter, so which argument is a number (a constant, ``t``, a hyperparameter or a
statement of only those: the compiler's static statements) and which a tensor is known before
the first call, and each statement becomes a closure that calls the op with its arguments
already in place.

The arithmetic is ``apply_group``'s: the same op functions (`dsl.ops.Op.run`, ``run_group``) on
the same arguments in the same order, static statements computed by `dsl.ops.scalar_eval` in
float64 as the compiler computes them (memoized by the statements' structure, ``t`` and the
dtype: every run of a task repeats the same ``t`` values, and AdamW's ``1 - beta ** t`` took
half of its step), numbers passed through ``fit`` (IEEE overflow) as ``apply_group`` does,
updates and next slot values made by the same helpers. Results are bit for bit
``apply_group``'s (tested for every seed program, with inf, nan and signed zeros).

Two forms: `BatchedRunner.run_one` (one tensor, every value a bare tensor: a model of one
parameter tensor, or a program with no shaped op on the whole model flattened) and
`BatchedRunner.run_group` (one tensor per parameter tensor, values as lists, whole-group
functions see them all).
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from .compiler import CompiledProgram
from .ops import scalar_eval
from .values import as_tensor, fit, materialize, owns_input

__all__ = ["BatchedRunner"]

_NAME, _CONST = 0, 1


class BatchedRunner:
    """One program's step on stacked copies (module doc). ``flat``: the program has no shaped
    op, so `run_one` may step a whole model flattened into one tensor."""

    def __init__(self, compiled: CompiledProgram):
        self.compiled = compiled
        program = compiled.program
        self.hp = compiled.hparams()
        self.slots = program.slot_names
        self.next_state = tuple(zip(program.slot_names, program.next_state))
        self.update = program.update
        self.flat = not any(ins.op.shaped for ins in compiled.instrs)
        static = {"t", *compiled.defaults, *(i.target for i in compiled.static)}
        # static values that tensor statements, the update or a slot read (fitted once per call)
        self._static_read = tuple(sorted({a for i in compiled.dynamic for a in i.args
                                          if isinstance(a, str) and a in static}
                                         | {a for a in (program.update, *program.next_state)
                                            if isinstance(a, str) and a in static}))
        self._static = compiled.static
        self._instrs = compiled.dynamic
        for ins in self._instrs:
            if not ins.op.never_scalar and all(isinstance(a, float) or a in static for a in ins.args):
                raise AssertionError(f"statement {ins.target} of static arguments among dynamic ones")
        # the static statements and hyperparameters as a value (constants by their exact bits)
        structure = (tuple((i.target, i.op.name, tuple(a.hex() if isinstance(a, float) else a for a in i.args))
                           for i in self._static),
                     tuple((k, float(v).hex()) for k, v in self.hp.items()), self._static_read)
        if len(_STRUCTURES) >= _STATIC_MAX:
            _STRUCTURES.clear()  # ids are never reused, so runners holding old ones stay correct
        self._static_id = _STRUCTURES.get(structure)
        if self._static_id is None:
            self._static_id = _STRUCTURES[structure] = next(_IDS)
        self._code: dict[tuple[float, bool], list] = {}

    # ------------------------------------------------------------------ building closures
    def _closures(self, fmax: float, one: bool) -> list:
        """``(target, closure)`` per dynamic statement for this dtype's ``fmax`` (`_one_closure`
        or `_group_closure`)."""
        key = (fmax, one)
        code = self._code.get(key)
        if code is None:
            make = _one_closure if one else _group_closure
            code = self._code[key] = [(ins.target, make(ins, fmax)) for ins in self._instrs]
        return code

    def _env(self, t: float, fmax: float) -> dict[str, Any]:
        """Numbers of this step: ``t``, hyperparameters and static statements (those read fitted),
        memoized by (static statements, ``t``, dtype) across runners, steps and runs."""
        key = (self._static_id, float(t), fmax)
        env = _STATIC.get(key)
        if env is None:
            env = {"t": float(t), **self.hp}
            for ins in self._static:
                env[ins.target] = scalar_eval(ins.op, [env[a] if isinstance(a, str) else a for a in ins.args])
            for a in self._static_read:
                env[a] = fit(env[a], fmax)
            if len(_STATIC) >= _STATIC_MAX:
                _STATIC.clear()
            _STATIC[key] = env
        return dict(env)

    # ------------------------------------------------------------------ running
    def run_one(self, w: Tensor, g: Tensor, lr: Tensor, t: float, state: dict[str, Tensor],
                dims: tuple[int, ...]) -> tuple[Tensor, dict[str, Tensor]]:
        """``CompiledProgram.apply(w, g, lr, t, state, reduce_dims=dims)``: ``(update, next state)``.

        One tensor: a model of one parameter tensor, or (`flat` programs) every tensor of the
        model flattened side by side, which only elementwise ops see."""
        fmax = torch.finfo(w.dtype).max
        env = self._env(t, fmax)
        env["w"], env["g"], env["lr"] = w, g, lr
        for x in self.slots:
            env[x] = state[x]
        for target, fn in self._closures(fmax, True):
            o = fn(env, w, dims)
            env[target] = o if isinstance(o, Tensor) else as_tensor(o, w)
        u = self.update
        upd = as_tensor(env[u] if isinstance(u, str) else u, w)
        nxt = {}
        for x, a in self.next_state:
            v = env[a] if isinstance(a, str) else a
            nxt[x] = materialize(v, w, copy=owns_input(v, w, g))
        return upd, nxt

    def run_group(self, ws: Sequence[Tensor], gs: Sequence[Tensor], lrs: Sequence[Tensor], t: float,
                  states: Sequence[dict[str, Tensor]], dims: Sequence[tuple[int, ...]]
                  ) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
        """``CompiledProgram.apply_group(ws, gs, lrs, t, states, reduce_dims=dims)``."""
        ws, gs = list(ws), list(gs)
        n = len(ws)
        fmax = torch.finfo(ws[0].dtype).max
        env = self._env(t, fmax)
        env["w"], env["g"], env["lr"] = ws, gs, list(lrs)
        for x in self.slots:
            env[x] = [st[x] for st in states]
        dims = [tuple(d) for d in dims]
        for target, fn in self._closures(fmax, False):
            out = fn(env, ws, dims, n)
            env[target] = [o if isinstance(o, Tensor) else as_tensor(o, w) for o, w in zip(out, ws)]
        u = self.update
        u = env[u] if isinstance(u, str) else u
        updates = [as_tensor(u[i] if isinstance(u, list) else u, ws[i]) for i in range(n)]
        nxt: list[dict] = [{} for _ in range(n)]
        for x, a in self.next_state:
            v = env[a] if isinstance(a, str) else a
            for i in range(n):
                vi = v[i] if isinstance(v, list) else v
                nxt[i][x] = materialize(vi, ws[i], copy=owns_input(vi, ws[i], gs[i]))
        return updates, nxt


_STRUCTURES: dict[tuple, int] = {}
_IDS = itertools.count()
_STATIC: dict[tuple, dict] = {}
_STATIC_MAX = 1 << 15


def _arg(a: Any, fmax: float) -> tuple[int, Any]:
    return (_CONST, fit(a, fmax)) if isinstance(a, float) else (_NAME, a)


def _one_closure(ins, fmax: float) -> Callable[..., Any]:
    """``(env, w, dims) -> value`` of a statement whose tensor values are bare tensors."""
    op = ins.op
    spec = [_arg(a, fmax) for a in ins.args]
    if op.group is not None:  # a group of one tensor: a number stays a number (`Op.run_group`)
        ((k, a),) = spec
        return lambda env, w, dims: op.run_group(_listed(env[a] if k == _NAME else a), [w], [dims])[0]
    if op.shaped:
        run = op.run
        return lambda env, w, dims: run([env[a] if k == _NAME else a for k, a in spec], dims, w)
    fn = op.torch
    if all(k == _NAME for k, _ in spec):
        names = [a for _, a in spec]
        if len(names) == 1:
            (a,) = names
            return lambda env, w, dims: fn(env[a])
        if len(names) == 2:
            a, b = names
            return lambda env, w, dims: fn(env[a], env[b])
        return lambda env, w, dims: fn(*[env[x] for x in names])
    if len(spec) == 2 and spec[1][0] == _CONST:
        a, c = spec[0][1], spec[1][1]
        return lambda env, w, dims: fn(env[a], c)
    if len(spec) == 2 and spec[0][0] == _CONST:
        c, b = spec[0][1], spec[1][1]
        return lambda env, w, dims: fn(c, env[b])
    if len(spec) == 3 and spec[0][0] == spec[1][0] == _NAME and spec[2][0] == _CONST:  # interp(a, b, beta)
        a, b, c = spec[0][1], spec[1][1], spec[2][1]
        return lambda env, w, dims: fn(env[a], env[b], c)
    return lambda env, w, dims: fn(*[env[a] if k == _NAME else a for k, a in spec])


def _listed(x: Any) -> Any:
    return [x] if isinstance(x, Tensor) else x


def _group_closure(ins, fmax: float) -> Callable[..., list]:
    """``(env, ws, dims, n) -> one value per tensor`` as ``apply_group`` computes it."""
    op = ins.op
    spec = [_arg(a, fmax) for a in ins.args]

    def values(env):
        return [env[a] if k == _NAME else a for k, a in spec]

    if op.group is not None:
        return lambda env, ws, dims, n: op.run_group(values(env)[0], ws, dims)
    run = op.run
    return lambda env, ws, dims, n: _per_tensor(run, values(env), ws, dims, n)


def _per_tensor(run: Callable, args: list, ws: list, dims: list, n: int) -> list:
    lists = [isinstance(a, list) for a in args]
    return [run([a[i] if l else a for a, l in zip(args, lists)], dims[i], ws[i]) for i in range(n)]
