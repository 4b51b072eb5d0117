"""Distillation by ablation: the one-step candidates, the greedy loop, the executor scorer, the CLI."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
import torch

import dsl
import seeds
from strategies import programs
from dsl.probe import Inputs, random_inputs, trajectory
from evolve.cache import FitnessCache
from evolve.candidate import Fitness
from evolve.distill import (candidates, complexity, distill, executor_scorer, result_text,
                            round_significant, significant_digits)
from evolve.executor import LocalExecutor

ROOT = Path(__file__).resolve().parents[1]

# Known junk: a statement multiplying by (beta2 >= beta2) (= 1), a near-1 factor 1.0003, a live
# term scaled by 1e-9, and a duplicated hyperparameter 0.90001 beside 0.9.
ADAMW_JUNK = """
def adamw(w, g, lr, t, m=0.0, v=0.0, *, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, beta1b=0.90001):
    m = interp(g, m, beta1)
    v = interp(square(g), v, beta2)
    m_hat = m / (1 - beta1b ** t)
    v_hat = v / (1 - beta2 ** t) * (beta2 >= beta2)
    step = m_hat / (sqrt(v_hat) + eps) * 1.0003
    return lr * (step + weight_decay * w + 1e-9 * g)
"""
# Lion's interp written out with two near-equal betas (beta2 and beta2b = 0.99001).
LION_JUNK = """
def lion(w, g, lr, t, m=0.0, *, beta1=0.9, beta2=0.99, weight_decay=0.1, beta2b=0.99001):
    direction = sign(interp(g, m, beta1)) * 1.0003
    m = (beta2 * m + (1 - beta2b) * g) * (beta2 >= beta2)
    return lr * (direction + weight_decay * w + 1e-9 * g)
"""


def _probes() -> list[Inputs]:
    """Gradients of scale 1 and 1e-8 (where AdamW's eps matters), varying lr, t = 1..30
    (where its bias corrections matter), 30 steps (where a decay rate shows through a sign)."""
    gen = torch.Generator().manual_seed(7)
    out = []
    for scale in (1.0, 1e-8):
        i = random_inputs(gen, shape=(6, 8), steps=30, lr=(0.01, 0.3))
        out.append(Inputs(i.w0, tuple(g * scale for g in i.gs), i.lrs, i.ts, i.ws))
    return out


PROBES = _probes()


def _updates(p):
    return [u for inp in PROBES for u, _ in trajectory(p, inp)]


def faithful_score(reference):
    """Minus the mean relative distance of a program's updates to ``reference``'s: cheap and
    deterministic; junk that changes nothing measurable is free to remove, real parts are not."""
    ref = _updates(reference)

    def score(progs):
        out = []
        for p in progs:
            try:
                e = sum(float((a - b).norm() / b.norm()) for a, b in zip(_updates(p), ref)) / len(ref)
            except Exception:  # noqa: BLE001 - a program that cannot run scores worst
                e = math.inf
            out.append(-e if math.isfinite(e) else -math.inf)
        return out

    return score


def _seed(name, **hparams):
    p = seeds.load(name)
    return p.replace(hparams=tuple((n, float(hparams.get(n, v))) for n, v in p.hparams))


# Lion's default weight decay is 0, so `weight_decay * w` changes nothing measurable and is
# rightly distilled away; with a nonzero one every part of the seed matters.
@pytest.mark.parametrize("junk, original", [(ADAMW_JUNK, _seed("adamw")),
                                            (LION_JUNK, _seed("lion", weight_decay=0.1))],
                         ids=["adamw", "lion"])
def test_junk_is_distilled_back_to_the_original_rule(junk, original):
    p = dsl.parse(junk)
    assert not dsl.equivalent(p, original)
    r = distill(p, faithful_score(p), tolerance=1e-3, max_evals=2000)
    assert r.stopped == "converged"
    # the same rule, as short: (simplify may order a sum's terms differently from the seed,
    # so structural equality of the simplified forms is not the test; equivalence is)
    simple = dsl.simplify(r.program)
    assert dsl.equivalent(simple, original) and dsl.equivalent(r.program, original)
    assert simple.length <= original.length and simple.hparams == original.hparams
    assert r.score >= r.base_score - 1e-3
    for s in r.steps:
        assert s.score_after >= r.base_score - 1e-3
    assert {s.kind for s in r.steps} >= {"drop", "merge"}
    assert any("1.0003" in s.description for s in r.steps)


def test_tight_tolerance_keeps_every_measurable_part():
    p = dsl.parse(ADAMW_JUNK)
    r = distill(p, faithful_score(p), tolerance=1e-6, max_evals=2000)
    # (beta2 >= beta2) and the 1e-9 term change nothing measurable; the rest does.
    assert r.program.length == p.length - 4
    assert "1.0003" in dsl.to_text(r.program) and "beta1b" in dsl.to_text(r.program)


def test_max_evals_bounds_the_scoring():
    p = dsl.parse(ADAMW_JUNK)
    calls = []

    def score(progs):
        calls.append(len(progs))
        return faithful_score(p)(progs)

    r = distill(p, score, tolerance=1e-3, max_evals=25)
    assert r.stopped == "max-evals" and r.evals == sum(calls) == 25
    # a budget of the original and its one-step candidates: one round, one accepted step
    first = [q for q, _ in candidates(p) if complexity(q) < complexity(p)]
    calls.clear()
    r = distill(p, score, tolerance=1e-3, max_evals=1 + len(first))
    assert calls == [1, len(first)] and len(r.steps) == 1 and r.stopped == "max-evals"


def test_no_program_is_scored_twice():
    p = dsl.parse(ADAMW_JUNK)
    seen = []

    def score(progs):
        seen.extend(q.hash for q in progs)
        return faithful_score(p)(progs)

    distill(p, score, tolerance=1e-3, max_evals=2000)
    assert len(seen) == len(set(seen))


def test_candidates_are_valid_distinct_and_simpler():
    for name in ("adamw", "lion", "adan", "muon"):
        p = seeds.load(name)
        cands = candidates(p)
        hashes = [q.hash for q, _ in cands]
        assert len(hashes) == len(set(hashes)) and p.hash not in hashes
        for q, what in cands:
            assert dsl.prune(q) == q and dsl.parse(dsl.to_text(q)) == q
            assert what.split(":")[0] in {"drop", "round", "merge"}
        # every statement can be dropped
        assert sum(1 for q, _ in cands if q.length < p.length) >= p.length


def test_rounding_and_merging_candidates():
    p = dsl.parse("def f(g, lr, m=0.0, *, a=0.9, b=0.90001, c=0.5):\n"
                  "    m = interp(g, m, a)\n    return lr * 1.2345 * (m + b * g + c * g)\n")
    whats = [w for _, w in candidates(p)]
    assert "merge: b=0.90001 into a=0.9" in whats and "merge: a=0.9 into b=0.90001" in whats
    assert not any("into c=" in w or "c=0.5 into" in w for w in whats)   # 0.5 is not near 0.9
    assert "round: constant 1.2345 -> 1.2" in whats and "round: b=0.90001 -> 0.9" in whats
    assert significant_digits(0.90001) == 5 and significant_digits(1e-8) == 1 and significant_digits(0.0) == 0
    assert round_significant(0.90001, 1) == 0.9
    assert complexity(p) == (p.length, 4, 5 + 1 + 5 + 1)   # 1.2345, 0.9, 0.90001, 0.5


def test_bad_arguments_and_bad_scores():
    p = seeds.load("sgd")
    with pytest.raises(ValueError, match="tolerance"):
        distill(p, lambda ps: [0.0] * len(ps), tolerance=-1)
    with pytest.raises(ValueError, match="max_evals"):
        distill(p, lambda ps: [0.0] * len(ps), max_evals=0)
    with pytest.raises(RuntimeError, match="returned 0 scores"):
        distill(p, lambda ps: [])
    # NaN is never within tolerance: nothing is accepted
    r = distill(seeds.load("adamw"), lambda ps: [0.0 if len(ps) == 1 else math.nan] * len(ps))
    assert r.steps == () and r.program == seeds.load("adamw")


def test_executor_scorer_trains_each_behaviour_once():
    trained = []

    def evaluate(jobs):
        trained.extend(j.text for j in jobs)
        return [Fitness(-float(len(j.text)) / 1000) for j in jobs]

    score = executor_scorer(LocalExecutor(evaluate), FitnessCache(), batch_size=2)
    a = dsl.parse("def f(g, lr):\n    return lr * (g + g)\n")
    b = dsl.parse("def f(g, lr):\n    return lr * (2 * g)\n")     # same behaviour as a
    c = seeds.load("sgd")
    s1 = score([a, b, c, a])
    assert len(trained) == 2 and s1[0] == s1[1] == s1[3] and score.trained == 2
    assert score([c, b]) == [s1[2], s1[1]] and len(trained) == 2


def test_result_text_reports_steps_code_and_math():
    p = dsl.parse(LION_JUNK)
    r = distill(p, faithful_score(p), tolerance=1e-3)
    text = result_text(r, math_timeout=20)
    assert f"score {r.base_score:+.4f} -> {r.score:+.4f}" in text
    assert text.count(" -> ") >= len(r.steps) and "1.0003" in text
    assert "def lion(" in text and "# math:" in text and "update = " in text


@pytest.mark.slow
def test_real_evaluator_on_quadratic(tmp_path):
    """The task evaluator (quadratic, in-process) through the CLI on a program file: the 1.0003
    factor and the (beta >= beta) statement go, the result stays within the tolerance and is
    written as a program file. ~10 s, plus ~40 s to tune AdamW unless OPTSEARCH_BASELINE_CACHE
    already holds it."""
    prog = tmp_path / "junk.py"
    prog.write_text("def sgdm(g, lr, m=0.0, *, beta=0.9):\n"
                    "    m = interp(g, m, beta) * (beta >= beta)\n"
                    "    return lr * m * 1.0003\n")
    out = tmp_path / "distilled.py"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.setdefault("OPTSEARCH_BASELINE_CACHE", str(tmp_path / "baselines.json"))
    r = subprocess.run([sys.executable, "-m", "evolve", "distill", str(prog), "--stages", "quadratic",
                        "--local", "--max-evals", "40", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    got = dsl.load(out)
    text = dsl.to_text(got)
    assert got.length <= 2 and "1.0003" not in text and ">=" not in text and "ge(" not in text
    head = r.stdout.splitlines()[0]
    before, after = (float(x) for x in head.split("score ")[1].split(" (")[0].split(" -> "))
    assert after >= before - 0.02 and "stopped: converged" in head
    assert "# math:" in r.stdout and "1.0003" in r.stdout   # the accepted step names it


def test_program_of_a_run_directory_and_a_file(tmp_path):
    import json

    from evolve.cli import main
    from evolve.config import SearchConfig
    from evolve.distill import program_of

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(SearchConfig(stages=(("quadratic",),)).to_dict()))
    with pytest.raises(ValueError, match="no hall of fame"):
        program_of(str(run))
    adamw, lion = seeds.load("adamw"), seeds.load("lion")
    (run / "hall_of_fame.json").write_text(json.dumps({"best": [{"id": 7, "flat": dsl.to_text(adamw)}]}))
    (run / "log.jsonl").write_text(json.dumps({"eval": 1, "id": 3, "program": dsl.to_text(lion)}) + "\n")
    p, cfg, label = program_of(str(run))
    assert p == adamw and cfg["stages"] == [["quadratic"]] and "id 7" in label
    assert program_of(str(run), 3)[0] == lion and program_of(str(run), 7)[0] == adamw
    with pytest.raises(ValueError, match="no program with id 5"):
        program_of(str(run), 5)
    f = tmp_path / "p.py"
    f.write_text(dsl.to_text(lion))
    assert program_of(str(f)) == (lion, {}, str(f))
    assert main(["distill", str(f), "3", "--local"]) == 2     # an id needs a run directory


@settings(max_examples=60, deadline=None)
@given(programs())
def test_every_candidate_of_any_program_is_valid_pruned_and_printable(p):
    p = dsl.prune(p)
    size = complexity(p)
    hashes = set()
    for q, what in candidates(p):
        assert dsl.prune(q) == q and dsl.parse(dsl.to_text(q)) == q, what
        assert q != p and q.hash not in hashes
        hashes.add(q.hash)
        if what.startswith("drop"):
            assert q.length < p.length, what
        else:
            assert complexity(q) < size, what
