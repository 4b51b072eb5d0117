"""Test: the run's winner on the test tasks, beside AdamW and Lion. Reported, never used to choose.

The winner is chosen by validation (`evolve.validation`); this step only measures how it
generalizes to tasks that took no part in any choice: ``test_top`` programs in validation order
(1: the winner alone) and the references, each on every test task at ``test_repeats`` seeds
against AdamW tuned at that seed. Rows go to ``test.json``; nothing reads them back to pick a
program. (Before the three roles, this step scored the hall of fame's top programs on
"held-out" tasks and the report showed the best of them: a choice on the test set. Those runs'
``heldout.json`` is still read by show/report: `evolve.rundir.RunDir.test_rows`.)

Test tasks are larger than the search's (a conv net, a transformer) and run at several seeds,
so a row can take minutes on a loaded machine: each row has its own time budget
(``test_timeout``, not the search's ``candidate_timeout``; measured: the Lion row ran past 120 s
on a loaded 2-core machine), and a row that runs out of time or loses its worker says so: it is
never printed as a score.
"""
from __future__ import annotations

import statistics
from typing import Mapping, Optional, Sequence

import seeds as seed_library
from dsl import Program, to_text

from .candidate import TRANSIENT, Fitness, Individual, Job
from .config import SearchConfig
from .executor import Executor, run_all
from .rundir import RunDir, atomic_write_json

__all__ = ["score_test", "REFERENCES", "row_text", "rows_by_id"]

REFERENCES = ("adamw", "lion")


def score_test(executor: Executor, config: SearchConfig, ranked: Sequence[Individual], tasks: tuple[str, ...],
               run_dir: Optional[RunDir] = None, validations: Mapping[int, Mapping] = {}) -> list[dict]:
    """Score ``ranked[:test_top]`` (winner first) and the references on ``tasks``; rows as plain
    dicts (``score``, the run's aggregate, and ``mean`` are None where ``status`` is transient).
    ``validations``: validation records by program id, copied into the rows for the reader."""
    if not tasks or not config.test_top:
        return []
    rows: list[tuple[str, str, Program, Optional[int]]] = [
        (f"#{ind.id}", "winner" if k == 0 else "runner-up", ind.program, ind.id)
        for k, ind in enumerate(ranked[:config.test_top])]
    rows += [(name, "reference", seed_library.load(name), None) for name in REFERENCES]
    timeout = config.test_timeout or None
    jobs = [Job(-1 - i, to_text(p), (), (tuple(tasks),), config.test_repeats, timeout)
            for i, (_, _, p, _) in enumerate(rows)]
    results = run_all(executor, jobs, config.batch_size)
    out = []
    for (name, role, p, ident), j in zip(rows, jobs):
        f = results[j.id]
        val = validations.get(ident) if ident is not None else None
        out.append(dict(_scores(f), name=name, role=role, id=ident, hash=p.hash,
                        program=to_text(p, readable=True), status=f.status, reason=f.reason,
                        task_scores=dict(f.task_scores), validation=None if val is None else val.get("score")))
    if run_dir is not None:
        atomic_write_json(run_dir.test_path, {"tasks": list(tasks), "repeats": config.test_repeats,
                                              "aggregate": config.aggregate, "rows": out})
    return out


def _scores(f: Fitness) -> dict:
    if f.status in TRANSIENT:
        return {"score": None, "mean": None, "won": 0, "lost": 0}
    ts = list(f.task_scores.values())
    return {"score": f.score, "mean": statistics.fmean(ts) if ts else f.score, "won": f.won(), "lost": f.lost()}


def row_text(row: Mapping, aggregate: str = "mean") -> str:
    """One line of the test table: the mean of log ratios, tasks won/lost (and the run's
    aggregate when it is not the mean), or why there is no score. Reads old held-out rows too."""
    from .scores import summary_text

    if row.get("score") is None:
        why = (row.get("reason") or "").strip().splitlines()
        return f"  {row['name']:>8}  no score: {row['status']}" + (f" ({why[-1][:100]})" if why else "")
    tasks = ", ".join(f"{k} {v:+.3f}" for k, v in (row.get("task_scores") or {}).items())
    note = "" if row["status"] == "ok" else f" [{row['status']}: {(row.get('reason') or '').strip()[:80]}]"
    return f"  {row['name']:>8}  {summary_text(row, aggregate)}  ({tasks}){note}"


def rows_by_id(data: Optional[Mapping]) -> dict[int, dict]:
    """The program rows of ``test.json`` (or of an old ``heldout.json``, whose rows carry only a
    name ``#ID``) by program id; references are left out."""
    out = {}
    for r in (data or {}).get("rows") or []:
        ident = r.get("id")
        if ident is None and str(r.get("name", "")).startswith("#"):
            ident = int(r["name"][1:])
        if ident is not None:
            out[int(ident)] = dict(r)
    return out
