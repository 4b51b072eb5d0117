"""The fast path of `step_foreach` (dsl.fastpath): fusion, buffer reuse and blocked execution
never change what a program computes, and never write into a value that is still needed."""
import contextlib

import pytest
import torch
from hypothesis import HealthCheck, given, settings

import dsl
import seeds
from dsl import fastpath
from strategies import programs

SHAPES = [(3, 4), (5,), (2, 1, 3), (7, 6)]


def _tensors(seed, shapes=SHAPES, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]


FORMS = ("foreach", "foreach-alloc", "blocked")


@contextlib.contextmanager
def _form(form):
    """Force the multi-tensor form writing into free buffers ("foreach") or allocating where a
    free buffer is not the first argument ("foreach-alloc"), or blocks of 3 float64 elements."""
    names = ("BLOCK_BYTES", "THREADED_BLOCK_BYTES", "MIN_BLOCKED_BYTES", "MIN_OUT_NUMEL")
    old = [getattr(fastpath, n) for n in names]
    new = {"foreach": (*old[:2], 1 << 62, 0), "foreach-alloc": (*old[:2], 1 << 62, 1 << 62),
           "blocked": (24, 24, 0, 0)}[form]
    for n, v in zip(names, new):
        setattr(fastpath, n, v)
    try:
        yield
    finally:
        for n, v in zip(names, old):
            setattr(fastpath, n, v)


def _reference(p, ws, gs, states, steps, lr=0.1):
    """Per-tensor `apply` (`apply_group` for a program with a group function), step after step:
    [(weights, states)] after each step."""
    cp = dsl.compile(p)
    ws, states = [w.clone() for w in ws], [dict(st) for st in states]
    out = []
    for t in range(1, steps + 1):
        if cp.uses_group:
            ups, states = cp.apply_group(ws, gs, lr, float(t), states)
            ws = [w - u for w, u in zip(ws, ups)]
        for i, (w, g) in enumerate(zip(ws, gs) if not cp.uses_group else []):
            upd, nxt = cp.apply(w, g, lr, float(t), states[i])
            ws[i] = w - upd
            states[i] = nxt
        out.append(([w.clone() for w in ws], [{k: v.clone() for k, v in st.items()} for st in states]))
    return out


def _fast(p, ws, gs, states, steps, form, reuse=True, lr=0.1):
    cp = dsl.compiler.CompiledProgram(p)  # not the cached one: reuse_slots is set on it
    cp.reuse_slots = reuse
    params, states = [w.clone() for w in ws], [{k: v.clone() for k, v in st.items()} for st in states]
    out = []
    with _form(form):
        for t in range(1, steps + 1):
            cp.step_foreach(params, gs, states, lr, float(t))
            out.append(([w.clone() for w in params], [{k: v.clone() for k, v in st.items()} for st in states]))
    return out


def _plain(p, ws, gs, states, steps, lr=0.1):
    """The statement-by-statement path (each statement a fresh list), as before the fast path."""
    cp = dsl.compiler.CompiledProgram(p)
    params, states = [w.clone() for w in ws], [{k: v.clone() for k, v in st.items()} for st in states]
    out = []
    for t in range(1, steps + 1):
        cp._step_foreach_plain(params, gs, states, lr, float(t))
        out.append(([w.clone() for w in params], [{k: v.clone() for k, v in st.items()} for st in states]))
    return out


def _assert_same(a, b, rtol=1e-12, atol=1e-12):
    for (wa, sa), (wb, sb) in zip(a, b):
        for x, y in zip(wa, wb):
            torch.testing.assert_close(x, y, rtol=rtol, atol=atol, equal_nan=True)
        for x, y in zip(sa, sb):
            assert x.keys() == y.keys()
            for k in x:
                torch.testing.assert_close(x[k], y[k], rtol=rtol, atol=atol, equal_nan=True)


def _check_all_forms(text, steps=3, shapes=SHAPES):
    """Every form, with and without slot reuse, equals `apply` and the plain path; ``g`` is
    never written. Returns the program's plan."""
    p = dsl.parse(text) if isinstance(text, str) else text
    ws, gs = _tensors(1, shapes), _tensors(2, shapes)
    cp = dsl.compile(p)
    states = [cp.init_state(w) for w in ws]
    ref = _reference(p, ws, gs, states, steps)
    g_before = [g.clone() for g in gs]
    for form in FORMS:
        for reuse in (True, False):
            _assert_same(_fast(p, ws, gs, states, steps, form, reuse), ref)
            _assert_same(_fast(p, ws, gs, states, steps, form, reuse), _plain(p, ws, gs, states, steps))
    for g, g0 in zip(gs, g_before):  # gradients are never written
        assert torch.equal(g, g0)
    return cp.plan()


# ---------------------------------------------------------------- every form computes the same

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_every_form_equals_the_plain_path_on_random_programs(p):
    """One step from finite weights (as the compiler's test against `apply`): after that a weight
    may be infinite, where the update's fused multiply-add may differ (module doc)."""
    ws, gs = _tensors(1), _tensors(2)
    gen = torch.Generator().manual_seed(3)
    states = [{x: torch.randn(w.shape, dtype=w.dtype, generator=gen) for x in p.slot_names} for w in ws]
    ref = _plain(p, ws, gs, states, 1)
    for form in FORMS:
        for reuse in (True, False):
            _assert_same(_fast(p, ws, gs, states, 1, form, reuse), ref)


@pytest.mark.parametrize("name", seeds.names())
def test_seeds_in_every_form(name):
    p = seeds.load(name)
    _check_all_forms(p, steps=4)


# ---------------------------------------------------------------- buffer reuse never clobbers

def test_temporary_read_after_its_reuse_point_is_not_overwritten():
    plan = _check_all_forms("""
def f(w, g, lr):
    a = g * 2.0
    b = a + 1.0
    c = b * a
    d = sqrt(abs(c)) + a
    return lr * d
""")
    steps = {s.target: s for s in plan.steps}
    assert steps["b"].mode != "inplace"  # a is read again by c
    assert steps["c"].mode == "inplace"  # b is dead after c: c goes into b's buffer


def test_update_aliasing_a_slot_and_slot_aliasing_inputs():
    _check_all_forms("""
def f(w, g, lr, m=0.0, v=0.0, u=0.0):
    m = interp(g, m, 0.9)
    v = w
    u = g
    return m + 0.1 * v - u
""")


def test_next_value_picked_from_g_by_where_is_a_copy():
    p = dsl.parse("def f(g, lr, m=1.0):\n    m = where(1.0, g, m)\n    return lr * m\n")
    _check_all_forms(p)
    cp = dsl.compile(p)
    params, grads = _tensors(1), _tensors(2)
    states = [cp.init_state(w) for w in params]
    cp.step_foreach(params, grads, states, 0.1, 1.0)
    for g, st in zip(grads, states):
        assert st["m"] is not g and torch.equal(st["m"], g)


def test_one_temporary_for_two_slots_then_aliased_states():
    p = dsl.parse("""
def f(w, g, lr, m=0.0, v=0.0):
    x = g * 2.0 + m * v
    m = x
    v = x
    return lr * (m + v)
""")
    plan = _check_all_forms(p, steps=4)
    assert plan.writes_slots
    # after one step both slots hold the same tensors: the next step must not write them
    cp = dsl.compile(p)
    params, grads = _tensors(1), _tensors(2)
    states = [cp.init_state(w) for w in params]
    cp.step_foreach(params, grads, states, 0.1, 1.0)
    assert all(st["m"] is st["v"] for st in states)
    assert fastpath.check(params, grads, states, p.slot_names, True) == (True, False)


def test_shifted_and_swapped_slots():
    # a's old value is dead after u (u may go into its tensors); b's old value is a's next one
    for text, kept in (("""
def f(w, g, lr, a=0.0, b=1.0):
    u = a + 2.0 * b
    a = b
    b = g
    return lr * u
""", {"slot:b"}), ("""
def f(w, g, lr, c=2.0, d=3.0):
    u = c * d + g
    e = c
    c = d
    d = e
    return lr * u
""", {"slot:c", "slot:d"})):
        p = dsl.parse(text)
        assert len(p.slots) == 2
        plan = _check_all_forms(p, steps=4)
        assert not kept & {s.dest for s in plan.steps}


def test_states_shared_by_the_caller_are_not_written():
    p = dsl.parse("def f(g, lr, m=0.0, v=0.0):\n    m = interp(g, m, 0.9)\n    v = v + m\n    return lr * (m + v)\n")
    cp = dsl.compile(p)
    ws, gs = _tensors(1), _tensors(2)
    shared = [torch.randn(w.shape, dtype=w.dtype) for w in ws]
    states = [{"m": s, "v": s} for s in shared]  # one tensor in both slots
    expected = [cp.apply(w, g, 0.1, 1.0, {"m": s.clone(), "v": s.clone()}) for w, g, s in zip(ws, gs, shared)]
    before = [s.clone() for s in shared]
    params = [w.clone() for w in ws]
    cp.step_foreach(params, gs, states, 0.1, 1.0)
    for s, s0 in zip(shared, before):
        assert torch.equal(s, s0)
    for w, p_new, (upd, nxt), st in zip(ws, params, expected, states):
        torch.testing.assert_close(p_new, w - upd, rtol=1e-12, atol=1e-12)
        for x in ("m", "v"):
            torch.testing.assert_close(st[x], nxt[x], rtol=1e-12, atol=1e-12)


def test_slot_tensors_are_updated_in_place_only_when_allowed():
    p = seeds.load("adamw")
    ws, gs = _tensors(1), _tensors(2)
    for reuse in (True, False):
        cp = dsl.compiler.CompiledProgram(p)
        cp.reuse_slots = reuse
        states = [cp.init_state(w) for w in ws]
        old = [dict(st) for st in states]
        with _form("foreach"):
            cp.step_foreach([w.clone() for w in ws], gs, states, 0.1, 1.0)
        same = all(st[x] is o[x] for st, o in zip(states, old) for x in ("m", "v"))
        assert same == reuse
        if not reuse:  # old tensors keep their values
            assert all(torch.equal(o[x], torch.zeros_like(o[x])) for o in old for x in ("m", "v"))


def test_reductions_and_op_table_fallbacks_keep_buffers_alive():
    plan = _check_all_forms("""
def f(w, g, lr, m=0.0):
    a = g * 3.0
    c = where(a > 0.5, a, m)
    n = norm(a)
    b = a + 1.0
    m = interp(b, m, 0.5)
    return lr * (c / (n + 1.0) + b)
""")
    assert not plan.blockable
    steps = {s.target: s for s in plan.steps}
    assert steps["b"].mode != "inplace"  # c may be a itself: a's buffer lives as long as c


# ---------------------------------------------------------------- fusion

def test_adamw_and_lion_plans():
    adamw = dsl.compile(seeds.load("adamw")).plan()
    text = str(adamw)
    assert "addcdiv+1" in text and "params.add_(x14, alpha=-lr)" in text
    assert adamw.blockable and len(adamw.scratch) == 3
    lion = dsl.compile(seeds.load("lion")).plan()
    assert lion.update_alpha == "lr"
    assert [s.mode for s in lion.steps] == ["fresh", "inplace", "out", "fresh", "inplace"]


@pytest.mark.parametrize("expr, kernel", [
    ("x + y / z", "addcdiv+1"), ("y / z + x", "addcdiv+1"), ("x - y / z", "addcdiv-1"),
    ("x + 0.3 * y", None), ("x + y * z", None),
])
def test_fused_patterns_are_bit_identical(expr, kernel):
    p = dsl.parse(f"""
def f(w, g, lr, m=0.5):
    x = g * w
    y = sqrt(abs(w)) + 0.1
    z = m + 1.0
    s = {expr}
    r = s * z
    m = r
    return lr * r
""")
    plan = _check_all_forms(p)
    fused = [s.kernel.name for s in plan.steps if s.fused]
    assert fused == ([kernel] if kernel else [])
    ws, gs = _tensors(1), _tensors(2)
    states = [dsl.compile(p).init_state(w) for w in ws]
    for form in FORMS:  # one step: after it the weights differ by the update's rounding
        (_, sa), = _fast(p, ws, gs, states, 1, form)
        (_, sb), = _plain(p, ws, gs, states, 1)
        assert all(torch.equal(x["m"], y["m"]) for x, y in zip(sa, sb))


def test_multiply_adds_on_temporaries_keep_ieee_results():
    """-inf + (an overflowing product) is nan, as in the program; a fused multiply-add
    (``add(alpha=)``, ``addcmul``) would give -inf."""
    p = dsl.parse("""
def f(w, g, lr):
    a = g * 0.0 - 1e308 * 10.0
    r = a + 1e308 * (abs(g) + 2.0) + a * (abs(g) + 1e308)
    return lr * r
""")
    _check_all_forms(p, steps=1)
    params, grads = _tensors(1), _tensors(2)
    for form in FORMS:
        ws = [w.clone() for w in params]
        with _form(form):
            dsl.compile(p).step_foreach(ws, grads, [{} for _ in ws], 0.1, 1.0)
        assert all(torch.isnan(w).all() for w in ws)


def test_fusion_skips_temporaries_read_twice():
    plan = _check_all_forms("""
def f(w, g, lr):
    y = g / (w + 3.0)
    r = w + y
    u = lr * r
    return u + y * u
""")
    assert not any(s.fused for s in plan.steps) and plan.update_alpha is None


def test_negated_update_is_added():
    p = dsl.parse("def f(w, g, lr):\n    return -(g * lr)\n")
    plan = _check_all_forms(p)
    assert plan.update_neg
    cp = dsl.compile(p)
    params, grads = _tensors(1), _tensors(2)
    expected = [w + g * 0.1 for w, g in zip(params, grads)]
    cp.step_foreach(params, grads, [{} for _ in params], 0.1, 1.0)
    for a, b in zip(params, expected):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- forms and fallbacks

@pytest.mark.parametrize("name", ["adamw", "lion"])
def test_blocked_form_is_bit_identical_to_the_multi_tensor_form(name):
    p = seeds.load(name)
    shapes = [(300, 70), (70,), (1000,)]
    ws, gs = _tensors(1, shapes, torch.float32), _tensors(2, shapes, torch.float32)
    states = [dsl.compile(p).init_state(w) for w in ws]
    a = _fast(p, ws, gs, states, 3, "foreach")
    old = fastpath.BLOCK_BYTES, fastpath.MIN_BLOCKED_BYTES
    try:
        fastpath.BLOCK_BYTES, fastpath.MIN_BLOCKED_BYTES = 4096, 1024  # (70,) stays multi-tensor
        cp = dsl.compiler.CompiledProgram(p)
        params, st = [w.clone() for w in ws], [{k: v.clone() for k, v in s.items()} for s in states]
        for t in (1.0, 2.0, 3.0):
            cp.step_foreach(params, gs, st, 0.1, t)
    finally:
        fastpath.BLOCK_BYTES, fastpath.MIN_BLOCKED_BYTES = old
    for x, y in zip(a[-1][0], params):
        assert torch.equal(x, y)
    for x, y in zip(a[-1][1], st):
        for k in x:
            assert torch.equal(x[k], y[k])


def test_blocks_with_intra_op_threads():
    p = seeds.load("adamw")
    shapes = [(600, 300), (300,), (70000,)]
    ws, gs = _tensors(1, shapes, torch.float32), _tensors(2, shapes, torch.float32)
    states = [dsl.compile(p).init_state(w) for w in ws]
    a = _fast(p, ws, gs, states, 2, "foreach")
    threads, old = torch.get_num_threads(), fastpath.THREADED_BLOCK_BYTES
    try:
        torch.set_num_threads(2)
        fastpath.THREADED_BLOCK_BYTES = 1 << 16  # 2 x 64 KiB blocks: several per tensor
        cp = dsl.compiler.CompiledProgram(p)
        params, st = [w.clone() for w in ws], [{k: v.clone() for k, v in s.items()} for s in states]
        for t in (1.0, 2.0):
            cp.step_foreach(params, gs, st, 0.1, t)
    finally:
        torch.set_num_threads(threads)
        fastpath.THREADED_BLOCK_BYTES = old
    _assert_same(a[-1:], [(params, st)], rtol=1e-6, atol=1e-7)


def test_non_contiguous_parameters_and_mixed_dtypes_fall_back():
    p = seeds.load("adamw")
    cp = dsl.compile(p)
    base = torch.randn(6, 5, dtype=torch.float64)
    w = base.t()  # non-contiguous: multi-tensor form
    g = torch.randn(5, 6, dtype=torch.float64)
    expected, _ = cp.apply(w, g, 0.1, 1.0, cp.init_state(w))
    params, states = [w.clone().t().contiguous().t()], [cp.init_state(w)]
    with _form("blocked"):
        cp.step_foreach(params, [g], states, 0.1, 1.0)
    torch.testing.assert_close(params[0], w - expected, rtol=1e-12, atol=1e-12)
    # a gradient in another dtype: the plain path (which computes in the promoted dtype)
    assert fastpath.check([w], [g.float()], [cp.init_state(w)], p.slot_names, True)[0] is False
    q = dsl.parse("def f(w, g, lr):\n    return lr * (g * 3.0 + 0.1 * w)\n")
    w32 = torch.randn(4, 3)
    params = [w32.clone()]
    dsl.compile(q).step_foreach(params, [g[:4, :3].clone()], [{}], 0.1, 1.0)
    expected = (w32.double() - 0.1 * (g[:4, :3] * 3.0 + 0.1 * w32.double())).float()
    torch.testing.assert_close(params[0], expected)


@pytest.mark.filterwarnings("ignore:To copy construct from a tensor")
def test_tensor_hyperparameters_take_the_plain_path():
    p = seeds.load("adamw")
    cp = dsl.compile(p)
    ws, gs = _tensors(1), _tensors(2)
    params, states = [w.clone() for w in ws], [cp.init_state(w) for w in ws]
    cp.step_foreach(params, gs, states, 0.1, 1.0, {"beta1": torch.tensor(0.9, dtype=torch.float64)})
    for w, g, p_new in zip(ws, gs, params):
        upd, _ = cp.apply(w, g, 0.1, 1.0, cp.init_state(w))
        torch.testing.assert_close(p_new, w - upd, rtol=1e-12, atol=1e-12)


_KERNELS = sorted((name, pat) for name, op in dsl.OPS.items() for pat, _, _ in op.kernels)


@pytest.mark.parametrize("key", _KERNELS, ids=lambda k: f"{k[0]}-{k[1]}")
def test_kernels_compute_what_the_op_does(key):
    """Each kernel of the op table, in each of its three forms, equals the op's torch function
    applied tensor by tensor (and the op's multi-tensor ``foreach``), special values included."""
    op, pattern = key
    kernel, order = dsl.OPS[op].kernel(pattern)
    gen = torch.Generator().manual_seed(0)
    special = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e300, -1e-310, 2.0])

    def lst():
        return [torch.cat([torch.randn(40, generator=gen, dtype=torch.float64) * 3, special.double()]),
                torch.randn(3, 2, generator=gen, dtype=torch.float64)]

    scalars = iter([0.7, -1.5, 2.0])
    args = [lst() if c == "L" else next(scalars) for c in pattern]
    n = len(next(a for a in args if isinstance(a, list)))
    expected = [dsl.OPS[op].torch(*[a[i] if isinstance(a, list) else a for a in args]) for i in range(n)]
    kargs = [args[j] for j in order]

    def same(got):
        for x, y in zip(got, expected):
            torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True)

    same(kernel.fresh(*kargs))
    same(dsl.OPS[op].foreach(*args))
    first = [t.clone() for t in kargs[0]]
    kernel.inplace(first, *kargs[1:])
    same(first)
    outs = [torch.empty_like(t) for t in expected]
    for i, o in enumerate(outs):
        kernel.out(*[a[i] if isinstance(a, list) else a for a in kargs], out=o)
    same(outs)
    if kernel.commutative and pattern == "LL":  # in place into the second argument
        second = [t.clone() for t in kargs[1]]
        kernel.inplace(second, kargs[0])
        same(second)
