"""The `evolve` command end to end: a real (short) search on the task suite, then inspection."""
import json
from pathlib import Path

import pytest

import seeds
from evolve.cli import main


@pytest.fixture(autouse=True)
def _baseline_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("OPTSEARCH_BASELINE_CACHE", str(tmp_path_factory.getbasetemp() / "baselines.json"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import os

    old = os.environ.get("OPTSEARCH_BASELINE_CACHE")
    os.environ["OPTSEARCH_BASELINE_CACHE"] = str(tmp_path_factory.getbasetemp() / "baselines.json")
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["search", "--local", "--out", str(out), "--max-evals", "16", "--population", "6",
                 "--tournament", "3", "--stages", "quadratic;quadratic,logreg_digits", "--validation", "rosenbrock",
                 "--test", "mlp_digits", "--test-repeats", "1", "--no-progress", "--seed", "3"])
    assert code == 0
    yield out
    if old is None:
        os.environ.pop("OPTSEARCH_BASELINE_CACHE", None)
    else:
        os.environ["OPTSEARCH_BASELINE_CACHE"] = old


def test_search_starts_from_adamw_and_ends_with_a_hall_of_fame(run_dir, capsys):
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert len(log) == 16
    assert log[0]["mutation"] == "seed" and log[0]["score"] == 0.0 and log[0]["stages"] == 2
    hof = json.loads((run_dir / "hall_of_fame.json").read_text())
    assert hof["best"][0]["score"] >= 0.0
    assert {"text", "score", "length", "memory", "task_scores"} <= set(hof["best"][0])
    vals = [json.loads(line) for line in (run_dir / "validation.jsonl").read_text().splitlines()]
    assert vals[0]["id"] == log[0]["id"] and vals[0]["score"] == 0.0      # the AdamW seed: AdamW on rosenbrock
    assert set(vals[0]["task_scores"]) == {"rosenbrock"}
    assert hof["order"] == "validation" and hof["best"][0]["validation"] is not None
    test = json.loads((run_dir / "test.json").read_text())
    assert test["tasks"] == ["mlp_digits"] and [r["name"] for r in test["rows"]] == [
        f"#{hof['best'][0]['id']}", "adamw", "lion"]
    assert abs(test["rows"][-2]["score"]) < 1e-9   # AdamW against itself


def test_show_plot_export(run_dir, tmp_path, capsys):
    assert main(["show", str(run_dir), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("=== ") == 2 and "def " in out and "# search +" in out and "| validation " in out
    assert main(["plot", str(run_dir), "--out", str(tmp_path)]) == 0
    for name in ("progress.png", "pareto.png", "meta_overfit.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_replay_against_a_torch_reference(capsys):
    code = main(["replay", str(seeds.path("adam")), "--task", "quadratic", "--reference", "torch.optim.Adam",
                 "--steps", "50", "--lr", "0.01"])
    out = capsys.readouterr().out
    assert code == 0
    assert "weight difference" in out.lower()


def test_tasks_and_seeds_listings(capsys):
    assert main(["tasks", "--no-timing"]) == 0
    out = capsys.readouterr().out
    for name in ("quadratic", "char_lm", "zipf_bag", "conv_digits"):
        assert name in out
    assert main(["seeds"]) == 0
    assert "def lion(" in capsys.readouterr().out


def test_errors_are_messages_not_tracebacks(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(g):\n    return nope(g)\n")
    assert main(["show", str(bad)]) == 2
    assert "bad.py:2:12: unknown function 'nope'" in capsys.readouterr().err
    assert main(["show", str(tmp_path / "missing")]) == 2
    assert main(["resume", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
