"""The task suite: registry, data, schedules, every built-in task, user-defined tasks."""
import doctest
import math

import pytest
import torch

import dsl
import tasks
from tasks.data import MinibatchIndex, stdlib_text

torch.set_num_threads(1)

ADAMW = tasks.adamw_program()
BUILTIN = ["autoencoder_digits", "char_lm", "conv_digits", "logreg_digits", "mlp_digits", "quadratic",
           "rosenbrock", "zipf_bag"]


def test_builtin_tasks_registered():
    assert set(BUILTIN) <= set(tasks.names())
    assert tasks.names() == sorted(tasks.names())
    with pytest.raises(KeyError, match="unknown task"):
        tasks.get("no_such_task")


def test_get_caches_per_config():
    a = tasks.get("logreg_digits")
    assert tasks.get("logreg_digits", size=1, device="cpu") is a
    assert tasks.get("logreg_digits", steps=50) is not a
    assert a.config["size"] == 1 and a.config["dtype"] == "float32" and "device" not in a.config
    assert tasks.get("logreg_digits", dtype=torch.float64).init_params(0)["w"].dtype == torch.float64


@pytest.mark.parametrize("name", BUILTIN)
def test_task_builds_and_adamw_learns(name):
    task = tasks.get(name)
    assert task.description and task.steps > 0 and task.num_params > 0
    p0, p0b, p1 = task.init_params(0), task.init_params(0), task.init_params(1)
    assert all(v.ndim >= 1 and v.dtype == torch.float32 for v in p0.values())
    assert all(torch.equal(p0[k], p0b[k]) for k in p0)
    assert any(not torch.equal(p0[k], p1[k]) for k in p0)
    b1, b2 = task.batch(3, 0), task.batch(3, 0)
    for x, y in zip(_leaves(b1), _leaves(b2)):
        assert torch.equal(x, y)
    assert math.isfinite(float(task.loss(p0, b1))) and math.isfinite(float(task.validation_loss(p0)))
    steps = min(task.steps, 60)
    (out,) = tasks.train_batched(task, [tasks.Run(ADAMW, 1e-2)], steps=steps,
                                 rules=tasks.StopRules(hopeless_fraction=0.0))
    assert out.status == "ok", out.reason
    assert out.curve[0][0] == 0 and out.curve[-1][0] == steps
    assert out.curve[-1][1] < 0.9 * out.curve[0][1]


def test_size_scales_models():
    for name in ["mlp_digits", "conv_digits", "quadratic", "zipf_bag", "char_lm"]:
        assert tasks.get(name, size=2).num_params > tasks.get(name).num_params


def _leaves(b):
    if b is None:
        return []
    return [b] if isinstance(b, torch.Tensor) else [t for x in b for t in _leaves(x)]


def test_minibatch_index_is_a_function_of_seed_and_step():
    idx = MinibatchIndex(10, 4, torch.device("cpu"))
    first = [idx.index(s, 0).tolist() for s in range(6)]
    epoch = sorted(first[0] + first[1] + idx.index(2, 0).tolist()[:2])
    assert epoch == list(range(10))  # one permutation per epoch
    fresh = MinibatchIndex(10, 4, torch.device("cpu"))
    assert fresh.index(5, 0).tolist() == first[5]  # built lazily, same sequence
    assert [idx.index(s, 1).tolist() for s in range(6)] != first


def test_stdlib_text_is_ascii_and_deterministic():
    text = stdlib_text()
    assert len(text) > 20_000 and text.isascii()
    assert stdlib_text() == text


def test_schedules():
    s = tasks.WarmupCosine(warmup=0.05)
    assert s.factor(0, 100) == pytest.approx(0.2)
    assert s.factor(4, 100) == pytest.approx(1.0)
    vals = [s.factor(i, 100) for i in range(5, 100)]
    assert all(a >= b for a, b in zip(vals, vals[1:])) and vals[-1] < 0.01
    assert tasks.Constant().factor(7, 10) == 1.0


def test_stages():
    for stage in tasks.STAGES.values():
        assert all(tasks.registry.exists(t) for t in stage)
    assert set(tasks.STAGES["stage1"]) <= set(tasks.STAGES["stage2"]) <= set(tasks.STAGES["stage3"])
    assert not set(tasks.STAGES["test"]) & set(tasks.STAGES["stage3"])
    assert not set(tasks.STAGES["validation"]) & (set(tasks.STAGES["stage3"]) | set(tasks.STAGES["test"]))
    assert tasks.resolve("stage1") == tasks.STAGES["stage1"]
    assert tasks.resolve("quadratic") == ("quadratic",)
    assert tasks.resolve(["a", "b"]) == ("a", "b")


def test_registry_docstring_example():
    import tasks.registry

    res = doctest.testmod(tasks.registry)
    assert res.attempted > 0 and res.failed == 0


@pytest.fixture
def tiny_task():
    @tasks.register("test_tiny")
    def test_tiny(size=1, device="cpu", dtype=torch.float32, steps=120):
        scale = torch.logspace(-1, 1, 8 * size)
        return tasks.Task(
            name="test_tiny", description="badly scaled 0.5 sum(s (w - 1)^2)",
            init=lambda gen: {"w": torch.randn(8 * size, generator=gen)},
            loss=lambda p, batch: 0.5 * (scale.to(p["w"]) * (p["w"] - 1.0) ** 2).sum(),
            steps=steps, schedule=tasks.WarmupCosine(), device=device, dtype=dtype)

    yield "test_tiny"
    tasks.unregister("test_tiny")


def test_user_defined_task(tiny_task):
    assert tiny_task in tasks.names()
    t = tasks.get(tiny_task)
    assert t.num_params == 8 and tasks.get(tiny_task, size=2).num_params == 16
    lion = dsl.parse("def lion(w, g, lr, m=0.0):\n    u = sign(interp(g, m, 0.9))\n"
                     "    m = interp(g, m, 0.99)\n    return lr * u\n")
    adamw_r, lion_r = tasks.evaluate([ADAMW, lion], [tiny_task])
    assert adamw_r.results[0].status == "ok" and adamw_r.aggregate == 0.0
    assert lion_r.results[0].status == "ok" and math.isfinite(lion_r.aggregate)
    tasks.unregister(tiny_task)
    assert tiny_task not in tasks.names()
