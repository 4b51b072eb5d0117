"""Hypothesis strategies for random programs (shared by DSL and mutation tests)."""
from __future__ import annotations

import keyword

from hypothesis import strategies as st

import dsl
from dsl.program import INPUTS, Program, Stmt

_RESERVED = set(INPUTS) | set(dsl.OPS)

identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: not keyword.iskeyword(s) and s not in _RESERVED)

constants = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 0.5, 0.9, 0.999, 1e-8, 2.0, -0.0]),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)


@st.composite
def programs(draw, max_statements: int = 12, max_slots: int = 3, max_hparams: int = 2,
             ops=None) -> Program:
    """A random valid program, pruned of dead code (may be tiny)."""
    ops = sorted(ops or dsl.OPS)
    names: set[str] = set()

    def fresh() -> str:
        x = draw(identifiers.filter(lambda s: s not in names))
        names.add(x)
        return x

    inputs = tuple(x for x in INPUTS if draw(st.booleans()))
    slots = tuple((fresh(), draw(constants)) for _ in range(draw(st.integers(0, max_slots))))
    hparams = tuple((fresh(), draw(constants)) for _ in range(draw(st.integers(0, max_hparams))))
    readable = [*inputs, *(x for x, _ in slots), *(x for x, _ in hparams)]

    def arg():
        if readable and draw(st.integers(0, 3)) > 0:
            return draw(st.sampled_from(readable))
        return draw(constants)

    body = []
    for _ in range(draw(st.integers(0, max_statements))):
        op = draw(st.sampled_from(ops))
        target = fresh()
        body.append(Stmt(target, op, tuple(arg() for _ in range(dsl.OPS[op].arity))))
        readable.append(target)
    update = arg()
    next_state = tuple(arg() for _ in slots)
    name = draw(identifiers)
    return dsl.prune(Program(name, inputs, slots, hparams, tuple(body), update, next_state))
