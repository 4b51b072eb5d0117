"""Three task roles (search stages, validation, test), aggregates, and configs of old runs."""
import json

import pytest

from evolve.config import SearchConfig
from evolve.executor import LocalExecutor
from evolve.search import Search
from evolve.worker import suite_of
from tasks.results import AGGREGATES, aggregate
from tasks.stages import STAGES, SUITE, Suite, check_roles
from toy_fitness import toy_evaluate


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
    assert STAGES["stage1"] == SUITE.stages[0] and STAGES["stage2"] == SUITE.stages[1]
    assert STAGES["validation"] == ("deep_narrow_mlp", "gru_charlm") and STAGES["test"] == ("conv_digits", "char_lm")
    assert SUITE.search_tasks == SUITE.stages[1]      # stage 1 is inside stage 2: each task once
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
    cfg = SearchConfig.from_dict(json.loads(json.dumps(old)))
    assert (cfg.test, cfg.test_repeats, cfg.test_timeout) == (("conv_digits",), 2, 120.0)
    assert (cfg.seed, cfg.stages, cfg.aggregate, cfg.validate) == (3, (("quadratic",),), "mean", True)
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
