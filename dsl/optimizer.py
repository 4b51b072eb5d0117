"""`ProgramOptimizer`: any program as a real ``torch.optim.Optimizer``."""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Callable, Iterable, Optional, Union

import torch

from .compiled_step import CompiledStep
from .compiler import compile as compile_program
from .program import Program

__all__ = ["ProgramOptimizer", "as_program"]


def as_program(program: Union[Program, str, os.PathLike]) -> Program:
    """A `Program` from a value, program text, or a path to a program file."""
    from .parser import load, parse

    if isinstance(program, Program):
        return program
    if isinstance(program, os.PathLike) or (isinstance(program, str) and "\n" not in program
                                            and program.endswith(".py")):
        return load(program)
    if isinstance(program, str):
        return parse(program)
    raise TypeError(f"expected a Program, program text or a path, got {type(program).__name__}")


class ProgramOptimizer(torch.optim.Optimizer):
    """Steps parameters with a program: ``p <- p - update(w=p, g=p.grad, lr, t, state)``.

    ``lr`` and the program's hyperparameters are per param group (so schedulers and
    ``add_param_group`` work as with any torch optimizer). Slots live in ``self.state[p]``
    under their names, next to ``step`` (the count ``t`` of the last step).
    Parameters sharing device, dtype and step are updated together with multi-tensor ops.
    A program with a whole-group function (``global_norm``) steps each param group in one call
    over every parameter with a gradient; they must then share device, dtype and step count
    (a ValueError otherwise).

    ``compile=True`` steps each such set of parameters with one ``torch.compile``d function of the
    whole step (`dsl.compiled_step`; ``compile_options`` go to ``torch.compile``, e.g.
    ``{"backend": "eager"}``); where compilation fails it warns once (`CompileUnavailable`) and
    steps uncompiled. ``compile_seconds`` gives the time spent compiling (first calls).
    """

    def __init__(self, params: Iterable, program: Union[Program, str, os.PathLike], lr: float = 1e-3,
                 *, compile: bool = False, compile_options: Optional[dict] = None,  # noqa: A002
                 **hyperparameters: Any):
        program = as_program(program)
        unknown = set(hyperparameters) - set(program.hparam_names)
        if unknown:
            raise TypeError(f"program {program.name!r} has no hyperparameter(s) {sorted(unknown)}; "
                            f"it has {list(program.hparam_names) or 'none'}")
        if "step" in program.slot_names:
            raise ValueError("a state slot may not be called 'step' (ProgramOptimizer keeps the step count there)")
        if not 0.0 <= float(lr):
            raise ValueError(f"invalid learning rate: {lr}")
        defaults = {"lr": lr, **dict(program.hparams), **hyperparameters}
        super().__init__(params, defaults)
        self.program = program
        self._compiled = compile_program(program)
        self._compiled_step = CompiledStep(self._compiled, **(compile_options or {})) if compile else None

    @property
    def compile_seconds(self) -> float:
        """Wall time of the compiled step's first calls (tracing, code generation, one step); 0 uncompiled."""
        return self._compiled_step.compile_seconds if self._compiled_step is not None else 0.0

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        names = self.program.hparam_names
        for group in self.param_groups:
            buckets: dict[tuple, list] = defaultdict(list)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("ProgramOptimizer does not support sparse gradients")
                if torch.is_complex(p):
                    raise RuntimeError("ProgramOptimizer does not support complex parameters")
                step = float(self.state[p]["step"]) + 1.0 if p in self.state and self.state[p] else 1.0
                buckets[(p.device, p.dtype, step)].append(p)
            if self._compiled.uses_group and len(buckets) > 1:  # checked before any state changes
                raise ValueError(
                    f"program {self.program.name!r} uses a whole-group function (global_norm): every parameter "
                    f"with a gradient in a param group must share device, dtype and step count; found "
                    f"{sorted((str(d), str(dt), t) for d, dt, t in buckets)}")
            for (_, _, t), ps in buckets.items():
                for p in ps:
                    state = self.state[p]
                    if not state:
                        state.update(self._compiled.init_state(p))
                    state["step"] = t
            hp = {k: _scalar(group[k]) for k in names}
            for (_, _, t), ps in buckets.items():
                if self._compiled_step is not None and self._compiled_step(
                        ps, [p.grad for p in ps], [self.state[p] for p in ps], _scalar(group["lr"]), t, hp):
                    continue
                self._compiled.step_foreach(ps, [p.grad for p in ps], [self.state[p] for p in ps],
                                            _scalar(group["lr"]), t, hp)
        return loss


def _scalar(x: Any) -> float:
    return float(x.item() if isinstance(x, torch.Tensor) else x)
