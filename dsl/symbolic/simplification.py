"""Simplification: shorter programs for the same rule, each verified numerically.

Passes over the symbolic form: constant folding and cancellation (sympy's automatic
evaluation), ``expand``, ``factor_terms``/``collect`` and, for small expressions,
``sympy.simplify``; then ``(1 - b)*a + b*c`` patterns are folded back to ``interp`` and common
subexpressions shared (``cse``). Every candidate is checked against the original (float64,
several steps of random inputs, relative tolerance 1e-6; see `numerically_equal`) and the
shortest valid one wins; the original is kept when nothing shorter passes. All of it runs
under a time bound (`dsl.symbolic.bounds`); expensive passes are skipped outright for large
expressions or ones whose expansion would explode.
"""
from __future__ import annotations

import itertools
import warnings
from typing import Any, Callable, Optional

import sympy as sp

from ..graph import prune
from ..printer import to_text
from ..program import Program
from . import form as F
from .bounds import DEFAULT_TIMEOUT, Budget, PassTimeout, SymbolicTimeout, bounded
from .emit import build, index
from .form import SymbolicForm, expanded_terms, free_symbols, is_constant, rebuild, reduce_slots, tidy, tidy_form, sympy_form, tree_size
from .numeric import numerically_equal, steps_in_place

__all__ = ["simplify", "simplified_text"]


# ---------------------------------------------------------------- interp folding

def _interp_fn() -> Optional[sp.FunctionClass]:
    name = index().role.get("interp")
    return sp.Function(name) if name else None


def _cost(e: sp.Basic, constants: Optional[dict] = None) -> int:
    """Approximate statements to compute ``e`` (shared subexpressions counted once);
    ``constants``: a memo for `is_constant`."""
    constants = {} if constants is None else constants
    seen: set = set()
    total = 0
    stack = [e]
    while stack:
        x = stack.pop()
        if x in seen or not x.args or is_constant(x, constants):
            continue
        seen.add(x)
        if x.is_Add or x.is_Mul or isinstance(x, (sp.Max, sp.Min)):
            args = x.args
            total += len(args) - 1 - (1 if x.is_Mul and args[0] == -1 else 0)
        elif not isinstance(x, (sp.logic.boolalg.BooleanAtom, sp.core.containers.Tuple)):
            total += 1
        stack.extend(x.args)
    return total


def _interp_add(e: sp.Expr, fn: sp.FunctionClass, symbols: dict) -> sp.Expr:
    """Fold ``(1-b)*a + b*c``-shaped parts of a sum into ``interp(a, c, b)`` when that is cheaper."""
    while e.is_Add:
        folded = _interp_numeric_pair(e, fn)
        if folded is None:
            break
        e = folded
    return _interp_add_symbolic(e, fn, symbols) if e.is_Add else e


def _interp_numeric_pair(e: sp.Add, fn: sp.FunctionClass) -> Optional[sp.Expr]:
    """Two terms with numeric weights summing to one: ``0.1*g + 0.9*m`` -> ``interp(g, m, 0.9)``."""
    terms = list(e.args)
    parts = [t.as_coeff_Mul() for t in terms]
    for i, j in itertools.combinations(range(len(parts)), 2):
        (ci, ri), (cj, rj) = parts[i], parts[j]
        if not ci.is_Number or not cj.is_Number or ci in (0, 1) or cj in (0, 1):
            continue
        if ri == rj or is_constant(ri) or is_constant(rj):
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
        return sp.Add(*rest, fn(ri, rj, tidy(sp.Float(float(cj)))))
    return None


def _interp_add_symbolic(e: sp.Expr, fn: sp.FunctionClass, symbols: dict) -> sp.Expr:
    """``a - s*a + s*c (+ rest)`` -> ``interp(a, c, s) (+ rest)`` for a symbol ``s``.

    ``symbols``: a memo for `free_symbols` (sympy's own walks every path of shared trees)."""
    if not e.is_Add:
        return e
    terms = []
    for t in e.args:
        terms.extend(sp.Add.make_args(sp.expand_mul(t, deep=False)))
    constants: dict = {}
    best, best_cost = e, _cost(e, constants)
    cands = sorted({x for t in terms for x in sp.Mul.make_args(t) if x.is_Symbol}, key=str)
    for s in cands:
        a_terms, d_terms = [], []
        ok = True
        for t in terms:
            if s not in free_symbols(t, symbols):
                a_terms.append(t)
                continue
            fs = sp.Mul.make_args(t)
            if fs.count(s) != 1 or any(s in free_symbols(f, symbols) for f in fs if f != s):
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
        c = _cost(cand, constants)
        if c < best_cost:
            best, best_cost = cand, c
    return best


def _rewrite_interp(e: sp.Basic, fn: sp.FunctionClass, budget: Budget) -> sp.Basic:
    """Every sum in ``e`` with its interp-shaped parts folded (`_interp_add`), bottom up."""
    symbols: dict = {}

    def node(y: sp.Basic) -> sp.Basic:
        return _interp_add(y, fn, symbols) if y.is_Add else y

    budget.check()
    return rebuild(e, node)


def _variants(form: SymbolicForm, budget: Budget) -> list:
    """(name, thunk) pairs giving the outputs after increasingly expensive passes."""
    exprs = list(form.outputs)
    size = max((tree_size(e) for e in exprs), default=0)
    out: list = [("fold", lambda: exprs)]
    if size <= F.EXPAND_LIMIT and max(expanded_terms(e) for e in exprs) <= F.EXPAND_TERMS:
        cache: dict = {}

        def expanded():
            if "e" not in cache:
                cache["e"] = [tidy(sp.expand(e)) for e in exprs]
            return cache["e"]

        out.append(("expand", expanded))
        out.append(("factor", lambda: [tidy(sp.factor_terms(e)) for e in expanded()]))
        out.append(("collect", lambda: [tidy(sp.factor_terms(sp.collect(e, sorted(e.free_symbols, key=str))))
                                        for e in expanded()]))
    if size <= F.SIMPLIFY_LIMIT:
        def simplified():
            # each output gets a share of the time; one that runs out stays as it was
            share = min(F.SIMPLIFY_SHARE * budget.remaining(), F.SIMPLIFY_MAX_SECONDS)
            out = []
            for e in exprs:
                try:
                    out.append(budget.run_pass(share / len(exprs), lambda: tidy(sp.simplify(e))))
                except PassTimeout:
                    out.append(e)
            return out

        out.append(("simplify", simplified))
    return out


def _search(program: Program, substitute: bool, budget: Budget, publish: Callable[[Any], None],
            notes: list) -> None:
    try:
        _search_unguarded(program, substitute, budget, publish, notes)
    except SymbolicTimeout:
        raise
    except RecursionError:  # a very deep expression: keep the best found so far
        notes.append("expression too deep for sympy")
    except Exception as e:  # noqa: BLE001 - simplification must never break a caller
        notes.append(f"sympy failed: {type(e).__name__}: {str(e)[:120]}")


def _search_unguarded(program: Program, substitute: bool, budget: Budget,
                      publish: Callable[[Any], None], notes: list) -> None:
    base = prune(program)
    best_len = program.length
    if base.length < best_len:
        best_len = base.length
        publish(base)
    try:
        form = reduce_slots(tidy_form(sympy_form(base, substitute)))
    except SymbolicTimeout:
        raise
    except Exception as e:  # noqa: BLE001 - no symbolic form (e.g. sympy rejects a constant): keep it
        notes.append(f"no symbolic form: {type(e).__name__}: {str(e)[:120]}")
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
        except PassTimeout:
            continue
        except SymbolicTimeout:
            raise
        except Exception:  # noqa: BLE001 - a sympy pass that fails is skipped
            continue
        for ex in options:
            for use_cse in (True, False):
                budget.check()
                try:
                    cand = build(form, ex, base, use_cse)
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
                    base_steps.append(steps_in_place(base))
                if base_steps[0] and not steps_in_place(cand):
                    continue
                best_len = cand.length
                publish(cand)


def _run(program: Program, timeout: Optional[float], substitute: bool) -> tuple[Program, str]:
    """The shortest verified program found, and why the search stopped early ('' if it did not)."""
    notes: list = []
    out = bounded(lambda budget, publish: _search(program, substitute, budget, publish, notes), timeout, program)
    if not out.finished and not notes:
        notes.append(f"stopped at the time bound of {timeout:g} s")
    return out.value, "; ".join(notes)


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
    A search stopped by a sympy error warns (`RuntimeWarning`) and returns the best so far.
    """
    best, note = _run(program, timeout, substitute)
    if note and not note.startswith("stopped at the time bound"):
        warnings.warn(f"simplify({program.name!r}) stopped early: {note}", RuntimeWarning, stacklevel=2)
    return best


def simplified_text(program: Program, timeout: Optional[float] = 5.0) -> Optional[str]:
    """Lines to print under a program's text: its simplified form, or why there is none.

    - a shorter verified program was found: ``"# simplified (length N):"`` and its readable
      text (the header adds ``", search stopped early: <why>"`` when the bound cut it short);
    - nothing shorter, and the search ran to its end: None (the program is as simple as found);
    - nothing shorter, search stopped (time bound, sympy error): one line
      ``"# not simplified: <why>"``.

    Never raises for a valid program and returns within about ``timeout`` seconds: this is
    what ``evolve show`` and the end-of-run report print.
    """
    best, note = _run(program, timeout, False)
    raw = to_text(program, readable=True)
    text = to_text(best, readable=True)
    if best.length < program.length or text != raw:
        head = f"# simplified (length {best.length}" + (f", search stopped early: {note}" if note else "") + "):"
        return head + "\n" + text
    if note:
        return f"# not simplified: {note}\n"
    return None
