"""The op table: the single place where a function of the update-rule language is defined.

Each entry holds the name used in program text, its arity, a torch implementation, an
optional multi-tensor (``torch._foreach_*``) kernels, a sympy implementation (for
simplification) and a one-line doc with its formula. Adding a function is adding one entry.

Conventions
- ``torch`` implementations take tensors or Python floats (at least one tensor) and follow
  torch broadcasting; results are floating tensors in the dtype of the tensor arguments.
  Reductions take an extra ``dims`` argument: ``None`` reduces the whole tensor to a 0-dim
  result; a tuple reduces those dims with ``keepdim=True`` (used by the batched evaluator,
  whose tensors carry a leading copy dimension).
- ``kernels`` name, per argument pattern (``'L'`` a list of tensors, one per parameter;
  ``'s'`` a scalar), the `dsl.kernels.Kernel` that computes the op on lists, in three forms
  (new tensors, in place, into given tensors) used by the optimizer's fast path
  (`dsl.fastpath`). ``foreach`` takes, per argument, a list or a Python float and returns a
  list of tensors, or ``None`` when the pattern has no multi-tensor form (the caller then
  loops the ``torch`` implementation); when not given, it is the kernels' new-tensor form.
- Floating-point semantics are IEEE: no protected division or log; NaN and inf propagate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from . import kernels as K
from .kernels import Kernel

__all__ = ["Op", "OPS", "INFIX", "op"]


@dataclass(frozen=True)
class Op:
    name: str
    arity: int
    torch: Callable[..., Tensor]
    sympy: Callable[..., Any]
    doc: str
    symbol: Optional[str] = None  # infix/prefix operator in program text, if any
    foreach: Optional[Callable[..., Optional[list]]] = None
    reduction: bool = False  # per-tensor reduction broadcast back (norm, mean, ...)
    # Elementwise kernels on lists of tensors (`dsl.kernels`), by argument pattern ('L' a list
    # of tensors, 's' a scalar): ``(pattern, kernel, argument index for each kernel argument)``.
    # They give ``foreach`` when it is not set, and the optimizer's fast path its in-place forms.
    kernels: tuple = ()
    # Python/torch expression for exported optimizers (`dsl.export_optimizer`): a str.format
    # template over the argument expressions {0}, {1}, ...; ``{i:t}`` marks an argument that
    # must be a tensor (a Python number there is written as ``w.new_tensor(x)``); ``w`` names
    # the parameter tensor (dtype and device of every value of a step).
    code: str = ""

    def __post_init__(self) -> None:
        if self.foreach is None and self.kernels:
            object.__setattr__(self, "foreach", _from_kernels(self.kernels))

    def kernel(self, pattern: str) -> Optional[tuple[Kernel, tuple[int, ...]]]:
        """``(kernel, argument order)`` for an argument pattern such as ``'Ls'``, or None."""
        return next(((k, order) for pat, k, order in self.kernels if pat == pattern), None)


# ---------------------------------------------------------------- helpers

def _like(*args: Any) -> Tensor:
    """The first tensor among ``args`` (gives dtype and device to scalars)."""
    for a in args:
        if isinstance(a, Tensor):
            return a
    raise TypeError("at least one argument must be a tensor")


def _tensor(x: Any, like: Tensor) -> Tensor:
    return x if isinstance(x, Tensor) else torch.as_tensor(x, dtype=like.dtype, device=like.device)


def _is_list(x: Any) -> bool:
    return isinstance(x, list)


def _mask(b: Tensor, *args: Any) -> Tensor:
    """Boolean tensor to 1.0/0.0 in the dtype of the floating arguments."""
    return b.to(_like(*args).dtype)


def _sp():
    import sympy

    return sympy


def _from_kernels(kernels: tuple) -> Callable[..., Optional[list]]:
    """``foreach`` from an op's kernels: the fresh form of the kernel for the arguments' pattern."""

    def run(*args):
        pattern = "".join("L" if _is_list(a) else "s" for a in args)
        for pat, k, order in kernels:
            if pat == pattern:
                return k.fresh(*[args[i] for i in order])
        return None

    return run


def _commutative(k: Kernel) -> tuple:
    """(L, L), (L, s) and, arguments swapped, (s, L)."""
    return (("LL", k, (0, 1)), ("Ls", k, (0, 1)), ("sL", k, (1, 0)))


def _left(k: Kernel) -> tuple:
    """(L, L) and (L, s): torch's foreach form needs the list first."""
    return (("LL", k, (0, 1)), ("Ls", k, (0, 1)))


def _unary(k: Kernel) -> tuple:
    return (("L", k, (0,)),)


def _minmax(elementwise: Kernel, clamp: Kernel) -> tuple:
    """maximum/minimum: of two lists, or a list clamped by a scalar (either side)."""
    return (("LL", elementwise, (0, 1)), ("Ls", clamp, (0, 1)), ("sL", clamp, (1, 0)))


def _fe_pow(a, b):
    if _is_list(a) or _is_list(b):
        return torch._foreach_pow(a, b)
    return None


# ---------------------------------------------------------------- torch implementations

def _interp(a, b, beta):
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape:
        return torch.lerp(a, b, beta)
    return a + beta * (b - a)


def _where(c, a, b):
    if not isinstance(c, Tensor):
        return a if c != 0 else b
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = _tensor(a, c)
    return torch.where(c != 0, a, b)


def _maximum(a, b):
    like = _like(a, b)
    return torch.maximum(_tensor(a, like), _tensor(b, like))


def _minimum(a, b):
    like = _like(a, b)
    return torch.minimum(_tensor(a, like), _tensor(b, like))


def _clip(x, lo, hi):
    like = _like(x, lo, hi)
    return torch.minimum(torch.maximum(_tensor(x, like), _tensor(lo, like)), _tensor(hi, like))


# Reductions over ``dims=()`` reduce nothing (each element is its own tensor); torch would
# read an empty dim list as "all dims", so that case is spelled out.

def _norm(x, dims=None):
    if dims == ():
        return torch.abs(x)
    if dims is None:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=dims, keepdim=True)


def _mean(x, dims=None):
    if dims == ():
        return x
    return x.mean() if dims is None else x.mean(dim=dims, keepdim=True)


def _rms(x, dims=None):
    return torch.sqrt(_mean(x * x, dims))


def _dot(a, b, dims=None):
    p = a * b
    if dims == ():
        return p
    return p.sum() if dims is None else p.sum(dim=dims, keepdim=True)


def _sym_piecewise_cmp(rel):
    def run(a, b):
        sp = _sp()
        return sp.Piecewise((sp.Integer(1), rel(a, b)), (sp.Integer(0), True))

    return run


def _sym_where(c, a, b):
    sp = _sp()
    return sp.Piecewise((a, sp.Ne(c, 0)), (b, True))


def _sym_reduction(name):
    return lambda *xs: _sp().Function(name)(*xs)


# ---------------------------------------------------------------- the table

_TABLE = [
    # arithmetic (written as operators in program text)
    Op("add", 2, lambda a, b: a + b, lambda a, b: a + b, "a + b", "+",
       kernels=_commutative(K.foreach("add", True)),
       code="{0} + {1}"),
    Op("sub", 2, lambda a, b: a - b, lambda a, b: a - b, "a - b", "-",
       kernels=_left(K.foreach("sub")),
       code="{0} - {1}"),
    Op("mul", 2, lambda a, b: a * b, lambda a, b: a * b, "a * b", "*",
       kernels=_commutative(K.foreach("mul", True)),
       code="{0} * {1}"),
    Op("div", 2, lambda a, b: a / b, lambda a, b: a / b, "a / b (IEEE: x/0 is ±inf or nan)", "/",
       kernels=_left(K.foreach("div")),
       code="{0} / {1}"),
    Op("pow", 2, lambda a, b: a ** b, lambda a, b: a ** b, "a ** b", "**", _fe_pow,
       kernels=_left(K.foreach("pow")),
       code="{0} ** {1}"),
    Op("neg", 1, lambda a: -a, lambda a: -a, "-a", "-", kernels=_unary(K.foreach("neg")),
       code="-{0}"),
    # comparisons give 1.0/0.0 masks
    Op("gt", 2, lambda a, b: _mask(a > b, a, b), _sym_piecewise_cmp(lambda a, b: a > b),
       "1 where a > b else 0", ">",
       code="({0} > {1}).to(w.dtype)"),
    Op("lt", 2, lambda a, b: _mask(a < b, a, b), _sym_piecewise_cmp(lambda a, b: a < b),
       "1 where a < b else 0", "<",
       code="({0} < {1}).to(w.dtype)"),
    Op("ge", 2, lambda a, b: _mask(a >= b, a, b), _sym_piecewise_cmp(lambda a, b: a >= b),
       "1 where a >= b else 0", ">=",
       code="({0} >= {1}).to(w.dtype)"),
    Op("le", 2, lambda a, b: _mask(a <= b, a, b), _sym_piecewise_cmp(lambda a, b: a <= b),
       "1 where a <= b else 0", "<=",
       code="({0} <= {1}).to(w.dtype)"),
    # elementwise functions
    Op("interp", 3, _interp, lambda a, b, beta: (1 - beta) * a + beta * b,
       "(1 - beta) * a + beta * b  (exponential moving average of a into b)", None,
       kernels=(("LLs", K.LERP, (0, 1, 2)),),
       code="torch.lerp({0:t}, {1:t}, {2})"),
    Op("sign", 1, torch.sign, lambda a: _sp().sign(a), "sign(a) in {-1, 0, 1}", None,
       kernels=_unary(K.foreach("sign")),
       code="torch.sign({0})"),
    Op("abs", 1, torch.abs, lambda a: _sp().Abs(a), "|a|", None, kernels=_unary(K.foreach("abs")),
       code="torch.abs({0})"),
    Op("sqrt", 1, torch.sqrt, lambda a: _sp().sqrt(a), "sqrt(a) (nan for a < 0)", None,
       kernels=_unary(K.foreach("sqrt")),
       code="torch.sqrt({0})"),
    Op("square", 1, lambda a: a * a, lambda a: a ** 2, "a * a", None,
       kernels=_unary(K.SQUARE),
       code="torch.square({0})"),
    Op("exp", 1, torch.exp, lambda a: _sp().exp(a), "e ** a", None, kernels=_unary(K.foreach("exp")),
       code="torch.exp({0})"),
    Op("log", 1, torch.log, lambda a: _sp().log(a), "natural log (-inf at 0, nan below)", None,
       kernels=_unary(K.foreach("log")),
       code="torch.log({0})"),
    Op("tanh", 1, torch.tanh, lambda a: _sp().tanh(a), "tanh(a)", None,
       kernels=_unary(K.foreach("tanh")),
       code="torch.tanh({0})"),
    Op("clip", 3, _clip, lambda x, lo, hi: _sp().Min(_sp().Max(x, lo), hi),
       "min(max(x, lo), hi)", None,
       kernels=(("Lss", K.CLIP, (0, 1, 2)),),
       code="torch.clamp({0:t}, min={1}).clamp(max={2})"),
    Op("maximum", 2, _maximum, lambda a, b: _sp().Max(a, b), "elementwise max(a, b)", None,
       kernels=_minmax(K.foreach("maximum"), K.foreach("clamp_min")),
       code="torch.maximum({0:t}, {1:t})"),
    Op("minimum", 2, _minimum, lambda a, b: _sp().Min(a, b), "elementwise min(a, b)", None,
       kernels=_minmax(K.foreach("minimum"), K.foreach("clamp_max")),
       code="torch.minimum({0:t}, {1:t})"),
    Op("where", 3, _where, _sym_where, "a where cond != 0 else b",
       code="torch.where({0:t} != 0, {1:t}, {2})"),
    # per-tensor reductions, broadcast back against the tensor
    Op("norm", 1, _norm, _sym_reduction("norm"), "L2 norm of the whole tensor: sqrt(sum(x**2))",
       None, lambda x: torch._foreach_norm(x) if _is_list(x) else None, reduction=True,
       code="torch.linalg.vector_norm({0})"),
    Op("rms", 1, _rms, _sym_reduction("rms"), "root mean square of the tensor: sqrt(mean(x**2))",
       reduction=True,
       code="torch.sqrt(torch.mean(torch.square({0})))"),
    Op("mean", 1, _mean, _sym_reduction("mean"), "mean of the tensor", reduction=True,
       code="torch.mean({0})"),
    Op("dot", 2, _dot, _sym_reduction("dot"), "sum(a * b) over the tensor", reduction=True,
       code="torch.sum({0} * {1})"),
]

OPS: dict[str, Op] = {o.name: o for o in _TABLE}
"""Every op by name."""

INFIX: dict[str, str] = {o.symbol: o.name for o in _TABLE if o.symbol and o.arity == 2}
"""Binary operator symbol -> op name ('+' -> 'add')."""

FUNCTIONS: dict[str, Op] = {o.name: o for o in _TABLE if o.symbol is None}
"""Ops written as calls in program text."""


def op(name: str) -> Op:
    return OPS[name]


def scalar_eval(o: Op, args: list) -> float:
    """Evaluate an op on Python floats in float64 with IEEE semantics (1/0 -> inf, not an error)."""
    ts = [torch.tensor(a, dtype=torch.float64) for a in args]
    if o.name == "where":
        return args[1] if args[0] != 0 else args[2]
    r = o.torch(*ts)
    return float(r)
