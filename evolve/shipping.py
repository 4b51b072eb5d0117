"""What travels to a Ray cluster: this project's packages and the user's task modules.

A cluster's nodes usually have the dependencies (torch, ray, ...) but not this project: a node
started with `ray start` from a plain environment, or a cluster image. Ray's runtime
environment ships local code with the job (``py_modules``: each package directory, or a
single ``.py`` file, is zipped, uploaded once and put on every worker's ``sys.path``), so a
search runs from any working directory against any such cluster. The embedded local Ray uses
the same path, so the shipping is exercised by every search, not only on clusters.

A task module is a Python file (or package, or importable dotted name) whose ``@tasks.register``
factories define tasks; it is imported on the driver and, by name, in every worker.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

__all__ = ["PROJECT_PACKAGES", "TaskModule", "load_task_module", "import_task_modules", "runtime_env"]

PROJECT_PACKAGES = ("dsl", "evolve", "tasks", "seeds")

# ray.init merges the runtime environment of a job submitted with `ray job submit` into the
# driver's; this variable holds it (ray._private.runtime_env.constants.RAY_JOB_CONFIG_JSON_ENV_VAR).
_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


@dataclass(frozen=True)
class TaskModule:
    """A user task module: ``name`` is what workers import, ``path`` what is shipped (None
    for a module that is importable on the nodes already)."""

    name: str
    path: Optional[str]


def load_task_module(spec: str) -> TaskModule:
    """Import a task module on the driver: a ``.py`` file, a package directory, or a dotted
    module name. Its ``@tasks.register`` factories run now; the same import runs in workers."""
    p = Path(spec).expanduser()
    if p.suffix == ".py" or p.is_dir() or os.sep in spec:
        if not p.exists():
            raise FileNotFoundError(f"task module {spec}: no such file or directory")
        p = p.resolve()
        name = p.stem if p.is_file() else p.name
        if not name.isidentifier():
            raise ValueError(f"task module {spec}: {name!r} is not a valid module name")
        init = p / "__init__.py" if p.is_dir() else p
        if not init.exists():
            raise FileNotFoundError(f"task module {spec}: a package directory needs an __init__.py")
        if name in PROJECT_PACKAGES:
            raise ValueError(f"task module {spec}: the name {name!r} is taken by this project's package")
        loaded = sys.modules.get(name)
        if loaded is None or Path(getattr(loaded, "__file__", "") or "").resolve() != init:
            importlib_spec = importlib.util.spec_from_file_location(
                name, init, submodule_search_locations=[str(p)] if p.is_dir() else None)
            module = importlib.util.module_from_spec(importlib_spec)
            sys.modules[name] = module
            try:
                importlib_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        return TaskModule(name, str(p))
    module = importlib.import_module(spec)
    top = sys.modules[spec.split(".")[0]]
    path = getattr(top, "__file__", None)
    if path and Path(path).name == "__init__.py":
        path = str(Path(path).parent)
    return TaskModule(spec, path)


def import_task_modules(names: tuple[str, ...]) -> list[ModuleType]:
    """In a worker: import the task modules by name (shipped modules are on ``sys.path``)."""
    out = []
    for name in names:
        try:
            out.append(importlib.import_module(name))
        except ImportError as e:
            if getattr(e, "name", None) == name.split(".")[0]:
                raise ImportError(f"task module {name!r} is not on this worker: pass it with --tasks-module "
                                  "(a file or package directory) so it is shipped") from e
            raise ImportError(f"task module {name!r} failed to import on this worker: {e}") from e
    return out


def _package_dir(name: str) -> str:
    module = importlib.import_module(name)
    (path,) = module.__path__
    return path


def _job_runtime_env() -> dict:
    """The runtime environment of the `ray job submit` job this driver runs in, if any."""
    text = os.environ.get(_JOB_CONFIG_ENV)
    if not text:
        return {}
    try:
        return dict(json.loads(text).get("runtime_env") or {})
    except (ValueError, AttributeError):
        return {}


def runtime_env(modules: tuple[TaskModule, ...] = (), base: Optional[dict] = None) -> dict:
    """``base`` plus ``py_modules``: the project's packages and the shipped task modules.

    Inside a `ray job submit` job whose runtime environment already names ``py_modules``, Ray
    refuses a second list: then the job's own list (or its working directory) must carry the
    project, and nothing is added."""
    env: dict[str, Any] = dict(base or {})
    if "py_modules" in _job_runtime_env():
        return env
    shipped = [_package_dir(n) for n in PROJECT_PACKAGES] + [m.path for m in modules if m.path]
    env["py_modules"] = list(env.get("py_modules", [])) + shipped
    excludes = list(env.get("excludes", []))
    for pattern in ("__pycache__", "*.pyc"):
        if pattern not in excludes:
            excludes.append(pattern)
    env["excludes"] = excludes
    return env
