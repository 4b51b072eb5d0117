"""Mutations: every child is a valid pruned program, printable, runnable, bounded and new."""
import collections
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dsl
import seeds as seeds_pkg  # `seeds` below is a strategy
from evolve.mutate import KINDS, MutationWeights, mutate, random_constant, random_program
from strategies import programs

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KIND_SETTINGS = settings(SETTINGS, max_examples=80)  # one mutation per example

ADAMW = seeds_pkg.load("adamw")  # the search's default warm start
LION = dsl.parse("def lion(w, g, lr, m=0.0, *, beta1=0.9, beta2=0.99, wd=0.0):\n"
                 "    u = sign(interp(g, m, beta1))\n"
                 "    m = interp(g, m, beta2)\n"
                 "    return lr * (u + wd * w)\n")
SEEDS = [ADAMW, LION]
parents = st.one_of(st.sampled_from(SEEDS), programs())
seeds = st.integers(0, 2**32 - 1)

# float64: random parents carry constants like 1e300, and float32 runs of those raise in the
# DSL (reported: scalars outside float32 range in full_like/lerp/where/clamp). Children of the
# seeds (this module's own constants) are also run in float32 below.
_GEN = torch.Generator().manual_seed(0)
W = torch.randn(4, 3, generator=_GEN, dtype=torch.float64)
G = torch.randn(4, 3, generator=_GEN, dtype=torch.float64)


def only(kind: str) -> MutationWeights:
    return MutationWeights.from_dict({k: float(k == kind) for k in KINDS})


def check_valid(child: dsl.Program, max_length: int = 40, max_slots: int = 4) -> None:
    assert isinstance(child, dsl.Program)  # constructing it validated it
    assert dsl.prune(child) is child, "child has dead code"
    assert child.length <= max_length and child.memory <= max_slots
    for readable in (False, True):
        text = dsl.to_text(child, readable=readable)
        assert dsl.parse(text) == child, text


def run(child: dsl.Program, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    cp = dsl.compile(child)
    w, g = W.to(dtype), G.to(dtype)
    update, state = cp.apply(w, g, 0.01, 1.0, cp.init_state(w))
    assert set(state) == set(child.slot_names)
    return update


# ---------------------------------------------------------------- validity, novelty, limits

@SETTINGS
@given(parents, seeds)
def test_children_are_valid_new_and_round_trip(parent, seed):
    rng = random.Random(seed)
    changed = 0
    for _ in range(20):
        child, kind = mutate(parent, rng)
        assert kind in KINDS or kind == "none"
        check_valid(child)
        assert child.name == parent.name
        if kind != "none":
            assert child != parent
            changed += 1
        else:
            assert child is parent
    assert changed >= 19  # >= 95% of draws change the program


@SETTINGS
@given(parents, seeds, st.integers(1, 12), st.integers(0, 3))
def test_children_respect_tight_limits(parent, seed, max_length, max_slots):
    rng = random.Random(seed)
    for _ in range(10):
        child, kind = mutate(parent, rng, max_length=max_length, max_slots=max_slots)
        if kind == "none":
            assert child is parent
            continue
        check_valid(child, max_length, max_slots)


@SETTINGS
@given(parents, seeds)
def test_compiled_children_run(parent, seed):
    rng = random.Random(seed)
    for _ in range(5):
        child, _ = mutate(parent, rng)
        update = run(child)  # NaN is fine; exceptions are not
        assert update.dtype == W.dtype
        # the multi-tensor path of the optimizer too
        params = [W.clone(), G.clone()]
        states = [dsl.compile(child).init_state(p) for p in params]
        dsl.compile(child).step_foreach(params, [G.clone(), W.clone()], states, 0.01, 1.0)


def test_novelty_rate_and_kind_mix_over_many_draws():
    rng = random.Random(0)
    kinds = collections.Counter()
    for parent in [*SEEDS, *(random_program(random.Random(s)) for s in range(20))]:
        for _ in range(100):
            child, kind = mutate(parent, rng)
            kinds[kind] += 1
    total = sum(kinds.values())
    assert kinds["none"] / total < 0.01, kinds
    # every kind is drawn, roughly by weight (add/remove_slot are the rare ones)
    assert all(kinds[k] > 0 for k in KINDS), kinds
    assert kinds["change_arg"] > kinds["add_slot"]


# ---------------------------------------------------------------- determinism

def _chain_text(start: dsl.Program, seed: int, n: int) -> str:
    rng = random.Random(seed)
    out, p = [], start
    for _ in range(n):
        p, kind = mutate(p, rng)
        out.append(kind + "\n" + dsl.to_text(p))
    return "".join(out)


@SETTINGS
@given(parents, seeds)
def test_same_seed_same_children(parent, seed):
    random.seed(1)
    a = [(c.hash, dsl.to_text(c), k) for c, k in (mutate(parent, r) for r in [random.Random(seed)] * 10)]
    random.seed(2)  # the global generator must play no part
    b = [(c.hash, dsl.to_text(c), k) for c, k in (mutate(parent, r) for r in [random.Random(seed)] * 10)]
    assert a == b


def test_global_random_state_untouched():
    state = random.getstate()
    _chain_text(ADAMW, 3, 50)
    random_program(random.Random(3))
    assert random.getstate() == state


def test_deterministic_across_processes():
    """String hashing is salted per process: no result may depend on set iteration order."""
    root = Path(__file__).resolve().parents[1]
    code = textwrap.dedent("""
        import hashlib, sys
        sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/tests")
        from test_mutate import ADAMW, _chain_text
        print(hashlib.sha256(_chain_text(ADAMW, 7, 200).encode()).hexdigest())
    """)
    import hashlib
    expected = hashlib.sha256(_chain_text(ADAMW, 7, 200).encode()).hexdigest()
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code, str(root)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


# ---------------------------------------------------------------- each kind does its job

@KIND_SETTINGS
@given(parents, seeds)
def test_delete_shortens(parent, seed):
    child, kind = mutate(parent, random.Random(seed), only("delete"))
    if parent.length == 0:
        assert kind == "none"
    else:
        assert kind == "delete" and child.length < parent.length


@KIND_SETTINGS
@given(parents, seeds)
def test_insert_adds_at_most_one_statement(parent, seed):
    child, kind = mutate(parent, random.Random(seed), only("insert"))
    assert kind == "insert"
    # the new statement reads the value it replaces, except in the rare all-random draw
    assert child.length <= parent.length + 1


def test_insert_usually_grows_by_one():
    rng = random.Random(0)
    grew = sum(mutate(p, rng, only("insert"))[0].length == p.length + 1
               for p in SEEDS for _ in range(200))
    assert grew >= 0.8 * 400


@KIND_SETTINGS
@given(parents, seeds)
def test_add_slot_adds_memory(parent, seed):
    child, kind = mutate(parent, random.Random(seed), only("add_slot"), max_slots=4)
    if parent.memory >= 4:
        assert kind == "none"
    else:
        assert kind == "add_slot" and child.memory == parent.memory + 1
        assert child.length >= 1


@KIND_SETTINGS
@given(parents, seeds)
def test_remove_slot_removes_memory(parent, seed):
    child, kind = mutate(parent, random.Random(seed), only("remove_slot"))
    if parent.memory == 0:
        assert kind == "none"
    else:
        assert kind == "remove_slot" and child.memory < parent.memory


@KIND_SETTINGS
@given(parents, seeds)
def test_change_op_keeps_size_and_changes_an_op(parent, seed):
    child, kind = mutate(parent, random.Random(seed), only("change_op"))
    if parent.length == 0:
        assert kind == "none"
        return
    assert kind == "change_op"
    assert child.length <= parent.length and child.memory <= parent.memory
    if child.length == parent.length:
        assert [s.op for s in child.body] != [s.op for s in parent.body]


@KIND_SETTINGS
@given(parents, seeds)
def test_change_arg_never_grows(parent, seed):
    child, kind = mutate(parent, random.Random(seed), only("change_arg"))
    assert kind == "change_arg"
    assert child.length <= parent.length and child.memory <= parent.memory


def _constants(p: dsl.Program) -> list:
    cs = [a for s in p.body for a in s.args if isinstance(a, float)]
    cs += [a for a in (p.update, *p.next_state) if isinstance(a, float)]
    return sorted(cs + [v for _, v in p.slots] + [v for _, v in p.hparams])


@KIND_SETTINGS
@given(parents, seeds)
def test_perturb_constant_changes_one_constant_only(parent, seed):
    child, kind = mutate(parent, random.Random(seed), only("perturb_constant"))
    if not _constants(parent):
        assert kind == "none"
        return
    assert kind == "perturb_constant"
    assert [s.op for s in child.body] == [s.op for s in parent.body]
    assert child.slot_names == parent.slot_names and child.hparam_names == parent.hparam_names
    before, after = collections.Counter(_constants(parent)), collections.Counter(_constants(child))
    assert sum((before - after).values()) == 1 and sum((after - before).values()) == 1


def test_perturb_constant_is_local_and_tunes_decays():
    rng = random.Random(0)
    w = only("perturb_constant")
    for _ in range(200):
        child, _ = mutate(LION, rng, w)
        new = dict(child.hparams)
        changed = [k for k in ("beta1", "beta2", "wd") if new.get(k) != dict(LION.hparams)[k]]
        assert len(changed) <= 1
    # a decay rate of 0.999 often stays a decay rate (perturbation of 1 - beta)
    p = dsl.parse("def f(g, m=0.0):\n    m = interp(g, m, 0.999)\n    return m\n")
    vals = [mutate(p, rng, w)[0].body[0].args[2] for _ in range(300)]
    vals = [v for v in vals if isinstance(v, float)]
    assert sum(0.99 < v < 1 for v in vals) > 0.3 * len(vals)


def test_weights_steer_kinds():
    rng = random.Random(0)
    kinds = collections.Counter(mutate(ADAMW, rng, only("change_arg"))[1] for _ in range(100))
    assert kinds == {"change_arg": 100}


# ---------------------------------------------------------------- long chains

@pytest.mark.parametrize("start", SEEDS, ids=["adamw", "lion"])
def test_chain_of_500_mutations_stays_valid_and_bounded(start):
    rng = random.Random(42)
    p = start
    for i in range(500):
        p, kind = mutate(p, rng, max_length=20, max_slots=3)
        assert kind != "none"
        assert dsl.prune(p) is p
        assert p.length <= 20 and p.memory <= 3
        if i % 25 == 0:
            assert dsl.parse(dsl.to_text(p)) == p
        run(p, torch.float32)


# ---------------------------------------------------------------- helpers and config

def test_weights_dict_round_trip_and_validation():
    w = MutationWeights()
    assert MutationWeights.from_dict(w.to_dict()) == w
    assert MutationWeights.from_dict({"insert": 5}).insert == 5.0
    assert set(w.to_dict()) >= set(KINDS)
    with pytest.raises(ValueError, match="unknown"):
        MutationWeights.from_dict({"crossover": 1.0})
    with pytest.raises(ValueError):
        MutationWeights(delete=-1.0)
    with pytest.raises(ValueError):
        MutationWeights.from_dict({k: 0.0 for k in KINDS})
    with pytest.raises(ValueError):
        MutationWeights(sign_flip=2.0)
    with pytest.raises(ValueError):
        MutationWeights(sigma=float("nan"))


@pytest.mark.parametrize("seed", range(30))
def test_random_program(seed):
    p = random_program(random.Random(seed), max_statements=8, max_slots=2)
    assert p == random_program(random.Random(seed), max_statements=8, max_slots=2)
    assert 1 <= p.length <= 8 and p.memory <= 2
    assert set(p.inputs) <= {"w", "g", "lr", "t"}
    check_valid(p)
    run(p)


def test_random_programs_vary():
    progs = {random_program(random.Random(s)).hash for s in range(50)}
    assert len(progs) > 30
    assert any(random_program(random.Random(s)).memory > 0 for s in range(50))


def test_random_constants_are_finite_and_varied():
    rng = random.Random(0)
    cs = [random_constant(rng) for _ in range(2000)]
    assert all(isinstance(c, float) and abs(c) <= 10 for c in cs)
    assert len(set(cs)) > 300 and any(c < 0 for c in cs) and 1e-8 in cs
