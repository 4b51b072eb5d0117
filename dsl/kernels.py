"""Elementwise computations on lists of tensors, each in the three forms the optimizer step uses.

The op table (`dsl.ops`) names, per op and per argument pattern, the `Kernel` that computes
it; `CompiledProgram.step_foreach` runs the ``fresh`` form (one ``torch._foreach_*`` call
for all parameters), and the fast path (`dsl.fastpath`) also the ``inplace`` and ``out``
forms, which give the same values into memory that is already there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

__all__ = ["Kernel", "foreach", "fused", "LERP", "SQUARE", "CLIP"]


@dataclass(frozen=True)
class Kernel:
    """An elementwise computation on lists of tensors, in three forms with the same results.

    Arguments come in the kernel's order (the first is a list). ``fresh(*args)`` returns new
    tensors, ``inplace(*args)`` writes the result into ``args[0]``, and
    ``out(*args_i, out=o)`` computes the result for one parameter into the tensor ``o``.
    ``commutative``: the first two arguments may be swapped with a bit-identical result.
    """

    name: str
    fresh: Callable[..., list]
    inplace: Callable[..., Any]
    out: Callable[..., Any]
    commutative: bool = False


def foreach(name: str, commutative: bool = False) -> Kernel:
    """``torch._foreach_<name>``, ``torch._foreach_<name>_`` and ``torch.<name>(..., out=)``."""
    return Kernel(name, getattr(torch, f"_foreach_{name}"), getattr(torch, f"_foreach_{name}_"),
                  getattr(torch, name), commutative)


def fused(name: str, fe: Callable, fe_: Callable, pt: Callable, **kw: Any) -> Kernel:
    """A kernel with fixed keyword arguments (``value=-1.0``) in all three forms."""
    return Kernel(name, lambda *a: fe(*a, **kw), lambda *a: fe_(*a, **kw),
                  lambda *a, out: pt(*a, out=out, **kw))


def _clip_fresh(x, lo, hi):
    r = torch._foreach_clamp_min(x, lo)
    torch._foreach_clamp_max_(r, hi)
    return r


def _clip_inplace(x, lo, hi):
    torch._foreach_clamp_min_(x, lo)
    torch._foreach_clamp_max_(x, hi)


def _clip_out(x, lo, hi, out):
    torch.clamp_min(x, lo, out=out)
    torch.clamp_max(out, hi, out=out)


LERP = Kernel("lerp", torch._foreach_lerp, torch._foreach_lerp_, torch.lerp)
"""``lerp(a, b, beta) = a + beta * (b - a)``: the op ``interp``."""
SQUARE = Kernel("square", lambda a: torch._foreach_mul(a, a), lambda a: torch._foreach_mul_(a, a),
                lambda a, out: torch.mul(a, a, out=out))
CLIP = Kernel("clip", _clip_fresh, _clip_inplace, _clip_out)
"""``min(max(x, lo), hi)`` with scalar bounds."""
