"""Three task roles (search stages, validation, test), aggregates, and configs of old runs."""
import json

import pytest

from evolve.config import SearchConfig
from evolve.executor import LocalExecutor
from evolve.search import Search
from evolve.worker import suite_of
from tasks.results import AGGREGATES, aggregate
from tasks.stages import STAGES, SUITE, Suite, check_roles
from toy_fitness import TEST, VAL, RoleFitness, toy_evaluate, validation_of


def test_aggregates_by_hand():
    xs = [0.5, -1.0, 2.0, 0.25, -10.0]
    assert aggregate(xs, "mean") == pytest.approx(-8.25 / 5)
    assert aggregate(xs, "median") == 0.25
    assert aggregate(xs, "trimmed") == pytest.approx((0.5 + -1.0 + 0.25) / 3)   # without 2.0 and -10.0
    assert aggregate([1.0, 3.0], "median") == 2.0
    assert aggregate([1.0, 4.0], "trimmed") == 2.5                               # < 3 tasks: the mean
    assert aggregate([1.0, 4.0, 100.0], "trimmed") == 4.0                        # 3 tasks: the middle one
    assert aggregate([3.0, 3.0, -5.0, -5.0], "trimmed") == -1.0                  # one of each tie dropped
    assert AGGREGATES == ("mean", "median", "trimmed")
    with pytest.raises(ValueError, match="no task scores"):
        aggregate([], "mean")
    with pytest.raises(ValueError, match="'max'"):
        aggregate([1.0], "max")
    with pytest.raises(ValueError, match="aggregate 'max'"):
        SearchConfig(aggregate="max")


def test_default_suite_keeps_roles_apart():
    check_roles(SUITE)
    assert [STAGES[f"stage{k}"] for k in range(1, len(SUITE.stages) + 1)] == list(SUITE.stages)
    assert STAGES["validation"] == SUITE.validation and STAGES["test"] == SUITE.test
    assert SUITE.search_tasks == SUITE.stages[-1]     # each stage holds the one before: each task once
    # issue 12: >= 14 families over the roles, every task registered, validation and test hold
    # variants of search families (never a variant the search trains on) and families of their own
    from tasks.registry import exists, split_variant

    every = SUITE.search_tasks + SUITE.validation + SUITE.test
    assert all(exists(t) for t in every)
    family = {role: {split_variant(t)[0] for t in ts} for role, ts in
              (("search", SUITE.search_tasks), ("validation", SUITE.validation), ("test", SUITE.test))}
    assert len(set().union(*family.values())) >= 14
    for role in ("validation", "test"):
        own = family[role] - family["search"]
        shared = family[role] & family["search"]
        assert len(own) >= 3 and shared, (role, own, shared)
    # any number of stages
    check_roles(Suite((("a",), ("b",), ("a", "b", "c")), ("d",), ("e",)))


@pytest.mark.parametrize("suite, name, roles", [
    (Suite((("a", "b"),), ("b",), ("c",)), "b", "search task and a validation"),
    (Suite((("a",), ("x", "c")), ("v",), ("c",)), "c", "search task and a test"),
    (Suite((("a",),), ("v", "t"), ("t",)), "t", "validation task and a test"),
])
def test_a_task_in_two_roles_is_refused_by_name(suite, name, roles):
    with pytest.raises(ValueError, match=f"task '{name}' is both a {roles}"):
        check_roles(suite)


def test_variants_are_distinct_tasks():
    check_roles(Suite((("mlp_digits",),), ("mlp_digits@3",), ("mlp_digits@4",)))
    with pytest.raises(ValueError, match="'mlp_digits@3'"):
        check_roles(Suite((("mlp_digits@3",),), ("mlp_digits@3",), ()))


def test_search_start_checks_roles_before_making_a_run(tmp_path):
    cfg = SearchConfig(stages=(("quadratic",),), validation=("quadratic",), out=str(tmp_path / "run"),
                       progress=False)
    with pytest.raises(ValueError, match="task 'quadratic' is both a search task and a validation task"):
        Search.start(cfg, LocalExecutor(toy_evaluate))
    assert not (tmp_path / "run").exists()
    # a role the run does not use is not checked: no validation, or no test rows
    assert suite_of(cfg.replace(validate=False)).validation == ()
    assert suite_of(cfg.replace(test_top=0)).test == ()
    assert suite_of(SearchConfig()) == SUITE


def test_config_of_an_old_run_loads(tmp_path):
    old = SearchConfig(seed=3, stages=(("quadratic",),)).to_dict()
    for k in ("validate", "validation", "validation_repeats", "validation_top", "validation_patience", "test",
              "test_top", "test_repeats", "test_timeout", "aggregate"):
        old.pop(k)
    old.update(heldout=["conv_digits"], heldout_top=3, heldout_repeats=2, heldout_timeout=120.0)
    cfg = SearchConfig.from_run(json.loads(json.dumps(old)))
    assert (cfg.test, cfg.test_repeats, cfg.test_timeout) == (("conv_digits",), 2, 120.0)
    # an old run was scored by the mean (today's default is trimmed), and keeps it
    assert (cfg.seed, cfg.stages, cfg.aggregate, cfg.validate) == (3, (("quadratic",),), "mean", True)
    assert SearchConfig.from_dict(dict(old, heldout=["conv_digits"])).aggregate == SearchConfig().aggregate == "trimmed"
    assert SearchConfig.from_run(dict(old, heldout_top=0)).test_top == 0
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown config keys"):
        SearchConfig.from_dict({"heldout_topp": 1})


def test_won_and_lost_count_the_last_stage_reached():
    from evolve.candidate import Fitness

    stages = (("a", "b"), ("c", "d", "e"))
    f = Fitness(0.1, (0.2, 0.1), {"a": 0.5, "b": -0.1, "c": 0.3, "d": -0.2, "e": float("nan")})
    assert (f.won(stages), f.lost(stages)) == (1, 2)       # c won; d lost, e (nan) lost
    assert (f.won(), f.lost()) == (2, 3)                   # no stages: every task scored
    early = Fitness(0.2, (0.2,), {"a": 0.5, "b": 0.0})
    assert (early.won(stages), early.lost(stages)) == (1, 0)   # a tie with AdamW is neither


def _tiny_tasks():
    """Three tiny regressions whose scores differ, registered for the test."""
    import torch

    import tasks
    from tasks import Task

    names = []
    for k, scale in enumerate((0.1, 1.0, 30.0)):
        name = f"roles_tiny_{k}"

        def factory(size=1, device="cpu", dtype=torch.float32, scale=scale, name=name):
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(64, 6, generator=gen) * torch.logspace(0, 1, 6) * scale
            y = x @ torch.arange(6.0)
            return Task(name, init=lambda g: {"w": torch.zeros(6)},
                        loss=lambda p, batch: ((x.to(p["w"]) @ p["w"] - y.to(p["w"])) ** 2).mean(),
                        steps=60, device=device, dtype=dtype)

        tasks.register(name)(factory)
        names.append(name)
    return tuple(names)


def test_worker_stage_score_is_the_configured_aggregate(monkeypatch, tmp_path):
    import dsl
    import seeds
    import tasks
    from evolve.candidate import Job
    from evolve.worker import TaskEvaluator

    monkeypatch.setenv("OPTSEARCH_BASELINE_CACHE", str(tmp_path / "b.json"))
    names = _tiny_tasks()
    try:
        text = dsl.to_text(seeds.load("signum"))
        got = {how: TaskEvaluator(stages=(names,), device="cpu", aggregate=how)()([Job(1, text)])[0]
               for how in AGGREGATES}
        ts = got["mean"].task_scores
        assert set(ts) == set(names) and len(set(ts.values())) == 3     # three different task scores
        assert all(got[h].task_scores == ts for h in AGGREGATES)
        assert got["mean"].score == pytest.approx(sum(ts.values()) / 3)
        assert got["median"].score == sorted(ts.values())[1] == got["trimmed"].score
        with pytest.raises(ValueError, match="aggregate 'best'"):
            TaskEvaluator(stages=(names,), device="cpu", aggregate="best")()
    finally:
        for n in names:
            tasks.registry.unregister(n)


# ---------------------------------------------------------------------------- validation in a search
def role_config(tmp_path, **kw) -> SearchConfig:
    base = dict(population=8, tournament=3, max_evals=60, batch_size=3, checkpoint_every=7, seed=1,
                out=str(tmp_path / "run"), progress=False, stages=(("toy",),), validation=VAL, test=TEST,
                validation_top=3, test_repeats=2)
    base.update(kw)
    return SearchConfig(**base)


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_search_validates_new_bests_and_picks_the_winner_by_validation(tmp_path):
    fit = RoleFitness()
    cfg = role_config(tmp_path)
    res = Search.start(cfg, LocalExecutor(fit)).run()
    run = tmp_path / "run"
    log = {e["id"]: e for e in _lines(run / "log.jsonl")}
    vals = _lines(run / "validation.jsonl")
    during = [v for v in vals if not v["at_end"]]
    # every new best by search score (last stage) was validated once, in order, as it happened
    bests, top = [], float("-inf")
    for e in sorted(log.values(), key=lambda e: e["eval"]):
        if e["status"] == "ok" and e["score"] > top:
            top = e["score"]
            if e["fingerprint"] not in {log[b]["fingerprint"] for b in bests}:
                bests.append(e["id"])
    assert [v["id"] for v in during] == bests and len(bests) >= 3
    assert len({v["fingerprint"] for v in vals}) == len(vals)            # never a fingerprint twice
    for v in vals:
        assert v["score"] == pytest.approx(validation_of(v["search"])) and v["mean"] == pytest.approx(v["score"])
        assert (v["won"], v["lost"]) == (int(v["score"] + 0.1 > 0) + int(v["score"] - 0.1 > 0),
                                         int(v["score"] + 0.1 < 0) + int(v["score"] - 0.1 < 0))
        assert v["eval_submitted"] <= v["eval_done"] and v["status"] == "ok"
        assert set(v["task_scores"]) == set(VAL)
    # validation jobs: one stage of the validation tasks, their own seeds, ids apart from candidates'
    vjobs = [j for j in fit.jobs if j.stages == (VAL,)]
    assert len(vjobs) == len(vals) and all(j.id < -1000 and j.repeats == 1 for j in vjobs)
    # the end validated the hall of fame's top entries not yet validated
    hof_top = {r["fingerprint"] for r in json.loads((run / "hall_of_fame.json").read_text())["best"]}
    assert {v["fingerprint"] for v in vals if v["at_end"]} <= hof_top
    # winner: best by validation, not by search score
    winner = max(vals, key=lambda v: (v["score"], v["search"]))
    assert res.winner.id == winner["id"] and res.winner.fitness.score < res.stats["best_score"]
    hof = json.loads((run / "hall_of_fame.json").read_text())
    assert hof["order"] == "validation" and hof["best"][0]["id"] == winner["id"]
    scored = [r["validation"]["score"] for r in hof["best"] if r["validation"]]
    assert scored == sorted(scored, reverse=True) and hof["best"][0]["validation"]["score"] == winner["score"]
    assert res.stats["best_validation"] == winner["score"] and res.stats["validations"] == len(vals)
    # test: only the winner and the references, at test_repeats seeds; nothing chosen by it
    tjobs = [j for j in fit.jobs if j.stages == (TEST,)]
    assert len(tjobs) == 3 and all(j.repeats == 2 for j in tjobs)
    test = json.loads((run / "test.json").read_text())
    assert [r["name"] for r in test["rows"]] == [f"#{winner['id']}", "adamw", "lion"]
    by_test = max((v for v in vals), key=lambda v: -v["score"])
    assert by_test["id"] != winner["id"]        # choosing by test would have picked another program


def test_validation_patience_stops_a_meta_overfitting_search(tmp_path):
    cfg = role_config(tmp_path, max_evals=400, validation_patience=1, validation_top=0)
    res = Search.start(cfg, LocalExecutor(RoleFitness(validation=lambda s: -s))).run()
    vals = _lines(tmp_path / "run" / "validation.jsonl")
    assert vals[0]["search"] == 0.0 and vals[0]["score"] == 0.0       # the AdamW seed
    assert vals[1]["score"] < 0 and res.stats["meta_overfit_stop"]
    assert res.stats["evaluations"] < 400 and res.winner.fitness.score == 0.0
    free = Search.start(cfg.replace(out=str(tmp_path / "free"), validation_patience=0),
                        LocalExecutor(RoleFitness(validation=lambda s: -s))).run()
    assert free.stats["evaluations"] == 400 and not free.stats["meta_overfit_stop"]


def test_transient_validation_failures_are_retried_not_scored(tmp_path):
    from evolve.validation import MAX_TRIES

    fit = RoleFitness(flaky=1)
    Search.start(role_config(tmp_path, max_evals=20, test_top=0), LocalExecutor(fit)).run()
    vals = _lines(tmp_path / "run" / "validation.jsonl")
    assert vals[0]["status"] == "ok" and vals[0]["score"] == pytest.approx(0.0)
    assert len([j for j in fit.jobs if j.stages == (VAL,)]) == len(vals) + 1    # the timeout was sent again
    never = RoleFitness(flaky=10 ** 6)
    res = Search.start(role_config(tmp_path, out=str(tmp_path / "never"), max_evals=20, test_top=0),
                       LocalExecutor(never)).run()
    vals = _lines(tmp_path / "never" / "validation.jsonl")
    assert all(v["status"] == "timeout" and v["score"] is None for v in vals)
    assert len([j for j in never.jobs if j.stages == (VAL,)]) == MAX_TRIES * len(vals)
    assert res.stats["best_validation"] is None and not res.stats["meta_overfit_stop"]
    assert res.winner.fitness.score == res.stats["best_score"]          # no validation: the search's best


def test_kill_and_resume_keep_the_validation_state(tmp_path):
    import shutil

    run, copy = tmp_path / "run", tmp_path / "killed"

    class Snapshot(LocalExecutor):
        """Copies the run directory, as a kill would leave it, once a validation was checkpointed
        in flight and its line written after the checkpoint."""

        taken = False

        def wait(self, timeout=None):
            ck = run / "checkpoint.json"
            if not self.taken and ck.exists():
                state = json.loads(ck.read_text())
                vpath = run / "validation.jsonl"
                if state["validation"]["pending"] and state["validation"]["records"] \
                        and vpath.exists() and vpath.stat().st_size > state["validation_bytes"]:
                    shutil.copytree(run, copy)
                    Snapshot.taken = True
            return super().wait(timeout)

    cfg = role_config(tmp_path, checkpoint_every=1, checkpoint_seconds=0.0, max_evals=60)
    full = Search.start(cfg, Snapshot(RoleFitness())).run()
    assert Snapshot.taken
    ck = json.loads((copy / "checkpoint.json").read_text())
    cut = _lines(copy / "validation.jsonl")
    assert len(cut) == len(ck["validation"]["records"]) + 1          # one line past the checkpoint
    resumed = Search.resume(str(copy), LocalExecutor(RoleFitness()))
    assert [r.to_dict() for r in resumed.validator.records] == ck["validation"]["records"]
    assert [p.fingerprint for p in resumed.validator.queue] == [p["fingerprint"] for p in ck["validation"]["pending"]]
    assert (copy / "validation.jsonl").stat().st_size == ck["validation_bytes"]
    res = resumed.run()
    after = _lines(copy / "validation.jsonl")
    assert len({v["fingerprint"] for v in after}) == len(after)
    assert after[:len(cut) - 1] == cut[:-1]                          # the checkpointed lines, as they were
    redone = next(v for v in after if v["fingerprint"] == cut[-1]["fingerprint"])   # the cut line, validated again
    assert (redone["id"], redone["score"]) == (cut[-1]["id"], cut[-1]["score"])
    assert res.winner.id == max(after, key=lambda v: (v["score"], v["search"]))["id"]
    assert full.winner is not None


# ---------------------------------------------------------------------------- which score is which
def test_score_line_labels_each_role():
    from evolve.scores import score_line

    line = score_line({"mean": 0.42, "score": 0.3, "won": 5, "lost": 1}, {"score": 0.1, "mean": 0.1, "won": 4, "lost": 2},
                      {"score": 0.05, "mean": 0.05, "won": 4, "lost": 3}, "mean", stage=3)
    assert line == ("search +0.4200 (stage 3, 5 won 1 lost) | validation +0.1000 (4 won 2 lost) | "
                    "test +0.0500 (4 won 3 lost)")
    med = score_line({"mean": 0.42, "score": 0.3, "won": 5, "lost": 1}, {"score": 0.2, "mean": 0.1, "won": 4, "lost": 2},
                     None, "median", stage=3)
    assert med == "search +0.4200 (stage 3, 5 won 1 lost, median +0.3000) | validation +0.1000 (4 won 2 lost, median +0.2000)"
    assert score_line({"score": 0.1, "won": 1, "lost": 0}, None) == \
        "search +0.1000 (1 won 0 lost) | validation: not validated"
    assert score_line(None, {"score": None, "status": "timeout"}, {"score": None, "status": "lost"}) == \
        "validation: no score (timeout) | test: no score (lost)"


@pytest.fixture(scope="module")
def validated_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("roles")
    res = Search.start(role_config(out, aggregate="median"), LocalExecutor(RoleFitness())).run()
    return out / "run", res


def test_end_of_run_report_and_show_label_search_validation_test(validated_run, capsys):
    import io

    from evolve.cli import main
    from evolve.launch import report

    run, res = validated_run
    buf = io.StringIO()
    report(res, buf, simplify_timeout=1.0)
    text = buf.getvalue()
    first = next(line for line in text.splitlines() if line.startswith("# 1. "))
    val = res.validations[res.winner.id]
    assert first.startswith(f"# 1. winner: search {res.winner.fitness.score:+.4f} (stage 1, ")
    assert f"| validation {val['mean']:+.4f} ({val['won']} won {val['lost']} lost, median {val['score']:+.4f})" in first
    assert "| test " in first and "won" in first.split("| test ")[1]
    assert "test tasks (reported only" in text and "programs validated" in text
    assert main(["show", str(run), "--top", "2"]) == 0
    shown = capsys.readouterr().out
    assert shown.count("# search +") == 2 and "| validation " in shown and "| test " in shown
    assert "# validation tasks: val_a " in shown


def test_html_report_has_validation_and_test_sections(validated_run):
    from evolve.report_html import SECTIONS, build_report

    run, res = validated_run
    text = build_report(str(run), curves=False)
    for s in SECTIONS:
        assert f'<section id="{s}">' in text
    val = text[text.index('id="validation"'):text.index('id="test"')]
    assert val.count("<tr>") == 1 + len(_lines(run / "validation.jsonl"))
    test = text[text.index('id="test"'):text.index('id="curves"')]
    assert "reported only" in test and "winner" in test and "reference" in test and "test (median)" in test
    assert f"winner (id {res.winner.id}): search " in text and "(validation)" in text


def test_plot_draws_meta_overfitting(validated_run, tmp_path):
    import matplotlib.image as mpimg

    from evolve.cli import main

    run, _ = validated_run
    assert main(["plot", str(run), "--out", str(tmp_path)]) == 0
    png = tmp_path / "meta_overfit.png"
    assert png.stat().st_size > 10_000
    img = mpimg.imread(png)
    red = (img[..., 0] > 0.7) & (img[..., 1] < 0.3) & (img[..., 2] < 0.3)     # C3 markers and line
    assert red.sum() > 50


def test_an_old_run_still_resumes_shows_and_reports(tmp_path, capsys):
    """A run directory from before the roles: heldout_* config keys, a checkpoint without
    validation state, hall-of-fame rows without validation, heldout.json rows named #ID."""
    from evolve.cli import main
    from evolve.report_html import build_report

    cfg = role_config(tmp_path, max_evals=20, validate=False, test_top=0)
    Search.start(cfg, LocalExecutor(toy_evaluate)).run()
    run = tmp_path / "run"
    old = json.loads((run / "config.json").read_text())
    for k in ("validate", "validation", "validation_repeats", "validation_top", "validation_patience", "test",
              "test_top", "test_repeats", "test_timeout", "aggregate"):
        old.pop(k)
    old.update(heldout=["quadratic"], heldout_top=2, heldout_repeats=3, heldout_timeout=900.0)
    (run / "config.json").write_text(json.dumps(old))
    ck = json.loads((run / "checkpoint.json").read_text())
    for k in ("validation", "validation_bytes"):
        ck.pop(k)
    (run / "checkpoint.json").write_text(json.dumps(ck))
    hof = json.loads((run / "hall_of_fame.json").read_text())
    for r in hof["best"] + hof["pareto"]:
        for k in ("fingerprint", "mean", "won", "lost", "validation"):
            r.pop(k)
    hof.pop("order")
    (run / "hall_of_fame.json").write_text(json.dumps(hof))
    best = hof["best"][0]
    (run / "heldout.json").write_text(json.dumps({"tasks": ["quadratic"], "rows": [
        {"name": f"#{best['id']}", "score": 0.0625, "status": "ok", "reason": "", "task_scores": {"quadratic": 0.0625}},
        {"name": "adamw", "score": 0.0, "status": "ok", "reason": "", "task_scores": {"quadratic": 0.0}}]}))
    assert main(["show", str(run), "--top", "1"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("# search "))
    assert "| validation: not validated | test +0.0625" in line
    text = build_report(str(run), curves=False)
    assert "from before the three roles" in text and "+0.0625" in text
    res = Search.resume(str(run), LocalExecutor(RoleFitness()), max_evals=30).run()
    assert res.stats["evaluations"] == 30
    assert SearchConfig.from_dict(json.loads((run / "config.json").read_text())).test == ("quadratic",)


def test_validation_picks_by_its_own_aggregate_the_mean_by_default():
    """The 2026-12-01 runs: a trimmed validation score hid one catastrophic task (-1.6) and
    outranked a program that won all six; the winner is now chosen by the validation mean."""
    from evolve.candidate import Fitness
    from evolve.validation import Validator

    one_disaster = {"a": -1.586, "b": 0.014, "c": -0.029, "d": 0.154, "e": 0.445, "f": 0.233}
    all_won = {"a": 0.074, "b": 0.096, "c": 0.014, "d": 0.052, "e": 0.251, "f": 0.021}
    fit = lambda ts: Fitness(aggregate(list(ts.values()), "trimmed"), (0.0,), ts)  # noqa: E731  (the worker's score)
    trimmed, mean = Validator(("a",), aggregate="trimmed"), Validator(("a",), aggregate="mean")
    assert trimmed._score(fit(one_disaster), one_disaster) > trimmed._score(fit(all_won), all_won)
    assert mean._score(fit(one_disaster), one_disaster) < mean._score(fit(all_won), all_won)
    assert mean._score(fit(all_won), all_won) == pytest.approx(sum(all_won.values()) / 6)
    assert Validator(("a",))._score(fit(all_won), all_won) == fit(all_won).score   # None: the worker's
    assert SearchConfig().validation_aggregate == "mean" and SearchConfig().aggregate == "trimmed"
    assert SearchConfig.from_run({"aggregate": "trimmed"}).validation_aggregate == ""   # older runs: unchanged
    with pytest.raises(ValueError, match="validation_aggregate"):
        SearchConfig(validation_aggregate="max")
