"""A run report: one self-contained HTML file (no server, no network, plots as base64 PNG).

Sections (each a ``<section id=...>``): settings, progress, pareto, hall-of-fame, tasks,
lineage, validation, test, curves. Scores are labelled by role (`evolve.scores`): search (the
stages), validation (chose the winner), test (reported only). Math is shown as preformatted text with the LaTeX source in a
``<details>``: MathJax would need the network. Every piece of text from the run goes through
`html.escape`. The loss curves train the best program, AdamW and Lion for ``steps`` steps on
one task (each at the best of a small lr grid around tuned AdamW's lr), so the report costs
seconds, not a search's worth of training.
"""
from __future__ import annotations

import base64
import html
import json
import math
import tempfile
from pathlib import Path
from typing import Iterable, Optional, Sequence

import dsl

from .heldout import rows_by_id
from .lineage import best_id, lineage
from .rundir import RunDir

__all__ = ["write_report", "build_report", "SECTIONS", "CURVE_LR_GRID"]

SECTIONS = ("settings", "progress", "pareto", "hall-of-fame", "tasks", "lineage", "validation", "test", "curves")

CURVE_LR_GRID = (0.1, 0.3, 1.0, 3.0)
"""Multipliers of tuned AdamW's lr tried for each curve; the lowest final loss is drawn (Lion
wants a 3-10x smaller lr than AdamW, a program may want another: one lr for all would be unfair)."""

_CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:13px}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#eee}td.l,th.l{text-align:left}.win{color:#060}.loss{color:#a00}
img{max-width:100%}section{margin-bottom:2em}.note{color:#666}
pre.diff .add{color:#060}pre.diff .del{color:#a00}"""


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Optional[float], fmt: str = "+.4f") -> str:
    if x is None:
        return "-"
    return format(x, fmt) if math.isfinite(x) else str(x)


def _section(id: str, title: str, body: str) -> str:
    return f'<section id="{id}">\n<h2>{_e(title)}</h2>\n{body}\n</section>\n'


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    """Cells are HTML already (escape before); the first ``left`` columns are left-aligned."""
    h = "".join(f'<th{" class=l" if i < left else ""}>{c}</th>' for i, c in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td{" class=l" if i < left else ""}>{c}</td>' for i, c in enumerate(r))
                   + "</tr>\n" for r in rows)
    return f"<table><tr>{h}</tr>\n{body}</table>"


def _math(prog: dsl.Program) -> str:
    parts = []
    try:
        parts.append(f"<pre>{_e(dsl.to_math(prog))}</pre>")
        parts.append(f"<details><summary>LaTeX</summary><pre>{_e(dsl.to_math(prog, latex=True))}</pre></details>")
    except Exception as err:  # noqa: BLE001 - SymbolicError (time bound, sympy failure): the report goes on
        parts.append(f'<p class="note">math skipped: {_e(err)}</p>')
    return "\n".join(parts)


def _settings(cfg: dict) -> str:
    rows = [(_e(k), _e(json.dumps(v))) for k, v in cfg.items()]
    return _table(["setting", "value"], rows, left=2)


def _plots(rd: RunDir) -> dict[str, str]:
    """`plots.plot_run`'s figures as <img> tags, by file stem (progress, pareto, meta_overfit)."""
    from .plots import plot_run

    with tempfile.TemporaryDirectory() as tmp:
        paths = plot_run(str(rd.path), tmp)
        return {Path(p).stem: _img(Path(p).read_bytes(), Path(p).stem + " plot") for p in paths}


def _score_line(r: dict, tests: dict, how: str) -> str:
    from .scores import score_line, search_summary

    return score_line(search_summary(r), r.get("validation"), tests.get(r.get("id")), how,
                      len(r.get("stage_scores") or ()) or None)


def _hall_of_fame(rows: list[dict], tests: Optional[dict] = None, how: str = "mean", order: str = "search") -> str:
    out = [f'<p class="note">ordered by {_e(order)} score{"; #1 is the winner" if order == "validation" else ""}. '
           'Each score is the mean over the role&#x27;s tasks of log(loss of tuned AdamW / loss of the program), '
           'with the tasks won and lost against it.</p>'] if rows else []
    for rank, r in enumerate(rows, 1):
        prog = dsl.parse(r["flat"])
        out.append(f"<h3>#{rank}: id {_e(r['id'])}, length {_e(r['length'])}, memory {_e(r['memory'])}</h3>")
        out.append(f"<p>{_e(_score_line(r, tests or {}, how))}</p>")
        out.append(f"<pre>{_e(dsl.to_text(prog, readable=True))}</pre>")
        simplified = dsl.simplified_text(prog, timeout=5.0)   # bounded; None: nothing shorter
        if simplified:
            out.append(f"<pre>{_e(simplified)}</pre>")
        shown = prog
        if simplified and not simplified.startswith("# not simplified"):
            try:                                              # the math of the simplified rule
                shown = dsl.parse(simplified.split("\n", 1)[1])
            except dsl.ParseError:
                pass
        out.append(_math(shown))
    return "\n".join(out) or '<p class="note">the hall of fame is empty</p>'


def _cell(v: Optional[float]) -> str:
    cls = "" if v is None or not math.isfinite(v) or v == 0 else (' class="win"' if v > 0 else ' class="loss"')
    return f"<span{cls}>{_e(_num(v, '+.3f'))}</span>"


def _tasks(rows: list[dict]) -> str:
    """Per-task scores by role: the search tasks (all stages reached), then the validation tasks."""
    from .scores import search_summary

    search: list[str] = []
    val: list[str] = []
    for r in rows:
        search += [t for t in (r.get("task_scores") or {}) if t not in search]
        val += [t for t in ((r.get("validation") or {}).get("task_scores") or {}) if t not in val]
    if not search and not val:
        return '<p class="note">no per-task scores</p>'
    table = []
    for rank, r in enumerate(rows, 1):
        ts, v = r.get("task_scores") or {}, r.get("validation") or {}
        vs = v.get("task_scores") or {}
        s = search_summary(r)
        table.append([f"#{rank} (id {_e(r['id'])})", *[_cell(ts.get(t)) for t in search],
                      f"{s['won']} / {s['lost']}", *[_cell(vs.get(t)) for t in val],
                      f"{v['won']} / {v['lost']}" if v.get("score") is not None else "-"])
    note = ('<p class="note">task score = log(loss of tuned AdamW / loss of the program): above 0 the '
            'program wins the task, below 0 it loses. Won / lost: of the last search stage reached, and of '
            'the validation tasks.</p>')
    head = ["program", *(f"{_e(t)} (search)" for t in search), "search won / lost",
            *(f"{_e(t)} (validation)" for t in val), "validation won / lost"]
    return note + _table(head, table)


def _diff_html(diff: str) -> str:
    lines = []
    for line in diff.rstrip("\n").splitlines():
        cls = "add" if line.startswith("+") and not line.startswith("+++") else \
              "del" if line.startswith("-") and not line.startswith("---") else ""
        lines.append(f'<span class="{cls}">{_e(line)}</span>' if cls else _e(line))
    return '<pre class="diff">' + "\n".join(lines) + "</pre>"


def _lineage(rd: RunDir, ident: int) -> str:
    steps = lineage(rd.entries(), ident)
    rows = [(str(k), _e(s.id), _e(s.parent if s.parent is not None else "-"), _e(s.mutation),
             _e(s.island if s.island is not None else "-"), _e(_num(s.score)), _e(s.status))
            for k, s in enumerate(steps)]
    out = [_table(["step", "id", "parent", "mutation", "island", "score", "status"], rows, left=4)]
    for k, s in enumerate(steps):
        out.append(f"<h3>step {k}: id {_e(s.id)} ({_e(s.mutation)}), score {_e(_num(s.score))}</h3>")
        if s.root_note:
            out.append(f'<p class="note">{_e(s.root_note)}</p>')
        out.append(f"<pre>{_e(s.text)}</pre>" if k == 0 else (_diff_html(s.diff) if s.diff else
                                                               '<p class="note">same printed program</p>'))
    return "\n".join(out)


def _validation(rd: RunDir) -> str:
    """validation.jsonl as a table: when each program was submitted (the search's evaluation
    count) and scored, its search score and its validation."""
    vals = rd.validations()
    if not vals:
        return '<p class="note">no validation in this run (validation.jsonl is absent or empty)</p>'
    rows = [[_e(v["eval_submitted"]), _e(v["eval_done"]), _e(v["id"]), _e(_num(v["search"])),
             f"no score: {_e(v['status'])}" if v["score"] is None else _e(_num(v["score"])),
             _e(_num(v.get("mean"))), _e(v["won"]), _e(v["lost"]), "end" if v.get("at_end") else "new best",
             _e(v["status"])] for v in vals]
    return ('<p class="note">each new best by search score was validated as it appeared; at the end, the hall '
            'of fame&#x27;s top. The winner is the best by validation.</p>'
            + _table(["submitted at eval", "done at eval", "id", "search", "validation", "mean", "won", "lost",
                      "why", "status"], rows, left=0))


def _test(rd: RunDir, how: str = "mean") -> str:
    """test.json (or an old run's heldout.json): the winner and the references on the test tasks."""
    data = rd.test_rows()
    if data is None:
        return '<p class="note">no test rows in this run (test.json is absent)</p>'
    tasks = data.get("tasks") or []
    rows = []
    for r in data.get("rows") or []:
        ts = r.get("task_scores") or {}
        if r.get("score") is None:    # timed out or lost its worker: never a number
            score = f"no score: {_e(r.get('status'))}"
            cells = ["-"] * len(tasks)
            wl = "-"
        else:
            score = _e(_num(r.get("mean", r["score"])))
            cells = [_e(_num(ts.get(t), "+.3f")) for t in tasks]
            wl = f"{r['won']} / {r['lost']}" if "won" in r else "-"
        why = (r.get("reason") or "").strip().splitlines()
        extra = [_e(_num(r.get("score")))] if how != "mean" else []
        rows.append([_e(r.get("name")), _e(r.get("role", "-")), _e(_num(r.get("validation"))), score, wl, *extra,
                     *cells, _e(r.get("status")), _e(why[-1][:120] if why else "")])
    if data.get("heldout"):
        note = ('<p class="note">held-out rows of a run from before the three roles (heldout.json): its top '
                'programs were re-scored here and the best of them reported, a choice on these tasks.</p>')
    else:
        note = (f'<p class="note">reported only: nothing was chosen by these scores; '
                f'{_e(data.get("repeats", "?"))} seeds per task, each against AdamW tuned at that seed.</p>')
    head = ["program", "role", "validation", "test (mean)", "won / lost", *([f"test ({_e(how)})"] if how != "mean"
                                                                          else []), *map(_e, tasks), "status",
            "reason"]
    return f"<p>test tasks: {_e(', '.join(tasks))}</p>" + note + _table(head, rows, left=2)


def first_stage_task(cfg: dict) -> str:
    """The first task of the run's first stage (a stage may name a task set like 'stage1')."""
    from tasks.stages import resolve

    stages = cfg.get("stages") or [["stage1"]]
    return resolve(list(stages[0]))[0]


def _curves(cfg: dict, flat: str, task_name: str, steps: int) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    import seeds
    from tasks.fitness import EvalConfig
    from tasks.replay import train_with_optimizer

    config = EvalConfig(size=int(cfg.get("task_size") or 1), dtype=cfg.get("dtype") or "float32", device="cpu")
    task = config.task(task_name)
    steps = min(steps, task.steps) if steps else task.steps
    base = config.baseline(task)   # tuned at the task's full budget (cached by the search)
    programs = [("best", dsl.parse(flat)), ("AdamW", seeds.load("adamw")), ("Lion", seeds.load("lion"))]
    runs = []
    for label, prog in programs:
        tries = [train_with_optimizer(task, lambda ps, a, p=prog: dsl.ProgramOptimizer(ps, p, lr=a),
                                      base.lr * m, steps=steps, label=label) for m in CURVE_LR_GRID]
        ok = [r for r in tries if r.status == "ok" and math.isfinite(r.loss)]
        runs.append(min(ok, key=lambda r: r.loss) if ok else tries[-1])
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        if r.curve:
            xs, ys = zip(*r.curve)
            ax.plot(xs, ys, label=f"{r.label} (lr {r.lr:.2g})", ls="--" if r.label != "best" else "-")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.set_title(f"{task.name}: {steps} steps")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    rows = [(_e(r.label), _e(f"{r.lr:.3g}"), _e(_num(r.loss, ".5g")), _e(r.status), _e(r.reason)) for r in runs]
    note = (f'<p class="note">{_e(task.name)}, {steps} of its {task.steps} steps; each optimizer at the best of '
            f'{_e(", ".join(f"{m:g}" for m in CURVE_LR_GRID))} x tuned AdamW lr ({base.lr:.3g}).</p>')
    return note + _img(buf.getvalue(), "loss curves") + _table(["optimizer", "lr", "final loss", "status", "note"],
                                                                 rows, left=1)


def build_report(run: str, *, task: Optional[str] = None, steps: int = 200, top: int = 5,
                 curves: bool = True) -> str:
    """The report's HTML text (see the module docstring for its sections)."""
    rd = RunDir(run)
    cfg = rd.config()
    hof = rd.hall_of_fame()
    best_rows = (hof.get("best") or [])[:top]
    how = cfg.get("aggregate", "mean")
    tests = rows_by_id(rd.test_rows())
    plots = _plots(rd)
    parts = [_section("settings", "Settings (config.json)", _settings(cfg)),
             _section("progress", "Progress", plots["progress"]),
             _section("pareto", "Score, length and memory", plots["pareto"]),
             _section("hall-of-fame", f"Hall of fame (top {len(best_rows)})",
                      _hall_of_fame(best_rows, tests, how, hof.get("order", "search"))),
             _section("tasks", "Per-task scores against tuned AdamW", _tasks(best_rows))]
    if best_rows:
        ident = best_id(hof)
        parts.append(_section("lineage", f"Lineage of the best (id {ident})", _lineage(rd, ident)))
    else:
        parts.append(_section("lineage", "Lineage of the best", '<p class="note">no program</p>'))
    parts.append(_section("validation", "Validation (chooses the winner)", plots["meta_overfit"] + _validation(rd)))
    parts.append(_section("test", "Test (reported only)", _test(rd, how)))
    if curves and best_rows:
        name = task or first_stage_task(cfg)
        body = _curves(cfg, best_rows[0]["flat"], name, steps)
    else:
        body = '<p class="note">loss curves skipped</p>'
    parts.append(_section("curves", "Loss curves: the best beside AdamW and Lion", body))
    stats = hof.get("stats") or {}
    head = (f"<h1>Run report: {_e(rd.path.name)}</h1>\n<p>{_e(stats.get('evaluations', '?'))} evaluations, best "
            f"search score {_e(_num(stats.get('best_score')))}; run directory <code>{_e(rd.path.resolve())}</code></p>\n")
    if best_rows and hof.get("order") == "validation":
        head += f"<p>winner (id {_e(best_rows[0]['id'])}): {_e(_score_line(best_rows[0], tests, how))}</p>\n"
    toc = "<nav><ul>" + "".join(f'<li><a href="#{s}">{s}</a></li>' for s in SECTIONS) + "</ul></nav>\n"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_e('optsearch run ' + rd.path.name)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + head + toc + "".join(parts) + "</body>\n</html>\n")


def write_report(run: str, out: str, **kw) -> str:
    """Write `build_report` to ``out``; return its path."""
    text = build_report(run, **kw)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text, encoding="utf-8")
    return str(out)
