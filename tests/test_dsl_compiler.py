"""The compiled forms agree with each other and with torch.optim; IEEE results stay visible."""
import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings

import dsl
import seeds
from strategies import programs

ADAMW = seeds.load("adamw")  # torch.optim.AdamW with its defaults
LION = """
def lion(w, g, lr, m=0.0, *, beta1=0.9, beta2=0.99, wd=0.0):
    u = sign(interp(g, m, beta1))
    m = interp(g, m, beta2)
    return lr * (u + wd * w)
"""
SHAPES = [(3, 4), (5,), (2, 1, 3)]


def _tensors(seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_foreach_path_equals_per_tensor_path(p):
    cp = dsl.compile(p)
    ws, gs = _tensors(1), _tensors(2)
    states = [{x: torch.randn(w.shape, dtype=w.dtype) for x in p.slot_names} for w in ws]
    if cp.uses_group:  # global_norm: the group is every tensor
        expected = list(zip(*cp.apply_group(ws, gs, 0.1, 2.0, states)))
    else:
        expected = [cp.apply(w, g, 0.1, 2.0, st) for w, g, st in zip(ws, gs, states)]
    params = [w.clone() for w in ws]
    new_states = [dict(st) for st in states]
    cp.step_foreach(params, gs, new_states, 0.1, 2.0)
    for w, p_new, (upd, nxt), st in zip(ws, params, expected, new_states):
        torch.testing.assert_close(p_new, w - upd, equal_nan=True, rtol=1e-12, atol=1e-12)
        for x in p.slot_names:
            torch.testing.assert_close(st[x], nxt[x], equal_nan=True, rtol=1e-12, atol=1e-12)
            assert st[x].shape == w.shape


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_batched_copies_equal_single_copies(p):
    """[K, ...] stacks with per-copy reductions and per-copy lr equal K separate calls."""
    cp = dsl.compile(p)
    K = 3
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(K, 4, 2, generator=gen, dtype=torch.float64)
    g = torch.randn(K, 4, 2, generator=gen, dtype=torch.float64)
    st = {x: torch.randn(K, 4, 2, generator=gen, dtype=torch.float64) for x in p.slot_names}
    lrs = torch.tensor([0.1, 0.01, 1.0], dtype=torch.float64).view(K, 1, 1)
    upd, nxt = cp.apply(w, g, lrs, 5.0, st, reduce_dims=(1, 2))
    for k in range(K):
        u1, n1 = cp.apply(w[k], g[k], float(lrs[k]), 5.0, {x: v[k] for x, v in st.items()})
        torch.testing.assert_close(upd.expand_as(w)[k], u1.expand_as(w[k]), equal_nan=True)
        for x in p.slot_names:
            torch.testing.assert_close(nxt[x][k], n1[x], equal_nan=True)


def test_ieee_results_are_visible():
    p = dsl.parse("def f(g, lr, m=0.0):\n    u = lr * g / 0 + m\n    m = m / 0 + log(g - g)\n    return u\n")
    w = torch.zeros(3)
    u, nxt = dsl.compile(p).apply(w, torch.tensor([1.0, -1.0, 0.0]), 1.0, 1.0, dsl.compile(p).init_state(w))
    assert torch.isinf(u[0]) and torch.isinf(u[1]) and torch.isnan(u[2])
    assert torch.isnan(nxt["m"]).all()  # 0/0 + log(0) = nan + -inf


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no GPU"))])
def test_adamw_program_matches_torch_in_every_dtype(dtype, device):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).to(device, dtype)
    ref = copy.deepcopy(model)
    opt = dsl.ProgramOptimizer(model.parameters(), ADAMW, lr=1e-2)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, foreach=False)
    x = torch.randn(32, 6, device=device, dtype=dtype)
    y = torch.randn(32, 1, device=device, dtype=dtype)
    for _ in range(20):
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            o.step()
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 5e-2}[dtype]
    for a, b in zip(model.parameters(), ref.parameters()):
        assert a.dtype == dtype and opt.state[a]["m"].dtype == dtype
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def _train(opt_factory, steps=30, scheduler=None, split_at=None):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2).double()
    opt = opt_factory(model)
    sched = scheduler(opt) if scheduler else None
    gen = torch.Generator().manual_seed(1)
    for i in range(steps):
        if split_at is not None and i == split_at:
            sd = copy.deepcopy(opt.state_dict())
            opt = opt_factory(model)
            opt.load_state_dict(sd)
            if sched:
                ssd = sched.state_dict()
                sched = scheduler(opt)
                sched.load_state_dict(ssd)
        x = torch.randn(8, 4, generator=gen, dtype=torch.float64)
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
        if sched:
            sched.step()
    return [p.detach().clone() for p in model.parameters()]


def test_state_dict_round_trip_continues_identically():
    f = lambda m: dsl.ProgramOptimizer(m.parameters(), ADAMW, lr=1e-2)
    a = _train(f)
    b = _train(f, split_at=13)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_lr_scheduler_drives_the_program_lr():
    sched = lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=5, gamma=0.5)
    a = _train(lambda m: dsl.ProgramOptimizer(m.parameters(), ADAMW, lr=1e-2), scheduler=sched)
    b = _train(lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2), scheduler=sched)
    c = _train(lambda m: dsl.ProgramOptimizer(m.parameters(), ADAMW, lr=1e-2))
    for x, y, z in zip(a, b, c):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
        assert not torch.allclose(x, z)


def test_param_groups_with_their_own_lr_and_hyperparameters():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 3).double(), torch.nn.Linear(3, 1).double()
    opt = dsl.ProgramOptimizer([{"params": a.parameters()}, {"params": b.parameters(), "lr": 0.1, "beta1": 0.5}],
                               LION, lr=0.01)
    assert opt.param_groups[0]["beta1"] == 0.9 and opt.param_groups[1]["beta1"] == 0.5
    before = [p.detach().clone() for p in (*a.parameters(), *b.parameters())]
    x = torch.randn(5, 3, dtype=torch.float64)
    b(a(x)).sum().backward()
    opt.step()
    after = list((*a.parameters(), *b.parameters()))
    # Lion moves every weight by exactly lr (sign update, wd=0)
    for p0, p1, lr in zip(before, after, [0.01, 0.01, 0.1, 0.1]):
        torch.testing.assert_close((p0 - p1).abs(), torch.full_like(p0, lr))


def test_params_without_grad_are_skipped_and_no_grad_is_kept():
    torch.manual_seed(0)
    used, unused = torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(3))
    opt = dsl.ProgramOptimizer([used, unused], ADAMW, lr=0.1)
    before = unused.detach().clone()
    loss = (used ** 2).sum()
    loss.backward()
    assert opt.step(closure=lambda: loss) is loss
    assert torch.equal(unused, before) and unused not in opt.state
    assert opt.state[used]["step"] == 1.0
    assert not used.requires_grad or used.grad_fn is None


def test_unknown_hyperparameter_is_an_error():
    with pytest.raises(TypeError, match="no hyperparameter"):
        dsl.ProgramOptimizer([torch.nn.Parameter(torch.zeros(1))], LION, lr=0.1, gamma=3.0)


def test_program_file_path_is_accepted(tmp_path):
    f = tmp_path / "lion.py"
    f.write_text(LION)
    opt = dsl.ProgramOptimizer([torch.nn.Parameter(torch.zeros(1))], str(f), lr=0.1)
    assert opt.program.name == "lion"


def test_constants_beyond_float32_range_overflow_to_inf():
    p = dsl.parse("def f(g, m=1e39):\n    m = interp(g, m, 10.0 ** 39) + clip(g, -1e39, 1e39) + where(g, 1e39, g)\n    return m\n")
    cp = dsl.compile(p)
    w = torch.randn(3)
    u, nxt = cp.apply(w, w, 0.01, 1.0, cp.init_state(w))
    assert not torch.isfinite(u).any()
    params, grads, states = [w.clone()], [w.clone()], [cp.init_state(w)]
    cp.step_foreach(params, grads, states, 0.01, 1.0)
    assert not torch.isfinite(params[0]).any()


def test_program_rejects_names_that_cannot_be_printed():
    from dsl import Program, ProgramError, Stmt
    with pytest.raises(ProgramError, match="input name"):
        Program("f", ("g",), (), (), (Stmt("w", "neg", ("g",)),), "w", ())
    with pytest.raises(ProgramError, match="input name"):
        Program("f", ("g",), (("t", 0.0),), (), (), "g", ("g",))
    with pytest.raises(ProgramError, match="not a valid name"):
        Program("f", ("g",), (), (), (Stmt("for", "neg", ("g",)),), "g", ())
