"""Every way a program is run gives the same steps, and no slot ever holds a parameter's or a
gradient's own tensor.

Paths: the per-tensor `CompiledProgram.apply` (parameters then stepped in place, as an optimizer
would; for a program with a whole-group function, `CompiledProgram.apply_group` on all tensors
instead, which every program also runs as the path "apply-group"), the plain statement-by-statement ``step_foreach`` (taken with tensor hyperparameters),
the fast path's plan (multi-tensor, with and without slot reuse, and in blocks),
`dsl.ProgramOptimizer`, the optimizer `dsl.export_optimizer` writes, and the batched trainer's step (`tasks.train._apply` on stacked copies,
per tensor, as the whole model, and flattened). Gradients live in the same tensors from step to step and are
overwritten in place before each step (as ``backward`` into ``.grad`` does), so a slot that
kept the gradient's tensor would change with it; parameters are stepped in place, so a slot
that kept the parameter's tensor would follow it.
"""
from __future__ import annotations

import contextlib
import inspect

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dsl
from dsl import fastpath
from strategies import programs
from tasks.train import _apply as trainer_apply
from tasks.train import _apply_group as trainer_apply_group

SHAPES = [(3, 4), (5,), (), (2, 1, 3)]
LR = 0.1


def _tensors(seed, shapes=SHAPES):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]


@contextlib.contextmanager
def _blocks():
    """Blocks of 3 float64 elements for every tensor (the blocked form of a plan)."""
    names = ("BLOCK_BYTES", "THREADED_BLOCK_BYTES", "MIN_BLOCKED_BYTES")
    old = [getattr(fastpath, n) for n in names]
    for n, v in zip(names, (24, 24, 0)):
        setattr(fastpath, n, v)
    try:
        yield
    finally:
        for n, v in zip(names, old):
            setattr(fastpath, n, v)


def _snapshot(ws, states):
    return [w.detach().clone() for w in ws], [{k: v.clone() for k, v in st.items()} for st in states]


def run_path(path, p, ws, grads_by_step, states, ts, hp=None):
    """``[(weights, states)]`` after each step of ``path``, and the final states, read again
    after the gradient tensors were overwritten once more."""
    cp = dsl.compiler.CompiledProgram(p)  # a fresh one: reuse_slots is set on it
    ws = [w.clone() for w in ws]
    gs = [torch.empty_like(w) for w in ws]  # the gradient tensors, rewritten in place each step
    states = [{k: v.clone() for k, v in s.items()} for s in states]
    out = []

    def load_grads(i):
        for g, new in zip(gs, grads_by_step[i]):
            g.copy_(new)

    if path in ("optimizer", "export"):
        params = [torch.nn.Parameter(w) for w in ws]
        if path == "optimizer":
            opt = dsl.ProgramOptimizer(params, p, lr=LR, **(hp or {}))  # tensors: read with .item()
        else:
            opt = _exported(p)(params, lr=LR, **{k: float(v) for k, v in (hp or {}).items()})
        for q, g, s in zip(params, gs, states):
            q.grad = g
            opt.state[q].update(step=ts[0] - 1.0, **s)
        for i, t in enumerate(ts):
            load_grads(i)
            opt.step()
            assert all(opt.state[q]["step"] == t for q in params)
            out.append(_snapshot(params, [{x: opt.state[q][x] for x in p.slot_names} for q in params]))
        final = [{x: opt.state[q][x] for x in p.slot_names} for q in params]
    elif path.startswith("trainer"):
        # K = 2 copies stacked as [2, ...], each with its own lr tensor entry
        lr = torch.tensor([LR, LR], dtype=torch.float64)
        stack = lambda xs: [torch.stack([x, x]) for x in xs]
        W, G, S = stack(ws), stack(gs), [{k: torch.stack([v, v]) for k, v in s.items()} for s in states]
        if path == "trainer-flat":
            sizes = [w.numel() for w in ws]
            cat = lambda xs: torch.cat([x.reshape(2, -1) for x in xs], 1)
            split = lambda x: [y.reshape(2, *w.shape) for y, w in zip(torch.split(x, sizes, 1), ws)]
            Wf, Gf = cat(W), torch.empty(2, sum(sizes), dtype=torch.float64)
            Sf = {x: cat([s[x] for s in S]) for x in p.slot_names}
            for i, t in enumerate(ts):
                load_grads(i)
                Gf.copy_(cat(stack(gs)))
                Wf, Sf = trainer_apply(cp, Wf, Gf, lr.view(2, 1), t, Sf, (1,))
                W = split(Wf)
                S = [{x: y for x, y in zip(p.slot_names, ys)} for ys in zip(*(split(Sf[x]) for x in p.slot_names))] \
                    if p.slot_names else [{} for _ in ws]
                out.append(_snapshot([w[0] for w in W], [{k: v[0] for k, v in s.items()} for s in S]))
            Gf.fill_(float("nan"))
            S = [{x: y for x, y in zip(p.slot_names, ys)} for ys in zip(*(split(Sf[x]) for x in p.slot_names))] \
                if p.slot_names else [{} for _ in ws]
        else:
            for i, t in enumerate(ts):
                load_grads(i)
                for Gi, g in zip(G, gs):
                    Gi.copy_(torch.stack([g, g]))
                if path == "trainer-group":
                    W, S = trainer_apply_group(cp, W, G, [lr.view(2, *[1] * (w.ndim - 1)) for w in W], t, S,
                                               [tuple(range(1, w.ndim)) for w in W])
                for j, w in enumerate(W if path == "trainer" else []):
                    dims = tuple(range(1, w.ndim))
                    W[j], S[j] = trainer_apply(cp, w, G[j], lr.view(2, *[1] * (w.ndim - 1)), t, S[j], dims)
                out.append(_snapshot([w[0] for w in W], [{k: v[0] for k, v in s.items()} for s in S]))
            for Gi in G:
                Gi.fill_(float("nan"))
        for w in W:  # the copies do not disturb each other
            torch.testing.assert_close(w[1], w[0], rtol=0, atol=0, equal_nan=True)
        final = [{k: v[0] for k, v in s.items()} for s in S]
    else:
        cp.reuse_slots = path != "foreach-noreuse"
        with _blocks() if path == "blocked" else contextlib.nullcontext():
            for i, t in enumerate(ts):
                load_grads(i)
                if path == "apply-group" or (path == "apply" and cp.uses_group):
                    ups, states = cp.apply_group(ws, gs, LR, t, states, hp)
                    for w, upd in zip(ws, ups):
                        w.sub_(upd)
                elif path == "apply":
                    for j, (w, g) in enumerate(zip(ws, gs)):
                        upd, states[j] = cp.apply(w, g, LR, t, states[j], hp)
                        w.sub_(upd)  # in place, as an optimizer steps its parameters
                elif path == "plain":
                    cp._step_foreach_plain(ws, gs, states, LR, t, hp)
                else:
                    cp.step_foreach(ws, gs, states, LR, t, hp)
                out.append(_snapshot(ws, states))
        final = states
    for g in gs:
        g.fill_(float("nan"))  # the next backward
    return out, [{k: v.clone() for k, v in s.items()} for s in final]


def _exported(p):
    """The optimizer class `dsl.export_optimizer` writes for ``p``, imported."""
    namespace = {}
    exec(compile(dsl.export_optimizer(p, class_name="Exported"), f"<export of {p.name}>", "exec"), namespace)
    return namespace["Exported"]


def _paths(p, hp):
    """The paths that apply to ``p`` with hyperparameters ``hp``."""
    group = dsl.compile(p).uses_group
    out = ["apply", "plain", "trainer-group"] + ([] if group else ["apply-group", "trainer"])
    if "step" not in p.slot_names and "params" not in p.hparam_names:  # names ProgramOptimizer keeps
        out.append("optimizer")
        # the exported class takes hyperparameters under their names unless it renamed one
        if set(p.hparam_names) <= set(inspect.signature(_exported(p).__init__).parameters):
            out.append("export")
    if not any(isinstance(v, torch.Tensor) for v in (hp or {}).values()):
        out += ["foreach", "foreach-noreuse"]
        if dsl.compile(p).plan().blockable:
            out.append("blocked")
    # the trainer runs the program's defaults; tensor hyperparameters below equal them
    if not any(i.op.shaped for i in dsl.compile(p).instrs):
        out.append("trainer-flat")
    return out


def check_paths(p, hp=None, steps=3, ts=None, rtol=1e-10, atol=1e-12, shapes=SHAPES):
    """Every applicable path gives `apply`'s weights and slots after every step, and slots
    never change when the gradients are overwritten afterwards."""
    ts = ts or [float(t) for t in range(1, steps + 1)]
    ws = _tensors(1, shapes)
    grads_by_step = [_tensors(10 + i, shapes) for i in range(len(ts))]
    gen = torch.Generator().manual_seed(3)
    states = [{x: torch.randn(w.shape, dtype=w.dtype, generator=gen) for x in p.slot_names} for w in ws]
    ref, ref_final = run_path("apply", p, ws, grads_by_step, states, ts, hp)
    for path in _paths(p, hp):
        got, final = run_path(path, p, ws, grads_by_step, states, ts, hp)
        for k, ((wa, sa), (wb, sb)) in enumerate(zip(got, ref)):
            for j, (x, y) in enumerate(zip(wa, wb)):
                torch.testing.assert_close(x, y, rtol=rtol, atol=atol, equal_nan=True,
                                           msg=lambda m: f"{path}, step {k + 1}, weight {j}: {m}")
            for j, (x, y) in enumerate(zip(sa, sb)):
                assert x.keys() == y.keys()
                for s in x:
                    torch.testing.assert_close(x[s], y[s], rtol=rtol, atol=atol, equal_nan=True,
                                               msg=lambda m: f"{path}, step {k + 1}, slot {s} of {j}: {m}")
        for j, (x, y) in enumerate(zip(final, ref_final)):
            for s in x:
                torch.testing.assert_close(x[s], y[s], rtol=rtol, atol=atol, equal_nan=True,
                                           msg=lambda m: f"{path}: slot {s} of {j} changed with g: {m}")


# ---------------------------------------------------------------- the reported case

REPRO = "def r(w, g, lr, t, w0=0.0, *, k=0.5):\n    w0 = where(t > 1, w0, w)\n    return lr * g + k * (w - w0)\n"


@pytest.mark.parametrize("k", [0.5, torch.tensor(0.5, dtype=torch.float64)], ids=["float", "tensor"])
def test_slot_set_to_w_by_a_scalar_where_keeps_the_old_weights(k):
    """Step 1 stores w = [1, 2] and moves it by lr * g = 0.1; step 2 moves it by
    0.1 + 0.5 * (0.9 - 1) = 0.05: the slot still holds [1, 2]."""
    cp = dsl.compiler.CompiledProgram(dsl.parse(REPRO))
    w = torch.tensor([1.0, 2.0], dtype=torch.float64)
    states = [cp.init_state(w)]
    for t in (1.0, 2.0):
        cp.step_foreach([w], [torch.ones_like(w)], states, 0.1, t, {"k": k})
    torch.testing.assert_close(states[0]["w0"], torch.tensor([1.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(w, torch.tensor([0.85, 1.85], dtype=torch.float64))


# ---------------------------------------------------------------- slots that take w or g

NEXT_VALUES = [
    "w", "g",
    "where(t > 1, s, w)", "where(t > 1, w, s)", "where(t > 1, g, s)", "where(t > 2, s, g)",
    "where(k, w, s)", "where(k - 0.5, s, g)",  # the condition is a tensor with tensor hyperparameters
    "where(lr > 0.05, w, s)",  # a scalar condition computed every step
    "where(g > 0, w, s)", "where(w < s, g, w)",  # tensor conditions
    "where(t > 1, where(t > 2, w, g), s)",
    "maximum(w, s)", "minimum(g, s)", "maximum(w, -1e300)", "minimum(1e300, g)",
    "clip(w, -1e300, 1e300)", "clip(g, -1.0, 1.0)", "interp(w, s, 0.0)", "w * 1.0", "g + 0.0",
    "mean(w)", "where(t > 1, w, norm(g))",
]


def _program(next_value: str, extra: str = "") -> dsl.Program:
    return dsl.parse(f"def r(w, g, lr, t, s=0.0, u=1.0, *, k=0.5):\n"
                     f"    {extra or 'u = interp(g, u, 0.9)'}\n"
                     f"    s = {next_value}\n"
                     f"    return lr * (g + k * (w - s) + 0.1 * u)\n")


@pytest.mark.parametrize("tensor_hp", [False, True], ids=["float-hp", "tensor-hp"])
@pytest.mark.parametrize("next_value", NEXT_VALUES)
def test_slot_taking_w_or_g_on_every_path(next_value, tensor_hp):
    hp = {"k": torch.tensor(0.5, dtype=torch.float64)} if tensor_hp else None
    check_paths(_program(next_value), hp)


@pytest.mark.parametrize("tensor_hp", [False, True], ids=["float-hp", "tensor-hp"])
def test_slot_taking_another_slots_tensor_that_took_w(tensor_hp):
    """u takes w or g (picked by a scalar where) and s takes u's new value: two slots, each a copy."""
    hp = {"k": torch.tensor(0.5, dtype=torch.float64)} if tensor_hp else None
    check_paths(_program("where(t > 1, u, w)", "u = where(t > 2, w, g)"), hp, steps=4)


# ---------------------------------------------------------------- random slot expressions

_SCALAR_CONDS = ["t > 1", "t > 2", "k", "k - 0.5", "lr > 0.05", "1.0", "0.0"]
_TENSOR_CONDS = ["g > 0", "w < s", "u >= g"]


@st.composite
def _expr(draw, depth=3):
    leaves = ["w", "g", "s", "u", "0.5", "-2.0"]
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return draw(st.sampled_from(leaves))
    sub = lambda: draw(_expr(depth - 1))
    kind = draw(st.sampled_from(["where_s", "where_s", "where_t", "maximum", "minimum", "clip", "interp", "add"]))
    if kind == "where_s":
        return f"where({draw(st.sampled_from(_SCALAR_CONDS))}, {sub()}, {sub()})"
    if kind == "where_t":
        return f"where({draw(st.sampled_from(_TENSOR_CONDS))}, {sub()}, {sub()})"
    if kind == "clip":
        return f"clip({sub()}, -1.5, 1.5)"
    if kind == "interp":
        return f"interp({sub()}, {sub()}, {draw(st.sampled_from(['0.0', '0.9', 'k']))})"
    if kind == "add":
        return f"{sub()} + 0.0"
    return f"{kind}({sub()}, {sub()})"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_expr(), _expr(), st.booleans())
def test_random_slot_expressions_on_every_path(s_next, u_next, tensor_hp):
    hp = {"k": torch.tensor(0.5, dtype=torch.float64)} if tensor_hp else None
    check_paths(_program(s_next, f"u = {u_next}"), hp)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.sampled_from([1.0, 2.0, 3.0]), st.booleans())
def test_random_programs_on_every_path(p, t, tensor_hp):
    """One step from finite weights (after that a weight may be infinite, where the fast path's
    fused update may differ: `dsl.fastpath`, point 2), at a drawn step count."""
    hp = {k: torch.tensor(v, dtype=torch.float64) for k, v in p.hparams} if tensor_hp else None
    check_paths(p, hp, ts=[t], rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- shape and group functions

SHAPED = [
    "g / global_norm(g)", "g * global_norm(s) + w / global_norm(w * k)",
    "row_mean(g * g) * col_mean(s)", "col_mean(row_mean(g)) + s",
    "is_matrix(w) * g + (1 - is_matrix(lr)) * s", "where(is_matrix(k), orthogonalize(s), g)",
    "aspect(w) * g + sqrt(maximum(1, aspect(lr))) * s", "where(aspect(k) > 0.7, orthogonalize(s), g)",
    "orthogonalize(g + s)", "orthogonalize(norm(g)) * g", "orthogonalize(row_mean(g))",
    "global_norm(orthogonalize(g)) * row_mean(s)",
    # of numbers: one value per tensor (sqrt(4) * |x| here), the same on every path
    "g * global_norm(lr)", "g * global_norm(k) + global_norm(2.0) * s", "g / global_norm(norm(g))",
    "where(t > 1, 1.0, g) * global_norm(where(t > 2, 0.5, s))",
]


@pytest.mark.parametrize("tensor_hp", [False, True], ids=["float-hp", "tensor-hp"])
@pytest.mark.parametrize("expr", SHAPED)
def test_shape_and_group_functions_on_every_path(expr, tensor_hp):
    """The new functions in a slot's next value and in the update, on tensors of shapes (3, 4),
    (5,), () and (2, 1, 3): every path (global_norm over the whole group on each)."""
    hp = {"k": torch.tensor(0.5, dtype=torch.float64)} if tensor_hp else None
    p = _program(expr, f"u = {expr}")
    check_paths(p, hp, steps=3)


ASPECT_SHAPES = [(4, 2), (2, 5), (6, 1, 2, 1), (1, 2, 3, 1), (5,), (), (0, 3), (3, 0), (0,)]
ASPECT = [
    "g * aspect(w)", "g * aspect(2.0) + s * aspect(k)", "sqrt(maximum(1, aspect(w))) * orthogonalize(g) + s",
    "where(aspect(lr) > 1, g, s) * aspect(norm(g))", "g / aspect(t) + global_norm(g) * aspect(s)",
]


@pytest.mark.parametrize("tensor_hp", [False, True], ids=["float-hp", "tensor-hp"])
@pytest.mark.parametrize("expr", ASPECT)
def test_aspect_on_every_path_on_tall_wide_4d_and_empty_tensors(expr, tensor_hp):
    """aspect of the parameter whatever the argument, on tall (> 1), wide, 4-D, 1-D, 0-dim and
    empty ((3, 0): inf) tensors: every path."""
    hp = {"k": torch.tensor(0.5, dtype=torch.float64)} if tensor_hp else None
    check_paths(_program(expr, f"u = {expr}"), hp, steps=2, shapes=ASPECT_SHAPES)
