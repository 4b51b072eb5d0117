"""Lineage: the chain of ancestors of a logged program, from its warm-start seed to it.

Every evaluated candidate is one log entry with its ``id`` and its ``parent``'s id, so the
chain is a walk up the ``parent`` links. Ids are unique across islands (a migrant keeps its id
and is not logged again) and across a resume (the log is cut back to the checkpoint, and the
candidates in flight are logged once, when they finish), so a dict from id to entry is enough;
should an id appear twice all the same, the last entry wins (it is the one the search kept).
Each step carries the statement-level difference to its parent as a unified diff of the
readable printed programs.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

import dsl

__all__ = ["Step", "lineage", "by_id", "best_id", "format_lineage", "step_to_dict"]


@dataclass(frozen=True)
class Step:
    """One ancestor. ``diff`` is a unified diff from the parent's readable text to this one's
    (the whole program, as added lines, for a root); ``root_note`` says why a root has no parent."""

    id: int
    parent: Optional[int]
    mutation: str
    island: Optional[int]
    eval: Optional[int]
    score: float
    stage_scores: tuple[float, ...]
    task_scores: tuple[tuple[str, float], ...]
    status: str
    cached: Optional[str]
    program: str          # flat text, as logged
    text: str             # readable text (dsl.to_text(p, readable=True))
    diff: str
    root_note: str = ""


def by_id(entries: Iterable[Mapping]) -> dict[int, Mapping]:
    """Log entries keyed by candidate id (the last entry of an id wins)."""
    return {int(e["id"]): e for e in entries}


def best_id(hall_of_fame: Mapping) -> int:
    """The id of the best program of a run (hall_of_fame.json's first ``best`` row)."""
    best = hall_of_fame.get("best") or []
    if not best:
        raise ValueError("the hall of fame is empty: no program to trace")
    return int(best[0]["id"])


def _readable(flat: str) -> str:
    text = dsl.to_text(dsl.parse(flat), readable=True)
    return text if text.endswith("\n") else text + "\n"


def _diff(before: str, after: str, a: str, b: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        fromfile=a, tofile=b, n=1))


def lineage(entries: Iterable[Mapping] | Mapping[int, Mapping], id: int) -> list[Step]:
    """The ancestors of candidate ``id``, root first and ``id`` last.

    Raises KeyError when ``id`` is not in the log and ValueError on a cycle of parent links
    (a corrupt log). A parent missing from the log (a mutant of a seed proposed while the whole
    population was in flight has ``parent`` None; a log edited by hand may lack entries) ends the
    chain at the last known entry, with ``root_note`` saying so.
    """
    index = entries if isinstance(entries, Mapping) else by_id(entries)
    if id not in index:
        raise KeyError(f"no candidate with id {id} in the log")
    chain: list[Mapping] = []
    seen: set[int] = set()
    cur: Optional[int] = id
    note = ""
    while cur is not None:
        if cur in seen:
            raise ValueError(f"the log's parent links loop at id {cur}")
        if cur not in index:
            note = f"parent {cur} is not in the log"
            break
        seen.add(cur)
        e = index[cur]
        chain.append(e)
        cur = e.get("parent")
        cur = int(cur) if cur is not None else None
    chain.reverse()
    if not note and chain[0].get("mutation", "seed") != "seed":
        note = "mutant of a seed program (proposed while the population was empty)"
    steps: list[Step] = []
    prev_text, prev_name = "", "/dev/null"
    for k, e in enumerate(chain):
        text = _readable(e["program"])
        name = f"id {e['id']}"
        fit = e.get("fitness") or {}
        steps.append(Step(
            id=int(e["id"]), parent=e.get("parent"), mutation=e.get("mutation", "seed"), island=e.get("island"),
            eval=e.get("eval"), score=float(e["score"]) if e.get("score") is not None else math.nan,
            stage_scores=tuple(float(x) for x in fit.get("stage_scores", ())),
            task_scores=tuple((str(t), float(v)) for t, v in (fit.get("task_scores") or {}).items()),
            status=e.get("status", ""), cached=e.get("cached"), program=e["program"], text=text,
            diff=_diff(prev_text, text, prev_name, name), root_note=note if k == 0 else ""))
        prev_text, prev_name = text, name
    return steps


def step_to_dict(s: Step) -> dict:
    d = {f: getattr(s, f) for f in s.__dataclass_fields__}
    d["stage_scores"] = list(s.stage_scores)
    d["task_scores"] = dict(s.task_scores)
    return d


def _score(x: float) -> str:
    return f"{x:+.4f}" if math.isfinite(x) else str(x)


def format_lineage(steps: Sequence[Step]) -> str:
    """The chain as text: one header per step (id, mutation, island, scores) and its diff."""
    out = []
    for k, s in enumerate(steps):
        head = f"[{k}] id {s.id}"
        head += f" <- {s.parent}" if s.parent is not None else ""
        head += f"  {s.mutation}"
        if s.island is not None:
            head += f"  island {s.island}"
        head += f"  score {_score(s.score)}"
        if k:
            head += f" ({_score(s.score - steps[k - 1].score)})" \
                if math.isfinite(s.score) and math.isfinite(steps[k - 1].score) else ""
        if s.stage_scores:
            head += "  stages " + " ".join(_score(x) for x in s.stage_scores)
        if s.status and s.status != "ok":
            head += f"  [{s.status}]"
        if s.cached:
            head += f"  (cache hit: {s.cached})"
        out.append(head)
        if s.root_note:
            out.append(f"    # {s.root_note}")
        if s.task_scores:
            out.append("    tasks: " + ", ".join(f"{t} {_score(v)}" for t, v in s.task_scores))
        if k == 0:
            out.extend("    " + line for line in s.text.rstrip("\n").splitlines())
        elif s.diff:
            out.extend("    " + line for line in s.diff.rstrip("\n").splitlines())
        else:
            out.append("    (same printed program)")
    return "\n".join(out) + "\n"
