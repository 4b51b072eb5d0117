"""`ProgramOptimizer(..., compile=True)` (dsl.compiled_step): the torch.compile'd step gives the
uncompiled path's results, compiles once however the learning rate changes, and falls back with
a warning where compilation fails."""
import warnings

import pytest
import torch
import torch._dynamo.utils as dynamo_utils

import dsl
import seeds
from dsl.compiled_step import CompileUnavailable

SHAPES = [(7, 5), (5,), (3, 4, 2), (6, 6)]
TINY = "def tiny(g, lr, t, m=0.0, *, beta=0.9):\n    m = interp(g, m, beta)\n    return lr * m / (1 - beta ** t)\n"


def _run(program, dtype, steps, compile, shapes=SHAPES, **kw):
    """Parameters and optimizer after ``steps`` steps on seeded gradients, lr halved every step."""
    gen = torch.Generator().manual_seed(0)
    ps = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in shapes]
    opt = dsl.ProgramOptimizer(ps, program, lr=1e-2, compile=compile, **kw)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    for _ in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=gen, dtype=dtype)
        opt.step()
        sched.step()
    return ps, opt


def _assert_same(a, b, dtype):
    (pa, oa), (pb, ob) = a, b
    tol = dict(rtol=1e-5, atol=1e-7) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-14)
    for x, y in zip(pa, pb):
        torch.testing.assert_close(x, y, **tol)
        sa, sb = oa.state[x], ob.state[y]
        assert sa.keys() == sb.keys()
        for k in sa:
            if isinstance(sa[k], torch.Tensor):
                torch.testing.assert_close(sa[k], sb[k], **tol)
            else:
                assert sa[k] == sb[k]


def test_tiny_program_matches_and_compiles_once():
    """A bias-corrected momentum rule in float64: 6 steps with lr and t changing every step give the
    uncompiled results, from one graph compiled once."""
    program = dsl.parse(TINY)
    dynamo_utils.counters.clear()
    with torch._dynamo.config.patch(error_on_recompile=True), warnings.catch_warnings():
        warnings.simplefilter("error", CompileUnavailable)
        compiled = _run(program, torch.float64, 6, compile=True)
        # a second optimizer (another program object) compiles its own graph, not a recompilation
        _run(dsl.parse(TINY.replace("0.9", "0.8")), torch.float64, 2, compile=True, shapes=[(3,)])
    assert dynamo_utils.counters["stats"]["unique_graphs"] == 2
    assert not dynamo_utils.counters["graph_break"]
    assert compiled[1].compile_seconds > 0
    _assert_same(compiled, _run(program, torch.float64, 6, compile=False), torch.float64)


def test_unavailable_backend_warns_once_and_steps_uncompiled():
    with pytest.warns(CompileUnavailable, match="no_such_backend|stepping uncompiled") as rec:
        compiled = _run(seeds.load("adamw"), torch.float32, 3, compile=True,
                        compile_options={"backend": "no_such_backend"})
    assert sum(issubclass(w.category, CompileUnavailable) for w in rec) == 1
    assert compiled[1].compile_seconds == 0.0
    _assert_same(compiled, _run(seeds.load("adamw"), torch.float32, 3, compile=False), torch.float32)


def test_uncompiled_optimizer_has_no_compile_time():
    _, opt = _run(dsl.parse(TINY), torch.float64, 1, compile=False)
    assert opt.compile_seconds == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", ["adamw", "lion", "adam", "lamb", "adamw_clip", "adafactor", "rprop", "adan"])
def test_seed_matches_uncompiled(name, dtype):
    """Seeds with reductions (lamb: norm), a whole-group function (adamw_clip: global_norm), shaped
    ops (adafactor: row_mean) and where (rprop): 5 steps under a scheduler, no recompilation."""
    dynamo_utils.counters.clear()
    with torch._dynamo.config.patch(error_on_recompile=True), warnings.catch_warnings():
        warnings.simplefilter("error", CompileUnavailable)
        compiled = _run(seeds.load(name), dtype, 5, compile=True)
    assert dynamo_utils.counters["stats"]["unique_graphs"] == 1
    _assert_same(compiled, _run(seeds.load(name), dtype, 5, compile=False), dtype)


@pytest.mark.slow
def test_slot_next_value_is_an_input():
    """Slots whose next value is w, g or another slot's old value are read before any is written."""
    program = dsl.parse("def f(w, g, lr, a=0.0, b=1.0, c=0.0):\n    c = a\n    a = g\n    b = w\n"
                        "    return lr * (a + b + c)\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileUnavailable)
        compiled = _run(program, torch.float64, 4, compile=True)
    _assert_same(compiled, _run(program, torch.float64, 4, compile=False), torch.float64)
