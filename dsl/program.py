"""`Program`: an update rule as an immutable value in flat single-assignment form.

A program maps the inputs ``w`` (weights), ``g`` (gradient), ``lr`` (learning rate after any
schedule) and ``t`` (step, 1 on the first step), the previous values of its state slots and its
named hyperparameters to an update (``w_new = w - update``) and the next value of each slot.

The body is a tuple of single-operation statements ``target = op(args)``. Each target is
assigned once (SSA). An argument is a name (an input, a slot's *previous* value, a
hyperparameter, or an earlier target) or a float constant. Equality and the structural hash
ignore temporary names, statement order among independent statements, duplicated
subexpressions and dead code: two programs are equal when they compute the same expression DAG.
"""
from __future__ import annotations

import hashlib
import keyword
import math
from dataclasses import dataclass, field
from typing import Union

from .ops import OPS
from .printer import to_text

__all__ = ["INPUTS", "Arg", "Stmt", "Program", "ProgramError"]

INPUTS: tuple[str, ...] = ("w", "g", "lr", "t")
"""The inputs a program may name, in canonical order."""

Arg = Union[str, float]
"""A statement argument: a name (str) or a constant (float)."""


class ProgramError(ValueError):
    """An invalid `Program` value (a bug in whatever built it, not a user text error)."""


@dataclass(frozen=True)
class Stmt:
    """``target = op(*args)``."""

    target: str
    op: str
    args: tuple[Arg, ...]


@dataclass(frozen=True, eq=False)
class Program:
    """An update rule. Build with `dsl.parse`, or directly and then call `prune` for dead code.

    slots: ((name, initial value), ...); hparams: ((name, default), ...);
    next_state: the argument holding each slot's value after the step, aligned with ``slots``.
    """

    name: str
    inputs: tuple[str, ...]
    slots: tuple[tuple[str, float], ...]
    hparams: tuple[tuple[str, float], ...]
    body: tuple[Stmt, ...]
    update: Arg
    next_state: tuple[Arg, ...]
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        _validate(self)

    # -- identity ------------------------------------------------------------------------
    @property
    def key(self) -> tuple:
        """Canonical structure: the hash-consed expression DAG of the update and live slots."""
        if "key" not in self._cache:
            self._cache["key"] = _canonical_key(self)
        return self._cache["key"]

    @property
    def hash(self) -> str:
        """Stable structural hash (hex), the same in every process and on every machine."""
        if "hash" not in self._cache:
            self._cache["hash"] = hashlib.sha256(repr(self.key).encode()).hexdigest()[:16]
        return self._cache["hash"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Program) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    # -- facts ---------------------------------------------------------------------------
    @property
    def length(self) -> int:
        """Number of single-op statements."""
        return len(self.body)

    @property
    def memory(self) -> int:
        """Number of state slots: tensors of the parameter's size kept between steps."""
        return len(self.slots)

    @property
    def slot_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.slots)

    @property
    def hparam_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.hparams)

    def names_before(self, index: int) -> list[str]:
        """Names readable by statement ``index``: inputs, slots, hyperparameters, earlier targets."""
        return [*self.inputs, *self.slot_names, *self.hparam_names,
                *(s.target for s in self.body[:index])]

    def replace(self, **changes) -> "Program":
        fields = dict(name=self.name, inputs=self.inputs, slots=self.slots, hparams=self.hparams,
                      body=self.body, update=self.update, next_state=self.next_state)
        fields.update(changes)
        return Program(**fields)

    def __str__(self) -> str:
        return to_text(self, readable=True)

    def __repr__(self) -> str:
        return f"Program({self.name!r}, hash={self.hash}, length={self.length}, memory={self.memory})"


def _is_const(a: Arg) -> bool:
    return isinstance(a, float)


def _validate(p: Program) -> None:
    for x in p.inputs:
        if x not in INPUTS:
            raise ProgramError(f"unknown input {x!r}")
    seen: set[str] = set()
    for n in [*p.inputs, *p.slot_names, *p.hparam_names]:
        if n in seen:
            raise ProgramError(f"duplicate name {n!r}")
        seen.add(n)
    for n in [*p.slot_names, *p.hparam_names, *(s.target for s in p.body), p.name]:
        if not isinstance(n, str) or not n.isidentifier() or keyword.iskeyword(n):
            raise ProgramError(f"{n!r} is not a valid name")
        if n in INPUTS and n != p.name:
            raise ProgramError(f"{n!r} is an input name; slots, hyperparameters and targets need other names")
        if n in OPS and n != p.name:
            raise ProgramError(f"{n!r} is a function name")
    for _, v in (*p.slots, *p.hparams):
        if not isinstance(v, float) or not math.isfinite(v):
            raise ProgramError(f"initial values and defaults must be finite floats, got {v!r}")
    if len(p.next_state) != len(p.slots):
        raise ProgramError("next_state must give one value per slot")
    defined = set(seen)

    def check(a: Arg, where: str) -> None:
        if isinstance(a, float):
            if not math.isfinite(a):
                raise ProgramError(f"non-finite constant in {where}")
        elif not isinstance(a, str) or a not in defined:
            raise ProgramError(f"{where} reads undefined {a!r}")

    for s in p.body:
        o = OPS.get(s.op)
        if o is None:
            raise ProgramError(f"unknown op {s.op!r}")
        if len(s.args) != o.arity:
            raise ProgramError(f"{s.op} takes {o.arity} arguments, got {len(s.args)}")
        for a in s.args:
            check(a, f"statement {s.target!r}")
        if s.target in defined or s.target in OPS:
            raise ProgramError(f"target {s.target!r} is assigned twice or shadows a name")
        defined.add(s.target)
    check(p.update, "update")
    for a in p.next_state:
        check(a, "next_state")


def _canonical_key(p: Program) -> tuple:
    """Serialize the DAG reachable from the outputs, nodes numbered in first-visit order.

    Identical subexpressions share one node (hash-consing), so naming, statement order and
    duplicated work do not change the key. Slots are numbered in the order the outputs reach
    them, so renaming or reordering slots does not change it either.
    """
    defs = {s.target: s for s in p.body}
    slot_init = dict(p.slots)
    slot_next = dict(zip(p.slot_names, p.next_state))
    hp = dict(p.hparams)
    node_ids: dict[tuple, int] = {}
    nodes: list[tuple] = []
    memo: dict[str, tuple] = {}
    slot_ids: dict[str, int] = {}
    slot_queue: list[str] = []

    def leaf(a: Arg):
        if isinstance(a, float):
            return ("c", a.hex())
        if a in slot_init:
            if a not in slot_ids:
                slot_ids[a] = len(slot_ids)
                slot_queue.append(a)
            return ("s", slot_ids[a])
        if a in hp:
            return ("h", a, hp[a].hex())
        return ("i", a)

    def visit(root: Arg):
        # Iterative post-order over the statement DAG (programs may be long; no recursion).
        if not (isinstance(root, str) and root in defs):
            return leaf(root)
        stack = [root]
        while stack:
            name = stack[-1]
            if name in memo:
                stack.pop()
                continue
            pending = [a for a in defs[name].args if isinstance(a, str) and a in defs and a not in memo]
            if pending:
                stack.extend(reversed(pending))
                continue
            stack.pop()
            s = defs[name]
            node = (s.op, tuple(memo[a] if isinstance(a, str) and a in defs else leaf(a) for a in s.args))
            if s.op == "neg" and node[1][0][0] == "c":  # '-0.5' is a constant in program text
                memo[name] = ("c", (-float.fromhex(node[1][0][1])).hex())
                continue
            if node not in node_ids:
                node_ids[node] = len(nodes)
                nodes.append(node)
            memo[name] = ("n", node_ids[node])
        return memo[root]

    update = visit(p.update)
    slots = []
    i = 0
    while i < len(slot_queue):
        name = slot_queue[i]
        slots.append((slot_init[name].hex(), visit(slot_next[name])))
        i += 1
    return (tuple(nodes), update, tuple(slots))
