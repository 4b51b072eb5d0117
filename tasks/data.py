"""Data shipped with installed packages or generated from seeds; nothing is downloaded.

- `digits`: scikit-learn's 8x8 handwritten digits (1797 images), a fixed 80/20 split.
- `stdlib_text`: a fixed list of Python standard-library source files as one ASCII string.
- `MinibatchIndex`: deterministic minibatches (epoch-wise permutations seeded per evaluation).
"""
from __future__ import annotations

import functools
import os
import sysconfig
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["digits", "stdlib_text", "STDLIB_FILES", "MinibatchIndex", "rows_batches"]

STDLIB_FILES: tuple[str, ...] = (
    "textwrap.py", "heapq.py", "shlex.py", "queue.py", "fnmatch.py", "sched.py", "bisect.py",
    "colorsys.py", "keyword.py",
)
"""Standard-library files read (in this order) for the character-level language model."""


@functools.lru_cache(maxsize=None)
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_val, y_val)``: pixels scaled to [0, 1], a fixed 1437/360 split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(x))
    tr, va = perm[:1437], perm[1437:]
    return x[tr], y[tr], x[va], y[va]


@functools.lru_cache(maxsize=None)
def stdlib_text(files: tuple[str, ...] = STDLIB_FILES) -> str:
    """The listed stdlib files that exist, concatenated; non-ASCII characters become '?'."""
    root = sysconfig.get_paths()["stdlib"]
    parts = []
    for f in files:
        path = os.path.join(root, f)
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as fh:
                parts.append(fh.read())
    if not parts:
        raise FileNotFoundError(f"none of {files} found under {root}")
    text = "\n".join(parts)
    return "".join(c if ord(c) < 128 else "?" for c in text)


class MinibatchIndex:
    """Row indices for each step: concatenated random permutations of ``range(n)``.

    ``index(step, seed)`` is a ``[batch_size]`` long tensor on ``device``; the permutation
    sequence depends only on ``seed`` (tables are built once per seed and grown as needed).
    """

    def __init__(self, n: int, batch_size: int, device: torch.device):
        self.n, self.batch_size, self.device = n, batch_size, torch.device(device)
        self._tables: dict[int, Tensor] = {}

    def index(self, step: int, seed: int) -> Tensor:
        table = self._tables.get(seed)
        need = (step + 1) * self.batch_size
        if table is None or table.numel() < need:
            gen = torch.Generator().manual_seed(10_007 * int(seed) + 1)
            epochs = -(-max(need, 2 * (table.numel() if table is not None else 0)) // self.n)
            perms = [torch.randperm(self.n, generator=gen) for _ in range(epochs)]
            table = torch.cat(perms).to(self.device)
            self._tables[seed] = table
        return table[step * self.batch_size:(step + 1) * self.batch_size]


def rows_batches(tensors: Sequence[Tensor], batch_size: int) -> Callable[[int, int], tuple[Tensor, ...]]:
    """``train_batch(step, seed)`` giving the same rows of each tensor (minibatches of a dataset)."""
    tensors = tuple(tensors)
    index = MinibatchIndex(len(tensors[0]), batch_size, tensors[0].device)

    def train_batch(step: int, seed: int) -> tuple[Tensor, ...]:
        i = index.index(step, seed)
        return tuple(t[i] for t in tensors)

    return train_batch
