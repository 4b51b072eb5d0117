"""Meta-validation: the top programs of a run re-scored on held-out tasks, beside AdamW and Lion.

Held-out tasks are larger than the search's (a conv net, a transformer) and run at several
seeds, so a row can take minutes on a loaded machine: each row has its own time budget
(``heldout_timeout``, not the search's ``candidate_timeout``; measured: the Lion row ran past
120 s on a loaded 2-core machine), and a row that runs out of time or loses its worker says
so: it is never printed as a score.
"""
from __future__ import annotations

from typing import Optional

import seeds as seed_library
from dsl import Program, to_text

from .candidate import TRANSIENT, Individual, Job
from .config import SearchConfig
from .executor import Executor, run_all
from .rundir import RunDir, atomic_write_json

__all__ = ["validate", "REFERENCES", "row_text"]

REFERENCES = ("adamw", "lion")


def validate(executor: Executor, config: SearchConfig, best: list[Individual], tasks: tuple[str, ...],
             run_dir: Optional[RunDir] = None) -> list[dict]:
    """Score ``best[:heldout_top]`` and the references on ``tasks``; rows as plain dicts
    (``score`` is None where ``status`` is not ``ok``/``failed``)."""
    if not tasks:
        return []
    rows: list[tuple[str, Program]] = [(f"#{ind.id}", ind.program) for ind in best[:config.test_top]]
    rows += [(name, seed_library.load(name)) for name in REFERENCES]
    timeout = config.test_timeout or None
    jobs = [Job(-1 - i, to_text(p), (), (tuple(tasks),), config.test_repeats, timeout)
            for i, (_, p) in enumerate(rows)]
    results = run_all(executor, jobs, config.batch_size)
    out = []
    for (name, p), j in zip(rows, jobs):
        f = results[j.id]
        out.append({"name": name, "hash": p.hash, "program": to_text(p, readable=True),
                    "score": None if f.status in TRANSIENT else f.score, "status": f.status,
                    "reason": f.reason, "task_scores": f.task_scores})
    if run_dir is not None:
        atomic_write_json(run_dir.heldout_path, {"tasks": list(tasks), "rows": out})
    return out


def row_text(row: dict) -> str:
    """One line of the held-out table: the score, or why there is none."""
    if row["score"] is None:
        why = (row.get("reason") or "").strip().splitlines()
        return f"  {row['name']:>8}  no score: {row['status']}" + (f" ({why[-1][:100]})" if why else "")
    tasks = ", ".join(f"{k} {v:+.3f}" for k, v in row["task_scores"].items())
    note = "" if row["status"] == "ok" else f" [{row['status']}: {(row.get('reason') or '').strip()[:80]}]"
    return f"  {row['name']:>8}  {row['score']:+.4f}  ({tasks}){note}"
