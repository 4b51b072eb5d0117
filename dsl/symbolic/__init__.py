"""Programs as sympy expressions: explain (math), simplify, and compare update rules.

- `to_sympy(p)`: one expression per output (the update and each slot's next value) in terms
  of the inputs, the slots' previous values and the hyperparameters (symbols, or their
  defaults with ``substitute=True``), built with each op's sympy implementation from the op
  table (`dsl.ops.OPS`).
- `simplify(p)`: algebraic simplification turned back into a `Program`, every candidate
  verified numerically; `simplified_text(p)` is what to print for it (or why there is none).
- `to_math(p)`: the rule as plain-text or LaTeX equations (``update = ...``, ``m' = ...``).
- `equivalent(a, b)`: the same rule up to slot names (sound, incomplete).
- `numerically_equal(a, b)`: the numeric check behind both.

Every operation is bounded on any program the parser accepts: numbers stay float64 values or
small exact rationals (`form`), and the sympy work runs under a deadline it cannot outlive
(`bounds`). `simplify` and `equivalent` then return their best answer so far; `to_math` raises
`SymbolicError`.

Modules, one job each: `form` (the sympy form and its number policy), `bounds` (time bounds),
`numeric` (numeric checks, on `dsl.probe`), `emit` (sympy back to programs), `simplification`,
`mathtext`, `equivalence`. sympy is imported when a symbolic function is first used, not by
``import dsl``: workers never need it.
"""
from __future__ import annotations

import importlib
from typing import Any

from .bounds import DEFAULT_TIMEOUT, SymbolicError, SymbolicTimeout
from .numeric import numerically_equal

_LAZY = {
    "SymbolicForm": "form", "to_sympy": "form",
    "simplify": "simplification", "simplified_text": "simplification",
    "to_math": "mathtext", "MATH_DIGITS": "mathtext",
    "equivalent": "equivalence",
}

__all__ = ["DEFAULT_TIMEOUT", "MATH_DIGITS", "SymbolicError", "SymbolicForm", "SymbolicTimeout", "equivalent",
           "numerically_equal", "simplified_text", "simplify", "to_math", "to_sympy"]


def __getattr__(name: str) -> Any:
    """The sympy-backed names, imported on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
