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
    # Not elementwise: ``torch`` takes ``dims`` (the per-copy dims, as reductions) and is run per
    # tensor through the op table on every path (never fused, never blocked). Implied by
    # ``reduction`` and ``group``.
    shaped: bool = False
    # A whole-group function (`global_norm`): ``group(xs, dims)`` takes one value per parameter
    # tensor of the group (``dims``: a list of per-copy dims, or None) and returns one value per
    # tensor; every path calls it through `Op.run_group`, never per tensor nor as a scalar
    # statement. ``torch`` is its form for a group of one tensor.
    group: Optional[Callable[..., list]] = None
    # A function of the parameter's shape (`is_matrix`, `aspect`): every path computes it per parameter
    # as ``torch(w, dims=...)`` whatever the argument, never as a scalar statement (so a number,
    # ``lr`` or a hyperparameter as the argument give what ``w`` gives, as tensors or floats).
    param_ndim: bool = False
    # Elementwise kernels on lists of tensors (`dsl.kernels`), by argument pattern ('L' a list
    # of tensors, 's' a scalar): ``(pattern, kernel, argument index for each kernel argument)``.
    # They give ``foreach`` when it is not set, and the optimizer's fast path its in-place forms.
    kernels: tuple = ()
    # Python/torch expression for exported optimizers (`dsl.export_optimizer`): a str.format
    # template over the argument expressions {0}, {1}, ...; ``{i:t}`` marks an argument that
    # must be a tensor (a Python number there is written as ``w.new_tensor(x)``); ``w`` names
    # the parameter tensor (dtype and device of every value of a step).
    code: str = ""
    # ``code`` when the first argument is a number and another a tensor (``where`` with a scalar
    # condition picks an argument as it is, unbroadcast, as `dsl.compile` does: reductions and
    # global_norm of the result then agree on every path; the export copies it into slots).
    code_scalar_first: str = ""
    # Functions of this module the ``code`` template calls (``_row_mean``): their source goes
    # into exported modules, so an export computes exactly what the op table does.
    helpers: tuple = ()

    def __post_init__(self) -> None:
        if self.foreach is None and self.kernels:
            object.__setattr__(self, "foreach", _from_kernels(self.kernels))
        if self.reduction or self.group is not None or self.param_ndim:
            object.__setattr__(self, "shaped", True)

    @property
    def never_scalar(self) -> bool:
        """Computed per parameter even of numbers (`is_matrix`, `aspect`, `global_norm`): never a scalar statement."""
        return self.param_ndim or self.group is not None

    def run_group(self, x: Any, params: list, dims: Optional[list] = None) -> list:
        """The group function on one value per parameter (a number: the same 0-dim value for each)."""
        xs = x if _is_list(x) else [_tensor(x, p) for p in params]
        return self.group(xs, dims)

    def run(self, args: list, dims: Any = None, w: Optional[Tensor] = None) -> Any:
        """``torch`` on one tensor's arguments, with ``dims`` where the op takes them; ``w``: the
        parameter (tensor or stacked copies) they belong to."""
        if self.param_ndim:
            return self.torch(w, dims=dims)
        if self.shaped:
            return self.torch(*args, dims=dims)
        return self.torch(*args)

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


def _copy_ndim(x, dims):
    """Dims of one copy: all of ``x``'s, or the ``dims`` a batched caller reduces over."""
    return x.ndim if dims is None else len(dims)


def _row_mean(x, dims=None):
    return x.mean(dim=-1, keepdim=True) if _copy_ndim(x, dims) >= 2 else x


def _col_mean(x, dims=None):
    return x.mean(dim=-2, keepdim=True) if _copy_ndim(x, dims) >= 2 else x


def _is_matrix(x, dims=None):
    """Of the parameter ``x``: 0-dim, or ``[*copies, 1, ...]`` with ``dims`` (a value per copy)."""
    nd = _copy_ndim(x, dims)
    shape = () if dims is None else (*x.shape[:x.ndim - len(dims)], *[1] * len(dims))
    return torch.full(shape, 1.0 if nd >= 2 else 0.0, dtype=x.dtype, device=x.device)


def _aspect_ratio(shape) -> float:
    """``shape[0] / prod(shape[1:])`` for >= 2 dims, else 1.0; IEEE on empty shapes: ``(0, n)``
    0.0, ``(n, 0)`` inf, ``(0, 0)`` nan.

    2-D: torch.optim.Muon's ``rows / cols`` (``_adjust_lr``). Above 2 dims, the matrix that
    `_orthogonalize` works on: torch's ``_adjust_lr`` would read ``shape[:2]``, but
    torch.optim.Muon refuses such parameters, so there is no torch convention to match, and
    this one keeps the factor consistent with the update it scales."""
    if len(shape) < 2:
        return 1.0
    rows, cols = shape[0], 1
    for d in shape[1:]:
        cols *= d
    if cols == 0:
        return float("nan") if rows == 0 else float("inf")
    return rows / cols


def _aspect(x, dims=None):
    """Of the parameter ``x``: 0-dim, or ``[*copies, 1, ...]`` with ``dims`` (a value per copy)."""
    nd = _copy_ndim(x, dims)
    shape = () if dims is None else (*x.shape[:x.ndim - len(dims)], *[1] * len(dims))
    return torch.full(shape, _aspect_ratio(x.shape[x.ndim - nd:]), dtype=x.dtype, device=x.device)


NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
"""``(a, b, c)`` of the quintic Newton-Schulz step of ``torch.optim.Muon`` (torch 2.13)."""
NS_STEPS = 5
NS_EPS = 1e-7


def _orthogonalize(x, dims=None):
    """Muon's Newton-Schulz iteration on each copy, in ``x``'s dtype (torch.optim.Muon: bfloat16).

    A copy of shape ``s`` is a matrix ``(s[0], prod(s[1:]))`` (Muon's flattening of conv
    filters); 1-D as a ``1 x n`` row, 0-dim as ``1 x 1``. ``X = M / max(||M||_F, 1e-7)`` (on
    ``M.T`` when it has more rows than columns), then 5 times ``A = X X^T``,
    ``X = a X + (b A + c A A) X``.
    """
    nd = _copy_ndim(x, dims)
    if dims is not None and tuple(dims) != tuple(range(x.ndim - nd, x.ndim)):
        raise ValueError(f"orthogonalize: reduce dims {tuple(dims)} are not the trailing dims of {tuple(x.shape)}")
    s = x.shape[x.ndim - nd:]
    rows, cols = (s[0], torch.Size(s[1:]).numel()) if nd >= 2 else (1, torch.Size(s).numel())
    if x.numel() == 0:
        return x.clone()
    m = x.reshape(-1, rows, cols)
    if rows > cols:
        m = m.mT
    a, b, c = NS_COEFFICIENTS
    m = m / torch.linalg.vector_norm(m, dim=(-2, -1), keepdim=True).clamp(min=NS_EPS)
    for _ in range(NS_STEPS):
        gram = m @ m.mT
        upd = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        m = torch.baddbmm(m, upd, m, beta=a)
    if rows > cols:
        m = m.mT
    return m.reshape(x.shape)


def _global_norm_group(xs, dims=None):
    """sqrt(sum over tensors of sum(x_i ** 2)), per copy, shaped to broadcast against each x_i.

    ``dims``: per tensor, the dims of one copy (None: each x_i is one copy). A 0-dim x_i is one
    value shared by every copy (a number as the argument: one value per tensor, so
    ``global_norm(lr)`` is ``sqrt(n) * |lr|`` for n tensors, as ``global_norm(norm(g))`` is the
    global norm of g). Sums of squares in the tensors' dtype, added tensor by tensor in group
    order (every path calls this function).
    """
    if not xs:
        return []
    if dims is None:
        total = sum((torch.sum(x * x) for x in xs[1:]), torch.sum(xs[0] * xs[0]))
        return [torch.sqrt(total)] * len(xs)
    sq, lead = [], None
    for x, d in zip(xs, dims):
        d = tuple(d)
        if x.ndim == 0:
            sq.append(x * x)
            continue
        s = x * x if d == () else torch.sum(x * x, dim=d, keepdim=True)
        shape = tuple(x.shape[i] for i in range(x.ndim) if i not in d)
        if lead is not None and shape != lead:
            raise ValueError(f"global_norm: tensors of the group have different copy shapes {lead} and {shape}")
        lead = shape
        sq.append(s.reshape(shape))
    n = torch.sqrt(sum(sq[1:], sq[0]))
    out = []
    for x, d in zip(xs, dims):
        if x.ndim == 0:
            out.append(n.reshape((*n.shape, *[1] * len(d))))
        else:
            out.append(n.reshape([1 if i in d else x.shape[i] for i in range(x.ndim)]))
    return out


def _global_norm(x, dims=None):
    """The group of one tensor."""
    return _global_norm_group([x], None if dims is None else [dims])[0]


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
       code="torch.where({0:t} != 0, {1:t}, {2})", code_scalar_first="({1:t} if {0} != 0 else {2:t})"),
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
    # functions of a tensor's shape: factored moments (Adafactor), matrix-only rules (LARS, Muon)
    Op("row_mean", 1, _row_mean, _sym_reduction("row_mean"),
       "mean over the last dim, kept (x.mean(-1, keepdim=True)); tensors of < 2 dims: x itself",
       shaped=True, code="_row_mean({0:t})", helpers=("_copy_ndim", "_row_mean")),
    Op("col_mean", 1, _col_mean, _sym_reduction("col_mean"),
       "mean over the second-to-last dim, kept (x.mean(-2, keepdim=True)); tensors of < 2 dims: x itself",
       shaped=True, code="_col_mean({0:t})", helpers=("_copy_ndim", "_col_mean")),
    Op("is_matrix", 1, _is_matrix, _sym_reduction("is_matrix"),
       "1.0 when the parameter has >= 2 dims, else 0.0 (of w, whatever the argument)",
       param_ndim=True, code="w.new_tensor(1.0 if w.ndim >= 2 else 0.0)"),
    Op("aspect", 1, _aspect, _sym_reduction("aspect"),
       "rows / cols of the parameter as orthogonalize flattens it: d0 / (d1*...); < 2 dims 1.0 (of w, whatever the argument)",
       param_ndim=True, code="w.new_tensor(_aspect_ratio(w.shape))", helpers=("_aspect_ratio",)),
    Op("orthogonalize", 1, _orthogonalize, _sym_reduction("orthogonalize"),
       "torch.optim.Muon's Newton-Schulz: ~U V^T of x (as (d0, d1*...), 1-D as a 1 x n row), 5 steps",
       shaped=True, code="_orthogonalize({0:t})",
       helpers=("NS_COEFFICIENTS", "NS_STEPS", "NS_EPS", "_copy_ndim", "_orthogonalize")),
    # a function of the whole parameter group
    Op("global_norm", 1, _global_norm, _sym_reduction("global_norm"),
       "L2 norm over every tensor of the parameter group: sqrt(sum_i sum(x_i**2)) (whole group)",
       group=_global_norm_group, code="_global_norm_group({0})", helpers=("_global_norm_group",)),
]

OPS: dict[str, Op] = {o.name: o for o in _TABLE}
"""Every op by name."""

INFIX: dict[str, str] = {o.symbol: o.name for o in _TABLE if o.symbol and o.arity == 2}
"""Binary operator symbol -> op name ('+' -> 'add')."""

FUNCTIONS: dict[str, Op] = {o.name: o for o in _TABLE if o.symbol is None}
"""Ops written as calls in program text."""


def helper_source(names: list[str]) -> str:
    """Source text of this module's helpers (functions, constants, ``math``) for exported code."""
    import inspect

    out, seen = [], set()
    for n in names:
        if n in seen:
            continue
        seen.add(n)
        if n == "math":
            out.insert(0, "import math")
        elif callable(globals()[n]):
            out.append(inspect.getsource(globals()[n]))
        else:
            out.append(f"{n} = {globals()[n]!r}")
    return "\n".join(out)


def op(name: str) -> Op:
    return OPS[name]


def scalar_eval(o: Op, args: list) -> float:
    """Evaluate an op on Python floats in float64 with IEEE semantics (1/0 -> inf, not an error).
    A 0-dim tensor (a tensor hyperparameter) counts as its value."""
    ts = [torch.as_tensor(a, dtype=torch.float64) for a in args]
    if o.name == "where":
        return args[1] if args[0] != 0 else args[2]
    if o.never_scalar:
        raise ValueError(f"{o.name} is computed per parameter, never of numbers alone")
    r = o.torch(*ts)
    return float(r)
