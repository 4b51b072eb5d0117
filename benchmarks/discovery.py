"""Rediscovery experiment: the default search from AdamW, three seeds, fixed budget each.

For each run: evaluations done, evaluations per second, cache hit rates, the best program
(readable and simplified), its score on the search tasks and on held-out tasks it never saw,
beside the AdamW and Lion seeds (tuned learning rates), and whether it is a sign-based momentum
rule of the Lion family. Writes runs/discovery/summary.json and prints a markdown report.

    .venv/bin/python benchmarks/discovery.py [--config benchmarks/discovery.toml] [--seeds 0,1,2]
        [--time-limit SECONDS]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import dsl
from evolve.config import load_config
from evolve.families import sign_momentum
from evolve.launch import run_search


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="benchmarks/discovery.toml")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--time-limit", type=float)
    ap.add_argument("--workers", type=int)
    a = ap.parse_args()
    base = load_config(a.config).replace(time_limit=a.time_limit, workers=a.workers)
    rows = []
    for seed in (int(s) for s in a.seeds.split(",")):
        cfg = base.replace(seed=seed, out=f"{base.out}/seed{seed}", progress=False)
        res = run_search(cfg, overwrite=True)
        best = res.best[0]
        try:
            simple = dsl.simplify(best.program, substitute=True)  # hyperparameters at their values
            math_text = dsl.to_math(simple)
        except Exception as e:  # simplification is a report nicety; never lose a run over it
            simple, math_text = best.program, f"(not simplified: {type(e).__name__})"
        held = {r["name"]: r for r in res.test}
        rows.append({
            "seed": seed, "run": res.run_dir, "stats": res.stats,
            "best": {"id": best.id, "score": best.fitness.score, "stages": best.fitness.stages_reached,
                     "task_scores": best.fitness.task_scores, "text": dsl.to_text(best.program, readable=True),
                     "simplified": dsl.to_text(simple, readable=True),
                     "math": math_text,
                     "length": best.program.length, "memory": best.program.memory,
                     "lion_family": sign_momentum(best.program)},
            "test": res.test,   # the winner (best by validation) and the references; nothing chosen by it
            "test_winner": held.get(f"#{best.id}", {}).get("score"),
            "validation_winner": (res.validations.get(best.id) or {}).get("score"),
            "lion_family_in_hof": [i.id for i in res.best if sign_momentum(i.program)],
            "scan": family_scan(res.run_dir),
        })
        out = Path(base.out) / "summary.json"  # after every run: a later failure loses nothing
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=1))
    print("\n| seed | evals | evals/s | cache hits | winner: search | winner: validation | winner: test "
          "| test: AdamW | test: Lion | Lion-family candidates (best search score) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        held = {h["name"]: h["score"] for h in r["test"]}
        s = r["stats"]
        scan = r["scan"]
        fam = (f"{scan['lion_family']} of {scan['distinct_programs']}"
               + (f" ({scan['best']['score']:+.3f}, #{scan['best']['id']})" if scan["best"] else "")
               + ("; best program is one" if r["best"]["lion_family"] else ""))
        print(f"| {r['seed']} | {s['evaluations']} | {s['evals_per_second']:.2f} | "
              f"{100 * s['cache']['hit_rate']:.0f}% | {r['best']['score']:+.3f} | "
              f"{_fmt(r['validation_winner'])} | {_fmt(r['test_winner'])} | "
              f"{_fmt(held.get('adamw'))} | {_fmt(held.get('lion'))} | {fam} |")
    for r in rows:
        print(f"\n### seed {r['seed']}: best program (score {r['best']['score']:+.3f})\n")
        print("```python\n" + r["best"]["text"] + "```")
        print("simplified:\n\n```python\n" + r["best"]["simplified"] + "```")
        if r["best"]["math"]:
            print("```\n" + r["best"]["math"] + "\n```")
    print(f"\nsummary: {out}")


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:+.3f}"


if __name__ == "__main__":
    main()
