"""Equivalence: are two programs the same update rule, up to slot names?

Sound but incomplete: True means the canonical forms (expanded when affordable, constants as
tidied floats, dead and constant slots removed) agree for some matching of slots with equal
initial values, or ``sympy.simplify`` shows the difference to be zero, and a numeric check
agrees. Rules that only case analysis shows equal (nested ``where``/comparison logic) may come
out False. A cheap numeric test rejects most different pairs before any sympy work.
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import replace
from typing import Any, Callable, Optional

import sympy as sp
import torch
from sympy.core.function import AppliedUndef

from ..graph import prune
from ..probe import random_inputs
from ..program import Program
from . import form as F
from .bounds import DEFAULT_TIMEOUT, Budget, PassTimeout, SymbolicTimeout, bounded
from .form import (SymbolicForm, equal, expanded_terms, free_symbols, is_constant, rebuild, reduce_slots, replace_atoms,
                   sympy_form, tidy, tidy_form, tree_size)
from .numeric import close, numerically_equal, slot_trajectories, updates_differ

__all__ = ["equivalent"]


_WALK_LIMIT = 2000  # tree size above which sympy's tree walks (evalf, replace) give way to memoized ones


def _canonical(e: sp.Expr, budget: Budget) -> sp.Expr:
    """Expanded (when affordable), with constant subexpressions as tidied floats."""
    budget.check()
    size = tree_size(e)
    if size <= F.EXPAND_LIMIT and expanded_terms(e) <= F.EXPAND_TERMS:
        e = sp.expand(e)
        if e.has(sp.Piecewise):
            e = sp.piecewise_fold(e)
    if size > _WALK_LIMIT:  # a shared tree (a long chain): one memoized pass, same effect
        return tidy(_numeric_constants(e))
    e = e.evalf(17)

    def constant(x):  # evalf leaves these inside relations (conditions of Piecewise)
        return isinstance(x, sp.Expr) and bool(x.args) and x.is_number and not x.has(AppliedUndef)

    def value(x):
        v = x.evalf(17)
        return v if v.is_Number else x

    return tidy(e.replace(constant, value))


def _numeric_constants(e: sp.Expr) -> sp.Expr:
    """``e`` with non-integer rationals and constant subexpressions as 17-digit Floats (what
    ``evalf(17)`` does to them), in one memoized pass."""
    constants: dict = {}

    def node(x: sp.Basic) -> sp.Basic:
        if x.is_Rational and not x.is_Integer:
            return sp.Float(x, 17)
        if x.args and is_constant(x, constants):
            v = x.evalf(17)
            return v if v.is_Number else x
        return x

    return rebuild(e, node)


def _same(e1: sp.Expr, e2: sp.Expr, budget: Budget) -> bool:
    if equal(e1, e2):
        return True
    c1, c2 = _canonical(e1, budget), _canonical(e2, budget)
    if equal(c1, c2):
        return True
    budget.check()
    d = _canonical(c1 - c2, budget)
    if d == 0:
        return True
    if tree_size(d) <= F.SIMPLIFY_LIMIT:
        share = F.SIMPLIFY_SHARE * budget.remaining()
        try:
            return budget.run_pass(min(share, F.SIMPLIFY_MAX_SECONDS), lambda: _canonical(sp.simplify(d), budget) == 0)
        except PassTimeout:
            return False
    return False


def _canonical_form(form: SymbolicForm, budget: Budget, deep: bool) -> SymbolicForm:
    """Outputs in canonical form (``deep``: after ``sympy.simplify`` too), dead slots dropped."""
    def canon(e):
        if deep and tree_size(e) <= F.SIMPLIFY_LIMIT:
            share = F.SIMPLIFY_SHARE * budget.remaining()
            try:
                e = budget.run_pass(min(share, F.SIMPLIFY_MAX_SECONDS) / len(form.outputs),
                                    lambda: sp.simplify(e))
            except PassTimeout:
                pass
        return _canonical(e, budget)

    return reduce_slots(replace(form, update=canon(form.update),
                                 next_state={k: canon(v) for k, v in form.next_state.items()}))


def _used_hparams(f: SymbolicForm) -> dict:
    memo: dict = {}
    free = set().union(*(free_symbols(e, memo) for e in f.outputs))
    return {n: v for n, v in f.hparams if n in f.symbols and f.symbols[n] in free}

def _equivalent(a: Program, b: Program, substitute: bool, budget: Budget) -> bool:
    a, b = prune(a), prune(b)
    if updates_differ(a, b, substitute):
        return False
    raw_a = tidy_form(sympy_form(a, substitute))
    raw_b = tidy_form(sympy_form(b, substitute))

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
        if not _same(fa.update, replace_atoms(fb.update, ren), budget):
            continue
        if all(_same(fa.next_state[mapping[s]], replace_atoms(fb.next_state[s], ren), budget)
               for s in fb.next_state):
            return True
    return False


def _slot_matchings(a: Program, b: Program, slots_a: list, slots_b: list):
    """Candidate maps (slot of b -> slot of a): slots whose values agree over a few steps from
    the initial state on the same random inputs (equivalent rules must agree there)."""
    inputs = random_inputs(torch.Generator().manual_seed(2), steps=3)
    traj_a, traj_b = slot_trajectories(a, inputs), slot_trajectories(b, inputs)
    if traj_a is None or traj_b is None:  # fall back to every assignment
        traj_a = traj_b = None
    init_a, init_b = dict(a.slots), dict(b.slots)
    shape = inputs.w0.shape

    def fits(x, y):
        if init_b[x] != init_a[y]:
            return False
        return traj_a is None or all(close(u, v, shape, 1e-6) for u, v in zip(traj_a[y], traj_b[x]))

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

    def run(budget: Budget, publish: Callable[[Any], None]) -> None:
        try:
            publish(_equivalent(a, b, substitute, budget))
        except SymbolicTimeout:
            raise
        except RecursionError:
            return
        except Exception as e:  # noqa: BLE001 - undecided is "not shown equivalent"
            warnings.warn(f"equivalent({a.name!r}, {b.name!r}) failed: {type(e).__name__}: {e}",
                          RuntimeWarning, stacklevel=2)

    return bool(bounded(run, timeout, False).value)
