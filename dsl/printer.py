"""Print a `Program` back as program text, flat (one op per line) or readable (temporaries inlined).

Both forms parse back to an equal program. A statement that computes a slot's next value is
printed under the slot's own name (``m = interp(g, m, 0.9)``) when no later line still needs
the slot's previous value; otherwise it keeps its own name and the slot is assigned at the end.
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from .ops import OPS

if TYPE_CHECKING:  # annotations only: dsl.program imports this module (Program.__str__)
    from .program import Arg, Program

__all__ = ["to_text", "format_number"]

# Python precedence levels used for parenthesizing.
_CMP, _ADD, _MUL, _UNARY, _POW, _ATOM = 1, 2, 3, 4, 5, 6
_PREC = {"+": _ADD, "-": _ADD, "*": _MUL, "/": _MUL, "**": _POW, ">": _CMP, "<": _CMP, ">=": _CMP, "<=": _CMP}


def format_number(v: float) -> str:
    """Shortest text that parses back to exactly ``v`` (integers without '.0')."""
    if v == int(v) and abs(v) < 1e16 and not (v == 0 and str(v).startswith("-")):
        return str(int(v))
    return repr(v)


def _const(v: float) -> tuple[str, int]:
    text = format_number(v)
    return text, (_UNARY if text.startswith("-") else _ATOM)


def _paren(text_prec: tuple[str, int], need: int) -> str:
    text, prec = text_prec
    return text if prec >= need else f"({text})"


def _render(op: str, args: list[tuple[str, int]]) -> tuple[str, int]:
    o = OPS[op]
    if o.symbol is None:
        return f"{op}({', '.join(t for t, _ in args)})", _ATOM
    if o.arity == 1:  # unary minus
        return f"-{_paren(args[0], _UNARY + 1)}", _UNARY
    prec = _PREC[o.symbol]
    a, b = args
    if o.symbol == "**":
        left, right = _paren(a, _ATOM), _paren(b, _UNARY)
    elif prec == _CMP:
        left, right = _paren(a, _CMP + 1), _paren(b, _CMP + 1)
    else:
        left, right = _paren(a, prec), _paren(b, prec + 1)
    return f"{left} {o.symbol} {right}", prec


def _signature(p: Program) -> str:
    params = list(p.inputs) + [f"{x}={v!r}" for x, v in p.slots]
    if p.hparams:
        params += ["*"] + [f"{x}={v!r}" for x, v in p.hparams]
    return f"def {p.name}({', '.join(params)}):"


def to_text(p: Program, readable: bool = False) -> str:
    """Program text: ``readable=False`` gives one op per line; ``True`` inlines single-use values."""
    defs = {s.target: s for s in p.body}
    slots = p.slot_names
    slot_set = set(slots)
    uses: Counter = Counter(a for s in p.body for a in s.args if isinstance(a, str))
    uses.update(a for a in (p.update, *p.next_state) if isinstance(a, str))
    outputs = {a for a in p.next_state if isinstance(a, str) and a in defs}
    written = {s for s, a in zip(slots, p.next_state) if a != s}

    inlined: set[str] = set()
    if readable:
        inlined = {s.target for s in p.body
                   if uses[s.target] == 1 and s.target not in outputs and s.target != p.update}
    # old-slot values each statement's expression reads, through inlined temporaries
    reads: dict[str, set[str]] = {}
    for s in p.body:
        r: set[str] = set()
        for a in s.args:
            if isinstance(a, str):
                if a in slot_set:
                    r.add(a)
                elif a in inlined:
                    r |= reads[a]
        reads[s.target] = r
    if (readable and p.update in defs and uses[p.update] == 1 and p.update not in outputs
            and not (reads[p.update] & written)):
        inlined.add(p.update)
    kept = _delay_slot_writes([s for s in p.body if s.target not in inlined], inlined, outputs, defs)
    if p.update in inlined:
        return_reads = reads[p.update]
    else:
        return_reads = {p.update} & slot_set

    # print the statement computing a slot's next value under the slot's name, where legal
    position = {s.target: i for i, s in enumerate(kept)}
    later_reads = [set() for _ in range(len(kept) + 1)]
    for i in range(len(kept) - 1, -1, -1):
        later_reads[i] = later_reads[i + 1] | reads[kept[i].target]
    end_reads = {a for a in p.next_state if a in slot_set}
    display: dict[str, str] = {}
    for x, a in zip(slots, p.next_state):
        if a == x or not isinstance(a, str) or a not in position or a in display:
            continue
        if x in later_reads[position[a] + 1] or x in return_reads or x in end_reads:
            continue
        display[a] = x

    # slots assigned at the end that are read (old value) after being reassigned need a copy
    taken = set(p.names_before(len(p.body))) | set(OPS)
    snapshot: dict[str, str] = {}
    renamed_slots = set(display.values())
    end_assigned = [x for x in slots if x not in renamed_slots]  # includes unchanged slots: 'm = m'
    late_reads = {a for a in (*p.next_state, p.update) if isinstance(a, str) and a in slot_set}
    for u in sorted(late_reads & (renamed_slots | (set(end_assigned) & written))):
        name, i = f"{u}_prev", 1
        while name in taken:
            name, i = f"{u}_prev{i}", i + 1
        taken.add(name)
        snapshot[u] = name

    texts: dict[str, tuple[str, int]] = {}

    def arg_text(a: Arg, at_end: bool = False) -> tuple[str, int]:
        if isinstance(a, float):
            return _const(a)
        if a in inlined:
            return texts[a]
        if at_end and a in snapshot:
            return snapshot[a], _ATOM
        return display.get(a, a), _ATOM

    if readable and p.update in position and p.update not in display and "update" not in taken:
        display[p.update] = "update"
    lines = [_signature(p)]
    lines += [f"    {snapshot[u]} = {u}" for u in sorted(snapshot)]
    for s in p.body:
        if s.target in inlined:
            texts[s.target] = _render(s.op, [arg_text(a) for a in s.args])
    for s in kept:
        text = _render(s.op, [arg_text(a) for a in s.args])
        lines.append(f"    {display.get(s.target, s.target)} = {text[0]}")
    for x in end_assigned:
        a = p.next_state[slots.index(x)]
        lines.append(f"    {x} = {arg_text(a, at_end=True)[0]}")
    lines.append(f"    return {arg_text(p.update, at_end=True)[0]}")
    return "\n".join(lines) + "\n"


def _delay_slot_writes(kept: list, inlined: set, outputs: set, defs: dict) -> list:
    """Order lines so that those computing slots' next values come as late as data allows.

    Reads of a slot's previous value then tend to come first, so the new value can be printed
    under the slot's name. A stable topological sort (Kahn), non-output lines first.
    """
    index = {s.target: i for i, s in enumerate(kept)}

    def deps(s) -> set:
        out, stack = set(), list(s.args)
        while stack:
            a = stack.pop()
            if isinstance(a, str) and a in defs:
                if a in inlined:
                    stack.extend(defs[a].args)
                elif a in index:
                    out.add(a)
        return out

    waiting = {s.target: deps(s) for s in kept}
    done: set = set()
    order = []
    while len(order) < len(kept):
        ready = [s for s in kept if s.target not in done and waiting[s.target] <= done]
        nxt = min(ready, key=lambda s: (s.target in outputs, index[s.target]))
        order.append(nxt)
        done.add(nxt.target)
    return order
