"""Lineage: chains of ancestors from the log, across islands and a resume; the CLI command."""
import json
from pathlib import Path

import pytest

import dsl
import seeds
from evolve.cli import main
from evolve.config import SearchConfig
from evolve.executor import LocalExecutor
from evolve.lineage import format_lineage, lineage
from evolve.search import Search
from toy_fitness import toy_evaluate

ADAMW = dsl.to_text(seeds.load("adamw"))


def _entry(id, parent, mutation, program, score, island=0, cached=None):
    return {"id": id, "parent": parent, "mutation": mutation, "program": program, "score": score,
            "island": island, "status": "ok", "cached": cached, "eval": id + 1,
            "fitness": {"score": score, "stage_scores": [score], "task_scores": {"quadratic": score}}}


def test_chain_from_seed_with_statement_diffs():
    child = ADAMW.replace("weight_decay=0.01", "weight_decay=0.02")
    grand = child.replace("sqrt(", "abs(")
    assert grand != child != ADAMW
    log = [_entry(0, None, "seed", ADAMW, 0.0), _entry(1, 0, "perturb_constant", child, 0.1),
           _entry(2, 0, "drop", ADAMW, -1.0), _entry(3, 1, "replace_op", grand, 0.3, island=1)]
    steps = lineage(log, 3)
    assert [s.id for s in steps] == [0, 1, 3]
    assert [s.mutation for s in steps] == ["seed", "perturb_constant", "replace_op"]
    assert [s.score for s in steps] == [0.0, 0.1, 0.3] and steps[-1].island == 1
    assert steps[0].root_note == ""
    minus = [l for l in steps[1].diff.splitlines() if l.startswith("-") and not l.startswith("---")]
    plus = [l for l in steps[1].diff.splitlines() if l.startswith("+") and not l.startswith("+++")]
    assert len(minus) == len(plus) == 1 and "weight_decay=0.01)" in minus[0] and "weight_decay=0.02)" in plus[0]
    assert "abs(" in steps[2].diff and "sqrt(" in steps[2].diff
    text = format_lineage(steps)
    assert "[2] id 3 <- 1  replace_op  island 1  score +0.3000 (+0.2000)" in text


def test_bad_ids_loops_and_missing_parents():
    log = [_entry(0, None, "seed", ADAMW, 0.0), _entry(5, 4, "insert", ADAMW, 0.1)]
    with pytest.raises(KeyError, match="id 9"):
        lineage(log, 9)
    steps = lineage(log, 5)                              # parent 4 is not logged: chain stops there
    assert [s.id for s in steps] == [5] and "parent 4 is not in the log" in steps[0].root_note
    loop = [_entry(1, 2, "insert", ADAMW, 0.0), _entry(2, 1, "insert", ADAMW, 0.0)]
    with pytest.raises(ValueError, match="loop"):
        lineage(loop, 1)
    orphan = lineage([_entry(7, None, "insert", ADAMW, 0.0)], 7)   # a mutant of a seed, no parent
    assert "mutant of a seed" in orphan[0].root_note


def _check_chains(log: list[dict]) -> set[int]:
    """Every logged candidate traces back to a root (a seed, or a mutant of one); each step is its parent's child; returns
    the islands crossed by some chain of more than one island."""
    by = {e["id"]: e for e in log}
    crossing: set[int] = set()
    for e in log:
        steps = lineage(log, e["id"])
        assert steps[0].parent is None            # no link is broken, even across the resume
        assert (steps[0].mutation == "seed") == (steps[0].root_note == "")   # else: a mutant of a seed
        assert steps[-1].id == e["id"] and steps[-1].program == e["program"]
        for a, b in zip(steps, steps[1:]):
            assert b.parent == a.id and by[b.id]["parent"] == a.id
        if len({s.island for s in steps}) > 1:
            crossing |= {s.island for s in steps}
    return crossing


def test_lineage_on_a_run_with_islands_and_a_resume(tmp_path):
    cfg = SearchConfig(population=6, tournament=3, max_evals=45, batch_size=3, checkpoint_every=7,
                       checkpoint_seconds=0.0, out=str(tmp_path / "run"), validate=False, test_top=0, progress=False, seed=1,
                       islands=3, migration_every=12)
    Search.start(cfg, LocalExecutor(toy_evaluate), overwrite=True).run()
    logp = Path(cfg.out) / "log.jsonl"
    # a kill after the checkpoint: an entry the checkpoint does not cover, with a fresh id and a
    # wrong parent; the resume cuts it off and gives its id to another candidate
    ck = json.loads((Path(cfg.out) / "checkpoint.json").read_text())
    log = [json.loads(x) for x in logp.read_text().splitlines()]
    ghost = dict(log[-1], id=max(e["id"] for e in log) + 1, parent=0, mutation="ghost")
    with open(logp, "a") as f:
        f.write(json.dumps(ghost) + "\n")
    assert logp.stat().st_size > ck["log_bytes"]
    Search.resume(cfg.out, LocalExecutor(toy_evaluate), max_evals=90).run()
    log = [json.loads(x) for x in logp.read_text().splitlines()]
    assert len({e["id"] for e in log}) == len(log) == 90 and "ghost" not in {e["mutation"] for e in log}
    assert len(_check_chains(log)) > 1          # some chain crosses islands (a migrant's children)
    best = json.loads((Path(cfg.out) / "hall_of_fame.json").read_text())["best"][0]
    assert lineage(log, best["id"])[-1].score == best["score"]


def test_cli_lineage_text_json_and_errors(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    child = ADAMW.replace("weight_decay=0.01", "weight_decay=0.02")
    (run / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in
                                           [_entry(0, None, "seed", ADAMW, 0.0), _entry(1, 0, "perturb_constant", child, 0.1)]))
    (run / "hall_of_fame.json").write_text(json.dumps({"best": [{"id": 1}], "pareto": []}))
    assert main(["lineage", str(run)]) == 0
    out = capsys.readouterr().out
    assert "[1] id 1 <- 0  perturb_constant" in out and "+def adamw" in out
    assert main(["lineage", str(run), "0", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["id"] for d in data] == [0] and data[0]["task_scores"] == {"quadratic": 0.0}
    assert main(["lineage", str(run), "42"]) == 2
    assert "no candidate with id 42" in capsys.readouterr().err
    assert main(["lineage", str(tmp_path / "nope")]) == 2
    assert "not a run directory" in capsys.readouterr().err
