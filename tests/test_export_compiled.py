"""dsl.export_optimizer(..., compile=True) and `evolve export --compile`: a standalone optimizer
whose step is torch.compile'd matches the uncompiled export numerically, compiles once however
the learning rate changes, and falls back with a warning where compilation fails."""
from __future__ import annotations

import ast
import importlib.util
import warnings

import pytest
import torch
import torch._dynamo.utils as dynamo_utils

import dsl
import seeds
from dsl.export import export_optimizer

from test_export import LION, MASKED, REDUCED, SCALARS

SWAP = "def swap(w, g, lr, a=0.0, b=1.0, c=0.0):\n    c = a\n    a = g\n    b = w\n    return lr * (a + b + c)\n"
GROUP = ("def clipped(g, lr, m=0.0, *, beta=0.9):\n    m = interp(g / maximum(global_norm(g), 1.0), m, beta)\n"
         "    return lr * m + lr * 0.01 * global_norm(lr) * sign(g)\n")
PROGRAMS = {"adamw": dsl.to_text(seeds.load("adamw")), "lion": LION, "masked": MASKED, "reduced": REDUCED,
            "scalars": SCALARS, "swap": SWAP, "group": GROUP}


def _import(src: str, tmp_path, name: str):
    path = tmp_path / f"{name}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"exported_c_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(cls, steps: int = 8, dtype=torch.float64, **kw):
    """Parameters, optimizer and losses after ``steps`` steps of a small model, lr halved every step."""
    gen = torch.Generator().manual_seed(0)
    ps = [torch.randn(4, 3, generator=gen, dtype=dtype).requires_grad_(),
          torch.randn(3, generator=gen, dtype=dtype).requires_grad_(),
          torch.randn(2, generator=gen, dtype=dtype).requires_grad_()]  # never gets a gradient
    x = torch.randn(16, 4, generator=gen, dtype=dtype)
    y = torch.randn(16, 3, generator=gen, dtype=dtype)
    opt = cls(ps, lr=1e-2, **kw)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((torch.tanh(x @ ps[0] + ps[1]) - y) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return ps, opt, losses


def _assert_close(a, b, dtype=torch.float64):
    (pa, oa, la), (pb, ob, lb) = a, b
    tol = dict(rtol=1e-5, atol=1e-7) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.tensor(la), torch.tensor(lb), **tol)
    for x, y in zip(pa, pb):
        torch.testing.assert_close(x, y, **tol)
        assert oa.state[x].keys() == ob.state[y].keys()
        for k in oa.state[x]:
            torch.testing.assert_close(torch.as_tensor(oa.state[x][k]), torch.as_tensor(ob.state[y][k]), **tol)


def _standalone(src: str) -> None:
    imports = [n for n in ast.walk(ast.parse(src)) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert sorted(a.name for n in imports for a in n.names) == ["time", "torch", "warnings"]
    assert "eval(" not in src and "exec(" not in src and "dsl" not in {a.name for n in imports for a in n.names}


@pytest.mark.parametrize("name,dtype", [("adamw", torch.float32), ("lion", torch.float64), ("masked", torch.float64),
                                        ("reduced", torch.float64), ("scalars", torch.float64),
                                        ("swap", torch.float64), ("group", torch.float64)])
def test_compiled_export_matches_uncompiled(name, dtype, tmp_path):
    """8 steps under a scheduler that changes lr every step: the uncompiled export's numbers, from
    one graph (no recompilation, no graph break)."""
    program = dsl.parse(PROGRAMS[name])
    src = export_optimizer(program, compile=True)
    _standalone(src)
    mod = _import(src, tmp_path, name)
    cls = getattr(mod, mod.__all__[0])
    plain = _import(export_optimizer(program), tmp_path, name + "_plain")
    dynamo_utils.counters.clear()
    with torch._dynamo.config.patch(error_on_recompile=True), warnings.catch_warnings():
        warnings.simplefilter("error", mod.CompileUnavailable)
        compiled = _run(cls, dtype=dtype)
    assert dynamo_utils.counters["stats"]["unique_graphs"] == 1
    assert not dynamo_utils.counters["graph_break"]
    assert compiled[1].compile_seconds > 0
    _assert_close(compiled, _run(getattr(plain, plain.__all__[0]), dtype=dtype), dtype)
    # compile=False: the uncompiled step of the same file
    off = _run(cls, dtype=dtype, compile=False)
    assert off[1].compile_seconds == 0.0
    _assert_close(compiled, off, dtype)


def test_unavailable_backend_warns_once_and_steps_uncompiled(tmp_path):
    program = dsl.parse(LION)
    mod = _import(export_optimizer(program, compile=True), tmp_path, "lion_fallback")
    cls = getattr(mod, mod.__all__[0])
    with pytest.warns(mod.CompileUnavailable, match="stepping uncompiled") as rec:
        out = _run(cls, compile_options={"backend": "no_such_backend"})
    assert sum(issubclass(w.category, mod.CompileUnavailable) for w in rec) == 1
    assert out[1].compile_seconds == 0.0
    ref = _run(cls, compile=False)
    assert out[2] == ref[2] and all(torch.equal(a, b) for a, b in zip(out[0], ref[0]))


def test_uncompiled_export_is_unchanged():
    """compile=False gives the same text as before the option existed (no time/warnings imports)."""
    src = export_optimizer(dsl.parse(LION))
    assert "import time" not in src and "torch.compile" not in src and "_step_all" not in src


def test_cli_export_compile(tmp_path, capsys):
    from evolve.cli import main

    prog = tmp_path / "lion.py"
    prog.write_text(LION)
    out = tmp_path / "lion_opt.py"
    assert main(["export", str(prog), "--out", str(out), "--compile"]) == 0
    src = out.read_text()
    assert "torch.compile(_step_all" in src
    _standalone(src)
    assert main(["export", str(prog), "--out", str(tmp_path / "plain.py")]) == 0
    assert "torch.compile" not in (tmp_path / "plain.py").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(seeds.names()))
def test_every_seed_compiled_export(name, tmp_path):
    """Every seed (matrix functions, whole-group norms, where): compiled export = uncompiled export."""
    program = seeds.load(name)
    mod = _import(export_optimizer(program, compile=True), tmp_path, f"seed_{name}")
    cls = getattr(mod, mod.__all__[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", mod.CompileUnavailable)
        compiled = _run(cls, steps=4)
    _assert_close(compiled, _run(cls, steps=4, compile=False))
