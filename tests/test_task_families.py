"""The task families of issue 12 (recurrent, overfitting, deep narrow) and their seeded variants."""
import math

import pytest
import torch

import dsl
import seeds
import tasks
from tasks.baselines import baseline_key
from tasks.variants import draw

torch.set_num_threads(1)

ADAMW = tasks.adamw_program()
FAMILIES = ["deep_narrow_mlp", "gru_charlm", "overfit_digits"]
LION = dsl.parse("def lion(w, g, lr, m=0.0):\n    u = sign(interp(g, m, 0.9))\n    m = interp(g, m, 0.99)\n"
                 "    return lr * u\n")
NAN = dsl.parse("def bad(g, lr):\n    return g / 0 * lr\n")
NO_DECAY = dsl.parse(tasks.ADAMW_TEXT.replace(" + 0.01 * w", ""))


def _leaves(b):
    if b is None:
        return []
    return [b] if isinstance(b, torch.Tensor) else [t for x in b for t in _leaves(x)]


def test_families_registered_and_in_the_suite():
    assert set(FAMILIES) <= set(tasks.names())
    suite = tasks.stages.SUITE
    placed = {n.partition("@")[0] for n in suite.search_tasks + suite.validation + suite.test}
    assert set(FAMILIES) <= placed


@pytest.mark.parametrize("name", FAMILIES)
def test_family_builds_and_adamw_learns(name):
    task = tasks.get(name)
    assert task.description and task.num_params > 0 and task.config["variant"] == 0
    p0, p0b, p1 = task.init_params(0), task.init_params(0), task.init_params(1)
    assert all(v.ndim >= 1 and v.dtype == torch.float32 for v in p0.values())
    assert all(torch.equal(p0[k], p0b[k]) for k in p0)
    assert any(not torch.equal(p0[k], p1[k]) for k in p0)
    for x, y in zip(_leaves(task.batch(3, 0)), _leaves(task.batch(3, 0))):
        assert torch.equal(x, y)
    assert any(not torch.equal(x, y) for x, y in zip(_leaves(task.batch(3, 0)), _leaves(task.batch(3, 1))))
    (out,) = tasks.train_batched(task, [tasks.Run(ADAMW, 1e-2)], steps=60,
                                 rules=tasks.StopRules(hopeless_fraction=0.0))
    assert out.status == "ok", out.reason
    assert out.curve[-1][1] < 0.8 * out.curve[0][1]


@pytest.mark.parametrize("name,dtype", [("gru_charlm", torch.float32), ("overfit_digits", torch.float32),
                                        ("deep_narrow_mlp", torch.float32), ("deep_narrow_mlp", torch.float64)])
def test_batched_equals_alone(name, dtype):
    task = tasks.get(name, dtype=dtype)
    runs = [tasks.Run(p, lr) for p in (ADAMW, LION, NAN) for lr in (3e-3, 3e-2)]
    steps, rules = (20 if name == "gru_charlm" else 40), tasks.StopRules(hopeless_fraction=0.0)
    batched = tasks.train_batched(task, runs, steps=steps, rules=rules)
    for run, b in zip(runs, batched):
        (s,) = tasks.train_batched(task, [run], steps=steps, rules=rules)
        assert (b.status, b.reason, b.steps) == (s.status, s.reason, s.steps)
        assert repr(b.curve) == repr(s.curve)  # bit for bit (float repr round-trips; nan == nan)
        assert repr(b.loss) == repr(s.loss)
    assert [o.status for o in batched][4:] == ["nan", "nan"]
    assert [o.status for o in batched][:2] == ["ok", "ok"]


def test_overfit_digits_overfits_without_weight_decay():
    """The task's point: fitting 100 examples for long, the validation loss passes a minimum and
    rises; decoupled weight decay (the same rule with decay 0.3) ends lower than without."""
    task = tasks.get("overfit_digits")
    strong = dsl.parse(tasks.ADAMW_TEXT.replace("0.01 * w", "0.3 * w"))
    plain, decayed = tasks.train_batched(task, [tasks.Run(NO_DECAY, 3e-3), tasks.Run(strong, 3e-3)],
                                         rules=tasks.StopRules(hopeless_fraction=0.0))
    assert plain.status == decayed.status == "ok"
    best = min(v for _, v in plain.curve)
    assert plain.curve[-1][1] > 1.05 * best  # rose after its minimum
    assert decayed.loss < plain.loss


def test_deep_narrow_mlp_init_scale_and_shapes():
    """Weights are N(0, init_scale^2 / fan_in); variant 3 is 8 layers of 16 relu units at scale 0.7."""
    p0 = tasks.get("deep_narrow_mlp").init_params(0)
    assert len([k for k in p0 if k.startswith("w")]) == 10 and p0["w9"].shape == (24,)
    assert abs(float(p0["w1"].std()) * math.sqrt(24) - 1.0) < 0.1
    v3 = tasks.get("deep_narrow_mlp", variant=3)
    assert "8x16 (relu" in v3.description and "init x0.7" in v3.description
    p3 = v3.init_params(0)
    assert len([k for k in p3 if k.startswith("w")]) == 8 and p3["w1"].shape == (16, 16)
    assert abs(float(p3["w1"].std()) * math.sqrt(16) - 0.7) < 0.1


# ---------------------------------------------------------------- variants
def test_draw_defaults_and_errors():
    axes = dict(a=(1, 2, 3), b=("x", "y"))
    assert draw("fam", 0, **axes) == {"a": 1, "b": "x"}
    drawn = [draw("fam", v, **axes) for v in range(1, 30)]
    assert all(d != {"a": 1, "b": "x"} for d in drawn)  # a variant is never the default task
    assert drawn == [draw("fam", v, **axes) for v in range(1, 30)]
    assert drawn != [draw("other", v, **axes) for v in range(1, 30)]  # seeded by family too
    assert draw("fam", 5, a=(1,)) == {"a": 1}  # nothing to vary
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="variant must be an int >= 0"):
            draw("fam", bad, **axes)
    with pytest.raises(ValueError, match="axis 'a' has no choices"):
        draw("fam", 1, a=())


@pytest.mark.parametrize("name", FAMILIES)
def test_variants_differ_and_are_reproducible(name):
    base = tasks.get(name)
    vs = [tasks.get(name, variant=v) for v in (1, 2, 3)]
    rules = tasks.StopRules()
    keys = {baseline_key(t, seed=0, steps=t.steps, final_evals=1, rules=rules)[0] for t in [base] + vs}
    assert len(keys) == 4
    assert all(t.config["variant"] == v for t, v in zip(vs, (1, 2, 3)))
    fingerprints = {t.fingerprint for t in [base] + vs}
    assert len(fingerprints) == 4
    # rebuilt from scratch (not the registry's cache), a variant is the same task
    again = tasks.registry.factory(name)(variant=2)
    assert again.description == vs[1].description
    p, q = again.init_params(0), vs[1].init_params(0)
    assert p.keys() == q.keys() and all(torch.equal(p[k], q[k]) for k in p)
    for x, y in zip(_leaves(again.val_batch), _leaves(vs[1].val_batch)):
        assert torch.equal(x, y)
    for x, y in zip(_leaves(again.batch(7, 0)), _leaves(vs[1].batch(7, 0))):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="variant"):
        tasks.registry.factory(name)(variant=-1)


@pytest.mark.parametrize("name", FAMILIES)
def test_bfloat16_and_size_2_build(name):
    small, big = tasks.get(name), tasks.get(name, size=2)
    assert big.num_params > small.num_params
    bf = tasks.get(name, dtype=torch.bfloat16)
    p = bf.init_params(0)
    assert all(v.dtype == torch.bfloat16 for v in p.values())
    assert math.isfinite(float(bf.loss(p, bf.batch(0, 0)))) and math.isfinite(float(bf.validation_loss(p)))
    (out,) = tasks.train_batched(bf, [tasks.Run(ADAMW, 1e-2)], steps=5, rules=tasks.StopRules(hopeless_fraction=0))
    assert out.status == "ok", out.reason


def test_variant_scores_against_its_own_tuned_adamw():
    """The fitness path on a variant: its baseline is tuned on the variant (not the default task),
    and AdamW scores 0 against it while Lion, a different rule, does not."""
    cfg = tasks.EvalConfig(steps=60)
    v1, v0 = tasks.get("deep_narrow_mlp", variant=1), tasks.get("deep_narrow_mlp")
    b1, b0 = cfg.baseline(v1), cfg.baseline(v0)
    assert b1.key != b0.key and b1.loss != b0.loss
    adamw, lion = tasks.evaluate_task([ADAMW, LION], v1, cfg, b1)
    assert adamw.score == pytest.approx(0.0, abs=1e-9)
    assert lion.score != 0.0 and math.isfinite(lion.score)


def test_a_variant_is_named_in_stages_as_family_at_n():
    from tasks import EvalConfig, evaluate, registry

    t3 = registry.get("deep_narrow_mlp@3")
    assert t3.name == "deep_narrow_mlp@3" and t3.config["variant"] == 3
    assert t3.fingerprint == registry.get("deep_narrow_mlp", variant=3).fingerprint != \
        registry.get("deep_narrow_mlp").fingerprint
    # every built-in family now has variants; a factory without a `variant` argument has none
    registry.register("no_variants")(lambda size=1, device="cpu", dtype=torch.float32: tasks.Task(
        name="no_variants", init=lambda g: {"w": torch.zeros(2)}, loss=lambda p, b: (p["w"] ** 2).sum(), steps=5))
    try:
        assert registry.exists("deep_narrow_mlp@3") and registry.exists("quadratic@1")
        assert registry.exists("no_variants") and not registry.exists("no_variants@1")
        for bad in ("no_variants@1", "deep_narrow_mlp@x", "nope@2"):
            with pytest.raises(KeyError):
                registry.get(bad)
    finally:
        registry.unregister("no_variants")
    cfg = EvalConfig(steps=40, lr_multipliers=(1.0,))
    (r,) = evaluate([seeds.load("adamw")], ["deep_narrow_mlp@3", "deep_narrow_mlp"], cfg)
    assert set(r.scores) == {"deep_narrow_mlp@3", "deep_narrow_mlp"}   # two variants, two scores
    assert all(abs(v) < 1e-9 for v in r.scores.values())                 # AdamW vs AdamW tuned on each
