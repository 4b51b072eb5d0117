"""The large-data regime: MLP students of a fixed random teacher on fresh Gaussian inputs.

Every training step draws new inputs (from the step and the evaluation seed, so a run is
reproducible), so the student never sees an example twice and cannot overfit: the validation
loss measures optimization speed alone, with label noise as the gradient-noise knob.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .base import Task
from .digits import classification
from .mlp import ACTIVATIONS, mlp_apply, mlp_init, step_generator
from .registry import register
from .schedules import WarmupCosine
from .variants import draw

__all__ = ["teacher_regression", "teacher_classification", "flip_labels"]

TEACHER_WIDTH = 64
CLASSES = 10
CALIBRATION = 8192  # inputs used to standardize the teacher's outputs


def _teacher(inputs: int, outputs: int, seed: int) -> Callable[[Tensor], Tensor]:
    """``x -> s(tanh(x A) B)`` in float64: ``A ~ N(0, 1/inputs)``, ``B ~ N(0, 1/64)``, with ``s``
    standardizing each output to zero mean and unit variance over N(0, I) inputs."""
    g = torch.Generator().manual_seed(900 + seed)
    a = torch.randn(inputs, TEACHER_WIDTH, generator=g, dtype=torch.float64) / math.sqrt(inputs)
    b = torch.randn(TEACHER_WIDTH, outputs, generator=g, dtype=torch.float64) / math.sqrt(TEACHER_WIDTH)
    raw = torch.tanh(torch.randn(CALIBRATION, inputs, generator=g, dtype=torch.float64) @ a) @ b
    mu, sd = raw.mean(0), raw.std(0)
    return lambda x: (torch.tanh(x @ a) @ b - mu) / sd


def flip_labels(y: Tensor, flip: float, classes: int, gen: torch.Generator) -> Tensor:
    """``y`` with each label replaced, with probability ``flip``, by a uniformly random class
    (which may be the same one: a fraction ``flip * (1 - 1/classes)`` changes)."""
    flipped = torch.rand(y.shape, generator=gen, dtype=torch.float64) < flip
    return torch.where(flipped, torch.randint(classes, y.shape, generator=gen), y)


@register("teacher_regression")
def teacher_regression(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 300,
                       variant: int = 0) -> Task:
    """Mean squared error of an MLP student regressing a random teacher, fresh inputs every step.

    Teacher: `_teacher` (64 tanh units, target standardized to unit variance). Step ``s`` draws
    ``x ~ N(0, I_d)`` (``batch`` rows) and ``y = teacher(x) + noise * eps`` from
    ``(s, seed)``; validation: 2048 fixed inputs with *clean* targets, so the validation loss
    is the excess risk (a constant predictor scores ~1, the teacher 0). Student: ``depth``
    hidden layers of ``width * size`` units, ``init_scale`` times torch.nn.Linear's init.

    Variant axes: label noise 0.5/0.1/1.0 (the gradient-noise axis), width 64/32/128, depth
    2/1/3, activation relu/tanh, input dim 32/16/64, batch size 128/32/512, init scale
    1/0.5/2, teacher 0..3 (the teacher's weights and the validation inputs). Variants 1-5 cost
    0.6x to 2.3x the default's time. Tuned AdamW (lr 1e-2): 0.98 -> 0.106.
    """
    v = draw("teacher_regression", variant, noise=(0.5, 0.1, 1.0), width=(64, 32, 128), depth=(2, 1, 3),
             activation=("relu", "tanh"), inputs=(32, 16, 64), batch_size=(128, 32, 512),
             init_scale=(1.0, 0.5, 2.0), teacher=(0, 1, 2, 3))
    d, bs, noise, act = v["inputs"], v["batch_size"], v["noise"], ACTIVATIONS[v["activation"]]
    teacher = _teacher(d, 1, v["teacher"])
    xv = torch.randn(2048, d, generator=torch.Generator().manual_seed(950 + v["teacher"]), dtype=torch.float64)
    to = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
    val = (to(xv), to(teacher(xv)[:, 0]))
    dims = [d] + [v["width"] * size] * v["depth"] + [1]

    def train_batch(step: int, seed: int) -> tuple[Tensor, Tensor]:
        g = step_generator(seed, step, 10 + v["teacher"])
        x = torch.randn(bs, d, generator=g, dtype=torch.float64)
        y = teacher(x)[:, 0] + noise * torch.randn(bs, generator=g, dtype=torch.float64)
        return to(x), to(y)

    def loss(p, batch):
        x, y = batch
        return ((mlp_apply(p, x, len(dims) - 1, act) - y) ** 2).mean()

    desc = (f"MLP {d}-{'-'.join(map(str, dims[1:-1]))}-1 ({v['activation']}, init x{v['init_scale']:g}) "
            f"regressing a random teacher on fresh inputs, label noise {noise:g}, batch {bs}")
    if variant:
        desc += f", variant {variant}"
    return Task(name="teacher_regression", description=desc, init=lambda g: mlp_init(g, dims, v["init_scale"]),
                loss=loss, train_batch=train_batch, val_batch=val, steps=steps, schedule=WarmupCosine(0.05),
                device=device, dtype=dtype)


@register("teacher_classification")
def teacher_classification(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 150,
                           variant: int = 0) -> Task:
    """Cross-entropy of an MLP student on 10 classes labelled by a random teacher, fresh inputs,
    large batches.

    Label of ``x ~ N(0, I_d)``: ``argmax`` of the teacher's 10 standardized outputs (`_teacher`;
    the classes come out roughly balanced); each training label is replaced by a uniformly
    random class with probability ``flip`` (label noise); validation: 2048 fixed inputs, clean
    labels (a constant predictor scores ~ln 10 = 2.3). Student: ``depth`` hidden layers of
    ``width * size`` units, ``init_scale`` times torch.nn.Linear's init. Batches of 512 fresh
    inputs give low-noise gradients: the large-batch side of the batch-size axis.

    Variant axes: batch size 512/256/1024, label flip 0/0.1/0.3, width 64/32/128, depth 2/1/3,
    activation relu/tanh, input dim 32/16/64, init scale 1/0.5/2, teacher 0..3. Variants 1-5
    cost 0.6x to 1.5x the default's time. AdamW at lr 1e-2: 2.31 -> 0.58.
    """
    v = draw("teacher_classification", variant, batch_size=(512, 256, 1024), flip=(0.0, 0.1, 0.3),
             width=(64, 32, 128), depth=(2, 1, 3), activation=("relu", "tanh"), inputs=(32, 16, 64),
             init_scale=(1.0, 0.5, 2.0), teacher=(0, 1, 2, 3))
    d, bs, flip, act = v["inputs"], v["batch_size"], v["flip"], ACTIVATIONS[v["activation"]]
    teacher = _teacher(d, CLASSES, 4 + v["teacher"])
    xv = torch.randn(2048, d, generator=torch.Generator().manual_seed(960 + v["teacher"]), dtype=torch.float64)
    val = (xv.to(device=device, dtype=dtype), teacher(xv).argmax(1).to(device))
    dims = [d] + [v["width"] * size] * v["depth"] + [CLASSES]

    def train_batch(step: int, seed: int) -> tuple[Tensor, Tensor]:
        g = step_generator(seed, step, 20 + v["teacher"])
        x = torch.randn(bs, d, generator=g, dtype=torch.float64)
        y = flip_labels(teacher(x).argmax(1), flip, CLASSES, g) if flip else teacher(x).argmax(1)
        return x.to(device=device, dtype=dtype), y.to(device)

    loss, accuracy = classification(lambda p, x: mlp_apply(p, x, len(dims) - 1, act))
    desc = (f"MLP {d}-{'-'.join(map(str, dims[1:-1]))}-10 ({v['activation']}, init x{v['init_scale']:g}) "
            f"classifying fresh inputs by a random teacher, label flip {flip:g}, batch {bs}")
    if variant:
        desc += f", variant {variant}"
    return Task(name="teacher_classification", description=desc,
                init=lambda g: mlp_init(g, dims, v["init_scale"]), loss=loss, train_batch=train_batch,
                val_batch=val, steps=steps, schedule=WarmupCosine(0.05), metric=accuracy,
                metric_name="accuracy", device=device, dtype=dtype)
