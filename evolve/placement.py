"""Where evaluation actors run: their GPU share, their device and how many of them (pure functions).

On a GPU a worker trains its batch of K programs x 3 lr multipliers side by side (one vmapped
step for all copies), but between steps, tasks and batches it runs Python (compiling programs,
building batches, bookkeeping) while the GPU idles, and the proxy tasks are small enough that
one process's kernels leave most of a GPU unused. So by default ``GPU_WORKERS_PER_GPU`` actors
share each GPU (Ray's fractional ``num_gpus``): while one runs Python the others' kernels run.
Each actor still takes one CPU, so the count is also capped by the cluster's CPUs.
"""
from __future__ import annotations

from typing import Mapping

from .config import SearchConfig

__all__ = ["GPU_WORKERS_PER_GPU", "gpu_share", "worker_device", "worker_count"]

GPU_WORKERS_PER_GPU = 4
"""Default actors per GPU (see module doc; 2-4 overlap Python with kernels, 1 leaves gaps).
Not yet measured on a GPU: benchmarks/bench_gpu.py gives the per-process side of the figure."""


def gpu_share(config: SearchConfig, cluster_gpus: float) -> float:
    """GPUs per actor: 0 without GPUs or with ``device="cpu"``; ``config.gpus_per_worker`` if set;
    else ``1 / GPU_WORKERS_PER_GPU``."""
    if cluster_gpus <= 0 or config.device == "cpu":
        return 0.0
    return config.gpus_per_worker or 1.0 / GPU_WORKERS_PER_GPU


def worker_device(config: SearchConfig, num_gpus: float) -> str:
    """The device the actors train on: cuda iff Ray gives them a GPU share (Ray sets each actor's
    CUDA_VISIBLE_DEVICES, so "cuda" inside it is its own GPU). An explicit ``config.device``
    other than auto must agree with the share."""
    if config.device == "auto":
        return "cuda" if num_gpus > 0 else "cpu"
    if config.device.startswith("cuda") and num_gpus <= 0:
        raise ValueError(f"device {config.device!r} but the workers get no GPU (the cluster has none)")
    return config.device


def worker_count(config: SearchConfig, resources: Mapping[str, float], num_gpus: float) -> int:
    """``config.workers`` if set; else one per GPU share, at most one per CPU; else one per CPU."""
    if config.workers > 0:
        return config.workers
    cpus = max(1, int(resources.get("CPU", 1)))
    if num_gpus > 0:
        return max(1, min(cpus, int(resources.get("GPU", 0.0) / num_gpus + 1e-6)))
    return cpus
