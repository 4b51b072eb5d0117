"""Which score is which: one way to print a program's search, validation and test scores.

Each is the mean over the role's tasks of ``log(loss_AdamW / loss_program)`` (AdamW tuned per
task and seed; positive = better) with the tasks won and lost against it, and, when the run
aggregates otherwise (``--aggregate median|trimmed``), that aggregate too, since it is the
number the run chose by::

    search +0.42 (stage 3, 5 won 1 lost) | validation +0.10 (4 won 2 lost) | test +0.05 (4 won 3 lost)

The search score is of the last stage the program reached; validation chose the winner; test
only reports it.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional

__all__ = ["summary_text", "score_line", "search_summary"]


def _fmt(x: Optional[float]) -> str:
    return "n/a" if x is None else (f"{x:+.4f}" if math.isfinite(x) else str(x))


def summary_text(s: Mapping, aggregate: str = "mean", stage: Optional[int] = None) -> str:
    """``+0.1000 (stage 2, 4 won 2 lost)``; ``s`` has ``mean`` (else ``score`` stands for it),
    ``won``, ``lost`` and ``score`` (the run's aggregate, shown when that is not the mean)."""
    mean = s.get("mean")
    mean = s.get("score") if mean is None else mean
    parts = [f"stage {stage}"] if stage is not None else []
    if s.get("won") is not None and s.get("lost") is not None:
        parts.append(f"{s['won']} won {s['lost']} lost")
    if aggregate != "mean" and s.get("score") is not None:
        parts.append(f"{aggregate} {_fmt(s['score'])}")
    return _fmt(mean) + (f" ({', '.join(parts)})" if parts else "")


def search_summary(row: Mapping) -> dict:
    """A hall-of-fame row's search score as `summary_text` reads it (rows of runs from before
    the roles lack ``mean``/``won``/``lost``: their score was the mean, their tasks all counted)."""
    if "won" in row:
        return {"mean": row.get("mean"), "score": row.get("score"), "won": row["won"], "lost": row["lost"]}
    ts = [v for v in (row.get("task_scores") or {}).values() if v is not None]
    return {"mean": row.get("score"), "score": row.get("score"),
            "won": sum(1 for v in ts if math.isfinite(v) and v > 0),
            "lost": sum(1 for v in ts if not (math.isfinite(v) and v >= 0))}


def score_line(search: Optional[Mapping], validation: Optional[Mapping] = None, test: Optional[Mapping] = None,
               aggregate: str = "mean", stage: Optional[int] = None) -> str:
    """``search ... | validation ... | test ...``; a role without a value says so (``validation:
    not validated``, ``test: no score (timeout)``); a role absent from the run (None) is left out
    unless it is validation."""
    parts = []
    if search is not None:
        parts.append("search " + summary_text(search, aggregate, stage))
    if validation is None:
        parts.append("validation: not validated")
    elif validation.get("score") is None:
        parts.append(f"validation: no score ({validation.get('status', '?')})")
    else:
        parts.append("validation " + summary_text(validation, aggregate))
    if test is not None:
        parts.append(f"test: no score ({test.get('status', '?')})" if test.get("score") is None
                     else "test " + summary_text(test, aggregate))
    return " | ".join(parts)
