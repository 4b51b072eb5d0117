"""A program as sympy expressions (`to_sympy`), and the number policy that keeps sympy's work bounded.

Numbers. sympy computes with exact integers and rationals, and one exact power such as
``3**1000000000`` is a single C call that no time bound can interrupt (measured: ``evolve show``
on ``lr * g * 3 ** 1000000000`` was still running after 60 s). So a symbolic form never holds
large exact numbers:

- a statement whose arguments are all numbers is evaluated in float64 by the op's own scalar
  semantics, as the compiled program does (``3 ** 1e9`` is ``inf``; ``exp(1000)`` is ``inf``);
- integral constants are exact Integers only up to `EXACT_INT`; larger ones are Floats;
- after every statement (and every `tidy`), exact numbers beyond `EXACT_INT` become Floats and
  Floats are rounded to float64: beyond its range they become ``oo``/``-oo`` (or 0), as IEEE.

An exact power built by sympy's own evaluation then has a base and an exponent of at most
`EXACT_INT`, so at most 4096 * 12 bits; non-finite results are ``oo``, ``-oo`` or ``nan``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import sympy as sp
from sympy.core.function import AppliedUndef

from ..ops import OPS, scalar_eval
from ..program import Arg, Program
from .bounds import DEFAULT_TIMEOUT, bounded_value

__all__ = ["SymbolicForm", "to_sympy", "sympy_form", "number", "ieee", "rebuild", "tidy", "tidy_form",
           "reduce_slots", "replace_atoms", "equal", "free_symbols", "is_constant", "tree_size", "expanded_terms", "nice_float"]

ONES = sp.Symbol("ones", positive=True)
"""A tensor of ones of the parameter's shape: a per-tensor reduction of a constant tensor is one
of it times the constant (``norm(x >= x)`` is ``norm(ones)``, the square root of the element
count; ``norm(1.0)`` of a scalar constant is 1)."""

EXACT_INT = 4096
"""Integral constants up to this magnitude are exact sympy Integers (so ``x * 1.0`` folds to ``x``)."""

# Size limits of the expensive passes (read at call time, so tests may change them).
EXPAND_LIMIT = 400     # tree size above which expand/factor passes are skipped
EXPAND_TERMS = 400     # estimated terms of an expanded sum above which expand is skipped
SIMPLIFY_LIMIT = 120   # tree size above which sympy.simplify is skipped
MATH_LIMIT = 160       # tree size above which to_math names common subexpressions
SIMPLIFY_SHARE = 0.3   # at most this share of the remaining time goes to sympy.simplify
SIMPLIFY_MAX_SECONDS = 1.5
BIG_ARG = 200          # tree size of an argument above which function ops are built unevaluated


@dataclass(frozen=True)
class SymbolicForm:
    """A program's outputs as sympy expressions.

    update: the update (``w_new = w - update``); next_state: slot name -> its value after the
    step; symbols: every name that stayed symbolic (inputs, slots' previous values and, unless
    substituted, hyperparameters) -> its sympy Symbol. ``slots``/``hparams`` are the program's
    ((name, initial value or default), ...). Expressions use the op table's sympy forms:
    ``sign``, ``Abs``, ``sqrt``, ``Piecewise`` for comparisons/``where``, ``Min``/``Max``,
    undefined functions such as ``norm(x)`` for per-tensor reductions. Numbers follow the
    module's number policy (float64 values, small exact rationals, ``oo``, ``nan``).
    """

    update: sp.Expr
    next_state: dict = field(hash=False)
    symbols: dict = field(hash=False)
    slots: tuple = ()
    hparams: tuple = ()
    substituted: bool = False
    name: str = "program"

    @property
    def outputs(self) -> tuple:
        return (self.update, *self.next_state.values())

    def slot_symbol(self, name: str) -> sp.Symbol:
        return self.symbols[name]


def _symbol(name: str, role: str) -> sp.Symbol:
    if role == "input" and name == "t":
        return sp.Symbol(name, positive=True)       # the step count, >= 1
    if role == "input" and name == "lr":
        return sp.Symbol(name, nonnegative=True)
    return sp.Symbol(name, real=True)


# ---------------------------------------------------------------- numbers

def number(v: float) -> sp.Expr:
    """A float64 value as sympy: small integral values exactly, ``oo``/``-oo``/``nan`` for non-finite."""
    if math.isnan(v):
        return sp.nan
    if math.isinf(v):
        return sp.oo if v > 0 else -sp.oo
    if v == int(v) and abs(v) <= EXACT_INT:
        return sp.Integer(int(v))
    return sp.Float(v)


def as_float(x: sp.Expr) -> float:
    """A sympy number rounded to float64 as IEEE does (overflow to ±inf, ``zoo`` and ``nan`` to nan)."""
    if x is sp.nan or x is sp.zoo:
        return math.nan
    if x is sp.oo:
        return math.inf
    if x is sp.S.NegativeInfinity:
        return -math.inf
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def _fix_number(x: sp.Number) -> sp.Expr:
    return number(as_float(x))


def _needs_fix(x: sp.Number) -> bool:
    if x.is_Rational:
        return abs(x.p) > EXACT_INT or x.q > EXACT_INT
    if x.is_Float:
        v = as_float(x)
        return not math.isfinite(v) or (v == 0 and not x.is_zero)
    return False


def rebuild(e: sp.Basic, fn, memo: dict | None = None) -> sp.Basic:
    """``e`` with ``fn`` applied to every node, bottom up (a node is rebuilt from its new arguments
    first, where they changed). Iterative and memoized: a subexpression shared many times (a deep
    chain such as ``x = x * x + g`` repeated) is visited once, where sympy's own ``replace`` and
    ``has`` walk the tree and take time exponential in the chain's length."""
    memo = {} if memo is None else memo  # node -> (new node, changed)
    if e in memo:
        return memo[e][0]
    stack = [(e, False)]
    while stack:
        x, ready = stack.pop()
        if x in memo:
            continue
        if x.args and not ready:
            stack.append((x, True))
            stack.extend((a, False) for a in x.args if a not in memo)
            continue
        # equal subexpressions need not be the same object: "changed" is tracked, not inferred
        done = [memo[a] for a in x.args]
        y = x.func(*[v for v, _ in done]) if any(c for _, c in done) else x
        z = fn(y)
        memo[x] = (z, z is not x)
    return memo[e][0]


def _bottom_up(e: sp.Basic, leaf, node, memo: dict) -> Any:
    """A value per node computed from its arguments' values (``node(x, values)``), memoized."""
    if e in memo:
        return memo[e]
    stack = [(e, False)]
    while stack:
        x, ready = stack.pop()
        if x in memo:
            continue
        if not x.args:
            memo[x] = leaf(x)
        elif not ready:
            stack.append((x, True))
            stack.extend((a, False) for a in x.args if a not in memo)
        else:
            memo[x] = node(x, [memo[a] for a in x.args])
    return memo[e]


def replace_atoms(e: sp.Basic, mapping: dict) -> sp.Basic:
    """``e.xreplace(mapping)`` for a mapping of atoms (symbols), memoized (see `rebuild`)."""
    mapping = {k: v for k, v in mapping.items() if k != v}  # an equal copy would rebuild the tree
    if not mapping:
        return e
    return rebuild(e, lambda x: mapping.get(x, x) if not x.args else x)


def equal(a: sp.Basic, b: sp.Basic) -> bool:
    """``a == b``, comparing each pair of subexpressions once (sympy's ``==`` recurses through
    every path of a shared tree; on a 30-link chain it ran past a minute)."""
    seen: set = set()
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if x is y or (id(x), id(y)) in seen:
            continue
        if type(x) is not type(y) or hash(x) != hash(y) or len(x.args) != len(y.args):
            return False
        if not x.args:
            if x != y:
                return False
        else:
            seen.add((id(x), id(y)))
            stack.extend(zip(x.args, y.args))
    return True


def free_symbols(e: sp.Basic, memo: dict | None = None) -> frozenset:
    """``e.free_symbols``, memoized: sympy's walks every path of a shared tree."""
    return _bottom_up(e, lambda x: frozenset([x]) if x.is_Symbol else frozenset(),
                      lambda x, vs: frozenset().union(*vs), {} if memo is None else memo)


def is_constant(e: sp.Basic, memo: dict | None = None) -> bool:
    """A number-valued expression with no symbols and no undefined function (``norm(1)``), memoized."""
    return _bottom_up(e, lambda x: bool(x.is_number),
                      lambda x, vs: all(vs) and not isinstance(x, AppliedUndef) and isinstance(x, sp.Expr),
                      {} if memo is None else memo)


def _ieee_node(x: sp.Basic) -> sp.Basic:
    return _fix_number(x) if x.is_Number and _needs_fix(x) else x


def ieee(e: sp.Basic, memo: dict | None = None) -> sp.Basic:
    """``e`` with exact numbers beyond `EXACT_INT` made Floats and Floats rounded to float64
    (``memo`` may be shared between calls on related expressions)."""
    return rebuild(e, _ieee_node, memo)


# ---------------------------------------------------------------- the form

def to_sympy(program: Program, substitute: bool = False, *,
             timeout: Optional[float] = DEFAULT_TIMEOUT) -> SymbolicForm:
    """The program's update and next slot values as sympy expressions.

    ``substitute=False`` keeps hyperparameters as symbols; ``True`` uses their defaults.
    Raises `SymbolicError` when not done within ``timeout`` seconds (None: no bound); sympy's
    own evaluation can be slow (a comparison of a ``where`` result makes it solve inequalities).
    See `sympy_form` for the number policy.
    """
    return bounded_value(lambda: sympy_form(program, substitute), timeout, "sympy form")


def sympy_form(program: Program, substitute: bool = False) -> SymbolicForm:
    """`to_sympy` without a time bound, for code already running under one.

    Statements whose arguments are all numbers are evaluated in float64 (IEEE), as the
    compiled program does; per-tensor reductions only when their arguments are scalar
    constants (a reduction of a constant tensor reads `ONES`).
    """
    syms: dict[str, sp.Symbol] = {}
    env: dict[str, Any] = {}
    scalar_const: set[str] = set()  # names the compiled program holds as constant scalars
    for x in program.inputs:
        env[x] = syms[x] = _symbol(x, "input")
    for x, _ in program.slots:
        env[x] = syms[x] = _symbol(x, "slot")
    for x, v in program.hparams:
        if substitute:
            env[x] = number(v)
            scalar_const.add(x)
        else:
            env[x] = syms[x] = _symbol(x, "hparam")

    def val(a: Arg):
        return number(a) if isinstance(a, float) else env[a]

    memo: dict = {}
    sizes: dict = {}
    for s in program.body:
        o = OPS[s.op]
        args = [val(a) for a in s.args]
        if all(isinstance(a, sp.Number) for a in args):
            if not o.reduction or all(isinstance(a, float) or a in scalar_const for a in s.args):
                try:
                    env[s.target] = number(scalar_eval(o, [as_float(a) for a in args]))
                    scalar_const.add(s.target)
                    continue
                except Exception:  # noqa: BLE001 - left to sympy below
                    pass
            else:  # a reduction of a tensor that happens to be constant
                args = [a * ONES for a in args]
        try:
            if o.symbol is None and not o.reduction and max(tree_size(a, BIG_ARG, sizes) for a in args) >= BIG_ARG:
                # sympy's automatic evaluation of sign/Abs/Max/... asks assumptions that walk the
                # whole tree: exponential in the length of a chain such as x = sign(x) * x + g
                with sp.evaluate(False):
                    r = sp.sympify(o.sympy(*args))
            else:
                r = sp.sympify(o.sympy(*args))
        except Exception:  # noqa: BLE001
            # sympy refuses some constant arguments (Max of nan): keep the call unevaluated
            r = sp.Function(s.op)(*args)
        env[s.target] = ieee(r, memo)
    nxt = {x: sp.sympify(val(a)) for (x, _), a in zip(program.slots, program.next_state)}
    return SymbolicForm(sp.sympify(val(program.update)), nxt, syms, tuple(program.slots),
                        tuple(program.hparams), substitute, program.name)


# ---------------------------------------------------------------- tidying

def nice_float(v: float) -> float:
    """The shortest decimal within a few ulps of ``v`` (0.09999999999999998 -> 0.1)."""
    if v == 0 or not math.isfinite(v):
        return v
    tol = max(4 * math.ulp(v), 4e-15 * abs(v))
    for digits in range(1, 16):
        c = float(f"{v:.{digits}g}")
        if abs(c - v) <= tol:
            return c
    return v


def _tidy_node(x: sp.Basic) -> sp.Basic:
    if x.is_Float:
        v = as_float(x)
        if not math.isfinite(v):
            return number(v)
        v = nice_float(v)
        if v == int(v) and abs(v) <= EXACT_INT:
            return sp.Integer(int(v))
        return x if v == float(x) and x._prec == 53 else sp.Float(v)  # one precision everywhere
    if x.is_Number:
        return _ieee_node(x)
    if x.is_Pow and x.exp.is_Float and (2 * float(x.exp)).is_integer() and abs(float(x.exp)) <= EXACT_INT:
        return ieee(sp.Pow(x.base, sp.Rational(int(2 * float(x.exp)), 2)))
    return x


def tidy(e: sp.Expr) -> sp.Expr:
    """Round float noise, apply the number policy, make small integral floats exact integers and
    half-integer exponents rational (one memoized pass, see `rebuild`)."""
    return rebuild(e, _tidy_node)


def tidy_form(form: SymbolicForm) -> SymbolicForm:
    return replace(form, update=tidy(form.update), next_state={k: tidy(v) for k, v in form.next_state.items()})


def reduce_slots(form: SymbolicForm) -> SymbolicForm:
    """Drop slots that never change (their value is the initial one) and slots the update never reads."""
    init = dict(form.slots)
    upd, nxt = form.update, dict(form.next_state)
    changed = True
    while changed:
        changed = False
        for s in list(nxt):
            if nxt[s] == form.symbols[s]:
                rep = {form.symbols[s]: number(init[s])}
                del nxt[s]
                upd = replace_atoms(upd, rep)
                nxt = {k: replace_atoms(v, rep) for k, v in nxt.items()}
                changed = True
                break
    by_sym = {form.symbols[s]: s for s in nxt}
    live: set[str] = set()
    todo = [by_sym[x] for x in free_symbols(upd) if x in by_sym]
    while todo:
        s = todo.pop()
        if s in live:
            continue
        live.add(s)
        todo.extend(by_sym[x] for x in free_symbols(nxt[s]) if x in by_sym and by_sym[x] not in live)
    slots = tuple((s, v) for s, v in form.slots if s in live)
    return replace(form, update=upd, next_state={s: nxt[s] for s, _ in slots}, slots=slots)


# ---------------------------------------------------------------- size estimates

def expanded_terms(e: sp.Basic, cap: int = 10 ** 6) -> int:
    """An estimate of the largest sum ``sp.expand`` would build anywhere in ``e`` (capped)."""
    memo: dict = {}
    worst = [1]

    def terms(x):
        r = memo.get(x)
        if r is not None:
            return r
        if not x.args:
            r = 1
        elif x.is_Add:
            r = sum(terms(a) for a in x.args)
        elif x.is_Mul:
            r = 1
            for a in x.args:
                r = min(r * terms(a), cap)
        elif x.is_Pow and x.exp.is_Rational:  # (a + b)**(7/2) expands (a + b)**3 too
            base = terms(x.base)
            r = 1 if base == 1 else min(base ** min(abs(int(x.exp)), 64), cap)
            terms(x.exp)
        else:
            for a in x.args:
                terms(a)
            r = 1
        r = min(r, cap)
        memo[x] = r
        worst[0] = max(worst[0], r)
        return r

    try:
        terms(e)
    except RecursionError:
        return cap
    return worst[0]


def tree_size(e: sp.Basic, cap: int = 10 ** 6, memo: dict | None = None) -> int:
    """Nodes of the expression as a tree (shared subexpressions counted each time), capped.
    ``memo`` may be shared between calls with the same ``cap``."""
    memo = {} if memo is None else memo

    def size(x):
        r = memo.get(x)
        if r is None:
            r = 1 + sum(size(a) for a in x.args)
            memo[x] = r = min(r, cap)
        return r

    try:
        return size(e)
    except RecursionError:
        return cap
