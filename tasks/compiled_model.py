"""A task's batched forward/backward and validation passes, compiled once per process: `CompiledModel`.

On the small stage-1 models the eager pass is mostly per-op cost (vmap's batching rules,
autograd's graph, one dispatch per op); compiled,

    vmap(grad_and_value(lambda p, batch: task.loss(views of the row p, batch)), in_dims=(0, None))

over rows of the trainer's parameter buffer ``P [K, D]`` gives the per-copy losses ``[K]`` and
the gradients as one ``[K, D]`` buffer from a few Inductor-generated loops and GEMM calls (the
validation pass likewise, without the gradient).

How: ``make_fx`` traces the function with fake tensors into an aten graph (a loss whose Python
branches on tensor values fails to trace) and ``torch._inductor.compile`` compiles it. Unlike
``torch.compile`` this installs no Dynamo guards, whose evaluation cost more per call than the
whole compiled rosenbrock step (37 us against 18 us for quadratic, measured); in their place
the compiled function is keyed by everything it was specialized on (copy count, dtype, device,
strides, the batch's structure, shapes and non-tensor leaves).

Sizes: vmap does not trace with a symbolic copy count, so a graph is compiled per copy count.
To bound compiles, ``K`` copies run as chunks of `CHUNKS` (12, 6, 3: the search's 4 programs x
3 learning rates and its halves), the last chunk padded with copies of its first row, whose
results are dropped (`chunks`: at most ``max(2, K // 3)`` padded rows). So a task compiles at most 3 graphs per
pass, each once per process (about 1 s each once Inductor's kernels are in its disk cache,
3-5 s cold); `stats` reports compile seconds apart from step times.

Where compilation fails (no C++ compiler, an op the tracer cannot handle), `CompileUnavailable`
is warned once per task and pass and the caller runs eagerly. Numbers: Inductor's kernels sum
in another order than eager torch, so losses and gradients agree with the eager pass within
float rounding, not bit for bit; a copy's arithmetic may also depend on its chunk. Over a run
of hundreds of steps the difference can grow where training is chaotic (final losses then
differ by more than rounding; see BENCHMARKS.md).
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

__all__ = ["CompiledModel", "CompileStats", "CHUNKS", "chunks", "get", "stats", "CompileUnavailable"]


CHUNKS: tuple[int, ...] = (12, 6, 3)
"""The copy counts a graph is compiled for (see `chunks`): the search's 4 programs x 3 learning
rates, and halves of it."""


def chunks(k: int, sizes: tuple[int, ...] = CHUNKS) -> list[int]:
    """Graph sizes whose calls cover ``k`` copies: one padded chunk when it pads at most
    ``max(2, k // 3)`` rows, else the largest size that fits and the rest likewise
    (``12 -> [12]``, ``9 -> [12]``, ``8 -> [6, 3]``, ``4 -> [6]``, ``1 -> [3]``, ``24 -> [12, 12]``).
    A call costs more than a padded row on small models, a row more than a call on larger ones."""
    out = []
    while k > 0:
        fit = [s for s in sizes if s >= k]
        if fit and min(fit) - k <= max(2, k // 3):
            out.append(min(fit))
            break
        s = max([s for s in sizes if s <= k] or [min(sizes)])
        out.append(s)
        k -= s
    return out


@dataclass(frozen=True)
class CompileStats:
    """Compiles in this process: count, and seconds (each first call: trace, code generation and
    one pass, so steady-state step times stay separate)."""

    compiles: int
    seconds: float
    failures: int
    cpu_seconds: float = 0.0  # this process's CPU time in them (the C++ compiler runs in others)


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
        """The pass ``kind`` on the buffer ``P`` in chunks; None (warned once) where tracing,
        compiling or a compiled call fails: the compiled code is pure, so nothing was changed."""
        if kind in self.failed:
            return None
        try:
            k = P.shape[0]
            leaves, spec = pytree.tree_flatten(batch)
            tensors = [x for x in leaves if isinstance(x, Tensor)]
            # the compiled code has no guards of its own: everything it was specialized on is in the key
            sig = (kind, P.dtype, P.device, tuple(spans.items()), spec,
                   tuple((x.shape, x.stride(), x.dtype, x.device) if isinstance(x, Tensor) else ("const", x)
                         for x in leaves))
            outs, start = [], 0
            for size in chunks(k):
                rows = P[start:start + size]
                if rows.shape[0] < size:  # the last chunk, padded with copies of its first row
                    rows = torch.cat([rows, rows[:1].expand(size - rows.shape[0], -1)])
                start += size
                outs.append(self._call(sig, kind, rows, tensors, leaves, spec, spans, shapes))
            if len(outs) == 1:
                return [x[:k] for x in outs[0]]
            return [torch.cat(xs)[:k] for xs in zip(*outs)]
        except Exception as e:  # noqa: BLE001 - any tracing, backend or call failure: warn once, run eagerly
            self.failed[kind] = e
            _STATS["failures"] += 1
            what = "forward and backward" if kind == "train" else "validation loss"
            warnings.warn(f"compiling task {self.name!r}'s {what} failed "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); running it eagerly",
                          CompileUnavailable, stacklevel=4)
            return None

    def _call(self, sig: tuple, kind: str, rows: Tensor, tensors: list, leaves: list, spec: Any,
              spans: dict[str, tuple[int, int]], shapes: dict[str, tuple[int, ...]]) -> list[Tensor]:
        key = (rows.shape[0], rows.stride(), sig)
        fn = self.fns.get(key)
        if fn is not None:
            return fn(rows, *tensors)
        start, cpu = time.perf_counter(), time.process_time()
        fn = self._compile(kind, rows.detach(), leaves, spec, spans, shapes)
        out = fn(rows, *tensors)
        seconds = time.perf_counter() - start
        self.compile_seconds += seconds
        _STATS["compiles"] += 1
        _STATS["seconds"] += seconds
        _STATS["cpu_seconds"] += time.process_time() - cpu
        self.fns[key] = fn
        return out

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
_STATS: dict[str, Any] = {"compiles": 0, "seconds": 0.0, "failures": 0, "cpu_seconds": 0.0}


def get(task: Task) -> CompiledModel:
    """The task's compiled model (one per task object, so per process for registry tasks)."""
    with _LOCK:
        m = _MODELS.get(task)
        if m is None:
            m = _MODELS[task] = CompiledModel(task)
        return m


def stats() -> CompileStats:
    """Compiles so far in this process (all tasks)."""
    return CompileStats(int(_STATS["compiles"]), float(_STATS["seconds"]), int(_STATS["failures"]),
                        float(_STATS["cpu_seconds"]))
