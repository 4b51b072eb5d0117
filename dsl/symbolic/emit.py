"""From sympy back to a program: expressions become single-op statements of the op table.

`build` turns the outputs of a `SymbolicForm` (after any pass) into a `Program`; sympy's own
arithmetic maps to the ops whose sympy forms have its shape (found by `OpIndex`, which evaluates
every op's sympy implementation on placeholders), other expressions match the ops' templates.
Identical subexpressions share one statement; with ``use_cse`` sympy's ``cse`` names common parts.
"""
from __future__ import annotations

import math
import threading
from typing import Iterable, Mapping, Optional

import sympy as sp
from sympy.core.function import AppliedUndef

from ..graph import prune
from ..ops import OPS
from ..program import Arg, Program, Stmt
from .form import ONES, SymbolicForm, free_symbols, is_constant, tree_size

__all__ = ["Untranslatable", "build", "index"]


class Untranslatable(Exception):
    """An expression with no program form (a complex or non-finite constant, an unknown function)."""


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
        first = sorted(e.args, key=lambda a: (bool(a.is_Number), -tree_size(a, 64)))
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


class OpIndex:
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
            return (-len(atoms), -tree_size(tpl))

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
            raise Untranslatable(f"no op for {role}")
        return name


_INDEX: Optional[OpIndex] = None
_INDEX_LOCK = threading.Lock()


def index() -> OpIndex:
    global _INDEX
    with _INDEX_LOCK:
        if _INDEX is None:
            _INDEX = OpIndex()
        return _INDEX


class _Emitter:
    """Turns sympy expressions into single-op statements, sharing identical subexpressions."""

    def __init__(self, names: Mapping[sp.Symbol, str], taken: Iterable[str], scalar_names: set[str],
                 tensor: Optional[str] = None):
        self.ix = index()
        self.names = dict(names)
        self.taken = set(taken) | set(OPS)
        self.scalar_names = scalar_names
        self.tensor = tensor  # a tensor-valued name for `ONES` (where(x, 1, 1) is 1 at every element)
        self.symbol_memo: dict = {}
        self.const_memo: dict = {}
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
        return all(self.names.get(s) in self.scalar_names for s in free_symbols(e, self.symbol_memo))

    def _order(self, xs: list) -> list:
        """Scalar-only factors/terms first (computed once per step), then the rest, stably."""
        return sorted(xs, key=lambda x: 0 if self._is_scalar(x) else 1)

    def emit(self, e: sp.Basic) -> Arg:
        if e in self.memo:
            return self.memo[e]
        if e == ONES:
            if self.tensor is None:
                raise Untranslatable("a tensor of ones without a tensor input")
            r = self.op(self.need("where"), self.tensor, 1.0, 1.0)
            self.memo[e] = r
            return r
        if e.is_Symbol:
            name = self.names.get(e)
            if name is None:
                raise Untranslatable(f"unknown symbol {e}")
            return name
        if isinstance(e, sp.logic.boolalg.Boolean):
            r = self.mask(e)
        elif is_constant(e, self.const_memo):
            if e is sp.zoo:
                raise Untranslatable("complex infinity")
            v = complex(sp.N(e, 17)) if e is not sp.nan else complex(math.nan)
            if v.imag != 0:
                raise Untranslatable(f"constant {e}")
            if math.isfinite(v.real):
                return float(v.real)
            # a program holds only finite constants; it computes inf and nan as IEEE does
            r = self.op(self.need("div"), 0.0 if math.isnan(v.real) else math.copysign(1.0, v.real), 0.0)
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
                raise Untranslatable(f"function {e.func}")
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
        raise Untranslatable(f"{type(e).__name__}")

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
            raise Untranslatable("Piecewise without a default")
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
                raise Untranslatable(f"relation {cond.func}")
        elif isinstance(cond, sp.And):
            r = self._fold_masks(self.need("mul"), cond.args)
        elif isinstance(cond, sp.Or):
            r = self._fold_masks(self.need("maximum"), cond.args)
        elif isinstance(cond, sp.Not):
            r = self.op(self.need("sub"), 1.0, self.mask(cond.args[0]))
        else:
            raise Untranslatable(f"condition {type(cond).__name__}")
        self.memo[cond] = r
        return r

    def _fold_masks(self, name: str, conds: tuple) -> Arg:
        acc = self.mask(conds[0])
        for c in conds[1:]:
            acc = self.op(name, acc, self.mask(c))
        return acc


def build(form: SymbolicForm, exprs: list, base: Program, use_cse: bool) -> Program:
    """A program computing ``exprs`` (update, then live slots' next values in ``form.slots`` order)."""
    names = {sym: name for name, sym in form.symbols.items()}
    scalar_names = {"lr", "t", *(n for n, _ in form.hparams)}
    taken = [*base.inputs, *base.slot_names, *base.hparam_names, *(s.target for s in base.body)]
    tensor = next((x for x in ("g", "w", *base.slot_names) if x in base.inputs or x in base.slot_names), None)
    em = _Emitter(names, taken, scalar_names, tensor)
    if use_cse:
        reps, exprs = sp.cse(exprs, symbols=sp.numbered_symbols("_cse", cls=sp.Dummy), order="none")
        for sym, sub in reps:
            em.bind(sym, sub)
    outs = [em.emit(e) for e in exprs]
    slots = tuple(form.slots)
    hparams = base.hparams if not form.substituted else ()
    p = Program(base.name, base.inputs, slots, hparams, tuple(em.body), outs[0], tuple(outs[1:]))
    return prune(p)

