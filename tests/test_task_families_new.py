"""The seven task families of issue 12's second batch: teacher regression and classification on
fresh data, tabular diabetes (small batch) and breast cancer (full batch), the LSTM adding
problem, sparse matrix factorization and a tiny ViT; their variants, learning and determinism."""
import inspect
import math

import pytest
import torch

import dsl
import tasks
from tasks.lstm import adding_problem
from tasks.tabular import tabular_split
from tasks.teacher import flip_labels
from tasks.vit import patches

torch.set_num_threads(1)

ADAMW = tasks.adamw_program()
LION = dsl.parse("def lion(w, g, lr, m=0.0):\n    u = sign(interp(g, m, 0.9))\n    m = interp(g, m, 0.99)\n"
                 "    return lr * u\n")
NAN = dsl.parse("def bad(g, lr):\n    return g / 0 * lr\n")
NO_STOP = tasks.StopRules(hopeless_fraction=0.0)

# family: (AdamW lr, steps (None: the task's budget), factor, ceiling): the final validation loss
# must be below factor x the initial one and below the ceiling, itself well below the loss of the
# trivial predictor (in the comment; measured ratios on seeds 0 and 1 in brackets)
LEARN = {
    "teacher_regression": (1e-2, 60, 0.25, 0.25),        # predict 0: ~1 (0.12, 0.13)
    "teacher_classification": (1e-2, 40, 0.45, 1.0),     # uniform: ln 10 = 2.3 (0.30, 0.31)
    "diabetes_regression": (1e-2, 100, 0.65, 0.6),       # training mean: 0.87 (0.48, 0.51)
    "breast_cancer_fullbatch": (3e-3, 60, 0.35, 0.3),    # class prior: 0.69 (0.22, 0.24)
    "matrix_factorization": (3e-2, None, 0.1, 0.1),      # predict 0: ~1 (0.024 at 1000 steps)
    "vit_digits": (1e-2, 60, 0.3, 0.6),                  # uniform: 2.3 (0.15, 0.18)
}
FAMILIES = sorted(LEARN) + ["lstm_adding"]


def _leaves(b):
    if b is None:
        return []
    return [b] if isinstance(b, torch.Tensor) else [t for x in b for t in _leaves(x)]


def _same(a, b) -> bool:
    la, lb = _leaves(a), _leaves(b)
    return len(la) == len(lb) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(la, lb))


def test_registered_with_variants_and_in_the_suite():
    assert set(FAMILIES) <= set(tasks.names())
    placed = {n.partition("@")[0] for names in tasks.STAGES.values() for n in names}
    assert set(FAMILIES) <= placed
    for name in FAMILIES:
        params = inspect.signature(tasks.registry.factory(name)).parameters
        assert list(params)[:3] == ["size", "device", "dtype"] and params["variant"].default == 0


@pytest.mark.parametrize("name", FAMILIES)
def test_builds_and_is_deterministic(name):
    task = tasks.get(name)
    assert task.description and "variant" not in task.description and task.config["variant"] == 0
    assert task.num_params > 0 and task.steps > 0
    p0, p0b, p1 = task.init_params(0), task.init_params(0), task.init_params(1)
    assert all(v.ndim >= 1 and v.dtype == torch.float32 for v in p0.values())
    assert _same(list(p0.values()), list(p0b.values())) and not _same(list(p0.values()), list(p1.values()))
    assert _same(task.batch(3, 0), task.batch(3, 0))
    if name == "breast_cancer_fullbatch":  # every step is the whole training split, whatever the seed
        assert _same(task.batch(3, 0), task.batch(7, 5)) and len(task.batch(0, 0)[0]) == 455
    else:
        assert not _same(task.batch(3, 0), task.batch(4, 0)) and not _same(task.batch(3, 0), task.batch(3, 1))
    for dtype in (torch.float64, torch.bfloat16):
        t = tasks.get(name, dtype=dtype)
        p = t.init_params(0)
        assert all(v.dtype == dtype for v in p.values())
        assert math.isfinite(float(t.loss(p, t.batch(0, 0)))) and math.isfinite(float(t.validation_loss(p)))
    assert tasks.get(name, size=2).num_params > task.num_params


@pytest.mark.parametrize("name", FAMILIES)
def test_variants_differ_and_are_reproducible(name):
    base = tasks.get(name)
    vs = [tasks.get(name, variant=v) for v in (1, 2)]
    assert [t.name for t in vs] == [f"{name}@1", f"{name}@2"]
    assert all(t.config["variant"] == v and t.description.endswith(f", variant {v}") for t, v in zip(vs, (1, 2)))
    assert len({t.fingerprint for t in [base] + vs}) == 3
    again = tasks.registry.factory(name)(variant=2)  # rebuilt, not the registry's cache
    assert again.description == vs[1].description
    p, q = again.init_params(0), vs[1].init_params(0)
    assert p.keys() == q.keys() and _same([p[k] for k in p], [q[k] for k in p])
    assert _same(again.val_batch, vs[1].val_batch) and _same(again.batch(7, 0), vs[1].batch(7, 0))
    with pytest.raises(ValueError, match="variant"):
        tasks.registry.factory(name)(variant=-1)


@pytest.mark.parametrize("name", sorted(LEARN))
def test_adamw_learns_and_copies_are_identical(name):
    lr, steps, factor, ceiling = LEARN[name]
    outs = tasks.train_batched(tasks.get(name), [tasks.Run(ADAMW, lr)] * 3, steps=steps, rules=NO_STOP)
    assert all(o.status == "ok" for o in outs), outs[0].reason
    assert all(repr(o.curve) == repr(outs[0].curve) for o in outs[1:])  # bit for bit
    assert outs[0].curve[-1][1] < factor * outs[0].curve[0][1] and outs[0].curve[-1][1] < ceiling


def test_lstm_adding_solves_the_problem_and_copies_are_identical():
    """The full default budget: AdamW at 3e-2 leaves the plateau of the constant predictor
    (MSE 0.141 on this validation set, where it sits for the first ~100 steps) and ends far
    below it (0.0065)."""
    task = tasks.get("lstm_adding")
    trivial = float(((task.val_batch[1] - 1.0) ** 2).mean())
    outs = tasks.train_batched(task, [tasks.Run(ADAMW, 3e-2)] * 3, rules=NO_STOP)
    assert all(o.status == "ok" for o in outs) and all(repr(o.curve) == repr(outs[0].curve) for o in outs)
    assert outs[0].loss < 0.1 * trivial and trivial < 0.2 * outs[0].curve[0][1]


@pytest.mark.parametrize("name", FAMILIES)
def test_batched_equals_alone(name):
    """A copy's arithmetic does not depend on the other copies in the stack (vmap-safe models)."""
    task = tasks.get(name)
    runs = [tasks.Run(p, lr) for p in (ADAMW, LION, NAN) for lr in (3e-3, 3e-2)]
    batched = tasks.train_batched(task, runs, steps=12, rules=NO_STOP)
    for run, b in zip(runs, batched):
        (s,) = tasks.train_batched(task, [run], steps=12, rules=NO_STOP)
        assert (b.status, b.reason, repr(b.curve)) == (s.status, s.reason, repr(s.curve))
    assert [o.status for o in batched] == ["ok"] * 4 + ["nan"] * 2


# ---------------------------------------------------------------- each family's data
def test_teacher_regression_fresh_noisy_inputs_clean_validation():
    """Targets: the standardized teacher (variance 1) plus label noise; validation targets clean."""
    task, noisy = tasks.get("teacher_regression"), tasks.get("teacher_regression", variant=2)
    assert "label noise 0.5," in task.description and "label noise 1," in noisy.description
    xv, yv = task.val_batch
    assert xv.shape == (2048, 32) and abs(float(yv.mean())) < 0.1 and abs(float(yv.var()) - 1) < 0.1
    for t, var in ((task, 1.25), (noisy, 2.0)):
        ys = torch.cat([t.batch(s, 0)[1] for s in range(40)])
        assert abs(float(ys.var()) - var) < 0.12
    assert task.batch(0, 0)[0].shape == (128, 32)


def test_teacher_classification_labels_and_flips():
    task = tasks.get("teacher_classification")
    xv, yv = task.val_batch
    freq = torch.bincount(yv, minlength=10).double() / len(yv)
    assert freq.min() > 0.02 and freq.max() < 0.25  # standardized teacher outputs: no class dominates
    x, y = task.batch(0, 0)
    assert x.shape == (512, 32) and y.dtype == torch.long and "label flip 0," in task.description
    assert "label flip 0.1," in tasks.get("teacher_classification", variant=1).description
    y = torch.randint(10, (20000,), generator=torch.Generator().manual_seed(0))
    changed = flip_labels(y, 0.3, 10, torch.Generator().manual_seed(1)) != y
    assert abs(float(changed.double().mean()) - 0.27) < 0.015
    assert torch.equal(flip_labels(y, 0.0, 10, torch.Generator().manual_seed(1)), y)


def test_tabular_splits_standardized_and_fixed():
    xt, yt, xv, yv = tabular_split("diabetes", 0, True)
    assert xt.shape == (353, 10) and xv.shape == (89, 10)
    assert abs(xt.mean(0)).max() < 1e-9 and abs(xt.std(0) - 1).max() < 1e-9 and abs(yt.std() - 1) < 1e-9
    assert not (tabular_split("diabetes", 1, True)[0] == xt).all()
    xt, yt, xv, yv = tabular_split("breast_cancer", 0, False)
    assert xt.shape == (455, 30) and set(yt.tolist()) == {0, 1}
    task = tasks.get("diabetes_regression")
    assert task.batch(0, 0)[0].shape == (8, 10) and "batch 8" in task.description


def test_adding_problem():
    x, y = adding_problem(torch.Generator().manual_seed(0), 256, 12)
    assert x.shape == (256, 12, 2) and y.shape == (256,)
    markers = x[..., 1]
    assert torch.equal(markers.sum(1), torch.full((256,), 2.0, dtype=torch.float64))
    assert torch.equal(markers[:, :6].sum(1), torch.ones(256, dtype=torch.float64))  # one per half
    assert torch.allclose((x[..., 0] * markers).sum(1), y)
    assert 0 <= float(x[..., 0].min()) and float(x[..., 0].max()) < 1


def test_matrix_factorization_gradients_are_row_sparse():
    """Only the user and item rows indexed by the batch get a nonzero gradient."""
    task = tasks.get("matrix_factorization")
    p = {k: v.requires_grad_() for k, v in task.init_params(0).items()}
    i, j, _ = task.batch(0, 0)
    task.loss(p, task.batch(0, 0)).backward()
    for name, rows, n in (("users", i, 300), ("items", j, 200)):
        hit = torch.zeros(n, dtype=torch.bool)
        hit[rows] = True
        nonzero = p[name].grad.abs().sum(1) > 0
        assert torch.equal(nonzero, hit) and 0.1 < float(hit.double().mean()) < 0.4


def test_vit_patches():
    x = torch.arange(2 * 64, dtype=torch.float32).view(2, 64)
    img = x.view(2, 8, 8)
    p4, p2 = patches(x, 4), patches(x, 2)
    assert p4.shape == (2, 4, 16) and p2.shape == (2, 16, 4)
    assert torch.equal(p4[1, 1], img[1, :4, 4:].reshape(16))  # top-right 4x4 patch
    assert torch.equal(p2[0, 5], img[0, 2:4, 2:4].reshape(4))  # row 1, column 1 of the 4x4 grid
    assert tasks.get("vit_digits").batch(0, 0)[0].shape == (64, 4, 16)
