"""Step a program on fixed inputs: the one harness behind numeric equality checks and fingerprints.

`Inputs` holds a few steps' worth of inputs (gradients, learning rates, step counts, and either
the weights of each step or a start from which the weights follow the updates); `trajectory`
runs a program over them and returns each step's update and slot values. `random_inputs` draws
the float64 inputs the symbolic checks use. Nothing here needs sympy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Union

import torch
from torch import Tensor

from .compiler import CompiledProgram, compile
from .program import Program

__all__ = ["Inputs", "random_inputs", "trajectory"]


@dataclass(frozen=True)
class Inputs:
    """Inputs for ``len(gs)`` steps of one tensor.

    ``ws``: the weights at each step; None means they follow the updates from ``w0``
    (``w <- w - update``, as in training). ``w0`` also shapes the slots' initial values.
    """

    w0: Tensor
    gs: tuple[Tensor, ...]
    lrs: tuple[float, ...]
    ts: tuple[float, ...]
    ws: Optional[tuple[Tensor, ...]] = None

    @property
    def steps(self) -> int:
        return len(self.gs)


def random_inputs(gen: torch.Generator, shape: tuple = (3, 4), steps: int = 4, *,
                  lr: Union[float, tuple[float, float]] = 0.3, t0: float = 1.0) -> Inputs:
    """Standard-normal float64 weights and gradients drawn from ``gen`` (w then g, step by step);
    ``lr`` a constant or, as ``(lo, hi)``, uniform per step (drawn after that step's g); ``t = t0 + k``."""
    ws, gs, lrs = [], [], []
    for _ in range(steps):
        ws.append(torch.randn(shape, generator=gen, dtype=torch.float64))
        gs.append(torch.randn(shape, generator=gen, dtype=torch.float64))
        if isinstance(lr, tuple):
            lo, hi = lr
            lrs.append(lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64)))
        else:
            lrs.append(float(lr))
    return Inputs(torch.zeros(shape, dtype=torch.float64), tuple(gs), tuple(lrs),
                  tuple(float(t0 + k) for k in range(steps)), tuple(ws))


def trajectory(program: Union[Program, CompiledProgram], inputs: Inputs,
               state: Optional[Mapping[str, Tensor]] = None,
               hparams: Optional[Mapping[str, float]] = None) -> list[tuple[Tensor, dict]]:
    """``[(update, slots after the step), ...]``, one pair per step; the update is broadcast to
    the weights' shape. ``state`` defaults to the slots' initial values; ``hparams`` overrides
    defaults. Errors of the program (shape, dtype) propagate."""
    cp = compile(program) if isinstance(program, Program) else program
    w = inputs.w0
    st = dict(cp.init_state(w) if state is None else state)
    out = []
    for k in range(inputs.steps):
        wk = w if inputs.ws is None else inputs.ws[k]
        upd, st = cp.apply(wk, inputs.gs[k], inputs.lrs[k], inputs.ts[k], st, hparams)
        upd = upd.expand_as(wk)
        out.append((upd, st))
        if inputs.ws is None:
            w = w - upd
    return out
