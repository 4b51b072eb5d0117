"""Variants of the original task families (issue 12) and the quadratic whose optimum left the origin.

Variant 0 of every family but the quadratic is the task as it was before variants: its initial
weights, validation data, training batches, size, description and a short AdamW run match
numbers recorded from the code before the change (commit 1e9843c). Variants 1-5 are
deterministic, differ from variant 0 and from each other in what training sees, and train.
"""
import dataclasses
import hashlib

import pytest
import torch

import dsl
import tasks
from tasks.registry import factory

torch.set_num_threads(1)

ADAMW = tasks.adamw_program()
FAMILIES = ["quadratic", "rosenbrock", "logreg_digits", "mlp_digits", "conv_digits", "autoencoder_digits",
            "char_lm", "zipf_bag"]
DECAY = dsl.parse("def f(w, g, lr):\n    return lr * w\n")
NO_STOP = tasks.StopRules(hopeless_fraction=0.0)

# Recorded before variants existed: sha256 (16 hex) of init_params(0), of the validation batch and of
# the training batches of steps 0, 1 and 7 at seed 0 (see _digest); parameter count; description;
# validation curve of AdamW at lr 1e-2 for 12 steps (13 evaluations).
BEFORE = {
    "rosenbrock": ("05273b345e715278", "e3b0c44298fc1c14", "e3b0c44298fc1c14", 8,
        'extended Rosenbrock function, 8 dims', (
        1697.9189453125, 1650.248046875, 1603.8575439453125, 1559.647705078125, 1519.223876953125,
        1483.81689453125, 1454.2293701171875, 1430.8228759765625, 1413.5308837890625,
        1401.888671875, 1395.073974609375, 1391.9560546875, 1391.162841796875)),
    "logreg_digits": ("75567233f40e10f6", "62c9df5315a4abbe", "599f8ee61028999b", 650,
        'logistic regression on 8x8 digits', (
        2.4161579608917236, 2.3515431880950928, 2.2887399196624756, 2.231311321258545,
        2.180406093597412, 2.1341545581817627, 2.0946662425994873, 2.062666416168213,
        2.039071559906006, 2.022447109222412, 2.0127549171447754, 2.008232355117798,
        2.0070834159851074)),
    "mlp_digits": ("22cf2fbe941917c9", "62c9df5315a4abbe", "599f8ee61028999b", 4810,
        'MLP 64-64-10 (relu) on 8x8 digits', (
        2.3198931217193604, 2.256138801574707, 2.1902081966400146, 2.122580051422119,
        2.059056043624878, 1.9955588579177856, 1.9366117715835571, 1.8869432210922241,
        1.8484846353530884, 1.8203340768814087, 1.8032375574111938, 1.7951133251190186,
        1.7930326461791992)),
    "conv_digits": ("6e8f75c92b1c4a5a", "62c9df5315a4abbe", "599f8ee61028999b", 3818,
        'conv net (8, 16 channels) on 8x8 digit images', (
        2.306436777114868, 2.283592462539673, 2.2509145736694336, 2.2014706134796143,
        2.145543336868286, 2.0797181129455566, 2.0083069801330566, 1.9373815059661865,
        1.8760433197021484, 1.8257453441619873, 1.7944761514663696, 1.778998613357544,
        1.7749972343444824)),
    "autoencoder_digits": ("2ab339c5de9aaf20", "98bce4045b94c728", "e80a91f522e7c860", 4744,
        'MLP autoencoder 64-32-8-32-64 on digits', (
        0.18754169344902039, 0.17320077121257782, 0.15997551381587982, 0.1460365653038025,
        0.13255640864372253, 0.12086636573076248, 0.11163809895515442, 0.10488494485616684,
        0.10033106058835983, 0.09747540950775146, 0.09589394181966782, 0.09519267827272415,
        0.09501572698354721)),
    "char_lm": ("23a43be64f7f808f", "d601f29e614f50c9", "a3635f3b1f23efc9", 30336,
        '2-layer transformer char LM (d=32, T=32) on stdlib source', (
        4.836429119110107, 4.790107727050781, 4.36760950088501, 4.110276222229004,
        3.903144359588623, 3.743304491043091, 3.626190423965454, 3.5393056869506836,
        3.478577136993408, 3.4400179386138916, 3.417842388153076, 3.407681941986084,
        3.4050962924957275)),
    "zipf_bag": ("f75c2f7c3c7a2d03", "3baacdeb71567ab5", "28db299cfc3fefb3", 16136,
        'embedding bag over Zipf(1.1) tokens, V=1000', (
        2.0727264881134033, 2.059001922607422, 2.044903516769409, 2.030768871307373,
        2.0168299674987793, 2.0043368339538574, 1.9931645393371582, 1.9838279485702515,
        1.9765722751617432, 1.9715313911437988, 1.9685009717941284, 1.9670941829681396,
        1.9667327404022217)),
}
OLD_QUADRATIC_FINGERPRINT = "c42c55512a1131c6"  # version 1, optimum at the origin


def _leaves(b):
    if b is None:
        return []
    return [b] if isinstance(b, torch.Tensor) else [t for x in b for t in _leaves(x)]


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu()
        h.update((t.to(torch.float64) if t.is_floating_point() else t).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _content(task) -> tuple:
    """What training sees: initial weights, validation data, two training batches, the loss at init."""
    p = task.init_params(0)
    batches = [x for s in (0, 1) for x in _leaves(task.batch(s, 0))]
    return (_digest([p[k] for k in sorted(p)]), tuple((k, tuple(v.shape)) for k, v in sorted(p.items())),
            _digest(_leaves(task.val_batch)), _digest(batches), float(task.loss(p, task.batch(0, 0))))


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_variant_0_is_the_task_before_variants(name):
    init, val, batches, num_params, desc, curve = BEFORE[name]
    task = tasks.get(name)
    assert task.name == name and task.config["variant"] == 0
    p = task.init_params(0)
    assert _digest([p[k] for k in sorted(p)]) == init
    assert _digest(_leaves(task.val_batch)) == val
    assert _digest([x for s in (0, 1, 7) for x in _leaves(task.batch(s, 0))]) == batches
    assert (task.num_params, task.description) == (num_params, desc)
    (out,) = tasks.train_batched(task, [tasks.Run(ADAMW, 1e-2)], steps=12, rules=NO_STOP)
    assert [v for _, v in out.curve] == pytest.approx(curve, rel=1e-6)


@pytest.mark.parametrize("name", FAMILIES)
def test_variants_are_deterministic_distinct_and_train(name):
    fresh = {v: factory(name)(variant=v) for v in range(6)}          # built outside the registry cache
    contents = {v: _content(t) for v, t in fresh.items()}
    assert len(set(contents.values())) == 6                          # each variant is another task
    lr = {"quadratic": 0.1, "rosenbrock": 0.1, "zipf_bag": 0.1}.get(name, 1e-2)
    for v in range(1, 6):
        t = tasks.get(f"{name}@{v}")
        assert t.name == f"{name}@{v}" and t.config["variant"] == v and f"variant {v}" in t.description
        assert _content(t) == contents[v] and t.description == fresh[v].description   # same draw again
        (out,) = tasks.train_batched(t, [tasks.Run(ADAMW, lr)], steps=30, rules=NO_STOP)
        assert out.status == "ok", (v, out.reason)
        assert out.curve[-1][1] < 0.9 * out.curve[0][1], (v, out.curve)
    keys = {tasks.get(name, variant=v).fingerprint for v in range(6)}
    assert len(keys) == 6                                            # each variant tunes its own AdamW


def test_decay_toward_zero_no_longer_beats_adamw_on_the_quadratic():
    """Version 1 had its optimum at the origin, so ``lr * w`` reached it and scored the +5 cap."""
    results = tasks.evaluate([DECAY, ADAMW], ["quadratic", "quadratic@3"])
    decay, adamw = (r.scores for r in results)
    assert decay["quadratic"] < 0 and decay["quadratic@3"] < 0
    assert decay["quadratic"] <= -4   # it stops near 0, where the loss is ~0.5 w*^T H w*
    assert adamw == {"quadratic": 0.0, "quadratic@3": 0.0}


def test_quadratic_baselines_of_the_old_task_are_not_reused():
    task = tasks.get("quadratic")
    assert task.version == 2 and task.fingerprint != OLD_QUADRATIC_FINGERPRINT
    # the fingerprint hashes the optimum (the validation batch) and the version itself
    at_origin = dataclasses.replace(task, val_batch=torch.zeros_like(task.val_batch))
    assert at_origin.fingerprint != task.fingerprint
    assert dataclasses.replace(task, version=1).fingerprint != task.fingerprint
    # a noise-free optimum: the validation loss is 0 at w*, positive at 0 (decay's destination)
    w_star = task.val_batch
    assert float(task.validation_loss({"w": w_star})) == 0.0
    assert float(task.validation_loss({"w": torch.zeros_like(w_star)})) > 5.0
