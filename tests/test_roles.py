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
