"""PNG plots of a run: best score over evaluations, the Pareto front, and meta-overfitting
(the search score of the best so far beside the validation scores of the programs validated)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from .rundir import RunDir

__all__ = ["plot_run"]


def plot_run(run: str, out: Optional[str] = None) -> list[str]:
    """Write ``progress.png``, ``pareto.png`` and ``meta_overfit.png`` for a run; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rd = RunDir(run)
    entries = rd.entries()
    if not entries:
        raise ValueError(f"{run}: the log is empty")
    folder = Path(out) if out else rd.path
    folder.mkdir(parents=True, exist_ok=True)
    paths = []

    evals = [e["eval"] for e in entries]
    scores = [e["score"] for e in entries]
    best, running = [], float("-inf")
    last = max(x["stages"] for x in entries)
    for s, e in zip(scores, entries):
        if e["status"] == "ok" and e["stages"] == last:
            running = max(running, s)
        best.append(running if running > float("-inf") else float("nan"))
    fig, ax = plt.subplots(figsize=(7, 4))
    ok = [(x, s) for x, s, e in zip(evals, scores, entries) if e["status"] == "ok"]
    ax.scatter([x for x, _ in ok], [s for _, s in ok], s=6, alpha=0.35, label="candidates")
    ax.plot(evals, best, color="C3", lw=2, label="best (last stage)")
    ax.axhline(0.0, color="gray", lw=1, ls="--", label="tuned AdamW")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("score = mean log(loss_AdamW / loss)")
    ax.set_ylim(max(-3.0, min(s for _, s in ok) if ok else -3.0), None)
    ax.set_title(f"{rd.path.name}: best score over evaluations")
    ax.legend(loc="lower right")
    fig.tight_layout()
    p = folder / "progress.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(str(p))

    hof = rd.hall_of_fame() if rd.hof_path.exists() else {"pareto": [], "best": []}
    fig, ax = plt.subplots(figsize=(6, 4))
    pts = [(e["length"], e["score"], e["memory"]) for e in entries if e["status"] == "ok"]
    if pts:
        sc = ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=[p[2] for p in pts], s=10, alpha=0.4,
                        cmap="viridis")
        fig.colorbar(sc, ax=ax, label="memory (state slots)")
    front = sorted(hof.get("pareto", []), key=lambda r: r["length"])
    if front:
        ax.plot([r["length"] for r in front], [r["score"] for r in front], "o-", color="C3", label="Pareto front")
        ax.legend(loc="lower right")
    ax.set_xlabel("program length (operations)")
    ax.set_ylabel("score")
    ax.set_title("score vs length vs memory")
    fig.tight_layout()
    p = folder / "pareto.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(str(p))
    paths.append(_meta_overfit(plt, rd, folder, evals, best))
    return paths


def _meta_overfit(plt, rd: RunDir, folder: Path, evals: list, best: list) -> str:
    """The Lion paper's figure 3: x = evaluations; the search score of the best program so far
    (a step line) and each validated program's validation score at the evaluation it was
    submitted (when it became the best), with the best validation so far. A search line that
    climbs while validation falls is meta-overfitting."""
    vals = rd.validations()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.step(evals, best, where="post", color="C0", lw=2, label="search: best so far (last stage)")
    during = [(v["eval_submitted"], v["score"]) for v in vals if v["score"] is not None and not v.get("at_end")]
    end = [(v["eval_submitted"], v["score"]) for v in vals if v["score"] is not None and v.get("at_end")]
    if during:
        ax.plot(*zip(*during), "o", color="C3", ms=5, label="validation of a new best")
    if end:
        ax.plot(*zip(*end), "x", color="C3", ms=6, label="validation at the end (hall of fame)")
    pts = sorted(during + end)
    if pts:
        xs, run, top = [], [], float("-inf")
        for x, y in pts:
            top = max(top, y)
            xs.append(x)
            run.append(top)
        xs.append(max(evals[-1], xs[-1]))
        run.append(run[-1])
        ax.step(xs, run, where="post", color="C3", lw=1, ls="--", label="validation: best so far")
    ax.axhline(0.0, color="gray", lw=1, ls=":", label="tuned AdamW")
    finite = [y for y in best if y == y] + [y for _, y in pts]
    if finite:
        ax.set_ylim(max(-3.0, min(finite) - 0.1), None)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("score = log(loss_AdamW / loss) over tasks")
    ax.set_title(f"{rd.path.name}: search vs validation" + ("" if vals else " (no validation in this run)"))
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    p = folder / "meta_overfit.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return str(p)
