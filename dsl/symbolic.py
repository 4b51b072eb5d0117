"""Programs as sympy expressions: explain (math), simplify, and compare update rules.

- `to_sympy(p)`: one expression per output (the update and each slot's next value) in terms
  of the inputs, the slots' previous values and the hyperparameters (symbols, or their
  defaults with ``substitute=True``), built with each op's sympy implementation from the op
  table (`dsl.ops.OPS`).
- `simplify(p)`: algebraic simplification turned back into a `Program` (common subexpressions
  shared with sympy's ``cse``; ``(1 - b)*a + b*c`` patterns folded back to ``interp``). Every
  candidate is checked numerically against the original (float64, several steps of random
  inputs, relative tolerance 1e-6) and the shortest valid one is returned; the original is
  returned when nothing shorter passes.
- `to_math(p)`: the rule as plain-text or LaTeX equations (``update = ...``, ``m' = ...``).
- `equivalent(a, b)`: the same rule up to slot names. Sound but incomplete: True means the
  canonical forms agree (and a numeric check passed); rules that only case analysis shows
  equal (nested ``where``/comparison logic) may come out False.

Time bound (simplification must never hang)
    The sympy work runs in a daemon worker thread; the caller waits at most ``timeout``
    seconds and then returns the best *verified* result found so far (or the original).
    The worker is interrupted without signals (they only work in the main thread, so not in
    Ray worker threads): it installs a ``sys.settrace`` hook for its own thread only that,
    every 64 Python calls, compares the clock with the deadline and raises `SymbolicTimeout`
    (a ``BaseException``, so sympy's ``except Exception`` clauses do not swallow it) inside
    whatever sympy is doing. The worker's deadline is a little earlier than the caller's so
    that unwinding (freeing what the interrupted call built) fits in the bound. The same hook
    gives ``sympy.simplify`` only a share of the time (`_PassTimeout`), after which the search
    goes on with the cheap passes' results. Expensive passes (``expand``, ``sympy.simplify``)
    are skipped outright for large expressions or ones whose expansion would explode. A trace
    function already set for the thread (coverage, a debugger) is called through the hook.
"""
from __future__ import annotations

import ctypes
import inspect
import itertools
import math
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Optional

import sympy as sp
import torch
from sympy.core.function import AppliedUndef
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from .compiler import compile as _compile
from .graph import prune
from .ops import OPS
from .printer import format_number
from .program import Arg, Program, Stmt

__all__ = ["SymbolicForm", "SymbolicTimeout", "to_sympy", "simplify", "to_math", "equivalent",
           "numerically_equal", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 10.0
"""Seconds `simplify` and `equivalent` may spend on one program by default."""

_EXPAND_LIMIT = 400     # tree size above which expand/factor passes are skipped
_EXPAND_TERMS = 400     # estimated terms of an expanded sum above which expand is skipped
_SIMPLIFY_LIMIT = 120   # tree size above which sympy.simplify is skipped
_MATH_LIMIT = 160       # tree size above which to_math names common subexpressions
_SIMPLIFY_SHARE = 0.3   # at most this share of the remaining time goes to sympy.simplify
_SIMPLIFY_MAX_SECONDS = 1.5


class SymbolicTimeout(BaseException):
    """Raised inside the simplification worker when its time is up (never reaches callers)."""


# ================================================================ symbolic form

@dataclass(frozen=True)
class SymbolicForm:
    """A program's outputs as sympy expressions.

    update: the update (``w_new = w - update``); next_state: slot name -> its value after the
    step; symbols: every name that stayed symbolic (inputs, slots' previous values and, unless
    substituted, hyperparameters) -> its sympy Symbol. ``slots``/``hparams`` are the program's
    ((name, initial value or default), ...). Expressions use the op table's sympy forms:
    ``sign``, ``Abs``, ``sqrt``, ``Piecewise`` for comparisons/``where``, ``Min``/``Max``,
    undefined functions such as ``norm(x)`` for per-tensor reductions.
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


def _number(v: float) -> sp.Expr:
    """A program constant as sympy: integral values exactly (so ``x * 1.0`` folds to ``x``)."""
    if v == int(v) and abs(v) < 2 ** 53:
        return sp.Integer(int(v))
    return sp.Float(v)


def to_sympy(program: Program, substitute: bool = False) -> SymbolicForm:
    """The program's update and next slot values as sympy expressions.

    ``substitute=False`` keeps hyperparameters as symbols; ``True`` uses their defaults.
    """
    syms: dict[str, sp.Symbol] = {}
    env: dict[str, Any] = {}
    for x in program.inputs:
        env[x] = syms[x] = _symbol(x, "input")
    for x, _ in program.slots:
        env[x] = syms[x] = _symbol(x, "slot")
    for x, v in program.hparams:
        if substitute:
            env[x] = _number(v)
        else:
            env[x] = syms[x] = _symbol(x, "hparam")

    def val(a: Arg):
        return _number(a) if isinstance(a, float) else env[a]

    for s in program.body:
        args = [val(a) for a in s.args]
        try:
            env[s.target] = sp.sympify(OPS[s.op].sympy(*args))
        except Exception:  # noqa: BLE001
            # sympy refuses some constant arguments (Max of nan): keep the call unevaluated
            env[s.target] = sp.Function(s.op)(*args)
    nxt = {x: sp.sympify(val(a)) for (x, _), a in zip(program.slots, program.next_state)}
    return SymbolicForm(sp.sympify(val(program.update)), nxt, syms, tuple(program.slots),
                        tuple(program.hparams), substitute, program.name)


# ---------------------------------------------------------------- tidying

def _nice_float(v: float) -> float:
    """The shortest decimal within a few ulps of ``v`` (0.09999999999999998 -> 0.1)."""
    if v == 0 or not math.isfinite(v):
        return v
    tol = max(4 * math.ulp(v), 4e-15 * abs(v))
    for digits in range(1, 16):
        c = float(f"{v:.{digits}g}")
        if abs(c - v) <= tol:
            return c
    return v


def _tidy(e: sp.Expr) -> sp.Expr:
    """Round float noise, make integral floats exact integers and half-integer exponents rational."""
    def is_float(x):
        return x.is_Float

    def nice(x):
        v = float(x)
        if not math.isfinite(v):
            return x
        v = _nice_float(v)
        if v == int(v) and abs(v) < 2 ** 53:
            return sp.Integer(int(v))
        return x if v == float(x) and x._prec == 53 else sp.Float(v)  # one precision everywhere

    if e.has(sp.Float):
        e = e.replace(is_float, nice)

    def huge_integer(x):  # beyond float precision: the program can only hold the float
        return x.is_Integer and abs(int(x)) >= 2 ** 53

    if any(huge_integer(x) for x in e.atoms(sp.Integer)):
        e = e.replace(huge_integer, lambda x: sp.Float(float(x)))

    def half_pow(x):
        return x.is_Pow and x.exp.is_Float and (2 * float(x.exp)).is_integer()

    if any(half_pow(p) for p in e.atoms(sp.Pow)):
        e = e.replace(half_pow, lambda x: sp.Pow(x.base, sp.Rational(int(2 * float(x.exp)), 2)))
    return e


def _tidy_form(form: SymbolicForm) -> SymbolicForm:
    return replace(form, update=_tidy(form.update),
                   next_state={k: _tidy(v) for k, v in form.next_state.items()})


def _reduce_slots(form: SymbolicForm) -> SymbolicForm:
    """Drop slots that never change (their value is the initial one) and slots the update never reads."""
    init = dict(form.slots)
    upd, nxt = form.update, dict(form.next_state)
    changed = True
    while changed:
        changed = False
        for s in list(nxt):
            if nxt[s] == form.symbols[s]:
                rep = {form.symbols[s]: _number(init[s])}
                del nxt[s]
                upd = upd.xreplace(rep)
                nxt = {k: v.xreplace(rep) for k, v in nxt.items()}
                changed = True
                break
    by_sym = {form.symbols[s]: s for s in nxt}
    live: set[str] = set()
    todo = [by_sym[x] for x in upd.free_symbols if x in by_sym]
    while todo:
        s = todo.pop()
        if s in live:
            continue
        live.add(s)
        todo.extend(by_sym[x] for x in nxt[s].free_symbols if x in by_sym and by_sym[x] not in live)
    slots = tuple((s, v) for s, v in form.slots if s in live)
    return replace(form, update=upd, next_state={s: nxt[s] for s, _ in slots}, slots=slots)


def _expanded_terms(e: sp.Basic, cap: int = 10 ** 6) -> int:
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


def _tree_size(e: sp.Basic, cap: int = 10 ** 6) -> int:
    """Nodes of the expression as a tree (shared subexpressions counted each time), capped."""
    memo: dict = {}

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


# ================================================================ time bound

_NO_RAISE_FLAGS = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


class _PassTimeout(SymbolicTimeout):
    """One expensive pass ran out of its share of the time; the search goes on without it."""


class _Budget:
    """The deadline of one bounded call, and optionally a tighter one for the current pass."""

    def __init__(self, seconds: Optional[float]):
        self.end = math.inf if seconds is None else time.monotonic() + max(0.0, seconds)
        self.pass_end = math.inf
        self.cancelled = False
        self.tracer: Optional[Callable] = None  # set by _bounded in the worker thread

    def expired(self) -> bool:
        return self.cancelled or time.monotonic() > self.end

    def check(self) -> None:
        if self.tracer is not None and sys.gettrace() is None:
            sys.settrace(self.tracer)  # lost after a raise that something swallowed: re-arm
        now = time.monotonic()
        if self.cancelled or now > self.end:
            raise SymbolicTimeout()
        if now > self.pass_end:
            raise _PassTimeout()

    def run_pass(self, seconds: float, fn: Callable[[], Any]) -> Any:
        """``fn()`` with at most ``seconds`` of the remaining time; raises `_PassTimeout` after."""
        self.pass_end = time.monotonic() + seconds
        try:
            return fn()
        finally:
            self.pass_end = math.inf
            if self.tracer is not None and sys.gettrace() is None:
                sys.settrace(self.tracer)  # a trace function that raised was removed: re-arm


def _reap(th: threading.Thread, period: float = 0.01, give_up: float = 60.0) -> None:
    """Stop a worker that outlived its deadline: raise `SymbolicTimeout` in it asynchronously.

    The trace hook cannot stop a loop that makes no Python calls (a generator such as sympy's
    multinomial iterator, resumed from C) and is lost if something swallows its exception.
    ``PyThreadState_SetAsyncExc`` is delivered at the thread's next bytecode boundary, wherever
    it is; it is repeated until the thread ends (a ``finally`` or a generator being closed may
    swallow one). A loop inside one C call (a huge integer power) cannot be stopped this way;
    the cheap size estimates (`_expanded_terms`) keep such calls from starting.
    """
    def loop() -> None:
        end = time.monotonic() + give_up
        while th.is_alive() and time.monotonic() < end:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(th.ident), ctypes.py_object(SymbolicTimeout))
            th.join(period)

    threading.Thread(target=loop, name="dsl-symbolic-reaper", daemon=True).start()


def _bounded(fn: Callable[[_Budget, Callable[[Any], None]], None], timeout: Optional[float],
             default: Any) -> Any:
    """Run ``fn(budget, publish)`` for at most ``timeout`` seconds; return the last published value.

    ``timeout=None`` runs inline without a bound. Otherwise ``fn`` runs in a daemon thread that
    traces its own Python calls and raises `SymbolicTimeout` once the deadline passes.
    """
    box = {"value": default, "error": None}
    lock = threading.Lock()

    def publish(v: Any) -> None:
        with lock:
            box["value"] = v

    if timeout is None:
        try:
            fn(_Budget(None), publish)
        except SymbolicTimeout:
            pass
        return box["value"]

    start = time.monotonic()
    # The worker stops a little before the caller's deadline: unwinding an interrupted sympy
    # call frees what it built, which holds the interpreter lock for a moment.
    budget = _Budget(timeout - min(0.25, 0.1 * timeout))
    calls = [0]
    chained: list = [None]  # a tracer already set for new threads (coverage, debugger)

    def tracer(frame, event, arg):
        calls[0] += 1
        # Not inside generator frames: a generator resumed to be closed by the garbage
        # collector would report the exception as "ignored" and lose the trace hook.
        if calls[0] >= 64 and not frame.f_code.co_flags & _NO_RAISE_FLAGS:
            calls[0] = 0
            budget.check()
        prev = chained[0]
        return prev(frame, event, arg) if prev is not None else None

    def work() -> None:
        chained[0] = sys.gettrace()
        budget.tracer = tracer
        sys.settrace(tracer)
        try:
            fn(budget, publish)
        except SymbolicTimeout:
            pass
        except BaseException as e:  # noqa: BLE001 - reported to the caller below
            box["error"] = e
        finally:
            budget.tracer = None
            sys.settrace(chained[0])

    def target() -> None:
        try:
            work()
        except SymbolicTimeout:  # the reaper's exception arrived in work's own cleanup
            pass

    th = threading.Thread(target=target, name="dsl-symbolic", daemon=True)
    th.start()
    th.join(max(0.0, start + timeout - time.monotonic()))
    budget.cancelled = True
    if th.is_alive():
        _reap(th)
    if box["error"] is not None:
        raise box["error"]
    with lock:
        return box["value"]


# ================================================================ numeric check

def _close(x: Any, y: Any, shape: torch.Size, rtol: float) -> bool:
    x = torch.as_tensor(x, dtype=torch.float64).expand(shape)
    y = torch.as_tensor(y, dtype=torch.float64).expand(shape)
    finite = x[torch.isfinite(x)]
    scale = float(finite.abs().max()) if finite.numel() else 1.0
    return bool(torch.allclose(x, y, rtol=rtol, atol=rtol * 1e-3 * max(1.0, scale), equal_nan=True))


def numerically_equal(a: Program, b: Program, slot_map: Optional[Mapping[str, str]] = None, *,
                      steps: int = 4, perturb_hparams: bool = True, rtol: float = 1e-6,
                      seed: int = 0) -> bool:
    """Do ``a`` and ``b`` give the same updates and slot values on random float64 inputs?

    Two trials of ``steps`` steps each: from the slots' initial values with default
    hyperparameters, then from random positive slot values with perturbed hyperparameters
    (those of ``b`` are matched to ``a``'s by name). ``slot_map`` maps each slot of ``b`` to the
    slot of ``a`` it should equal (default: same names); other slots are not compared.
    """
    try:
        ca, cb = _compile(a), _compile(b)
        if slot_map is None:
            slot_map = {s: s for s in b.slot_names if s in a.slot_names}
        gen = torch.Generator().manual_seed(seed)
        shape = torch.Size((3, 4))

        def rand(*size):
            return torch.randn(*size, generator=gen, dtype=torch.float64)

        def unif(lo, hi):
            return lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64))

        w0 = torch.zeros(shape, dtype=torch.float64)
        for trial in range(2):
            hp = dict(a.hparams)
            if trial == 1 and perturb_hparams:
                hp = {k: v + 0.1 * (1 + abs(v)) * unif(-1, 1) for k, v in hp.items()}
            hp_a = {k: hp[k] for k in a.hparam_names}
            hp_b = {k: hp.get(k, v) for k, v in b.hparams}
            sa = ca.init_state(w0)
            if trial == 1:
                sa = {k: rand(*shape).abs() + 0.1 for k in sa}
            sb = cb.init_state(w0)
            for bs, as_ in slot_map.items():
                sb[bs] = sa[as_].clone()
            for k in range(steps):
                w, g = rand(*shape), rand(*shape)
                lr, t = unif(0.05, 1.0), float(k + 1 + 7 * trial)
                ua, na = ca.apply(w, g, lr, t, sa, hp_a)
                ub, nb = cb.apply(w, g, lr, t, sb, hp_b)
                if not _close(ua, ub, shape, rtol):
                    return False
                for bs, as_ in slot_map.items():
                    if not _close(na[as_], nb[bs], shape, rtol):
                        return False
                sa, sb = na, nb
        return True
    except SymbolicTimeout:
        raise
    except Exception:  # noqa: BLE001 - a candidate that cannot run is simply not equal
        return False


# ================================================================ sympy -> program

class _Untranslatable(Exception):
    pass


_COMMUTATIVE = (sp.Add, sp.Mul, sp.Min, sp.Max, sp.And, sp.Or)


def _match(t: sp.Basic, e: sp.Basic, holes: frozenset, bind: dict) -> Optional[dict]:
    """Structural match of template ``t`` (holes are Dummies) against ``e``; the binding or None."""
    if t in holes:
        if t in bind:
            return bind if bind[t] == e else None
        b = dict(bind)
        b[t] = e
        return b
    if not t.args:
        return bind if t == e else None
    if t.func != e.func or len(t.args) != len(e.args):
        return None
    if isinstance(t, _COMMUTATIVE) and len(t.args) == 2:
        # try the larger argument in the first hole first (clip(x, -1, 1), not clip(-1, x, 1))
        first = sorted(e.args, key=lambda a: (bool(a.is_Number), -_tree_size(a, 64)))
        orders = [tuple(first), tuple(first[::-1])]
        for args in orders:
            b = bind
            for ta, ea in zip(t.args, args):
                b = _match(ta, ea, holes, b)
                if b is None:
                    break
            if b is not None:
                return b
        return None
    b = bind
    for ta, ea in zip(t.args, e.args):
        b = _match(ta, ea, holes, b)
        if b is None:
            return None
    return b


class _OpIndex:
    """What the op table's sympy implementations look like, learned by evaluating them on symbols.

    ``templates``: (op name, expression, holes) for matching expressions back to ops;
    ``undef``: undefined-function name -> op (per-tensor reductions); ``role``: the op that
    sympy's own arithmetic (+, -, *, /, **, unary minus, Min, Max, Piecewise-where, interp)
    corresponds to, found by comparing shapes; ``rel``: relation class -> comparison op.
    """

    def __init__(self) -> None:
        d = [sp.Dummy(f"a{i}") for i in range(3)]
        self.templates: list[tuple[str, sp.Basic, frozenset]] = []
        self.undef: dict[str, str] = {}
        self.rel: dict[type, str] = {}
        for o in OPS.values():
            holes = d[:o.arity]
            try:
                tpl = sp.sympify(o.sympy(*holes))
            except Exception:  # noqa: BLE001 - an op without a usable sympy form
                continue
            if isinstance(tpl, AppliedUndef):
                self.undef[tpl.func.__name__] = o.name
            if (isinstance(tpl, sp.Piecewise) and len(tpl.args) == 2 and tpl.args[0][0] == 1
                    and tpl.args[1] == (0, True) and isinstance(tpl.args[0][1], sp.core.relational.Relational)
                    and tpl.args[0][1].args == tuple(holes)):
                self.rel[tpl.args[0][1].func] = o.name
            self.templates.append((o.name, tpl, frozenset(holes)))

        def specificity(item):
            _, tpl, holes = item
            atoms = [x for x in sp.preorder_traversal(tpl) if not x.args and x not in holes]
            return (-len(atoms), -_tree_size(tpl))

        self.templates.sort(key=specificity)
        self.by_head: dict[type, list] = {}
        for item in self.templates:
            self.by_head.setdefault(item[1].func, []).append(item)
        a, b, c = d
        shapes = {
            "add": a + b, "sub": a - b, "mul": a * b, "div": a / b, "pow": a ** b, "neg": -a,
            "maximum": sp.Max(a, b), "minimum": sp.Min(a, b),
            "where": sp.Piecewise((b, sp.Ne(a, 0)), (c, True)),
        }
        self.role: dict[str, Optional[str]] = {}
        for role, shape in shapes.items():
            self.role[role] = next((n for n, tpl, _ in self.templates if tpl == shape), None)
        interp_shape = sp.expand(a + c * (b - a))
        self.role["interp"] = next((n for n, tpl, h in self.templates
                                    if len(h) == 3 and sp.expand(tpl) == interp_shape), None)

    def need(self, role: str) -> str:
        name = self.role.get(role)
        if name is None:
            raise _Untranslatable(f"no op for {role}")
        return name


_INDEX: Optional[_OpIndex] = None
_INDEX_LOCK = threading.Lock()


def _index() -> _OpIndex:
    global _INDEX
    with _INDEX_LOCK:
        if _INDEX is None:
            _INDEX = _OpIndex()
        return _INDEX


class _Emitter:
    """Turns sympy expressions into single-op statements, sharing identical subexpressions."""

    def __init__(self, names: Mapping[sp.Symbol, str], taken: Iterable[str], scalar_names: set[str]):
        self.ix = _index()
        self.names = dict(names)
        self.taken = set(taken) | set(OPS)
        self.scalar_names = scalar_names
        self.body: list[Stmt] = []
        self.memo: dict[sp.Basic, Arg] = {}
        self.counter = 0

    def fresh(self) -> str:
        while True:
            self.counter += 1
            name = f"x{self.counter}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def op(self, name: str, *args: Arg) -> Arg:
        key = (name, args)
        if key in self.memo:
            return self.memo[key]
        target = self.fresh()
        self.body.append(Stmt(target, name, tuple(args)))
        self.memo[key] = target
        return target

    def bind(self, sym: sp.Symbol, e: sp.Basic) -> None:
        self.memo[sym] = self.emit(e)

    def _is_scalar(self, e: sp.Basic) -> bool:
        return all(self.names.get(s) in self.scalar_names for s in e.free_symbols)

    def _order(self, xs: list) -> list:
        """Scalar-only factors/terms first (computed once per step), then the rest, stably."""
        return sorted(xs, key=lambda x: 0 if self._is_scalar(x) else 1)

    def emit(self, e: sp.Basic) -> Arg:
        if e in self.memo:
            return self.memo[e]
        if e.is_Symbol:
            name = self.names.get(e)
            if name is None:
                raise _Untranslatable(f"unknown symbol {e}")
            return name
        if isinstance(e, sp.logic.boolalg.Boolean):
            r = self.mask(e)
        elif e.is_number and not e.free_symbols and not e.has(AppliedUndef):
            v = complex(sp.N(e, 17))
            if v.imag != 0 or not math.isfinite(v.real):
                raise _Untranslatable(f"constant {e}")
            return float(v.real)
        else:
            r = self._node(e)
        self.memo[e] = r
        return r

    # -- nodes -------------------------------------------------------------------------
    def _node(self, e: sp.Basic) -> Arg:
        if isinstance(e, AppliedUndef):
            name = e.func.__name__
            name = self.ix.undef.get(name, name)
            o = OPS.get(name)
            if o is None or o.arity != len(e.args):
                raise _Untranslatable(f"function {e.func}")
            return self.op(name, *[self.emit(a) for a in e.args])
        if e.is_Add:
            return self._add(e)
        if e.is_Mul:
            return self._mul(e)
        if e.is_Pow:
            return self._pow(e)
        hit = self._template(e)
        if hit is not None:
            return hit
        if isinstance(e, sp.Piecewise):
            return self._piecewise(e.args)
        if isinstance(e, (sp.Max, sp.Min)):
            role = "maximum" if isinstance(e, sp.Max) else "minimum"
            return self._chain(self.need(role), list(e.args))
        raise _Untranslatable(f"{type(e).__name__}")

    def need(self, role: str) -> str:
        return self.ix.need(role)

    def _template(self, e: sp.Basic) -> Optional[Arg]:
        for name, tpl, holes in self.ix.by_head.get(e.func, ()):
            b = _match(tpl, e, holes, {})
            if b is not None:
                holes_in_order = sorted(holes, key=lambda h: h.name)
                return self.op(name, *[self.emit(b[h]) for h in holes_in_order])
        return None

    def _chain(self, name: str, xs: list) -> Arg:
        xs = self._order(xs)
        acc = self.emit(xs[0])
        for x in xs[1:]:
            acc = self.op(name, acc, self.emit(x))
        return acc

    def _add(self, e: sp.Add) -> Arg:
        pos, neg = [], []
        for term in e.args:
            c, _ = term.as_coeff_Mul()
            (neg if c.is_negative else pos).append(-term if c.is_negative else term)
        if not pos:
            return self.op(self.need("neg"), self._chain(self.need("add"), neg))
        acc = self._chain(self.need("add"), pos)
        for x in self._order(neg):
            acc = self.op(self.need("sub"), acc, self.emit(x))
        return acc

    def _mul(self, e: sp.Mul) -> Arg:
        c, factors = e.as_coeff_mul()
        negate = c == -1
        num, den = [], []
        if c != 1 and not negate:
            num.append(c)
        for f in factors:
            if f.is_Pow and f.exp.is_Number and f.exp.is_negative:
                den.append(sp.Pow(f.base, -f.exp))
            else:
                num.append(f)
        if den:
            top: Arg = self._chain(self.need("mul"), num) if num else 1.0
            r = self.op(self.need("div"), top, self._chain(self.need("mul"), den))
        else:
            r = self._chain(self.need("mul"), num)
        return self.op(self.need("neg"), r) if negate else r

    def _pow(self, e: sp.Pow) -> Arg:
        base, ex = e.args
        if ex == -1:
            return self.op(self.need("div"), 1.0, self.emit(base))
        hit = self._template(e)
        if hit is not None:
            return hit
        return self.op(self.need("pow"), self.emit(base), self.emit(ex))

    def _piecewise(self, pairs: tuple) -> Arg:
        (expr, cond), rest = pairs[0], pairs[1:]
        if cond == sp.true:
            return self.emit(expr)
        if not rest:
            raise _Untranslatable("Piecewise without a default")
        other = sp.Piecewise(*rest) if len(rest) > 1 or rest[0][1] != sp.true else rest[0][0]
        if expr == 1 and other == 0:
            return self.mask(cond)
        if isinstance(cond, sp.Ne) and cond.rhs == 0:
            c = self.emit(cond.lhs)
        else:
            c = self.mask(cond)
        return self.op(self.need("where"), c, self.emit(expr), self.emit(other))

    def mask(self, cond: sp.Basic) -> Arg:
        """A 1.0/0.0 value for a condition."""
        if cond == sp.true:
            return 1.0
        if cond == sp.false:
            return 0.0
        if cond.is_Symbol:
            return self.emit(cond)  # a cse name bound to a mask
        if cond in self.memo:
            return self.memo[cond]
        if isinstance(cond, sp.core.relational.Relational):
            name = self.ix.rel.get(cond.func)
            if name is not None:
                r = self.op(name, self.emit(cond.lhs), self.emit(cond.rhs))
            elif isinstance(cond, (sp.Eq, sp.Ne)):
                d = cond.lhs if cond.rhs == 0 else cond.lhs - cond.rhs
                on, off = (1.0, 0.0) if isinstance(cond, sp.Ne) else (0.0, 1.0)
                r = self.op(self.need("where"), self.emit(d), on, off)
            else:
                raise _Untranslatable(f"relation {cond.func}")
        elif isinstance(cond, sp.And):
            r = self._fold_masks(self.need("mul"), cond.args)
        elif isinstance(cond, sp.Or):
            r = self._fold_masks(self.need("maximum"), cond.args)
        elif isinstance(cond, sp.Not):
            r = self.op(self.need("sub"), 1.0, self.mask(cond.args[0]))
        else:
            raise _Untranslatable(f"condition {type(cond).__name__}")
        self.memo[cond] = r
        return r

    def _fold_masks(self, name: str, conds: tuple) -> Arg:
        acc = self.mask(conds[0])
        for c in conds[1:]:
            acc = self.op(name, acc, self.mask(c))
        return acc


def _build(form: SymbolicForm, exprs: list, base: Program, use_cse: bool) -> Program:
    """A program computing ``exprs`` (update, then live slots' next values in ``form.slots`` order)."""
    names = {sym: name for name, sym in form.symbols.items()}
    scalar_names = {"lr", "t", *(n for n, _ in form.hparams)}
    taken = [*base.inputs, *base.slot_names, *base.hparam_names, *(s.target for s in base.body)]
    em = _Emitter(names, taken, scalar_names)
    if use_cse:
        reps, exprs = sp.cse(exprs, symbols=sp.numbered_symbols("_cse", cls=sp.Dummy), order="none")
        for sym, sub in reps:
            em.bind(sym, sub)
    outs = [em.emit(e) for e in exprs]
    slots = tuple(form.slots)
    hparams = base.hparams if not form.substituted else ()
    p = Program(base.name, base.inputs, slots, hparams, tuple(em.body), outs[0], tuple(outs[1:]))
    return prune(p)


# ================================================================ passes

def _interp_fn() -> Optional[sp.FunctionClass]:
    name = _index().role.get("interp")
    return sp.Function(name) if name else None


def _cost(e: sp.Basic) -> int:
    """Approximate statements to compute ``e`` (shared subexpressions counted once)."""
    seen: set = set()
    total = 0
    stack = [e]
    while stack:
        x = stack.pop()
        if x in seen or not x.args or (x.is_number and not x.has(AppliedUndef)):
            continue
        seen.add(x)
        if x.is_Add or x.is_Mul or isinstance(x, (sp.Max, sp.Min)):
            args = x.args
            total += len(args) - 1 - (1 if x.is_Mul and args[0] == -1 else 0)
        elif not isinstance(x, (sp.logic.boolalg.BooleanAtom, sp.core.containers.Tuple)):
            total += 1
        stack.extend(x.args)
    return total


def _interp_add(e: sp.Expr, fn: sp.FunctionClass) -> sp.Expr:
    """Fold ``(1-b)*a + b*c``-shaped parts of a sum into ``interp(a, c, b)`` when that is cheaper."""
    while e.is_Add:
        folded = _interp_numeric_pair(e, fn)
        if folded is None:
            break
        e = folded
    return _interp_add_symbolic(e, fn) if e.is_Add else e


def _interp_numeric_pair(e: sp.Add, fn: sp.FunctionClass) -> Optional[sp.Expr]:
    """Two terms with numeric weights summing to one: ``0.1*g + 0.9*m`` -> ``interp(g, m, 0.9)``."""
    terms = list(e.args)
    parts = [t.as_coeff_Mul() for t in terms]
    for i, j in itertools.combinations(range(len(parts)), 2):
        (ci, ri), (cj, rj) = parts[i], parts[j]
        if not ci.is_Number or not cj.is_Number or ci in (0, 1) or cj in (0, 1):
            continue
        if ri == rj or ri.is_number or rj.is_number:
            continue
        if abs(float(ci) + float(cj) - 1) > 1e-9:
            continue
        # the interpolation weight is the larger one (interp(g, m, 0.9)) unless 1 - weight
        # then loses precision (0.99999999 vs 1e-8)
        def err(beta, other):
            return abs((1.0 - float(beta)) - float(other)) / abs(float(other))

        ci_big = abs(float(ci)) > abs(float(cj))
        big, small = (ci, cj) if ci_big else (cj, ci)
        if err(big, small) <= 1e-12:
            beta_is_ci = ci_big
        else:
            beta_is_ci = err(ci, cj) < err(cj, ci)
        if beta_is_ci:
            ci, cj, ri, rj = cj, ci, rj, ri
        rest = [t for k, t in enumerate(terms) if k not in (i, j)]
        return sp.Add(*rest, fn(ri, rj, _tidy(sp.Float(float(cj)))))
    return None


def _interp_add_symbolic(e: sp.Expr, fn: sp.FunctionClass) -> sp.Expr:
    """``a - s*a + s*c (+ rest)`` -> ``interp(a, c, s) (+ rest)`` for a symbol ``s``."""
    if not e.is_Add:
        return e
    terms = []
    for t in e.args:
        terms.extend(sp.Add.make_args(sp.expand_mul(t, deep=False)))
    best, best_cost = e, _cost(e)
    cands = sorted({x for t in terms for x in sp.Mul.make_args(t) if x.is_Symbol}, key=str)
    for s in cands:
        a_terms, d_terms = [], []
        ok = True
        for t in terms:
            if s not in t.free_symbols:
                a_terms.append(t)
                continue
            fs = sp.Mul.make_args(t)
            if fs.count(s) != 1 or any(s in f.free_symbols for f in fs if f != s):
                ok = False
                break
            d_terms.append(t / s)
        if not ok or not d_terms:
            continue
        neg_d = {-d for d in d_terms}
        a_in = [a for a in a_terms if a in neg_d]
        if not a_in:
            continue
        a_out = [a for a in a_terms if a not in a_in]
        start = sp.Add(*a_in)
        end = sp.Add(start, *d_terms)
        cand = sp.Add(*a_out, fn(start, end, s))
        c = _cost(cand)
        if c < best_cost:
            best, best_cost = cand, c
    return best


def _rewrite_interp(e: sp.Basic, fn: sp.FunctionClass, budget: _Budget) -> sp.Basic:
    memo: dict = {}

    def rw(x):
        if not x.args or isinstance(x, sp.logic.boolalg.BooleanAtom):
            return x
        r = memo.get(x)
        if r is not None:
            return r
        budget.check()
        args = tuple(rw(a) for a in x.args)
        y = x.func(*args) if args != x.args else x
        if y.is_Add:
            y = _interp_add(y, fn)
        memo[x] = y
        return y

    return rw(e)


def _variants(form: SymbolicForm, budget: _Budget) -> list:
    """(name, thunk) pairs giving the outputs after increasingly expensive passes."""
    exprs = list(form.outputs)
    size = max((_tree_size(e) for e in exprs), default=0)
    out: list = [("fold", lambda: exprs)]
    if size <= _EXPAND_LIMIT and max(_expanded_terms(e) for e in exprs) <= _EXPAND_TERMS:
        cache: dict = {}

        def expanded():
            if "e" not in cache:
                cache["e"] = [_tidy(sp.expand(e)) for e in exprs]
            return cache["e"]

        out.append(("expand", expanded))
        out.append(("factor", lambda: [_tidy(sp.factor_terms(e)) for e in expanded()]))
        out.append(("collect", lambda: [_tidy(sp.factor_terms(sp.collect(e, sorted(e.free_symbols, key=str))))
                                        for e in expanded()]))
    if size <= _SIMPLIFY_LIMIT:
        def simplified():
            # each output gets a share of the time; one that runs out stays as it was
            share = min(_SIMPLIFY_SHARE * max(0.0, budget.end - time.monotonic()), _SIMPLIFY_MAX_SECONDS)
            out = []
            for e in exprs:
                try:
                    out.append(budget.run_pass(share / len(exprs), lambda: _tidy(sp.simplify(e))))
                except _PassTimeout:
                    out.append(e)
            return out

        out.append(("simplify", simplified))
    return out


def _steps_in_place(p: Program) -> bool:
    """Does the optimizer path (``step_foreach``, several parameters at once) run this program?"""
    try:
        cp = _compile(p)
        gen = torch.Generator().manual_seed(1)
        params = [torch.randn(3, 4, generator=gen, dtype=torch.float64),
                  torch.randn(5, generator=gen, dtype=torch.float64)]
        grads = [torch.randn(x.shape, generator=gen, dtype=torch.float64) for x in params]
        states = [cp.init_state(x) for x in params]
        for t in (1.0, 2.0):
            cp.step_foreach(params, grads, states, 0.1, t)
        return True
    except SymbolicTimeout:
        raise
    except Exception:  # noqa: BLE001
        return False


def _search(program: Program, substitute: bool, budget: _Budget, publish: Callable[[Any], None]) -> None:
    try:
        _search_unguarded(program, substitute, budget, publish)
    except SymbolicTimeout:
        raise
    except RecursionError:  # a very deep expression: keep the best found so far
        return
    except Exception as e:  # noqa: BLE001 - simplification must never break a caller
        warnings.warn(f"simplify({program.name!r}) stopped early: {type(e).__name__}: {e}", RuntimeWarning,
                      stacklevel=2)


def _search_unguarded(program: Program, substitute: bool, budget: _Budget,
                      publish: Callable[[Any], None]) -> None:
    base = prune(program)
    best_len = program.length
    if base.length < best_len:
        best_len = base.length
        publish(base)
    try:
        form = _reduce_slots(_tidy_form(to_sympy(base, substitute)))
    except SymbolicTimeout:
        raise
    except Exception:  # noqa: BLE001 - no symbolic form (e.g. sympy rejects a constant): keep it
        return
    fn = _interp_fn()
    seen: set = set()
    base_steps: list = []  # computed when first needed
    for _, thunk in _variants(form, budget):
        budget.check()
        try:
            exprs = thunk()
            options = [exprs]
            if fn is not None:
                options.insert(0, [_rewrite_interp(e, fn, budget) for e in exprs])
        except _PassTimeout:
            continue
        except SymbolicTimeout:
            raise
        except Exception:  # noqa: BLE001 - a sympy pass that fails is skipped
            continue
        for ex in options:
            for use_cse in (True, False):
                budget.check()
                try:
                    cand = _build(form, ex, base, use_cse)
                except SymbolicTimeout:
                    raise
                except Exception:  # noqa: BLE001 - untranslatable or invalid: not a candidate
                    continue
                if cand.length >= best_len or cand in seen:
                    continue
                seen.add(cand)
                if not numerically_equal(base, cand, perturb_hparams=not substitute):
                    continue
                if not base_steps:
                    base_steps.append(_steps_in_place(base))
                if base_steps[0] and not _steps_in_place(cand):
                    continue
                best_len = cand.length
                publish(cand)


def simplify(program: Program, timeout: Optional[float] = DEFAULT_TIMEOUT, *,
             substitute: bool = False) -> Program:
    """A shorter program computing the same rule, or ``program`` itself.

    Passes: constant folding and cancellation (sympy's automatic evaluation), ``expand``,
    ``factor_terms``/``collect`` and, for small expressions, ``sympy.simplify``; then
    ``interp`` patterns are folded back and common subexpressions shared (``cse``). Each
    candidate must match the original numerically (see `numerically_equal`); the shortest
    wins, and the result is never longer than ``program``. ``timeout`` (seconds; None for no
    bound) caps the time spent: the best verified result found by then is returned.
    ``substitute=True`` replaces hyperparameters by their defaults (the result has none).
    """
    return _bounded(lambda budget, publish: _search(program, substitute, budget, publish),
                    timeout, program)


# ================================================================ printing

MATH_DIGITS = 4
"""Significant digits of constants in `to_math` (a display form; code keeps every digit)."""


def _float_text(v: float) -> str:
    return format_number(float(f"{_nice_float(v):.{MATH_DIGITS}g}"))


class _MathStr(StrPrinter):
    def _print_Float(self, e):
        v = float(e)
        return _float_text(v) if math.isfinite(v) else super()._print_Float(e)

    def _print_Abs(self, e):
        return f"abs({self._print(e.args[0])})"

    def _print_Max(self, e):
        return f"max({', '.join(self._print(a) for a in e.args)})"

    def _print_Min(self, e):
        return f"min({', '.join(self._print(a) for a in e.args)})"

    def _print_Piecewise(self, e):
        (expr, cond), rest = e.args[0], e.args[1:]
        if cond == sp.true or not rest:
            return self._print(expr)
        other = sp.Piecewise(*rest) if len(rest) > 1 or rest[0][1] != sp.true else rest[0][0]
        return f"where({self._print(cond)}, {self._print(expr)}, {self._print(other)})"

    def _print_Relational(self, e):
        op = {"==": "==", "!=": "!="}.get(e.rel_op, e.rel_op)
        return f"{self._print(e.lhs)} {op} {self._print(e.rhs)}"


class _MathLatex(LatexPrinter):
    def _print_Symbol(self, e, style="plain"):
        text = super()._print_Symbol(e, style)
        base = e.name.rstrip("'").rstrip("0123456789_")
        if len(base) > 1 and not text.startswith("\\") and "_" not in e.name:
            digits = e.name.rstrip("'")[len(base):]
            primes = e.name[len(e.name.rstrip("'")):]
            text = f"\\mathrm{{{base}}}" + (f"_{{{digits}}}" if digits else "") + primes
        return text

    def _print_Float(self, e):
        if not math.isfinite(float(e)):
            return super()._print_Float(e)
        text = _float_text(float(e))
        if "e" in text:
            mant, ex = text.split("e")
            ex = str(int(ex))
            return f"10^{{{ex}}}" if mant == "1" else f"{mant} \\cdot 10^{{{ex}}}"
        return text


def _math_lines(form: SymbolicForm) -> list[tuple[str, sp.Expr]]:
    """(left-hand side, expression) pairs; the update is written with the slots' new values."""
    primes = {s: sp.Symbol(f"{s}'", real=True) for s in form.next_state}
    nxt = dict(form.next_state)
    upd = form.update
    def put(x: sp.Expr, e: sp.Expr, new: sp.Symbol) -> sp.Expr:
        x = x.xreplace({e: new})
        if e.is_Add and x.has(*e.args) and _tree_size(x) <= 4 * _MATH_LIMIT:
            x = x.subs(e, new)  # also inside sums: g - m_new_expr -> g - m'
        return x

    # larger expressions first: one slot's new value may contain another's (s' holds m')
    for s, e in sorted(form.next_state.items(), key=lambda kv: -_tree_size(kv[1])):
        if not e.args or e.is_number:
            continue
        upd = put(upd, e, primes[s])
        nxt = {k: (v if k == s else put(v, e, primes[s])) for k, v in nxt.items()}
    lines = [("update", upd)] + [(f"{s}'", v) for s, v in nxt.items()]
    if max((_tree_size(e) for _, e in lines), default=0) > _MATH_LIMIT:
        reps, reduced = sp.cse([e for _, e in lines], symbols=sp.numbered_symbols("c"), order="none")
        lines = [(str(sym), sub) for sym, sub in reps] + [(lhs, e) for (lhs, _), e in zip(lines, reduced)]
    return lines


def to_math(program: Program, latex: bool = False, *, substitute: bool = False) -> str:
    """The rule as equations, one per line: ``update = ...`` then ``m' = ...`` for each slot.

    A primed name is the slot's value after the step (the update is written with it where the
    new value appears in it). ``latex=True`` gives LaTeX; ``substitute=True`` writes
    hyperparameters as their default values. Large expressions get named common parts.
    """
    form = _tidy_form(to_sympy(prune(program), substitute))
    lines = _math_lines(form)
    if latex:
        pr = _MathLatex()
        out = []
        for lhs, e in lines:
            left = r"\mathrm{update}" if lhs == "update" else pr._print(sp.Symbol(lhs))
            out.append(f"{left} = {pr.doprint(e)}")
        return "\n".join(out) + "\n"
    pr = _MathStr()
    return "\n".join(f"{lhs} = {pr.doprint(e)}" for lhs, e in lines) + "\n"


# ================================================================ equivalence

def _canonical(e: sp.Expr, budget: _Budget) -> sp.Expr:
    """Expanded (when affordable), with constant subexpressions as tidied floats."""
    budget.check()
    if _tree_size(e) <= _EXPAND_LIMIT and _expanded_terms(e) <= _EXPAND_TERMS:
        e = sp.expand(e)
        if e.has(sp.Piecewise):
            e = sp.piecewise_fold(e)
    e = e.evalf(17)

    def constant(x):  # evalf leaves these inside relations (conditions of Piecewise)
        return isinstance(x, sp.Expr) and bool(x.args) and x.is_number and not x.has(AppliedUndef)

    def value(x):
        v = x.evalf(17)
        return v if v.is_Number else x

    return _tidy(e.replace(constant, value))


def _same(e1: sp.Expr, e2: sp.Expr, budget: _Budget) -> bool:
    if e1 == e2:
        return True
    c1, c2 = _canonical(e1, budget), _canonical(e2, budget)
    if c1 == c2:
        return True
    budget.check()
    d = _canonical(c1 - c2, budget)
    if d == 0:
        return True
    if _tree_size(d) <= _SIMPLIFY_LIMIT:
        share = _SIMPLIFY_SHARE * max(0.0, budget.end - time.monotonic())
        try:
            return budget.run_pass(min(share, _SIMPLIFY_MAX_SECONDS), lambda: _canonical(sp.simplify(d), budget) == 0)
        except _PassTimeout:
            return False
    return False


def _canonical_form(form: SymbolicForm, budget: _Budget, deep: bool) -> SymbolicForm:
    """Outputs in canonical form (``deep``: after ``sympy.simplify`` too), dead slots dropped."""
    def canon(e):
        if deep and _tree_size(e) <= _SIMPLIFY_LIMIT:
            share = _SIMPLIFY_SHARE * max(0.0, budget.end - time.monotonic())
            try:
                e = budget.run_pass(min(share, _SIMPLIFY_MAX_SECONDS) / len(form.outputs),
                                    lambda: sp.simplify(e))
            except _PassTimeout:
                pass
        return _canonical(e, budget)

    return _reduce_slots(replace(form, update=canon(form.update),
                                 next_state={k: canon(v) for k, v in form.next_state.items()}))


def _used_hparams(f: SymbolicForm) -> dict:
    free = set().union(*(e.free_symbols for e in f.outputs))
    return {n: v for n, v in f.hparams if n in f.symbols and f.symbols[n] in free}


def _updates_differ(a: Program, b: Program, substitute: bool) -> bool:
    """A cheap necessary test: from their own initial states, on the same random inputs, do the
    updates differ (at the defaults, then with the shared hyperparameters perturbed)?"""
    try:
        ca, cb = _compile(a), _compile(b)
        gen = torch.Generator().manual_seed(3)
        shape = torch.Size((3, 4))
        w0 = torch.zeros(shape, dtype=torch.float64)
        shared = set(a.hparam_names) & set(b.hparam_names)
        for trial in range(1 if substitute else 2):
            hp = {k: v + 0.1 * (1 + abs(v)) * (0.5 - float(torch.rand((), generator=gen)))
                  for k, v in a.hparams if k in shared and trial == 1}
            ha = {k: hp[k] for k in a.hparam_names if k in hp}
            hb = {k: hp[k] for k in b.hparam_names if k in hp}
            sa, sb = ca.init_state(w0), cb.init_state(w0)
            for k in range(4):
                w = torch.randn(shape, generator=gen, dtype=torch.float64)
                g = torch.randn(shape, generator=gen, dtype=torch.float64)
                ua, sa = ca.apply(w, g, 0.3, float(k + 1), sa, ha)
                ub, sb = cb.apply(w, g, 0.3, float(k + 1), sb, hb)
                if not _close(ua, ub, shape, 1e-6):
                    return True
        return False
    except SymbolicTimeout:
        raise
    except Exception:  # noqa: BLE001 - undecided here; the symbolic comparison decides
        return False


def _equivalent(a: Program, b: Program, substitute: bool, budget: _Budget) -> bool:
    a, b = prune(a), prune(b)
    if _updates_differ(a, b, substitute):
        return False
    raw_a = _tidy_form(to_sympy(a, substitute))
    raw_b = _tidy_form(to_sympy(b, substitute))

    def comparable(fa, fb):
        return len(fa.slots) == len(fb.slots) and (substitute or _used_hparams(fa) == _used_hparams(fb))

    fa, fb = _canonical_form(raw_a, budget, False), _canonical_form(raw_b, budget, False)
    if not comparable(fa, fb):
        # parts that only sympy.simplify shows to be constant can hide a dead slot or hyperparameter
        fa, fb = _canonical_form(raw_a, budget, True), _canonical_form(raw_b, budget, True)
        if not comparable(fa, fb):
            return False
    for mapping in _slot_matchings(a, b, [s for s, _ in fa.slots], [s for s, _ in fb.slots]):
        budget.check()
        if not numerically_equal(a, b, mapping, perturb_hparams=not substitute):
            continue
        ren = {fb.symbols[s]: fa.symbols[t] for s, t in mapping.items()}
        if not _same(fa.update, fb.update.xreplace(ren), budget):
            continue
        if all(_same(fa.next_state[mapping[s]], fb.next_state[s].xreplace(ren), budget)
               for s in fb.next_state):
            return True
    return False


def _slot_matchings(a: Program, b: Program, slots_a: list, slots_b: list):
    """Candidate maps (slot of b -> slot of a): slots whose values agree over a few steps from
    the initial state on the same random inputs (equivalent rules must agree there)."""
    ca, cb = _compile(a), _compile(b)
    gen = torch.Generator().manual_seed(2)
    shape = torch.Size((3, 4))
    w0 = torch.zeros(shape, dtype=torch.float64)
    sa, sb = ca.init_state(w0), cb.init_state(w0)
    traj_a = {x: [] for x in slots_a}
    traj_b = {x: [] for x in slots_b}
    try:
        for k in range(3):
            w = torch.randn(shape, generator=gen, dtype=torch.float64)
            g = torch.randn(shape, generator=gen, dtype=torch.float64)
            _, sa = ca.apply(w, g, 0.3, float(k + 1), sa)
            _, sb = cb.apply(w, g, 0.3, float(k + 1), sb)
            for x in slots_a:
                traj_a[x].append(sa[x])
            for x in slots_b:
                traj_b[x].append(sb[x])
    except Exception:  # noqa: BLE001 - fall back to every assignment
        traj_a = traj_b = None
    init_a, init_b = dict(a.slots), dict(b.slots)

    def fits(x, y):
        if init_b[x] != init_a[y]:
            return False
        return traj_a is None or all(_close(u, v, shape, 1e-6) for u, v in zip(traj_a[y], traj_b[x]))

    options = [[y for y in slots_a if fits(x, y)] for x in slots_b]
    for choice in itertools.product(*options):
        if len(set(choice)) == len(choice):
            yield dict(zip(slots_b, choice))


def equivalent(a: Program, b: Program, *, substitute: bool = False,
               timeout: Optional[float] = DEFAULT_TIMEOUT) -> bool:
    """Are ``a`` and ``b`` the same update rule (up to slot names)?

    True for structurally equal programs; otherwise their symbolic forms (dead and constant
    slots removed) must agree after canonical expansion (or ``sympy.simplify`` of the
    difference) for some matching of slots with equal initial values, and a numeric check
    must agree. Hyperparameters are compared by name and default (``substitute=True``
    compares the rules at the defaults instead). False when undecided within ``timeout``.
    """
    if a == b:
        return True

    def run(budget: _Budget, publish: Callable[[Any], None]) -> None:
        try:
            publish(_equivalent(a, b, substitute, budget))
        except SymbolicTimeout:
            raise
        except RecursionError:
            return
        except Exception as e:  # noqa: BLE001 - undecided is "not shown equivalent"
            warnings.warn(f"equivalent({a.name!r}, {b.name!r}) failed: {type(e).__name__}: {e}",
                          RuntimeWarning, stacklevel=2)

    return bool(_bounded(run, timeout, False))
