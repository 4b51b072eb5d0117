"""Seed programs: classic optimizers written in the update-rule language, one file per method.

Each ``<name>.py`` in this folder is program text (parsed by `dsl`, never imported or executed)
that starts with a comment citing the method's paper and the reference implementation it
reproduces. ``tests/test_seeds.py`` checks every seed against its reference.

>>> import seeds
>>> "adam" in seeds.names()
True
>>> seeds.load("sgd").hparam_names
()
"""
from __future__ import annotations

from pathlib import Path

import dsl

__all__ = ["names", "path", "load", "load_all"]

_DIR = Path(__file__).resolve().parent


def names() -> list[str]:
    """Names of all seeds, sorted (the file names without ``.py``)."""
    return sorted(p.stem for p in _DIR.glob("*.py") if not p.name.startswith("_"))


def path(name: str) -> Path:
    """The program file of seed ``name``; `KeyError` if there is no such seed."""
    if not isinstance(name, str) or name.startswith("_") or name not in names():
        raise KeyError(f"no seed named {name!r}; seeds are: {', '.join(names())}")
    return _DIR / f"{name}.py"


def load(name: str) -> dsl.Program:
    """Parse seed ``name`` into a `dsl.Program`."""
    return dsl.load(path(name))


def load_all() -> dict[str, dsl.Program]:
    """Every seed, parsed, by name (in `names` order)."""
    return {n: load(n) for n in names()}
