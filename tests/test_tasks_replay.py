"""Replay (CLI support): curves, reference optimizer comparison, plot, task listing."""
import io
import re

import pytest
import torch

import tasks
from tasks.replay import import_class, list_tasks, run_replay, train_with_optimizer

torch.set_num_threads(1)

LION_TEXT = ("def lion(w, g, lr, m=0.0, *, beta1=0.9, beta2=0.99, wd=0.0):\n"
             "    u = sign(interp(g, m, beta1))\n    m = interp(g, m, beta2)\n    return lr * (u + wd * w)\n")


@pytest.fixture
def program_files(tmp_path):
    a = tmp_path / "adamw.py"
    a.write_text(tasks.ADAMW_TEXT)
    b = tmp_path / "lion.py"
    b.write_text(LION_TEXT)
    return str(a), str(b)


def _diffs(text):
    return [float(x) for x in re.findall(r"largest weight difference .*: (\S+)", text)]


def test_replay_against_reference_with_plot(program_files, tmp_path):
    out = io.StringIO()
    png = tmp_path / "curve.png"
    rc = run_replay([program_files[0], program_files[1]], "logreg_digits", reference="torch.optim.AdamW",
                    steps=30, lr=1e-2, plot=str(png), out=out)
    text = out.getvalue()
    assert rc == 0, text
    assert png.stat().st_size > 1000
    assert "adamw" in text and "lion" in text and "score" in text and "accuracy" in text
    d_adamw, d_lion = _diffs(text)
    assert d_adamw < 1e-4 < d_lion  # the AdamW program is torch.optim.AdamW up to rounding


def test_replay_lion_matches_lion_pytorch(program_files):
    out = io.StringIO()
    rc = run_replay([program_files[1]], "quadratic", reference="lion_pytorch.Lion", steps=40, lr=1e-2,
                    plot=None, out=out)
    assert rc == 0 and _diffs(out.getvalue()) == [0.0]


def test_replay_picks_lr_and_reports_failures(program_files, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def bad(g, lr):\n    return g / 0 * lr\n")
    out = io.StringIO()
    rc = run_replay([program_files[1], str(bad)], "quadratic", None, 60, None, None, out=out)
    assert rc == 1 and "nan" in out.getvalue()


@pytest.mark.parametrize("kw", [dict(program_paths=["/nonexistent.py"], task="quadratic"),
                                dict(task="no_such_task"),
                                dict(task="quadratic", reference="torch.optim.NoSuchOptimizer")])
def test_replay_bad_arguments(program_files, kw):
    args = dict(program_paths=[program_files[0]], reference=None, steps=10, lr=None, plot=None)
    args.update(kw)
    out = io.StringIO()
    assert run_replay(out=out, **args) == 2 and out.getvalue().startswith("error:")


def test_train_with_optimizer_and_import_class():
    assert import_class("torch.optim.SGD") is torch.optim.SGD
    task = tasks.get("quadratic")
    r = train_with_optimizer(task, lambda ps, lr: torch.optim.SGD(ps, lr=lr), 0.5, steps=40)
    assert r.status == "ok" and r.loss < r.curve[0][1]


def test_list_tasks():
    out = io.StringIO()
    list_tasks(out, measure=False)
    text = out.getvalue()
    for name in tasks.names():
        assert name in text
    rows = {line.split()[0]: line.split()[1] for line in text.splitlines()[1:]}
    # the role column: the family's own role, then the roles of its variants
    assert rows["quadratic"] == "stage1" and rows["conv_digits"] == "test"
    assert rows["mlp_digits"] == "stage1+validation@2" and rows["zipf_bag"] == "stage1+test@1"
