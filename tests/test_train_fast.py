"""The fast batched trainer (tasks.train_fast) against the reference one (tasks.train._Trainer).

Eager: the same outcomes bit for bit (status, reason, steps, every validation loss) for seed
programs, programs with reductions, whole-group and shaped functions, transcendental ops, and
failing ones (nan, divergence, hopeless, a program that raises). Compiled forward/backward:
the same outcomes within float rounding, and a graceful fallback where compilation fails."""
import math
import warnings

import pytest
import torch

import dsl
import seeds
import tasks
from dsl.compiled_step import CompileUnavailable
from dsl.runner import BatchedRunner
from tasks import compiled_model

torch.set_num_threads(1)

TEXTS = [
    "def lion(w, g, lr, m=0.0):\n    u = sign(interp(g, m, 0.9))\n    m = interp(g, m, 0.99)\n    return lr * u\n",
    "def bad(g, lr):\n    return g / 0 * lr\n",                                    # nan at step 0
    "def nrm(w, g, lr, m=0.0):\n    m = interp(g, m, 0.9)\n"
    "    return lr * m / (norm(m) + 1e-8) + lr * 0.01 * w * mean(abs(g))\n",        # per-copy reductions
    "def gn(g, lr, v=0.0):\n    v = interp(square(g), v, 0.99)\n"
    "    return lr * g / (global_norm(g) + 1e-8) + lr * 0.1 * g / (sqrt(row_mean(v) * col_mean(v)) + 1e-8)\n",
    "def tr(w, g, lr, m=0.0):\n    m = interp(g, m, 0.9)\n"
    "    return lr * tanh(m * 100.0) + lr * 0.01 * exp(w) * log(abs(g) + 1.0) + lr * (abs(w) ** 0.3)\n",
    "def big(g, lr):\n    return g * 1e6\n",                                       # diverges
    "def shp(g, lr, m=0.0):\n    m = interp(g, m, 0.9)\n"
    "    return lr * sign(m) * is_matrix(g) + lr * aspect(g) * 0.01 * m\n",
    "def slow(g, lr):\n    return lr * 1e-6 * g\n",                                  # hopeless
]
PROGRAMS = [tasks.adamw_program(), *(dsl.parse(t) for t in TEXTS)]


def _eq(x: float, y: float) -> bool:
    return x == y or (math.isnan(x) and math.isnan(y))


def _same(a: tasks.RunOutcome, b: tasks.RunOutcome) -> bool:
    """Outcomes equal bit for bit (nan equal to nan)."""
    return ((a.status, a.reason, a.steps, len(a.curve)) == (b.status, b.reason, b.steps, len(b.curve))
            and _eq(a.loss, b.loss) and all(sa == sb and _eq(va, vb) for (sa, va), (sb, vb) in zip(a.curve, b.curve)))


@pytest.mark.parametrize("name,dtype,steps", [("quadratic", torch.float32, 60), ("rosenbrock", torch.float32, 80),
                                              ("mlp_digits", torch.float32, 40), ("zipf_bag", torch.float32, 30),
                                              ("conv_digits", torch.float64, 20),
                                              ("autoencoder_digits", torch.float32, 30)])
def test_fast_equals_reference(name, dtype, steps):
    task = tasks.get(name, dtype=dtype)
    runs = [tasks.Run(p, lr) for p in PROGRAMS for lr in (3e-3, 3e-2)]
    ref = tasks.train_batched(task, runs, steps=steps, fast=False)
    new = tasks.train_batched(task, runs, steps=steps)
    assert all(_same(a, b) for a, b in zip(ref, new)), [(a.status, b.status) for a, b in zip(ref, new)]
    statuses = {o.status for o in new}
    assert {"ok", "nan"} <= statuses  # the batch really mixes live and failing copies
    assert new[4].status == new[5].status == "nan"


def test_fast_equals_reference_on_seeds_and_stop_rules():
    """Every seed program, several seeds, a reference curve (the hopeless gap rule) and training
    checks every step: the same outcomes as the reference trainer."""
    task = tasks.get("mlp_digits")
    progs = [seeds.load(n) for n in seeds.names()]
    runs = [tasks.Run(p, lr) for p in progs for lr in (1e-3, 1e-1)]
    (adamw,) = tasks.train_batched(task, [tasks.Run(tasks.adamw_program(), 1e-2)], steps=24)
    ref_curve = dict(adamw.curve)
    for seed in (0, 1):
        kw = dict(seed=seed, steps=24, reference=ref_curve,
                  rules=tasks.StopRules(check_every=1, hopeless_gap=0.2, diverge_factor=3.0))
        ref = tasks.train_batched(task, runs, fast=False, **kw)
        new = tasks.train_batched(task, runs, **kw)
        assert all(_same(a, b) for a, b in zip(ref, new))
        assert {"ok", "hopeless"} <= {o.status for o in new}


def test_program_that_raises_fails_alone():
    """An update of the wrong shape raises inside the step: that program's copies fail with the
    reference's reason and step, the other copies are untouched."""
    wrong = dsl.parse("def wrong(g, lr):\n    return lr * g * orthogonalize(g)\n")
    task = tasks.get("rosenbrock")
    runs = [tasks.Run(PROGRAMS[0], 1e-2), tasks.Run(wrong, 1e-2), tasks.Run(PROGRAMS[1], 1e-3)]
    ref = tasks.train_batched(task, runs, steps=40, fast=False)
    new = tasks.train_batched(task, runs, steps=40)
    assert all(_same(a, b) for a, b in zip(ref, new))
    alone = tasks.train_batched(task, [runs[0]], steps=40)
    assert _same(alone[0], new[0])


@pytest.mark.parametrize("name", sorted(seeds.names()))
def test_runner_matches_apply_group(name):
    """`BatchedRunner` gives `CompiledProgram.apply_group`'s updates and states bit for bit,
    including inf, nan and signed zeros in the inputs."""
    cp = dsl.compile(seeds.load(name))
    runner = BatchedRunner(cp)
    gen = torch.Generator().manual_seed(1)
    shapes = [(3, 5, 4), (3, 4), (3, 1)]
    ws = [torch.randn(s, generator=gen) for s in shapes]
    gs = [torch.randn(s, generator=gen) for s in shapes]
    gs[1][0, 0], gs[1][1, 1], gs[1][2, 2], ws[0][0, 0, 0] = math.inf, math.nan, -0.0, 0.0
    lrs = [torch.full((3, *([1] * (len(s) - 1))), 1e-2) for s in shapes]
    dims = [tuple(range(1, len(s))) for s in shapes]
    states = [cp.init_state(w) for w in ws]
    for t in (1.0, 2.0, 7.0):
        u1, s1 = cp.apply_group(ws, gs, lrs, t, states, reduce_dims=dims)
        u2, s2 = runner.run_group(ws, gs, lrs, t, states, dims)
        for a, b in zip(u1 + [v for s in s1 for v in s.values()], u2 + [v for s in s2 for v in s.values()]):
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
        one1 = cp.apply(ws[0], gs[0], lrs[0], t, states[0], reduce_dims=dims[0])
        one2 = runner.run_one(ws[0], gs[0], lrs[0], t, states[0], dims[0])
        torch.testing.assert_close(one1[0], one2[0], rtol=0, atol=0, equal_nan=True)
        for k in one1[1]:
            torch.testing.assert_close(one1[1][k], one2[1][k], rtol=0, atol=0, equal_nan=True)
        states = s2


def test_chunks():
    """Copy counts are covered by compiled sizes with at most max(2, k // 3) padded rows."""
    for k in range(1, 60):
        c = compiled_model.chunks(k)
        assert set(c) <= set(compiled_model.CHUNKS) and k <= sum(c) <= k + max(2, k // 3)
    assert compiled_model.chunks(12) == [12] and compiled_model.chunks(9) == [12]
    assert compiled_model.chunks(8) == [6, 3] and compiled_model.chunks(4) == [6]
    assert compiled_model.chunks(1) == [3] and compiled_model.chunks(24) == [12, 12]


def test_compile_falls_back_with_a_warning(monkeypatch):
    """Where Inductor fails, the trainer warns once and trains eagerly: the eager results."""
    task = tasks.get("rosenbrock")
    monkeypatch.setattr(compiled_model, "_MODELS", type(compiled_model._MODELS)())

    def broken(*a, **k):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch._inductor, "compile", broken)
    runs = [tasks.Run(PROGRAMS[0], 1e-2), tasks.Run(PROGRAMS[1], 1e-3)]
    with pytest.warns(CompileUnavailable, match="no compiler here"):
        out = tasks.train_batched(task, runs, steps=30, compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileUnavailable)
        again = tasks.train_batched(task, runs, steps=30, compile=True)  # warned once per task
    eager = tasks.train_batched(task, runs, steps=30)
    assert all(_same(a, b) and _same(b, c) for a, b, c in zip(out, again, eager))
    with pytest.raises(ValueError):
        tasks.train_batched(task, runs, steps=3, fast=False, compile=True)


def test_compiled_call_failure_falls_back(monkeypatch):
    """A compiled pass that raises when called (not only when compiled) is dropped with a warning:
    the step runs eagerly, and the outcomes are the eager ones."""
    monkeypatch.setattr(compiled_model, "_MODELS", type(compiled_model._MODELS)())
    task = tasks.get("rosenbrock")
    runs = [tasks.Run(PROGRAMS[0], 1e-2), tasks.Run(PROGRAMS[1], 1e-3), tasks.Run(PROGRAMS[2], 1e-2)]
    tasks.train_batched(task, runs, steps=3, compile=True)
    model = compiled_model.get(task)
    assert len(model.fns) == 2  # the training and the validation pass

    def broken(*a):
        raise RuntimeError("kernel went away")

    model.fns = {k: broken for k in model.fns}
    with pytest.warns(CompileUnavailable, match="kernel went away"):
        out = tasks.train_batched(task, runs, steps=30, compile=True)
    eager = tasks.train_batched(task, runs, steps=30)
    assert all(_same(a, b) for a, b in zip(out, eager))
    assert set(model.failed) == {"train", "val"}


@pytest.mark.parametrize("name,steps", [("quadratic", 60), ("mlp_digits", 30)])
def test_compiled_agrees_within_rounding(name, steps):
    """Compiled forward/backward: the same statuses and stopping steps, losses within float
    rounding of the eager trainer's over a short run; 5 copies run as a padded chunk of 6, and
    once failures leave fewer, as a chunk of 3."""
    task = tasks.get(name)
    runs = [tasks.Run(p, lr) for p in (PROGRAMS[0], PROGRAMS[1], PROGRAMS[2]) for lr in (3e-3, 3e-2)][:5]
    before = compiled_model.stats()
    eager = tasks.train_batched(task, runs, steps=steps)
    comp = tasks.train_batched(task, runs, steps=steps, compile=True)
    assert compiled_model.stats().failures == before.failures
    for a, b in zip(eager, comp):
        assert (a.status, a.steps, len(a.curve)) == (b.status, b.steps, len(b.curve))
        for (sa, va), (sb, vb) in zip(a.curve, b.curve):
            assert sa == sb
            assert va == pytest.approx(vb, rel=1e-3, abs=1e-6, nan_ok=True)
    assert [o.status for o in comp][4] == "nan"


def test_search_config_turns_compiled_passes_on_in_the_workers():
    from evolve.config import SearchConfig
    from evolve.worker import TaskEvaluator

    assert TaskEvaluator.from_config(SearchConfig()).eval_config().compile is False
    on = TaskEvaluator.from_config(SearchConfig(compile_tasks=True))
    assert on.compile_tasks and on.eval_config().compile and on.eval_config(repeats=3).compile
    assert SearchConfig.from_dict(SearchConfig(compile_tasks=True).to_dict()).compile_tasks
