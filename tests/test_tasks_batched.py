"""The batched trainer: K copies side by side give exactly the one-at-a-time results."""
import pytest
import torch

import dsl
import tasks

torch.set_num_threads(1)

PROGRAMS = [
    tasks.adamw_program(),
    dsl.parse("def lion(w, g, lr, m=0.0):\n    u = sign(interp(g, m, 0.9))\n    m = interp(g, m, 0.99)\n"
              "    return lr * u\n"),
    dsl.parse("def bad(g, lr):\n    return g / 0 * lr\n"),
    # per-tensor reductions must stay per copy
    dsl.parse("def nrm(w, g, lr, m=0.0):\n    m = interp(g, m, 0.9)\n"
              "    return lr * m / (norm(m) + 1e-8) + lr * 0.01 * w * mean(abs(g))\n"),
]
RUNS = [tasks.Run(p, lr) for p in PROGRAMS for lr in (3e-3, 3e-2)]


@pytest.mark.parametrize("name,dtype", [("mlp_digits", torch.float32), ("quadratic", torch.float32),
                                        ("zipf_bag", torch.float32), ("conv_digits", torch.float64),
                                        ("rosenbrock", torch.float64)])
def test_batched_equals_sequential(name, dtype):
    task = tasks.get(name, dtype=dtype)
    batched = tasks.train_batched(task, RUNS, steps=30)
    for run, b in zip(RUNS, batched):
        (s,) = tasks.train_batched(task, [run], steps=30)
        assert (b.status, b.reason, b.steps) == (s.status, s.reason, s.steps)
        assert b.curve == s.curve  # bit for bit
        assert b.loss == s.loss or (b.loss != b.loss and s.loss != s.loss)
    statuses = [o.status for o in batched]
    assert statuses[4:6] == ["nan", "nan"]
    assert statuses[:2] != ["nan", "nan"]


def test_failed_copies_leave_the_batch():
    task = tasks.get("logreg_digits")
    runs = [tasks.Run(PROGRAMS[2], 1e-2), tasks.Run(PROGRAMS[0], 1e-2), tasks.Run(PROGRAMS[2], 1e-3)]
    out = tasks.train_batched(task, runs, steps=40, rules=tasks.StopRules(check_every=1))
    assert [o.status for o in out] == ["nan", "ok", "nan"]
    assert out[0].steps == 1 and len(out[0].curve) == 1  # step 0's update made the weights nan
    assert out[1].steps == 40 and len(out[1].curve) == len(task.eval_steps(40))


def test_same_program_object_at_many_lrs_is_one_group():
    task = tasks.get("quadratic")
    runs = [tasks.Run(PROGRAMS[0], lr) for lr in (1e-3, 1e-2, 1e-1)]
    out = tasks.train_batched(task, runs, steps=50, rules=tasks.StopRules(hopeless_fraction=0))
    losses = [o.loss for o in out]
    assert all(o.status == "ok" for o in out) and len(set(losses)) == 3
