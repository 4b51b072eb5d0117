"""Math text: a program's rule as equations (``update = ...``, ``m' = ...``), plain or LaTeX.

Constants are shown to `MATH_DIGITS` significant digits (a display form; the code form keeps
every digit); ``inf``/``nan`` stand for the float64 values a program's constants overflow to.
`to_math` runs under a time bound and raises `SymbolicError` when it cannot finish.
"""
from __future__ import annotations

import math
from typing import Optional

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from ..graph import prune
from ..printer import format_number
from ..program import Program
from . import form as F
from .bounds import DEFAULT_TIMEOUT, bounded_value
from .form import SymbolicForm, is_constant, nice_float, rebuild, tidy_form, sympy_form, tree_size

__all__ = ["MATH_DIGITS", "to_math"]

MATH_DIGITS = 4
"""Significant digits of constants in `to_math` (a display form; code keeps every digit)."""


def _float_text(v: float) -> str:
    return format_number(float(f"{nice_float(v):.{MATH_DIGITS}g}"))


class _MathStr(StrPrinter):
    def _print_Float(self, e):
        v = float(e)
        return _float_text(v) if math.isfinite(v) else super()._print_Float(e)

    def _print_Infinity(self, e):
        return "inf"

    def _print_NegativeInfinity(self, e):
        return "-inf"

    def _print_ComplexInfinity(self, e):  # sympy's x/0: IEEE gives +-inf or nan
        return "(+-inf)"

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
        h = hash(e)
        x = rebuild(x, lambda y: new if hash(y) == h and y == e else y)  # xreplace, memoized
        if e.is_Add and tree_size(x) <= 4 * F.MATH_LIMIT and x.has(*e.args):
            x = x.subs(e, new)  # also inside sums: g - m_new_expr -> g - m'
        return x

    # larger expressions first: one slot's new value may contain another's (s' holds m')
    for s, e in sorted(form.next_state.items(), key=lambda kv: -tree_size(kv[1])):
        if not e.args or is_constant(e):
            continue
        upd = put(upd, e, primes[s])
        nxt = {k: (v if k == s else put(v, e, primes[s])) for k, v in nxt.items()}
    lines = [("update", upd)] + [(f"{s}'", v) for s, v in nxt.items()]
    if max((tree_size(e) for _, e in lines), default=0) > F.MATH_LIMIT:
        reps, reduced = sp.cse([e for _, e in lines], symbols=sp.numbered_symbols("c"), order="none")
        lines = [(str(sym), sub) for sym, sub in reps] + [(lhs, e) for (lhs, _), e in zip(lines, reduced)]
    return lines



def _render(program: Program, latex: bool, substitute: bool) -> str:
    form = tidy_form(sympy_form(prune(program), substitute))
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


def to_math(program: Program, latex: bool = False, *, substitute: bool = False,
            timeout: Optional[float] = DEFAULT_TIMEOUT) -> str:
    """The rule as equations, one per line: ``update = ...`` then ``m' = ...`` for each slot.

    A primed name is the slot's value after the step (the update is written with it where the
    new value appears in it). ``latex=True`` gives LaTeX; ``substitute=True`` writes
    hyperparameters as their default values. Large expressions get named common parts.
    Raises `SymbolicError` (one-line message) when the text is not ready within ``timeout``
    seconds (None: no bound) or sympy fails on the program.
    """
    return bounded_value(lambda: _render(program, latex, substitute), timeout, "math text")
