"""Small tabular data sets bundled with scikit-learn, at the two ends of the batch-size axis.

- ``diabetes_regression``: 442 rows, minibatches of 8: noisy gradients.
- ``breast_cancer_fullbatch``: 569 rows, the whole training split every step: deterministic
  gradients (where sign-based rules such as Lion/signSGD are known to do well).

Features and targets are standardized with the training split's statistics; the split is a
seeded permutation (the variant's ``split`` axis), 80% training and 20% validation.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from .base import Task
from .data import rows_batches
from .digits import classification
from .mlp import ACTIVATIONS, mlp_apply, mlp_init
from .registry import register
from .schedules import WarmupCosine
from .variants import draw

__all__ = ["diabetes_regression", "breast_cancer_fullbatch", "tabular_split"]


@functools.lru_cache(maxsize=None)
def _load(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    d = getattr(datasets, f"load_{name}")()
    return d.data.astype(np.float64), d.target


def tabular_split(name: str, split: int, standardize_target: bool) -> tuple[np.ndarray, ...]:
    """``(x_train, y_train, x_val, y_val)`` of scikit-learn's ``load_<name>()``: rows permuted by
    ``numpy.random.default_rng(2000 + split)``, the first 80% train; ``x`` (and ``y`` when
    ``standardize_target``) standardized by the training rows' mean and standard deviation."""
    x, y = _load(name)
    perm = np.random.default_rng(2000 + split).permutation(len(x))
    n = int(0.8 * len(x))
    tr, va = perm[:n], perm[n:]
    mu, sd = x[tr].mean(0), x[tr].std(0)
    x = (x - mu) / sd
    if standardize_target:
        y = (y - y[tr].mean()) / y[tr].std()
    return x[tr], y[tr], x[va], y[va]


@register("diabetes_regression")
def diabetes_regression(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 400,
                        variant: int = 0) -> Task:
    """Mean squared error of an MLP on scikit-learn's diabetes data (10 features, disease
    progression after a year), in standardized units: on the validation rows predicting the
    training mean scores 0.84-0.99 over the splits, least squares 0.38-0.44 (tuned AdamW on
    the default task: 0.42). 353 training rows in minibatches of ``batch`` (8 by default: noisy
    gradients, about 9 epochs), 89 validation rows.

    Variant axes: batch size 8/4/16, width 32/16/64, depth 1/2 (hidden layers), activation
    relu/tanh, init scale 1/0.5/2, split 0..3. Variants 1-5 cost 0.8x to 1.2x the default's time.
    """
    v = draw("diabetes_regression", variant, batch_size=(8, 4, 16), width=(32, 16, 64), depth=(1, 2),
             activation=("relu", "tanh"), init_scale=(1.0, 0.5, 2.0), split=(0, 1, 2, 3))
    xt, yt, xv, yv = (torch.as_tensor(a).to(device=device, dtype=dtype)
                      for a in tabular_split("diabetes", v["split"], True))
    dims = [xt.shape[1]] + [v["width"] * size] * v["depth"] + [1]
    act = ACTIVATIONS[v["activation"]]

    def loss(p, batch):
        x, y = batch
        return ((mlp_apply(p, x, len(dims) - 1, act) - y) ** 2).mean()

    desc = (f"MLP {'-'.join(map(str, dims))} ({v['activation']}, init x{v['init_scale']:g}) on the diabetes "
            f"data, batch {v['batch_size']}")
    if variant:
        desc += f", variant {variant}"
    return Task(name="diabetes_regression", description=desc, init=lambda g: mlp_init(g, dims, v["init_scale"]),
                loss=loss, train_batch=rows_batches((xt, yt), v["batch_size"]), val_batch=(xv, yv),
                steps=steps, schedule=WarmupCosine(0.05), device=device, dtype=dtype)


@register("breast_cancer_fullbatch")
def breast_cancer_fullbatch(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 200,
                            variant: int = 0) -> Task:
    """Cross-entropy of an MLP classifier on scikit-learn's breast-cancer data (30 features,
    malignant/benign), trained full batch: every step's batch is the whole training split
    (455 rows), so the gradient is deterministic and the evaluation seed changes only the
    initial weights. Validation: 114 rows (the class prior scores 0.66-0.69; logistic regression
    0.05-0.12 at 97-99% accuracy over the splits). The training loss goes to 0; past the best
    step the validation loss rises, faster at larger learning rates.

    Variant axes: width 32/16/64, depth 1/2, activation relu/tanh, init scale 1/0.5/2,
    split 0..3. Variants 1-5 cost 0.8x to 2.4x the default's time (0.3 s).
    """
    v = draw("breast_cancer_fullbatch", variant, width=(32, 16, 64), depth=(1, 2), activation=("relu", "tanh"),
             init_scale=(1.0, 0.5, 2.0), split=(0, 1, 2, 3))
    xt, yt, xv, yv = tabular_split("breast_cancer", v["split"], False)
    train = (torch.as_tensor(xt).to(device=device, dtype=dtype), torch.as_tensor(yt).to(device))
    val = (torch.as_tensor(xv).to(device=device, dtype=dtype), torch.as_tensor(yv).to(device))
    dims = [xt.shape[1]] + [v["width"] * size] * v["depth"] + [2]
    act = ACTIVATIONS[v["activation"]]

    def train_batch(step: int, seed: int) -> tuple[Tensor, Tensor]:
        return train

    loss, accuracy = classification(lambda p, x: mlp_apply(p, x, len(dims) - 1, act))
    desc = (f"MLP {'-'.join(map(str, dims))} ({v['activation']}, init x{v['init_scale']:g}) on the "
            f"breast-cancer data, full batch")
    if variant:
        desc += f", variant {variant}"
    return Task(name="breast_cancer_fullbatch", description=desc, init=lambda g: mlp_init(g, dims, v["init_scale"]),
                loss=loss, train_batch=train_batch, val_batch=val, steps=steps, schedule=WarmupCosine(0.05),
                metric=accuracy, metric_name="accuracy", device=device, dtype=dtype)
