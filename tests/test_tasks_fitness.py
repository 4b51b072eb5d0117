"""Fitness: scores, failures (nan, diverged, hopeless, error), determinism, lr grid, baseline cache."""
import json
import math

import pytest
import torch

import dsl
import seeds
import tasks
import tasks.baselines as baseline_mod
from tasks import WORST_SCORE, EvalConfig

torch.set_num_threads(1)

ADAMW = tasks.adamw_program()
LION = dsl.parse("def lion(w, g, lr, m=0.0, *, beta1=0.9, beta2=0.99, wd=0.0):\n"
                 "    u = sign(interp(g, m, beta1))\n    m = interp(g, m, beta2)\n    return lr * (u + wd * w)\n")
NAN = dsl.parse("def bad(g, lr):\n    return g / 0 * lr\n")
ASCENT = dsl.parse("def ascent(g, lr):\n    return -10.0 * lr * g\n")
IDLE = dsl.parse("def idle(g, lr):\n    return 0.0 * lr * g\n")
FAST = EvalConfig(steps=80)


def _strip(d):
    """A result dict without wall times."""
    if isinstance(d, dict):
        return {k: _strip(v) for k, v in d.items() if k != "seconds"}
    if isinstance(d, list):
        return [_strip(v) for v in d]
    return d


def test_score_formula():
    assert tasks.score(1.0, 1.0) == 0.0
    assert tasks.score(0.5, 1.0) == pytest.approx(math.log(2))
    assert tasks.score(2.0, 1.0) == pytest.approx(-math.log(2))
    assert tasks.score(1e-9, 1.0) == tasks.SCORE_CLIP
    assert tasks.score(1e9, 1.0) == -tasks.SCORE_CLIP
    assert tasks.score(0.0, 0.0) == 0.0
    assert tasks.score(0.0, 1.0, floor=1.0) == pytest.approx(math.log(2))
    for bad in (math.nan, math.inf):
        assert tasks.score(bad, 1.0) == WORST_SCORE
    assert WORST_SCORE < -tasks.SCORE_CLIP


def test_adamw_scores_zero_and_results_serialize():
    (r,) = tasks.evaluate([ADAMW], ["quadratic", "logreg_digits"], FAST)
    assert r.aggregate == 0.0 and r.ok
    assert set(r.scores) == {"quadratic", "logreg_digits"}
    qr = r.result("quadratic")
    assert qr.lr_multiplier == 1.0 and qr.status == "ok" and qr.reason == "" and qr.steps == 80
    assert [m for m, _, _ in qr.grid] == list(tasks.DEFAULT_LR_MULTIPLIERS)
    d = r.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False))["scores"] == r.scores
    assert d["results"][0]["curve"][0][0] == 0


def test_nan_program_gets_worst_score_without_raising():
    nan_r, adamw_r = tasks.evaluate([NAN, ADAMW], ["logreg_digits"], FAST)
    res = nan_r.results[0]
    assert res.status == "nan" and res.score == WORST_SCORE and nan_r.aggregate == WORST_SCORE
    assert "loss is nan" in res.reason and res.steps < 80
    assert adamw_r.aggregate == 0.0  # not poisoned by the NaN copies in its batch
    json.dumps(nan_r.to_dict(), allow_nan=False)


def test_diverging_program_gets_worst_score():
    (r,) = tasks.evaluate([ASCENT], ["quadratic"], FAST)
    statuses = [s for _, s, _ in r.results[0].grid]
    assert r.results[0].status != "ok" and r.aggregate == WORST_SCORE
    assert "diverged" in statuses and "ok" not in statuses


class _Boom(dsl.CompiledProgram):
    def apply(self, *args, **kwargs):
        raise RuntimeError("boom in apply")


class _BoomInit(dsl.CompiledProgram):
    def init_state(self, w):
        raise RuntimeError("boom in init_state")


@pytest.mark.parametrize("cls", [_Boom, _BoomInit])
def test_program_that_raises_gets_worst_score(cls):
    p = dsl.parse("def boom(g, lr, m=0.0):\n    m = interp(g, m, 0.5)\n    return lr * m * 3.0\n")
    p._cache["compiled"] = cls(p)  # what dsl.compile returns for it from now on
    boom_r, adamw_r = tasks.evaluate([p, ADAMW], ["logreg_digits"], FAST)
    res = boom_r.results[0]
    assert res.status == "error" and res.score == WORST_SCORE and "boom in" in res.reason
    assert adamw_r.aggregate == 0.0


def test_hopeless_program_stops_early():
    (r,) = tasks.evaluate([IDLE], ["logreg_digits"], FAST)
    res = r.results[0]
    assert res.status == "hopeless" and res.score == WORST_SCORE
    assert res.steps <= 0.3 * 80 and "initial" in res.reason
    # Measured against a reference curve: far behind it at the checkpoint -> hopeless.
    task = tasks.get("logreg_digits")
    sgd = dsl.parse("def sgd(g, lr):\n    return lr * g\n")
    ref = {s: 1e-3 for s in task.eval_steps(80)}
    (o,) = tasks.train_batched(task, [tasks.Run(sgd, 0.5)], steps=80, reference=ref)
    assert o.status == "hopeless" and "reference" in o.reason
    (o,) = tasks.train_batched(task, [tasks.Run(sgd, 0.5)], steps=80)
    assert o.status == "ok"


def test_same_seed_same_score():
    progs = [LION, ADAMW]
    first = tasks.evaluate(progs, ["quadratic", "zipf_bag"], FAST)
    baseline_mod.clear_memory_cache()  # recompute the baselines too
    second = tasks.evaluate(progs, ["quadratic", "zipf_bag"], FAST)
    for a, b in zip(first, second):
        assert _strip(a.to_dict()) == _strip(b.to_dict())
    other = tasks.evaluate(progs, ["quadratic"], EvalConfig(steps=80, seed=1))
    assert other[0].results[0].curve != first[0].results[0].curve


def test_lr_grid_picks_smaller_lr_for_lion():
    adamw_r, lion_r = tasks.evaluate([ADAMW, LION], ["logreg_digits"])
    assert adamw_r.results[0].lr_multiplier == 1.0
    assert lion_r.results[0].status == "ok"
    assert lion_r.results[0].lr_multiplier < adamw_r.results[0].lr_multiplier


PER_TENSOR = dsl.parse("def normed(g, lr, m=0.0):\n    m = interp(g, m, 0.9)\n    return lr * m / (rms(m) + 1e-8)\n")


def test_evaluate_batched_equals_one_at_a_time():
    # elementwise programs step all tensors at once, PER_TENSOR (a reduction) tensor by tensor
    progs = [ADAMW, LION, NAN, IDLE, PER_TENSOR]
    batched = tasks.evaluate(progs, ["mlp_digits"], FAST)
    single = tasks.evaluate(progs, ["mlp_digits"], EvalConfig(steps=80, max_batch=1))
    for a, b in zip(batched, single):
        assert _strip(a.to_dict()) == _strip(b.to_dict())


def test_baseline_disk_cache(tmp_path, monkeypatch):
    path = str(tmp_path / "sub" / "baselines.json")
    task = tasks.get("quadratic", steps=60)
    b = tasks.baseline(task, path=path)
    data = json.loads(open(path).read())
    assert list(data) == [b.key] and b.key.startswith("quadratic-")
    assert b.lr in task.lr_grid and b.loss == min(l for _, s, l in b.grid if s == "ok")
    baseline_mod.clear_memory_cache()

    def no_tuning(*a, **k):
        raise AssertionError("should have been read from disk")

    monkeypatch.setattr(baseline_mod, "_tune", no_tuning)
    assert tasks.baseline(task, path=path) == b
    monkeypatch.setenv(baseline_mod.CACHE_ENV, path)
    baseline_mod.clear_memory_cache()
    assert tasks.baseline(task) == b
    # A different configuration is a different key.
    key2, _ = baseline_mod.baseline_key(task, seed=1, steps=60, final_evals=3, rules=tasks.StopRules())
    assert key2 != b.key


def test_seed_adamw_with_named_hyperparameters_scores_zero():
    (r,) = tasks.evaluate([seeds.load("adamw")], ["logreg_digits"], FAST)
    assert r.aggregate == 0.0  # same arithmetic as the reference, bit for bit


def test_repeats_average_per_seed_scores():
    progs = [LION, ADAMW]
    cfg = EvalConfig(steps=80, repeats=2)
    both = tasks.evaluate(progs, ["quadratic"], cfg)
    seed0 = tasks.evaluate(progs, ["quadratic"], EvalConfig(steps=80, lr_multipliers=cfg.lr_multipliers))
    seed1 = tasks.evaluate(progs, ["quadratic"], EvalConfig(steps=80, seed=1))
    task = tasks.get("quadratic")
    for j in range(len(progs)):
        r = both[j].results[0]
        i = cfg.lr_multipliers.index(r.lr_multiplier)
        # the score at the chosen multiplier is the mean of the two seeds' scores there
        per_seed = []
        for res, seed in ((seed0, 0), (seed1, 1)):
            b = cfg.baseline(task, seed=seed)
            loss = res[j].results[0].grid[i][2]
            per_seed.append(tasks.score(loss, b.loss, task.loss_floor))
        assert r.score == pytest.approx(sum(per_seed) / 2, abs=1e-12)
        assert r.loss == pytest.approx((seed0[j].results[0].grid[i][2] + seed1[j].results[0].grid[i][2]) / 2)
        # and no other multiplier has a better mean
        for k in range(len(cfg.lr_multipliers)):
            others = [tasks.score(res[j].results[0].grid[k][2], cfg.baseline(task, seed=s).loss, task.loss_floor)
                      for res, s in ((seed0, 0), (seed1, 1))]
            assert sum(others) / 2 <= r.score + 1e-12
    assert both[1].results[0].score >= 0.0  # AdamW at multiplier 1 reproduces both baselines


def test_repeats_fail_if_any_seed_fails():
    (r,) = tasks.evaluate([NAN], ["quadratic"], EvalConfig(steps=40, repeats=2))
    assert r.results[0].score == WORST_SCORE and r.results[0].status == "nan"
    with pytest.raises(ValueError, match="repeats"):
        EvalConfig(repeats=0)


def test_evaluate_with_given_baselines_uses_only_them(monkeypatch):
    cfg = EvalConfig(steps=80, repeats=2)
    task = cfg.task("quadratic")
    given = {b.key: b for b in (cfg.baseline(task, seed=s) for s in cfg.seeds)}
    assert [b.seed for b in given.values()] == [0, 1]
    expect = tasks.evaluate([LION, ADAMW], ["quadratic"], cfg)
    baseline_mod.clear_memory_cache()

    def no_tuning(*a, **k):
        raise AssertionError("tuned although baselines were given")

    monkeypatch.setattr(baseline_mod, "_tune", no_tuning)
    got = tasks.evaluate([LION, ADAMW], ["quadratic"], cfg, baselines=given)
    assert [_strip(r.to_dict()) for r in got] == [_strip(r.to_dict()) for r in expect]
    # a baseline not given is an error, even one in this process's memory or file
    baseline_mod.remember(given.values())
    with pytest.raises(baseline_mod.MissingBaseline, match="'quadratic' seed 2 .*device cpu, dtype float32"):
        tasks.evaluate([LION], ["quadratic"], EvalConfig(steps=80, seed=1, repeats=2), baselines=given)
    b = next(iter(given.values()))
    assert tasks.Baseline.from_dict(json.loads(json.dumps(b.to_dict()))) == b
    old = {k: v for k, v in b.to_dict().items() if k != "seed"}  # written before Baseline.seed
    assert tasks.Baseline.from_dict(old).seed == 0
