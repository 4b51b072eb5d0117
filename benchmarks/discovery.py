"""Rediscovery experiment: the default search from AdamW, three seeds, a fixed time budget each.

Three roles (tasks/stages.py): the search climbs its stage score; each new best is validated on
tasks it never trains on, and the run's WINNER is the best by validation; only the winner (beside
AdamW and Lion) is scored on the test tasks, at ``test_repeats`` seeds, each against AdamW tuned
at that seed. Per run this prints the winner as code and simplified math, its search, validation
and test scores (mean log ratio and tasks won/lost), the Lion-family count, and whether the run
meta-overfit; then the goal: a winner "beats tuned AdamW on the test tasks" when its test mean is
above 0 AND it wins more test tasks than it loses. Writes runs/discovery/summary.json.

    .venv/bin/python benchmarks/discovery.py [--config benchmarks/discovery.toml] [--seeds 0,1,2]
        [--time-limit SECONDS]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import dsl
from evolve.config import load_config
from evolve.families import sign_momentum
from evolve.launch import resume_search, run_search

META_OVERFIT_MARGIN = 0.05
"""A run meta-overfit when its last validated search-best scores this much below the best
validation score seen during the search: the search kept climbing past the program that
generalized best (the Lion paper's figure 3)."""


def family_scan(run_dir: str) -> dict:
    """Every evaluated candidate of the run (log.jsonl) checked for the Lion family."""
    seen, hits = set(), []
    with open(Path(run_dir) / "log.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            if rec["hash"] in seen:
                continue
            seen.add(rec["hash"])
            p = dsl.parse(rec["program"])
            if sign_momentum(p):
                hits.append({"eval": rec["eval"], "id": rec["id"], "score": rec["score"], "stages": rec["stages"],
                             "program": dsl.to_text(p, readable=True)})
    best = max(hits, key=lambda h: (h["stages"], h["score"]), default=None)
    return {"distinct_programs": len(seen), "lion_family": len(hits), "best": best,
            "first_eval": min((h["eval"] for h in hits), default=None)}


def meta_overfit(run_dir: str) -> dict:
    """From validation.jsonl: the validations of new bests during the search, in order, by their
    validation MEAN (the goal's measure; the run may have ranked by another aggregate); did the
    search's last best validate ``META_OVERFIT_MARGIN`` below the best validation before it?"""
    path = Path(run_dir) / "validation.jsonl"
    recs = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    during = sorted((r for r in recs if not r.get("at_end") and r.get("mean") is not None),
                    key=lambda r: r["eval_submitted"])
    if not during:
        return {"validated": 0, "overfit": None}
    peak = max(during, key=lambda r: r["mean"])
    last = during[-1]
    return {"validated": len(during), "peak_eval": peak["eval_submitted"], "peak": peak["mean"],
            "peak_id": peak["id"], "peak_won": peak["won"], "peak_lost": peak["lost"],
            "last_eval": last["eval_submitted"], "last": last["mean"], "last_search": last["search"],
            "overfit": last["mean"] < peak["mean"] - META_OVERFIT_MARGIN}


def _summary(scores: Optional[dict]) -> dict:
    """mean / won / lost of per-task scores (None: no scores)."""
    if not scores:
        return {"mean": None, "won": None, "lost": None}
    v = list(scores.values())
    return {"mean": sum(v) / len(v), "won": sum(x > 0 for x in v), "lost": sum(x < 0 for x in v)}


def run_row(seed: int, res) -> dict:
    """What the tables need from one finished run."""
    win = res.winner
    top = max(res.best, key=lambda i: i.fitness.rank)   # the best by search score, for comparison
    try:
        simple = dsl.simplify(win.program, substitute=True)  # hyperparameters at their values
        simple_text, math_text = dsl.to_text(simple, readable=True), dsl.to_math(simple)
    except Exception as e:  # simplification is a report nicety; never lose a run over it
        simple_text, math_text = dsl.to_text(win.program, readable=True), f"(not simplified: {type(e).__name__})"
    stage_tasks = res.stages[win.fitness.stages_reached - 1] if res.stages else tuple(win.fitness.task_scores)
    val = res.validations.get(win.id) or {}
    test = {r["name"]: r for r in res.test}
    winner_test = next((r for r in res.test if r.get("role") == "winner"), None)
    return {
        "seed": seed, "run": res.run_dir, "stats": res.stats,
        "winner": {"id": win.id, "text": dsl.to_text(win.program, readable=True), "simplified": simple_text,
                   "math": math_text, "length": win.program.length, "memory": win.program.memory,
                   "lion_family": sign_momentum(win.program), "stages": win.fitness.stages_reached,
                   "search": dict(_summary({t: win.fitness.task_scores[t] for t in stage_tasks
                                            if t in win.fitness.task_scores}), score=win.fitness.score),
                   "validation": dict(_summary(val.get("task_scores")), score=val.get("score")),
                   "test": dict(_summary((winner_test or {}).get("task_scores")),
                                score=(winner_test or {}).get("score"),
                                task_scores=(winner_test or {}).get("task_scores"))},
        "best_search": {"id": top.id, "score": top.fitness.score, "stages": top.fitness.stages_reached,
                        "validation": (res.validations.get(top.id) or {}).get("score")},
        "references": {k: dict(_summary(test[k].get("task_scores")), score=test[k].get("score"))
                       for k in ("adamw", "lion") if k in test},
        "test": res.test,
        "scan": family_scan(res.run_dir),
        "meta": meta_overfit(res.run_dir),
    }


def _wl(s: dict) -> str:
    return "n/a" if s.get("mean") is None else f"{s['mean']:+.3f} ({s['won']}/{s['lost']})"


def beats_adamw(test: dict) -> bool:
    """The goal: test mean above 0 and more test tasks won than lost."""
    return test.get("mean") is not None and test["mean"] > 0 and test["won"] > test["lost"]


def print_report(rows: list[dict]) -> None:
    print("\nScores: mean log(L_AdamW / L_program) over the role's tasks (won/lost against tuned AdamW).\n")
    print("| seed | evals | evals/s | cache hits | winner: search | winner: validation | winner: test (3 seeds) "
          "| test: Lion | beats AdamW on test | meta-overfit | Lion-family candidates (best search score) |")
    print("|---|---:|---:|---:|---|---|---|---|---|---|---|")
    for r in rows:
        s, w, scan, m = r["stats"], r["winner"], r["scan"], r["meta"]
        fam = (f"{scan['lion_family']} of {scan['distinct_programs']}"
               + (f" ({scan['best']['score']:+.3f}, stage {scan['best']['stages']})" if scan["best"] else "")
               + ("; the winner is one" if w["lion_family"] else ""))
        mo = "n/a" if m["overfit"] is None else (
            f"{'yes' if m['overfit'] else 'no'} (peak {m['peak']:+.3f} at eval {m['peak_eval']}, "
            f"last {m['last']:+.3f} at {m['last_eval']})")
        print(f"| {r['seed']} | {s['evaluations']} | {s['evals_per_second']:.2f} | "
              f"{100 * s['cache']['hit_rate']:.0f}% | {_wl(w['search'])} stage {w['stages']} | "
              f"{_wl(w['validation'])} | {_wl(w['test'])} | {_wl(r['references'].get('lion', {}))} | "
              f"{'yes' if beats_adamw(w['test']) else 'no'} | {mo} | {fam} |")
    n = sum(beats_adamw(r["winner"]["test"]) for r in rows)
    print(f"\nGoal (at least 2 of 3 winners beat tuned AdamW on the test tasks): {n} of {len(rows)}.")
    for r in rows:
        w = r["winner"]
        print(f"\n### seed {r['seed']}: the winner #{w['id']} (chosen by validation)\n")
        print("```python\n" + w["text"] + "```")
        print("simplified:\n\n```python\n" + w["simplified"] + "```")
        if w["math"]:
            print("```\n" + w["math"] + "\n```")
        if w["test"].get("task_scores"):
            print("test tasks: " + ", ".join(f"{k} {v:+.3f}" for k, v in w["test"]["task_scores"].items()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="benchmarks/discovery.toml")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--time-limit", type=float)
    ap.add_argument("--workers", type=int)
    ap.add_argument("--out", help="run directories under this (default: the config's out)")
    ap.add_argument("--report-only", action="store_true", help="print the tables from summary.json")
    ap.add_argument("--resume", action="store_true",
                    help="resume a seed's run that has a checkpoint but no test.json (killed); keep finished rows")
    a = ap.parse_args()
    base = load_config(a.config).replace(time_limit=a.time_limit, workers=a.workers, out=a.out)
    out = Path(base.out) / "summary.json"
    if a.report_only:
        rows = json.loads(out.read_text())
        for r in rows:   # recomputed: the definition may be newer than the summary
            r["meta"] = meta_overfit(r["run"] if Path(r["run"]).is_absolute() else str(Path(base.out) / f"seed{r['seed']}"))
        print_report(rows)
        return
    done = {r["seed"]: r for r in json.loads(out.read_text())} if a.resume and out.exists() else {}
    rows = []
    for seed in (int(s) for s in a.seeds.split(",")):
        cfg = base.replace(seed=seed, out=f"{base.out}/seed{seed}", progress=False)
        run = Path(cfg.out)
        if seed in done:
            rows.append(done[seed])
        elif a.resume and (run / "checkpoint.json").exists() and not (run / "test.json").exists():
            rows.append(run_row(seed, resume_search(str(run), progress=False)))
        else:
            rows.append(run_row(seed, run_search(cfg, overwrite=True)))
        out.parent.mkdir(parents=True, exist_ok=True)   # after every run: a later failure loses nothing
        out.write_text(json.dumps(rows, indent=1))
    print_report(rows)
    print(f"\nsummary: {out}")


if __name__ == "__main__":
    main()
