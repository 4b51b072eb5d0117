"""Printing and parsing are inverse: property tests over random programs."""
import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dsl
from strategies import programs

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(programs(), st.booleans())
def test_parse_print_round_trip(p, readable):
    text = dsl.to_text(p, readable=readable)
    q = dsl.parse(text)
    assert q == p, text
    assert q.hash == p.hash
    # printing again is a fixed point up to equality
    assert dsl.parse(dsl.to_text(q, readable=readable)) == p


@SETTINGS
@given(programs())
def test_printed_program_computes_the_same(p):
    q = dsl.parse(dsl.to_text(p, readable=True))
    gen = torch.Generator().manual_seed(0)
    w, g = torch.randn(4, 3, generator=gen, dtype=torch.float64), torch.randn(4, 3, generator=gen, dtype=torch.float64)
    state = {x: torch.randn(4, 3, generator=gen, dtype=torch.float64) for x in p.slot_names}
    u1, s1 = dsl.compile(p).apply(w, g, 0.1, 3.0, state)
    u2, s2 = dsl.compile(q).apply(w, g, 0.1, 3.0, {x: state[x] for x in q.slot_names})
    torch.testing.assert_close(u1.expand_as(w), u2.expand_as(w), equal_nan=True)
    # slots may be renamed by nothing here: names are kept
    for x in p.slot_names:
        torch.testing.assert_close(s1[x], s2[x], equal_nan=True)


def test_equality_ignores_names_order_duplicates_and_dead_code():
    a = dsl.parse("""
def f(g, lr, m=0.0):
    m = interp(g, m, 0.9)
    return lr * sign(m)
""")
    b = dsl.parse("""
def other(w, g, lr, mom=0.0):
    junk = exp(w) + 3
    x = interp(g, mom, 0.9)
    y = interp(g, mom, 0.9)
    mom = y
    return lr * sign(x)
""")
    assert a == b and a.hash == b.hash and hash(a) == hash(b)
    c = dsl.parse(a_text := dsl.to_text(a).replace("0.9", "0.8"))
    assert c != a, a_text


def test_hash_is_stable_across_processes():
    # sha256 of the canonical key, not Python's salted hash(): a fixed value.
    p = dsl.parse("def sgd(g, lr):\n    return lr * g\n")
    import subprocess, sys
    out = subprocess.run([sys.executable, "-c", "import dsl;print(dsl.parse('def s(g, lr):\\n    return lr * g\\n').hash)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == p.hash


def test_readable_lion_reads_naturally():
    p = dsl.parse("""
def lion(w, g, lr, m=0.0, *, beta1=0.9, beta2=0.99, wd=0.0):
    u = sign(interp(g, m, beta1))
    m = interp(g, m, beta2)
    return lr * (u + wd * w)
""")
    assert dsl.to_text(p, readable=True) == (
        "def lion(w, g, lr, m=0.0, *, beta1=0.9, beta2=0.99, wd=0.0):\n"
        "    update = lr * (sign(interp(g, m, beta1)) + wd * w)\n"
        "    m = interp(g, m, beta2)\n"
        "    return update\n")


def test_slot_swap_prints_correctly():
    p = dsl.parse("""
def swap(g, lr, a=1.0, b=2.0):
    a_new = b
    b = a
    a = a_new + g
    return lr * (a + b)
""")
    q = dsl.parse(dsl.to_text(p))
    assert q == p
    w = torch.zeros(3)
    g = torch.ones(3)
    st = dsl.compile(q).init_state(w)
    _, nxt = dsl.compile(q).apply(w, g, 1.0, 1.0, st)
    assert torch.equal(nxt["a"], torch.full((3,), 3.0)) and torch.equal(nxt["b"], torch.full((3,), 1.0))


def test_numbers_print_exactly():
    for v in [0.1, 1e-8, 1e300, -2.5, 3.0, 0.999, 1 / 3, -0.0, 5e-324]:
        assert float(dsl.format_number(v)) == v or (v == 0 and math.copysign(1, float(dsl.format_number(v))) == math.copysign(1, v))
