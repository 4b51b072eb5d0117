"""A program's whole optimizer step over a list of parameters, compiled with ``torch.compile``.

`CompiledStep` traces the program's op graph (the `CompiledProgram` instruction list, never
program text) into one function ``step(params, grads, slots, scalars)`` that updates ``params``
and the slot tensors in place, and hands it to ``torch.compile`` (Inductor on CPU generates
one fused loop per parameter from it).

No recompilation per step: every number that changes between steps (``lr``, ``t``, the
hyperparameters, and the statements of only those, such as ``1 - beta2 ** t``) enters as a
0-dim tensor, never as a Python float the graph would specialize on. Those statements are
computed outside the graph in float64 with `dsl.ops.scalar_eval`, exactly as the uncompiled
path computes them; the 0-dim tensors have the parameters' dtype (float32 for lower
precisions), the precision torch's CPU kernels give a Python scalar. The graph is specialized
on the parameters' number, shapes, dtypes and device (``dynamic=False``): a new set of them
compiles once more.
"""
from __future__ import annotations

import time
import types
import warnings
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor

from . import fastpath
from .compiler import CompiledProgram, _value
from .ops import scalar_eval
from .values import fit

__all__ = ["CompiledStep", "CompileUnavailable"]


class CompileUnavailable(RuntimeWarning):
    """``torch.compile`` failed for a step: the optimizer continues on the uncompiled path."""


class CompiledStep:
    """The step of a `CompiledProgram`, compiled; ``options`` go to ``torch.compile``
    (``backend``, ``mode``, ``options``, ...; ``fullgraph=True`` and ``dynamic=False`` unless given).

    ``compile_seconds``: wall time of the first call per distinct set of tensors (trace,
    Inductor code generation and one step), so steady-state step times stay separate.
    """

    def __init__(self, compiled: CompiledProgram, **options: Any):
        self.compiled = compiled
        program = compiled.program
        self.slots = program.slot_names
        # outer: names whose value is a number per step (t, lr, hyperparameters, their statements)
        outer: set[str] = {"t", "lr", *compiled.defaults}
        self.outer_instrs = []
        for ins in compiled.instrs:
            if not ins.op.never_scalar and all(isinstance(a, float) or a in outer for a in ins.args):
                outer.add(ins.target)
                self.outer_instrs.append(ins)
        self.inner_instrs = tuple(i for i in compiled.instrs if i.target not in outer)
        read = {a for i in self.inner_instrs for a in i.args if isinstance(a, str)}
        read.update(a for a in (program.update, *program.next_state) if isinstance(a, str))
        self.scalar_names = tuple(sorted(n for n in outer if n in read))
        self.options = {"fullgraph": True, "dynamic": False, **options}
        self._fn: Optional[Callable] = None
        self.failed: Optional[BaseException] = None
        self.compile_seconds = 0.0
        self._seen: set = set()

    # ------------------------------------------------------------------ the traced function
    def _step(self, params: list[Tensor], grads: list[Tensor], slots: list[list[Tensor]],
              scalars: list[Tensor]) -> None:
        """``p -= update`` and slots set to their next values, one program run per parameter."""
        program = self.compiled.program
        n = len(params)
        env: dict[str, Any] = {"w": params, "g": grads}
        env.update(zip(self.slots, slots))
        env.update(zip(self.scalar_names, scalars))
        for ins in self.inner_instrs:
            args = [_value(env, a) for a in ins.args]
            if ins.op.group is not None:
                env[ins.target] = ins.op.run_group(args[0], params)
            else:
                env[ins.target] = [ins.op.run([a[i] if isinstance(a, list) else a for a in args], None, params[i])
                                   for i in range(n)]
        inputs = [*params, *grads, *(t for ts in slots for t in ts)]

        def per_tensor(a: Any, i: int) -> Any:
            v = _value(env, a)
            v = v[i] if isinstance(v, list) else v
            # an input tensor itself (a slot's next value is w, g or another slot) is read before
            # anything is written: copied
            return v.clone() if isinstance(v, Tensor) and any([v is x for x in inputs]) else v

        for i in range(n):
            nxt = [per_tensor(a, i) for a in program.next_state]
            u = per_tensor(program.update, i)
            for ts, v in zip(slots, nxt):
                if isinstance(v, Tensor):
                    ts[i].copy_(v)
                else:
                    ts[i].fill_(v)
            params[i].sub_(u)

    def _own_step(self) -> Callable:
        """`_step` bound to this instance, with a code object of its own: Dynamo keeps compiled
        graphs per code object (at most ``torch._dynamo.config.recompile_limit``, then runs eager),
        so optimizers of different programs sharing `_step`'s would count as its recompilations."""
        f = CompiledStep._step
        name = f"step_{self.compiled.program.name}"
        code = f.__code__.replace(co_name=name, co_qualname=name)
        return types.MethodType(types.FunctionType(code, f.__globals__, name, f.__defaults__, f.__closure__), self)

    # ------------------------------------------------------------------ calling it
    def scalars(self, lr: float, t: float, hp: Mapping[str, float], like: Tensor) -> list[Tensor]:
        """The per-step numbers as 0-dim tensors (module doc), statements computed in float64."""
        env: dict[str, Any] = {"lr": float(lr), "t": float(t), **{k: float(v) for k, v in hp.items()}}
        for ins in self.outer_instrs:
            env[ins.target] = scalar_eval(ins.op, [_value(env, a) for a in ins.args])
        dtype = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float32
        fmax = torch.finfo(like.dtype).max
        return [torch.tensor(fit(float(env[n]), fmax), dtype=dtype, device=like.device)
                for n in self.scalar_names]

    def __call__(self, params: list[Tensor], grads: list[Tensor], states: Sequence[dict],
                 lr: float, t: float, hp: Mapping[str, float]) -> bool:
        """Step ``params`` in place; False (nothing changed) when compilation is unavailable."""
        if self.failed is not None:
            return False
        # in place needs one dtype, no autograd recording and slot tensors of their own (`fastpath.check`)
        ok, writable = fastpath.check(params, grads, states, self.slots, True)
        if not ok or (self.slots and not writable):
            return False
        slots = [[st[x] for st in states] for x in self.slots]
        scalars = self.scalars(lr, t, hp, params[0])
        key = tuple((p.shape, p.dtype, p.device) for p in params)
        if key in self._seen:
            self._fn(params, grads, slots, scalars)
            return True
        start = time.perf_counter()
        try:
            if self._fn is None:
                self._fn = torch.compile(self._own_step(), **self.options)
            self._fn(params, grads, slots, scalars)
        except Exception as e:  # noqa: BLE001 - any backend failure: fall back, once, loudly
            # a compile failure is raised before the compiled code runs: nothing was written
            self.failed = e
            warnings.warn(f"torch.compile of program {self.compiled.program.name!r} failed "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                          f"stepping uncompiled", CompileUnavailable, stacklevel=3)
            return False
        self.compile_seconds += time.perf_counter() - start
        self._seen.add(key)
        return True
