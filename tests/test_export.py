"""dsl.export_optimizer: standalone torch optimizers that match ProgramOptimizer step for step."""
from __future__ import annotations

import ast
import importlib.util
import io
import tokenize

import pytest
import torch

import dsl
import seeds
from dsl.export import _Val, export_optimizer

ADAMW = dsl.to_text(seeds.load("adamw"))

LION = """
def lion(w, g, lr, m=0.0, *, beta1=0.9, beta2=0.99, wd=0.0):
    u = sign(interp(g, m, beta1))
    m = interp(g, m, beta2)
    return lr * (u + wd * w)
"""

MASKED = """
def masked(w, g, lr, t, m=0.0, *, beta=0.9, c=0.5):
    m = interp(g, m, beta)
    agree = where(m * g > 0, 1.0, 0.0)
    big = (abs(g) >= c) + (g <= -c) + (m < 0) - (m > 1)
    u = clip(m * agree, -c, c) + maximum(g, 0.0) * big - minimum(m, w) * 0.01
    return lr * where(t > 1, u, sign(g))
"""

REDUCED = """
def reduced(w, g, lr, m=0.0, s=1.0, *, beta=0.9):
    m = interp(g, m, beta)
    n = norm(g) + 1e-8
    s = interp(rms(m), s, 0.5)
    u = g / n * mean(abs(m)) + dot(g, m) * 0.01 + m / (s + 1e-3)
    return lr * tanh(u) + 1e-4 * exp(-square(w)) * log(1 + abs(w))
"""

# scalar-only statements with functions, a slot copied from g, a reduction stored in a slot,
# comparisons and where on scalars, a constant next value, hyperparameter names that collide
# with names the generated code uses
SCALARS = """
def scalars(w, g, lr, t, prev=0.0, scale=0.0, fixed=2.0, *, beta=0.9, p=0.5, state=1.0):
    bc = sqrt(1 - beta ** t) / maximum(1 - p ** t, 1e-3)
    warm = where(t < 3, 0.5, 1.0) * (lr > 0.01) + clip(lr * 10, 0, 1) ** 2
    out = lr * bc * warm * (g + prev * 0.1) / (scale + 1) * state + fixed * 1e-4 * w
    scale = norm(g)
    prev = g
    fixed = 3.0
    return out
"""

PROGRAMS = {"adamw": ADAMW, "lion": LION, "masked": MASKED, "reduced": REDUCED, "scalars": SCALARS}


def _import(src: str, tmp_path, name: str):
    path = tmp_path / f"{name}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"exported_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _model():
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(4, 3, generator=gen, dtype=torch.float64).requires_grad_(),
              torch.randn(3, generator=gen, dtype=torch.float64).requires_grad_(),
              torch.randn(2, generator=gen, dtype=torch.float64).requires_grad_()]  # never gets a grad
    x = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    return params, x, y


def _run(make_opt, steps: int = 50):
    params, x, y = _model()
    opt = make_opt(params)
    history = []
    for k in range(steps):
        def closure():
            opt.zero_grad()
            loss = ((torch.tanh(x @ params[0] + params[1]) - y) ** 2).mean()
            loss.backward()
            return loss

        loss = opt.step(closure) if k % 2 == 0 else (closure(), opt.step())[0]
        history.append(float(loss.detach()))
        history.extend(float(v) for v in torch.cat([p.detach().flatten() for p in params]))
    return torch.tensor(history, dtype=torch.float64), opt, params


def _assert_same(src: str, program: dsl.Program, tmp_path, name: str, lr: float = 1e-2, **hp):
    mod = _import(src, tmp_path, name)
    cls = getattr(mod, mod.__all__[0])
    ref, ref_opt, ref_params = _run(lambda ps: dsl.ProgramOptimizer(ps, program, lr=lr, **hp))
    out, opt, params = _run(lambda ps: cls(ps, lr=lr, **hp))
    assert torch.isfinite(ref).all()
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-12)
    assert len(opt.state[params[2]]) == 0  # the parameter without a gradient was skipped
    for p, q in zip(params[:2], ref_params[:2]):
        st, rst = opt.state[p], ref_opt.state[q]
        assert set(st) == set(rst)
        for k in rst:
            torch.testing.assert_close(torch.as_tensor(st[k]), torch.as_tensor(rst[k]), rtol=1e-9, atol=1e-12)


def _check_standalone(src: str) -> None:
    names = {t.string for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type == tokenize.NAME}
    assert not names & {"eval", "exec", "compile", "__import__"}
    assert "eval(" not in src and "exec(" not in src
    imports = [n for n in ast.walk(ast.parse(src)) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [a.name for n in imports for a in n.names] == ["torch"]


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_export_matches_program_optimizer(name, tmp_path):
    p = dsl.parse(PROGRAMS[name])
    src = export_optimizer(p)
    _check_standalone(src)
    _assert_same(src, p, tmp_path, name)


def test_export_with_hyperparameter_override(tmp_path):
    p = dsl.parse(LION)
    src = export_optimizer(p, class_name="MyLion")
    assert "class MyLion(torch.optim.Optimizer):" in src
    _assert_same(src, p, tmp_path, "lion_hp", lr=3e-3, beta1=0.8, wd=0.1)


def test_export_is_readable(tmp_path):
    p = dsl.parse(LION)
    src = export_optimizer(p)
    assert "class Lion(torch.optim.Optimizer):" in src
    assert "def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.99, wd=0.0):" in src
    assert "torch.lerp(g, m, beta1)" in src and "torch.sign(" in src
    assert "@torch.no_grad()" in src and "closure" in src and "p.grad is None" in src
    assert "def lion(w, g, lr, m=0.0, *, beta1=0.9, beta2=0.99, wd=0.0):" in src  # program in the docstring
    assert "m' = beta2*m + g*(1 - beta2)" in src  # and its math
    mod = _import(src, tmp_path, "lion_doc")
    assert "sign(interp(g, m, beta1))" in mod.Lion.__doc__
    masked = export_optimizer(dsl.parse(MASKED))
    for call in ("torch.where(", "torch.clamp(", ".clamp(max=", "torch.maximum(", "torch.minimum("):
        assert call in masked
    reduced = export_optimizer(dsl.parse(REDUCED))
    for call in ("torch.linalg.vector_norm(", "torch.mean(", "torch.sum(", "torch.tanh("):
        assert call in reduced


def test_export_rejects_a_step_slot():
    p = dsl.parse("def f(w, g, lr, step=0.0):\n    step = step + 1\n    return lr * g * step\n")
    with pytest.raises(ValueError):
        export_optimizer(p)


def test_export_every_seed(tmp_path):
    progs = seeds.load_all()
    for name, p in progs.items():
        src = export_optimizer(p)
        _check_standalone(src)
        _assert_same(src, p, tmp_path, f"seed_{name}")
    assert len(progs) > 0


def test_every_op_has_a_code_template():
    for o in dsl.OPS.values():
        assert o.code, o.name
        args = [f"a{i}" for i in range(o.arity)]
        text = o.code.format(*[_Val(a, True) for a in args])
        if o.param_ndim:  # is_matrix: a function of w, whatever the argument
            assert "w." in text, o.name
            continue
        assert all(a in text for a in args), o.name
        scalar = o.code.format(*[_Val(a, False) for a in args])  # {i:t} fields make tensors
        assert scalar.count("w.new_tensor(") == o.code.count(":t}"), o.name
