"""The whole-group and shape functions (global_norm, row_mean, col_mean, is_matrix, aspect,
orthogonalize): pinned semantics, bad input, fingerprints, mutations, the CLI listing.
(Path-against-path agreement: tests/test_dsl_paths.py; seeds: tests/test_seeds_matrix.py.)"""
from __future__ import annotations

import dataclasses
import random

import pytest
import torch

import dsl
from dsl.ops import OPS
from evolve.cache import fingerprint
from evolve.mutate import mutate
from tasks.train import _apply_group as trainer_apply_group

NEW = ("global_norm", "row_mean", "col_mean", "is_matrix", "aspect", "orthogonalize")
D = torch.float64


def _prog(expr: str) -> dsl.Program:
    return dsl.parse(f"def f(w, g, lr, t):\n    return lr * ({expr})\n")


def _every_path(p, ws, gs):
    """Updates from apply_group, apply (groups of one: only when no group function), the fast
    path, the plain path, and the batched trainer (2 copies): each a list per tensor."""
    cp = dsl.compiler.CompiledProgram(p)
    out = {"apply_group": [u.expand_as(w) for u, w in zip(cp.apply_group(ws, gs, 1.0, 1.0, [{}] * len(ws))[0], ws)]}
    if not cp.uses_group:
        out["apply"] = [cp.apply(w, g, 1.0, 1.0, {})[0].expand_as(w) for w, g in zip(ws, gs)]
    for name, fn in (("fast", cp.step_foreach), ("plain", cp._step_foreach_plain)):
        params = [w.clone() for w in ws]
        fn(params, gs, [{} for _ in ws], 1.0, 1.0)
        out[name] = [w - q for w, q in zip(ws, params)]
    W = [torch.stack([w, w]) for w in ws]
    G = [torch.stack([g, g]) for g in gs]
    lrs = [torch.ones(2, *[1] * w.ndim, dtype=D) for w in ws]
    nw, _ = trainer_apply_group(cp, W, G, lrs, 1.0, [{}] * len(ws), [tuple(range(1, w.ndim + 1)) for w in ws])
    out["trainer"] = [w - n[0] for w, n in zip(ws, nw)]
    return out


def _same(out):
    ref = out["apply_group"]
    for name, us in out.items():
        for u, r in zip(us, ref):
            torch.testing.assert_close(u, r, rtol=1e-12, atol=1e-12, equal_nan=True, msg=lambda m: f"{name}: {m}")


# ---------------------------------------------------------------- pinned semantics

def test_global_norm_is_the_norm_over_the_group():
    gen = torch.Generator().manual_seed(0)
    gs = [torch.randn(3, 4, generator=gen, dtype=D), torch.randn(5, generator=gen, dtype=D), torch.randn((), generator=gen, dtype=D)]
    total = torch.sqrt(sum((g * g).sum() for g in gs))
    out = _every_path(_prog("g / global_norm(g)"), [torch.zeros_like(g) for g in gs], gs)
    _same(out)
    for u, g in zip(out["apply_group"], gs):
        torch.testing.assert_close(u, g / total, rtol=1e-14, atol=0)
    # ProgramOptimizer and the exported optimizer: the whole param group
    ps = [torch.nn.Parameter(torch.zeros_like(g)) for g in gs]
    for p, g in zip(ps, gs):
        p.grad = g.clone()
    dsl.ProgramOptimizer(ps, _prog("g / global_norm(g)"), lr=1.0).step()
    for p, g in zip(ps, gs):
        torch.testing.assert_close(p.detach(), -g / total, rtol=1e-14, atol=0)


def test_global_norm_of_a_number_is_one_value_per_tensor():
    ws = [torch.zeros(2, 3, dtype=D), torch.zeros(4, dtype=D), torch.zeros((), dtype=D)]
    gs = [torch.ones_like(w) for w in ws]
    out = _every_path(_prog("g * global_norm(lr) + 0.0 * w"), ws, gs)  # lr = 1 on every path here
    _same(out)
    for u in out["fast"]:
        torch.testing.assert_close(u, torch.full_like(u, 3.0 ** 0.5), rtol=1e-15, atol=0)


def test_apply_sees_one_tensor_as_the_group():
    g = torch.tensor([3.0, 4.0], dtype=D)
    upd, _ = dsl.compile(_prog("global_norm(g)")).apply(torch.zeros(2, dtype=D), g, 1.0, 1.0, {})
    assert float(upd) == 5.0


def test_row_col_mean_and_is_matrix():
    x = torch.arange(6, dtype=D).view(2, 3)
    assert OPS["row_mean"].torch(x).tolist() == [[1.0], [4.0]]
    assert OPS["col_mean"].torch(x).tolist() == [[1.5, 2.5, 3.5]]
    v = torch.arange(3, dtype=D)
    assert torch.equal(OPS["row_mean"].torch(v), v) and torch.equal(OPS["col_mean"].torch(v), v)
    x3 = torch.arange(24, dtype=D).view(2, 3, 4)  # the last two dims; leading dims kept
    assert torch.equal(OPS["row_mean"].torch(x3), x3.mean(-1, keepdim=True))
    for shape, expect in [((), 0.0), ((4,), 0.0), ((2, 3), 1.0), ((1, 2, 3, 4), 1.0), ((0, 3), 1.0)]:
        w = torch.zeros(shape, dtype=D)
        (u,) = _every_path(_prog("is_matrix(lr) * g + 0.0 * w"), [w], [torch.ones(shape, dtype=D)])["apply_group"]
        assert torch.all(u == expect), shape


def test_is_matrix_of_any_argument_is_of_the_parameter():
    """A number, lr or a reduction as the argument give what w gives, on every path."""
    ws = [torch.zeros(2, 3, dtype=D), torch.zeros(4, dtype=D)]
    gs = [torch.ones(2, 3, dtype=D), torch.ones(4, dtype=D)]
    for arg in ("w", "2.0", "lr", "norm(g)", "t"):
        out = _every_path(_prog(f"is_matrix({arg}) * g"), ws, gs)
        _same(out)
        assert torch.all(out["fast"][0] == 1.0) and torch.all(out["fast"][1] == 0.0), arg


ASPECTS = [((), 1.0), ((4,), 1.0), ((0,), 1.0), ((6, 4), 1.5), ((2, 6), 1 / 3), ((5, 1), 5.0),
           ((2, 3, 4, 5), 2 / 60), ((8, 1, 2, 1), 4.0), ((0, 3), 0.0), ((3, 0), float("inf")), ((0, 0), float("nan"))]


@pytest.mark.parametrize("shape, expect", ASPECTS, ids=[str(s) for s, _ in ASPECTS])
def test_aspect_is_rows_over_flattened_cols_of_the_parameter_on_every_path(shape, expect):
    """d0 / (d1 * ...) (orthogonalize's matrix), 1.0 below 2 dims; IEEE on empty matrices."""
    w = torch.zeros(shape, dtype=D)
    ref = OPS["aspect"].torch(w)
    torch.testing.assert_close(ref, torch.tensor(expect, dtype=D), rtol=0, atol=0, equal_nan=True)
    for arg in ("w", "lr", "2.0", "norm(g)"):
        out = _every_path(_prog(f"aspect({arg}) + 0.0 * g"), [w, torch.zeros(3, 4, dtype=D)],
                          [torch.ones(shape, dtype=D), torch.ones(3, 4, dtype=D)])
        _same(out)
        for name, (u, other) in out.items():
            assert u.shape == shape, (name, arg)
            torch.testing.assert_close(u, ref.expand(shape), rtol=0, atol=0, equal_nan=True)
            assert torch.all(other == 0.75), (name, arg)  # the other tensor: its own shape's value
    p = torch.nn.Parameter(w.clone())
    p.grad = torch.ones(shape, dtype=D)
    exported = {}
    exec(dsl.export_optimizer(_prog("aspect(lr) + 0.0 * g"), class_name="E"), exported)
    exported["E"]([p], lr=1.0).step()
    torch.testing.assert_close(p.detach(), -ref.expand(shape), rtol=0, atol=0, equal_nan=True)


def test_aspect_of_float32_rounds_as_the_dtype_does():
    u = OPS["aspect"].torch(torch.zeros(3, 7))
    assert u.dtype == torch.float32 and float(u) == float(torch.tensor(3 / 7, dtype=torch.float32))
    b = OPS["aspect"].torch(torch.zeros(2, 6, 3, 1), dims=(1, 2, 3))  # 2 copies of (6, 3, 1)
    assert b.shape == (2, 1, 1, 1) and torch.all(b == 2.0)


def test_orthogonalize_gives_near_orthogonal_rows():
    x = torch.randn(4, 9, generator=torch.Generator().manual_seed(1), dtype=D)
    s = torch.linalg.svdvals(OPS["orthogonalize"].torch(x))
    assert s.min() > 0.5 and s.max() < 1.5  # Muon's iteration: singular values ~ U(0.5, 1.5)
    assert torch.equal(OPS["orthogonalize"].torch(torch.zeros(3, 4, dtype=D)), torch.zeros(3, 4, dtype=D))


# ---------------------------------------------------------------- bad input

BAD = {
    "empty (0, 3)": torch.zeros(0, 3, dtype=D),
    "empty (0,)": torch.zeros(0, dtype=D),
    "scalar": torch.tensor(-2.5, dtype=D),
    "1-D": torch.tensor([1.0, -2.0, 3.0], dtype=D),
    "4-D": torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(2), dtype=D),
    "zero matrix": torch.zeros(3, 4, dtype=D),
    "nan": torch.tensor([[1.0, float("nan")], [2.0, 3.0]], dtype=D),
    "inf": torch.tensor([[1.0, float("inf")], [2.0, 3.0]], dtype=D),
}


@pytest.mark.parametrize("op", NEW)
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gives_a_defined_result_or_nan_on_every_path(op, case):
    g = BAD[case]
    other = torch.ones(2, 2, dtype=D)  # a second tensor of the group
    out = _every_path(_prog(f"{op}(g) + 0.0 * g"), [torch.zeros_like(g), torch.zeros_like(other)], [g, other])
    _same(out)
    u = out["apply_group"][0]
    assert u.shape == g.shape
    if g.isfinite().all():
        assert u.isfinite().all(), (op, case, u)
    if case == "zero matrix":
        expect = {"is_matrix": 1.0, "aspect": 0.75, "global_norm": 2.0}.get(op, 0.0)  # global_norm: the other tensor's
        assert torch.all(u == expect)
    if case == "nan" and op not in ("is_matrix", "aspect"):  # of the shape, not the values
        assert u.isnan().any()  # NaN propagates (into the rows/columns/matrix/group it reaches)


def test_global_norm_of_an_empty_group_member_and_of_nan():
    gs = [torch.zeros(0, dtype=D), torch.tensor([3.0, 4.0], dtype=D)]
    ups, _ = dsl.compile(_prog("global_norm(g)")).apply_group(gs, gs, 1.0, 1.0, [{}, {}])
    assert [float(u) for u in ups] == [5.0, 5.0]
    gs = [torch.tensor([float("nan")], dtype=D), torch.tensor([3.0, 4.0], dtype=D)]
    ups, _ = dsl.compile(_prog("global_norm(g)")).apply_group(gs, gs, 1.0, 1.0, [{}, {}])
    assert all(u.isnan() for u in ups)


def test_a_group_program_over_mixed_dtypes_is_a_clear_error():
    ps = [torch.nn.Parameter(torch.ones(2, dtype=D)), torch.nn.Parameter(torch.ones(2, dtype=torch.float32))]
    for p in ps:
        p.grad = torch.ones_like(p)
    opt = dsl.ProgramOptimizer(ps, _prog("g / global_norm(g)"), lr=0.1)
    with pytest.raises(ValueError, match="global_norm.*share device, dtype and step"):
        opt.step()
    assert not opt.state  # nothing changed by the failed step
    dsl.ProgramOptimizer(ps, _prog("g / norm(g)"), lr=0.1).step()  # per-tensor: fine


def test_a_failing_group_program_fails_its_copies_not_the_search():
    """In the batched trainer a program that raises is recorded as an error, never raised."""
    from tasks import registry
    from tasks.train import ERROR, Run, train_batched

    task = registry.get(registry.names()[0])
    good = dsl.parse("def sgd(g, lr):\n    return lr * g\n")
    with pytest.MonkeyPatch.context() as mp:
        boom = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))  # noqa: E731
        mp.setitem(OPS, "orthogonalize", dataclasses.replace(OPS["orthogonalize"], torch=boom))
        bad = _prog("orthogonalize(g)")
        out = train_batched(task, [Run(bad, 0.01), Run(good, 0.01)], steps=3)
    assert out[0].status == ERROR and "boom" in out[0].reason
    assert out[1].status != ERROR


# ---------------------------------------------------------------- search support

def test_fingerprints_tell_the_new_functions_apart():
    fps = {e: fingerprint(_prog(e)) for e in (
        "g", "g / norm(g)", "g / global_norm(g)", "row_mean(g)", "col_mean(g)", "is_matrix(w) * g", "aspect(w) * g",
        "orthogonalize(g)", "g + 0.0")}
    assert fps["g"] == fps["g + 0.0"]
    del fps["g + 0.0"]
    assert len(set(fps.values())) == len(fps), fps


def test_group_programs_get_a_functional_fingerprint_not_an_error_one():
    # equal rules written differently share it (an error fingerprint is unique to each text)
    assert fingerprint(_prog("g / global_norm(2 * g)")) == fingerprint(_prog("0.5 * g / global_norm(g)"))
    assert fingerprint(_prog("g / global_norm(g)")) != fingerprint(_prog("g / norm(g)"))


def test_fingerprints_tell_muons_lr_factor_apart():
    # the (3, 5) and (7,) probes are not tall: shape-reading programs are also probed on a (5, 3)
    assert fingerprint(_prog("sqrt(maximum(1, aspect(w))) * g")) != fingerprint(_prog("g"))
    assert fingerprint(_prog("sqrt(maximum(1, aspect(w))) * g")) == fingerprint(_prog("sqrt(maximum(aspect(w), 1)) * g"))


def test_mutations_draw_every_new_function():
    rng = random.Random(0)
    parent = dsl.parse("def adamw(w, g, lr, t, m=0.0, v=0.0):\n    m = interp(g, m, 0.9)\n"
                       "    v = interp(square(g), v, 0.999)\n    return lr * (m / (sqrt(v) + 1e-8) + 0.01 * w)\n")
    seen = set()
    for _ in range(1500):
        child, _ = mutate(parent, rng)
        seen |= {s.op for s in child.body}
        if seen >= set(NEW):
            break
    assert set(NEW) <= seen, set(NEW) - seen


def test_symbolic_forms_are_opaque_functions():
    p = _prog("orthogonalize(g) + row_mean(g) * col_mean(g) + global_norm(g) * is_matrix(w) * aspect(w)")
    text = dsl.to_math(p)
    for name in NEW:
        assert f"{name}(" in text, text
    assert dsl.equivalent(_prog("orthogonalize(g) * 2.0"), _prog("orthogonalize(g) + orthogonalize(g)"))
    assert not dsl.equivalent(_prog("orthogonalize(g)"), _prog("g"))


def test_evolve_ops_lists_them(capsys):
    from evolve.cli import main

    assert main(["ops"]) == 0
    text = capsys.readouterr().out
    for name in NEW:
        assert name in text


def test_seeds_muon_and_all_warm_start_a_search():
    from evolve.search import seed_programs

    assert [p.name for p in seed_programs(("muon",))] == ["muon"]
    names = {p.name for p in seed_programs(("all",))}
    assert {"adafactor", "muon", "muon_adamw", "lamb", "lars", "adamw_clip"} <= names


def test_new_seeds_train_in_the_batched_trainer_with_one_copy_per_call_alike():
    """Each new seed trains on a model with matrices (mlp_digits) without error, and two copies
    in one call (stacked, reductions and global_norm per copy) match one copy alone."""
    import seeds
    from tasks import registry
    from tasks.train import ERROR, Run, train_batched

    task = registry.get("mlp_digits")
    for name in ("adafactor", "muon_adamw", "lamb", "lars", "adamw_clip"):
        p = seeds.load(name)
        both = train_batched(task, [Run(p, 0.01), Run(p, 0.003)], steps=8)
        alone = train_batched(task, [Run(p, 0.003)], steps=8)
        assert all(o.status != ERROR for o in both), (name, [o.reason for o in both])
        assert [v for _, v in both[1].curve] == pytest.approx([v for _, v in alone[0].curve], rel=1e-5), name
        assert both[0].curve[-1][1] != both[1].curve[-1][1]  # the lr matters: the copies differ
