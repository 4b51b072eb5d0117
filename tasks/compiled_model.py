"""A task's batched forward and backward pass compiled once per process: `CompiledModel`.

On the small stage-1 models the eager pass is mostly per-op cost (vmap's batching rules,
autograd's graph, one dispatch per op); ``torch.compile`` of

    vmap(grad_and_value(lambda p, batch: task.loss(views of the row p, batch)), in_dims=(0, None))

over the trainer's parameter buffer ``P [K, D]`` gives the per-copy losses ``[K]`` and the
gradients as one ``[K, D]`` buffer from a few Inductor-generated loops and GEMM calls.

Sizes: vmap does not trace with a symbolic copy count, so a graph is compiled per copy count
``K``. To bound compiles, ``K`` is padded up to a *bucket* (1, 2, 3, 4, 6, 8, 12, 16, 24, ...:
``2^n`` and ``3 * 2^n``) with copies of the first row, whose results are dropped: at most 1.33x
the work, and the search's usual batch (4 programs x 3 learning rates) is a bucket. Each
(task, bucket) is compiled once per process, with a code object of its own (Dynamo's
recompile limit counts per code object). `stats` reports the compile seconds separately.

Where compilation fails (no C++ compiler, an op Dynamo cannot trace), `CompileUnavailable` is
warned once per task and the caller trains eagerly. Numbers: Inductor's kernels sum in
another order than eager torch, so losses and gradients agree with the eager pass within
float rounding (not bit for bit), and a copy's arithmetic may depend on the bucket.
"""
from __future__ import annotations

import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.utils._pytree as pytree
from torch import Tensor
from torch.fx.experimental.proxy_tensor import make_fx

from dsl.compiled_step import CompileUnavailable

from .base import Batch, Task

__all__ = ["CompiledModel", "CompileStats", "bucket", "get", "stats", "CompileUnavailable"]


def bucket(k: int) -> int:
    """The smallest ``2^n`` or ``3 * 2^n`` that is ``>= k`` (``k >= 1``)."""
    b = 1
    while True:
        if b >= k:
            return b
        if 3 * b // 2 >= k and b >= 2:
            return 3 * b // 2
        b *= 2


@dataclass(frozen=True)
class CompileStats:
    """Compiles in this process: count, and seconds (each first call: trace, code generation and
    one pass, so steady-state step times stay separate)."""

    compiles: int
    seconds: float
    failures: int


class CompiledModel:
    """The compiled passes of one task (module doc): call it for training (losses and gradients),
    `validation` for the validation losses; each gives None where compilation is unavailable."""

    def __init__(self, task: Task):
        self.name = task.name
        self._task = weakref.ref(task)
        self.fns: dict[tuple, Callable] = {}
        self.failed: dict[str, BaseException] = {}
        self.compile_seconds = 0.0

    def _compile(self, kind: str, P: Tensor, leaves: list, spec: Any, spans: dict[str, tuple[int, int]],
                 shapes: dict[str, tuple[int, ...]]) -> Callable:
        """``(P, *tensor leaves of the batch) -> [losses [K], grads [K, D]]`` ("train") or
        ``-> [losses [K]]`` ("val"), traced with fake tensors (a loss whose Python branches on
        tensor values fails here) and compiled by Inductor."""
        task = self._task()
        loss = task.loss if kind == "train" else (task.val_loss or task.loss)
        items = [(n, a, b, shapes[n]) for n, (a, b) in spans.items()]
        is_t = [isinstance(x, Tensor) for x in leaves]
        consts = [None if t else x for x, t in zip(leaves, is_t)]

        def row_loss(p: Tensor, batch: Batch) -> Tensor:
            return loss({n: p[a:b].view(s) for n, a, b, s in items}, batch)

        if kind == "train":
            grad = torch.func.vmap(torch.func.grad_and_value(row_loss), in_dims=(0, None))

            def run(P: Tensor, batch: Batch) -> tuple[Tensor, ...]:
                g, losses = grad(P, batch)
                return losses, g
        else:
            value = torch.func.vmap(row_loss, in_dims=(0, None))

            def run(P: Tensor, batch: Batch) -> tuple[Tensor, ...]:
                return (value(P, batch),)

        def model(P: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
            it = iter(tensors)
            return run(P, pytree.tree_unflatten([next(it) if t else c for t, c in zip(is_t, consts)], spec))

        inputs = [P, *(x for x in leaves if isinstance(x, Tensor))]
        gm = make_fx(model, tracing_mode="fake", _allow_non_fake_inputs=True)(*inputs)
        return torch._inductor.compile(gm, inputs)

    def _run(self, kind: str, P: Tensor, spans: dict[str, tuple[int, int]], shapes: dict[str, tuple[int, ...]],
             batch: Batch) -> Optional[list[Tensor]]:
        if kind in self.failed:
            return None
        k = P.shape[0]
        kb = bucket(k)
        if kb > k:
            P = torch.cat([P, P[:1].expand(kb - k, -1)])
        leaves, spec = pytree.tree_flatten(batch)
        # the compiled code has no guards of its own: everything it was specialized on is the key
        key = (kind, kb, P.dtype, P.device, P.stride(), tuple(spans.items()), spec,
               tuple((x.shape, x.stride(), x.dtype, x.device) if isinstance(x, Tensor) else ("const", x)
                     for x in leaves))
        tensors = [x for x in leaves if isinstance(x, Tensor)]
        fn = self.fns.get(key)
        if fn is not None:
            return [x[:k] for x in fn(P, *tensors)]
        start = time.perf_counter()
        try:
            fn = self._compile(kind, P.detach(), leaves, spec, spans, shapes)
            out = fn(P, *tensors)
        except Exception as e:  # noqa: BLE001 - any tracing or backend failure: warn once, run eagerly
            self.failed[kind] = e
            _STATS["failures"] += 1
            what = "forward and backward" if kind == "train" else "validation loss"
            warnings.warn(f"compiling task {self.name!r}'s {what} failed "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); running it eagerly",
                          CompileUnavailable, stacklevel=4)
            return None
        seconds = time.perf_counter() - start
        self.compile_seconds += seconds
        _STATS["compiles"] += 1
        _STATS["seconds"] += seconds
        self.fns[key] = fn
        return [x[:k] for x in out]

    def __call__(self, P: Tensor, spans: dict[str, tuple[int, int]], shapes: dict[str, tuple[int, ...]],
                 batch: Batch) -> Optional[tuple[Tensor, Tensor]]:
        """``(losses [K], grads [K, D])`` of the training loss for the buffer ``P``, or None."""
        out = self._run("train", P, spans, shapes, batch)
        return None if out is None else (out[0], out[1])

    def validation(self, P: Tensor, spans: dict[str, tuple[int, int]],
                   shapes: dict[str, tuple[int, ...]]) -> Optional[Tensor]:
        """Validation losses ``[K]`` for the buffer ``P``, or None."""
        out = self._run("val", P, spans, shapes, self._task().val_batch)
        return None if out is None else out[0]


_MODELS: "weakref.WeakKeyDictionary[Task, CompiledModel]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
_STATS: dict[str, Any] = {"compiles": 0, "seconds": 0.0, "failures": 0}


def get(task: Task) -> CompiledModel:
    """The task's compiled model (one per task object, so per process for registry tasks)."""
    with _LOCK:
        m = _MODELS.get(task)
        if m is None:
            m = _MODELS[task] = CompiledModel(task)
        return m


def stats() -> CompileStats:
    """Compiles so far in this process (all tasks)."""
    return CompileStats(int(_STATS["compiles"]), float(_STATS["seconds"]), int(_STATS["failures"]))
