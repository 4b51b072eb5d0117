"""Mutations of update-rule programs: the variation operator of the search.

A mutation edits the flat single-assignment form of a `dsl.Program` (statements
``target = op(args)``, the returned ``update`` and each slot's ``next_state``) and returns a
valid program pruned of dead code. SSA has no reassignment, so mutations that in a register
machine would overwrite a variable (``X = op(X, ...)``) are written here as a new statement
``T = op(X, ...)`` plus a rewrite of later uses of ``X`` to ``T``.

Randomness comes only from the `random.Random` passed in: the same generator state and parent
give the same child in every process (no iteration over sets or salted hashes).

>>> import random, dsl
>>> parent = dsl.parse("def sgd(g, lr):\\n    return lr * g\\n")
>>> child, kind = mutate(parent, random.Random(0))
>>> child != parent and kind in KINDS
True
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Mapping, Optional

from dsl import INPUTS, OPS, Arg, Program, Stmt, prune

__all__ = ["KINDS", "COMMON_CONSTANTS", "MutationWeights", "mutate", "random_constant",
           "random_program"]

KINDS: tuple[str, ...] = ("insert", "delete", "change_op", "change_arg", "perturb_constant",
                          "add_slot", "remove_slot")
"""Mutation kinds, in the order of `MutationWeights`' fields."""

COMMON_CONSTANTS: tuple[float, ...] = (0.0, 1.0, -1.0, 2.0, 0.5, 0.1, 0.01, 1e-3, 1e-8,
                                       0.9, 0.99, 0.999)
"""Values drawn often by `random_constant`: identities, halves, decays, epsilons."""

BETAS: tuple[float, ...] = (0.9, 0.99, 0.999)
"""Decay rates for a new slot's moving average (besides a uniform draw in (0, 1))."""

MAX_ATTEMPTS = 100
"""Draws `mutate` tries before giving up and returning the parent with kind ``"none"``."""

_OP_NAMES: tuple[str, ...] = tuple(sorted(OPS))
_BINARY_PLUS: tuple[str, ...] = tuple(o for o in _OP_NAMES if OPS[o].arity >= 2)
_P_NAME = 0.7          # a random argument is a readable name (else a random constant)
_P_USE_X = 0.9         # an inserted statement reads the value it replaces
_P_ALL_USES = 0.5      # an insert rewrites every later use of X, not only the chosen one
_P_ARG_OF_DELETED = 0.8
_P_INTERP_SLOT = 0.7   # a new slot is a moving average (else a random op of (s, X, ...))
_P_SLOT_NEW_VALUE = 0.5  # the rewritten use reads the new slot's next value (else its old one)
_P_SLOT_TO_INIT = 0.7  # remove_slot replaces reads by the initial value (else another name)
_P_COMPLEMENT = 0.5    # perturb 1 - c for c in (0.5, 1) (decay rates), else c itself


@dataclass(frozen=True)
class MutationWeights:
    """Relative weights of the mutation kinds, and the settings of ``perturb_constant``.

    The Lion paper mutates by inserting a random statement, deleting one, and modifying one
    (an argument becomes another variable or a fresh constant, or a constant is scaled by a
    random factor); AutoML-Zero adds op changes. Defaults:

    - ``insert`` 3 vs ``delete`` 2: inserts add one statement, but deletes, ``change_arg``
      and ``change_op`` often remove more (whatever loses its last use is pruned): from
      AdamW/Lion the mean length change is +0.85 (insert), -2.5 (delete), -1.6 (change_arg),
      -0.7 (change_op). The net pull towards short programs is a parsimony pressure that
      selection must overcome; without selection a chain of mutations drifts down to a few
      statements. Raise ``insert`` to search longer programs.
    - ``change_arg`` 3: the paper's main "modify" move, small and local.
    - ``change_op`` 2 and ``perturb_constant`` 2: local moves; constants are the program's
      hyperparameters (betas, epsilons, weight decay), worth tuning often.
    - ``add_slot``/``remove_slot`` 0.5 each: state changes are big semantic jumps and cost
      memory, so they are rare but possible (the paper's programs change memory this way).

    ``sigma``: log-scale std of the factor ``exp(N(0, sigma))`` (the paper's ``2**N(0,1)`` is
    sigma = ln 2 ~ 0.69; 0.5 is slightly more local). ``sign_flip``: probability that a
    perturbed constant also changes sign.
    """

    insert: float = 3.0
    delete: float = 2.0
    change_op: float = 2.0
    change_arg: float = 3.0
    perturb_constant: float = 2.0
    add_slot: float = 0.5
    remove_slot: float = 0.5
    sigma: float = 0.5
    sign_flip: float = 0.05

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"MutationWeights.{f.name} must be a finite number >= 0, got {v!r}")
            object.__setattr__(self, f.name, float(v))
        if sum(getattr(self, k) for k in KINDS) <= 0:
            raise ValueError("at least one mutation weight must be positive")
        if self.sign_flip > 1:
            raise ValueError(f"sign_flip is a probability, got {self.sign_flip}")

    @property
    def kinds(self) -> tuple[tuple[str, float], ...]:
        """``((kind, weight), ...)`` for kinds with positive weight."""
        return tuple((k, getattr(self, k)) for k in KINDS if getattr(self, k) > 0)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MutationWeights":
        """From a (config) mapping; missing keys keep their defaults, unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown mutation settings {unknown}; known: {sorted(known)}")
        return cls(**dict(d))


# ---------------------------------------------------------------- random values

def _round(x: float, digits: int) -> float:
    """``x`` to ``digits`` significant digits (short, readable constants)."""
    return float(f"{x:.{digits}g}")


def random_constant(rng: random.Random) -> float:
    """Half the time a common value, else ±10**U(-4, 1) (mostly positive), 3 digits."""
    if rng.random() < 0.5:
        return rng.choice(COMMON_CONSTANTS)
    sign = -1.0 if rng.random() < 0.25 else 1.0
    return _round(sign * 10.0 ** rng.uniform(-4.0, 1.0), 3)


def _perturb(c: float, rng: random.Random, sigma: float, sign_flip: float) -> Optional[float]:
    """``c`` times a log-normal factor (decay rates near 1 perturb ``1 - c``); None if no change."""
    if c == 0.0:
        new = random_constant(rng)
    elif 0.5 < c < 1.0 and rng.random() < _P_COMPLEMENT:
        new = 1.0 - (1.0 - c) * math.exp(rng.gauss(0.0, sigma))
    else:
        new = c * math.exp(rng.gauss(0.0, sigma))
    if rng.random() < sign_flip:
        new = -new
    if not math.isfinite(new):
        return None
    new = _round(new, 4)
    if not math.isfinite(new) or new == c:
        return None
    return new


# ---------------------------------------------------------------- editable program

Site = tuple  # ("arg", stmt index, arg index) | ("update",) | ("next", slot index)


class _Draft:
    """A mutable copy of a program's flat form, with the bookkeeping mutations need."""

    def __init__(self, p: Program):
        self.name = p.name
        self.body: list[list] = [[s.target, s.op, list(s.args)] for s in p.body]
        self.update: Arg = p.update
        self.next_state: list[Arg] = list(p.next_state)
        self.slots: list[tuple[str, float]] = list(p.slots)
        self.hparams: list[tuple[str, float]] = list(p.hparams)
        others = {*p.slot_names, *p.hparam_names, *(s.target for s in p.body)}
        # inputs a mutation may start reading: declared ones and free input names
        self.inputs = [x for x in INPUTS if x in p.inputs or x not in others]
        self.taken = {*INPUTS, *OPS, *others}

    # -- names ---------------------------------------------------------------------------
    def fresh(self, prefix: str) -> str:
        n = 1
        while f"{prefix}{n}" in self.taken:
            n += 1
        name = f"{prefix}{n}"
        self.taken.add(name)
        return name

    def readable(self, i: int) -> list[str]:
        """Names statement ``i`` may read (``len(body)``: the update and next values)."""
        return [*self.inputs, *(x for x, _ in self.slots), *(x for x, _ in self.hparams),
                *(s[0] for s in self.body[:i])]

    def non_targets(self) -> list[str]:
        """Names readable anywhere: inputs, slots' old values, hyperparameters."""
        return self.readable(0)

    def def_index(self, a: Arg) -> int:
        """Index of the statement defining ``a``; -1 for constants and other names."""
        if isinstance(a, str):
            for i, s in enumerate(self.body):
                if s[0] == a:
                    return i
        return -1

    # -- sites: every place that reads a value -------------------------------------------
    def sites(self) -> list[Site]:
        out: list[Site] = [("arg", i, j) for i, s in enumerate(self.body) for j in range(len(s[2]))]
        out.append(("update",))
        out += [("next", k) for k in range(len(self.next_state))]
        return out

    def get(self, site: Site) -> Arg:
        if site[0] == "arg":
            return self.body[site[1]][2][site[2]]
        if site[0] == "update":
            return self.update
        return self.next_state[site[1]]

    def set(self, site: Site, value: Arg) -> None:
        if site[0] == "arg":
            self.body[site[1]][2][site[2]] = value
        elif site[0] == "update":
            self.update = value
        else:
            self.next_state[site[1]] = value

    def position(self, site: Site) -> int:
        """The statement index a site reads at (``len(body)`` for the outputs)."""
        return site[1] if site[0] == "arg" else len(self.body)

    def replace_uses(self, old: str, new: Arg, after: int = -1) -> None:
        """Every read of ``old`` at a position > ``after`` reads ``new`` instead."""
        for site in self.sites():
            if self.position(site) > after and self.get(site) == old:
                self.set(site, new)

    # -- random draws --------------------------------------------------------------------
    def random_arg(self, rng: random.Random, names: list[str]) -> Arg:
        if names and rng.random() < _P_NAME:
            return rng.choice(names)
        return random_constant(rng)

    def build(self) -> Program:
        used = {a for s in self.body for a in s[2] if isinstance(a, str)}
        used |= {a for a in (self.update, *self.next_state) if isinstance(a, str)}
        inputs = tuple(x for x in self.inputs if x in used)
        return Program(self.name, inputs, tuple(self.slots), tuple(self.hparams),
                       tuple(Stmt(t, op, tuple(args)) for t, op, args in self.body),
                       self.update, tuple(self.next_state))


# ---------------------------------------------------------------- the mutations
# Each edits the draft in place and returns True, or returns False when it does not apply.

@dataclass(frozen=True)
class _Limits:
    max_length: int
    max_slots: int
    sigma: float
    sign_flip: float


def _place_before_use(d: _Draft, rng: random.Random) -> tuple[Site, Arg, int]:
    """A random read site, the value X it reads, and a position where X is readable before it."""
    site = rng.choice(d.sites())
    x = d.get(site)
    return site, x, rng.randint(d.def_index(x) + 1, d.position(site))


def _rewrite_uses(d: _Draft, rng: random.Random, site: Site, x: Arg, i: int, new: str) -> None:
    """The chosen site reads ``new``; sometimes every other read of X at or after ``i`` too."""
    if isinstance(x, str) and rng.random() < _P_ALL_USES:
        for s in d.sites():
            if d.position(s) >= i and d.get(s) == x:
                d.set(s, new)
    d.set(site, new)


def _insert(d: _Draft, rng: random.Random, lim: _Limits) -> bool:
    """``T = op(..X..)`` before a read of X, which then reads T (some or all later reads)."""
    if len(d.body) >= lim.max_length:
        return False
    site, x, i = _place_before_use(d, rng)
    op = rng.choice(_OP_NAMES)
    n = OPS[op].arity
    names = d.readable(i)
    args = [d.random_arg(rng, names) for _ in range(n)]
    if rng.random() < _P_USE_X:
        args[rng.randrange(n)] = x
    if not any(isinstance(a, str) for a in args):
        if not names:
            return False
        args[rng.randrange(n)] = rng.choice(names)  # op(constants) would only be a constant
    t = d.fresh("v")
    _rewrite_uses(d, rng, site, x, i, t)
    d.body.insert(i, [t, op, args])
    return True


def _delete(d: _Draft, rng: random.Random, lim: _Limits) -> bool:
    """Remove a statement; its reads get one of its arguments (or another readable value)."""
    if not d.body:
        return False
    i = rng.randrange(len(d.body))
    target, _, args = d.body[i]
    names = [a for a in args if isinstance(a, str)]
    if rng.random() < _P_ARG_OF_DELETED:
        # a name argument keeps its data flowing (a constant would cut the program short)
        repl = rng.choice(names or args)
    else:
        repl = d.random_arg(rng, d.readable(i))
    d.replace_uses(target, repl, after=i)
    del d.body[i]
    return True


def _change_op(d: _Draft, rng: random.Random, lim: _Limits) -> bool:
    """Another op on the same statement: keep a random ordered subset of the args that fit."""
    if not d.body:
        return False
    i = rng.randrange(len(d.body))
    stmt = d.body[i]
    op = rng.choice([o for o in _OP_NAMES if o != stmt[1]])
    n = OPS[op].arity
    old = stmt[2]
    if n <= len(old):
        args = [old[j] for j in sorted(rng.sample(range(len(old)), n))]
    else:
        names = d.readable(i)
        args = list(old)
        for _ in range(n - len(old)):
            args.insert(rng.randint(0, len(args)), d.random_arg(rng, names))
    stmt[1], stmt[2] = op, args
    return True


def _change_arg(d: _Draft, rng: random.Random, lim: _Limits) -> bool:
    """One read (statement argument, update or a slot's next value) reads something else."""
    site = rng.choice(d.sites())
    cur = d.get(site)
    names = [x for x in d.readable(d.position(site)) if x != cur]
    new = d.random_arg(rng, names)
    if new == cur:
        return False
    d.set(site, new)
    return True


def _perturb_constant(d: _Draft, rng: random.Random, lim: _Limits) -> bool:
    """Scale one constant (argument, slot initial value or hyperparameter default)."""
    locs: list[tuple] = [s for s in d.sites() if isinstance(d.get(s), float)]
    locs += [("slot", k) for k in range(len(d.slots))]
    locs += [("hparam", k) for k in range(len(d.hparams))]
    if not locs:
        return False
    loc = rng.choice(locs)
    if loc[0] in ("slot", "hparam"):
        table = d.slots if loc[0] == "slot" else d.hparams
        name, c = table[loc[1]]
        new = _perturb(c, rng, lim.sigma, lim.sign_flip)
        if new is None:
            return False
        table[loc[1]] = (name, new)
    else:
        new = _perturb(d.get(loc), rng, lim.sigma, lim.sign_flip)
        if new is None:
            return False
        d.set(loc, new)
    return True


def _add_slot(d: _Draft, rng: random.Random, lim: _Limits) -> bool:
    """New slot ``s`` (init 0) with next value ``interp(X, s, beta)`` (or op(s, X, ...)); a read
    of X then reads the slot's next value or its old value."""
    if len(d.slots) >= lim.max_slots or len(d.body) >= lim.max_length:
        return False
    site, x, i = _place_before_use(d, rng)
    s = d.fresh("s")
    if rng.random() < _P_INTERP_SLOT:
        beta = rng.choice(BETAS + (-1.0,))
        if beta < 0:
            beta = _round(rng.uniform(0.001, 0.999), 3)
        op, args = "interp", [x, s, beta]
    else:
        op = rng.choice(_BINARY_PLUS)
        n = OPS[op].arity
        names = d.readable(i) + [s]
        args = [d.random_arg(rng, names) for _ in range(n)]
        js = rng.sample(range(n), 2)
        args[js[0]], args[js[1]] = s, x
    v = d.fresh("v")
    if rng.random() < _P_SLOT_NEW_VALUE:
        _rewrite_uses(d, rng, site, x, i, v)
    else:
        d.set(site, s)
    d.body.insert(i, [v, op, args])
    d.slots.append((s, 0.0))
    d.next_state.append(v)
    return True


def _remove_slot(d: _Draft, rng: random.Random, lim: _Limits) -> bool:
    """Reads of a slot's old value read its initial value (or another always-readable name);
    the slot is then dead and pruned."""
    if not d.slots:
        return False
    k = rng.randrange(len(d.slots))
    s, init = d.slots[k]
    others = [x for x in d.non_targets() if x != s]
    if others and rng.random() >= _P_SLOT_TO_INIT:
        repl: Arg = rng.choice(others)
    else:
        repl = init
    d.replace_uses(s, repl)
    return True


_MUTATORS: dict[str, Callable[[_Draft, random.Random, _Limits], bool]] = {
    "insert": _insert, "delete": _delete, "change_op": _change_op, "change_arg": _change_arg,
    "perturb_constant": _perturb_constant, "add_slot": _add_slot, "remove_slot": _remove_slot,
}


# ---------------------------------------------------------------- public entry points

def mutate(parent: Program, rng: random.Random, weights: MutationWeights = MutationWeights(),
           max_length: int = 40, max_slots: int = 4) -> tuple[Program, str]:
    """A mutated, pruned copy of ``parent`` and the kind of mutation applied.

    Kinds are drawn by ``weights``; a draw that does not apply (nothing to delete, limits
    reached), breaks ``max_length``/``max_slots`` or leaves the program structurally equal to
    ``parent`` is redrawn, up to `MAX_ATTEMPTS` times; then ``(parent, "none")`` is returned.
    """
    kinds = [k for k, _ in weights.kinds]
    cum = list(_accumulate(w for _, w in weights.kinds))
    lim = _Limits(max_length, max_slots, weights.sigma, weights.sign_flip)
    for _ in range(MAX_ATTEMPTS):
        kind = rng.choices(kinds, cum_weights=cum)[0]
        d = _Draft(parent)
        if not _MUTATORS[kind](d, rng, lim):
            continue
        child = prune(d.build())
        if child.length > max_length or child.memory > max_slots or child == parent:
            continue
        return child, kind
    return parent, "none"


def _accumulate(xs) -> list[float]:
    out, total = [], 0.0
    for x in xs:
        total += x
        out.append(total)
    return out


def random_program(rng: random.Random, max_statements: int = 8, max_slots: int = 2,
                   name: str = "random") -> Program:
    """A random live program of 1..``max_statements`` statements and 0..``max_slots`` slots.

    Grown from ``lr * g`` by random inserts and slot additions (so nothing is dead), reading
    the inputs ``w, g, lr, t``. For search restarts and tests.
    """
    if max_statements < 1 or max_slots < 0:
        raise ValueError("random_program needs max_statements >= 1 and max_slots >= 0")
    n = rng.randint(1, max_statements)
    k = rng.randint(0, min(max_slots, n - 1))
    p = Program(name, INPUTS, (), (), (Stmt("v1", "mul", ("lr", "g")),), "v1", ())
    steps = ["add_slot"] * k + ["insert"] * (n - 1 - k)
    rng.shuffle(steps)
    lim = _Limits(max_statements, max_slots, 0.5, 0.0)
    for kind in steps:
        d = _Draft(p)
        if _MUTATORS[kind](d, rng, lim):
            p = d.build()
    return prune(p)
