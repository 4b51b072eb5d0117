"""Task registry: factories registered by name; `get` builds each configuration once per process.

A factory is a function of keyword arguments (at least ``size``, ``device``, ``dtype``) returning
a `Task`. Built tasks (with their data) are cached, so workers build data once.

>>> import torch, tasks
>>> @tasks.register("doc_quadratic")
... def doc_quadratic(size=1, device="cpu", dtype=torch.float32):
...     return tasks.Task(name="doc_quadratic", description="0.5 |w - 1|^2",
...                       init=lambda gen: {"w": torch.randn(10 * size, generator=gen)},
...                       loss=lambda p, batch: 0.5 * ((p["w"] - 1.0) ** 2).sum(),
...                       steps=50, device=device, dtype=dtype)
>>> tasks.get("doc_quadratic").num_params
10
>>> tasks.unregister("doc_quadratic")
"""
from __future__ import annotations

import dataclasses
import inspect
import threading
from typing import Any, Callable, Optional

import torch

from .base import Task

__all__ = ["register", "unregister", "get", "names", "factory", "normalize_config"]

TaskFactory = Callable[..., Task]

_FACTORIES: dict[str, TaskFactory] = {}
_BUILT: dict[tuple, Task] = {}
_LOCK = threading.Lock()


def register(name: str) -> Callable[[TaskFactory], TaskFactory]:
    """Decorator: register ``factory`` under ``name`` (re-registering replaces it)."""

    def deco(fn: TaskFactory) -> TaskFactory:
        with _LOCK:
            _FACTORIES[name] = fn
            for key in [k for k in _BUILT if k[0] == name]:
                del _BUILT[key]
        return fn

    return deco


def unregister(name: str) -> None:
    with _LOCK:
        _FACTORIES.pop(name, None)
        for key in [k for k in _BUILT if k[0] == name]:
            del _BUILT[key]


def names() -> list[str]:
    """Registered task names, sorted."""
    return sorted(_FACTORIES)


def split_variant(name: str) -> tuple[str, Optional[int]]:
    """``"gru_charlm@3"`` -> ``("gru_charlm", 3)``; a plain name -> ``(name, None)``.

    A variant (`tasks.variants`) is named in stages like any task; the factory must take a
    ``variant`` argument."""
    base, sep, v = name.partition("@")
    if not sep:
        return name, None
    if not v.isdigit():
        raise KeyError(f"task {name!r}: a variant is a non-negative integer after '@', e.g. {base}@3")
    return base, int(v)


def exists(name: str) -> bool:
    """Is ``name`` (or the family of ``name@N``, whose factory takes ``variant``) registered?"""
    try:
        factory(name)
        return True
    except KeyError:
        return False


def factory(name: str) -> TaskFactory:
    base, variant = split_variant(name)
    try:
        fn = _FACTORIES[base]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(names())}") from None
    if variant is not None and "variant" not in inspect.signature(fn).parameters:
        raise KeyError(f"task {base!r} has no variants (its factory takes no 'variant' argument)")
    return fn


def normalize_config(name: str, **kw: Any) -> dict[str, Any]:
    """The factory's arguments with defaults filled in; device and dtype as strings."""
    _, variant = split_variant(name)
    if variant is not None:
        kw = dict(kw, variant=variant)
    sig = inspect.signature(factory(name))
    bound = sig.bind(**kw)
    bound.apply_defaults()
    cfg = dict(bound.arguments)
    if "device" in cfg:
        cfg["device"] = str(torch.device(cfg["device"]))
    if "dtype" in cfg:
        cfg["dtype"] = str(cfg["dtype"]).replace("torch.", "")
    return cfg


def get(name: str, **kw: Any) -> Task:
    """The task ``name`` built with factory arguments ``kw`` (cached per configuration)."""
    cfg = normalize_config(name, **kw)
    base, _ = split_variant(name)
    name = f"{base}@{cfg['variant']}" if cfg.get("variant") else base   # one name per variant
    key = (name, tuple(sorted((k, repr(v)) for k, v in cfg.items())))
    task = _BUILT.get(key)
    if task is None:
        args = dict(cfg)
        if "dtype" in args:
            args["dtype"] = getattr(torch, args["dtype"])
        task = factory(name)(**args)
        if task.name != base:
            raise ValueError(f"factory registered as {base!r} built a task named {task.name!r}")
        if name != base:   # scores, baselines and logs name the variant: "family@N"
            task = dataclasses.replace(task, name=name)
        task = task.with_config({k: v for k, v in cfg.items() if k != "device"})
        with _LOCK:
            task = _BUILT.setdefault(key, task)
    return task
