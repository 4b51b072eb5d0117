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

import networkx as nx

import dsl
from evolve.config import load_config
from evolve.launch import run_search


def lion_family(p: dsl.Program) -> bool:
    """The update reads sign(X) where X is a linear mix (interp, +, -) of the gradient and a
    state slot: sign of an interpolation of momentum and gradient, as in Lion and Signum."""
    gr = dsl.dataflow_graph(p)
    defs = {s.target: s for s in p.body}
    feeds_update = nx.ancestors(gr, "update") | {"update"}
    for s in p.body:
        if s.op != "sign" or s.target not in feeds_update:
            continue
        x = defs.get(s.args[0]) if isinstance(s.args[0], str) else None
        if x is not None and x.op in ("interp", "add", "sub"):
            up = nx.ancestors(gr, x.target)
            if "g" in up and any(n.startswith("slot:") for n in up):
                return True
    return False


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
            simple = dsl.simplify(best.program)
            math_text = dsl.to_math(simple)
        except Exception as e:  # simplification is a report nicety; never lose a run over it
            simple, math_text = best.program, f"(not simplified: {type(e).__name__})"
        held = {r["name"]: r for r in res.heldout}
        rows.append({
            "seed": seed, "run": res.run_dir, "stats": res.stats,
            "best": {"id": best.id, "score": best.fitness.score, "stages": best.fitness.stages_reached,
                     "task_scores": best.fitness.task_scores, "text": dsl.to_text(best.program, readable=True),
                     "simplified": dsl.to_text(simple, readable=True),
                     "math": math_text,
                     "length": best.program.length, "memory": best.program.memory,
                     "lion_family": lion_family(simple) or lion_family(best.program)},
            "heldout": res.heldout,
            "heldout_best": held.get(f"#{best.id}", {}).get("score"),
            "lion_family_in_hof": any(lion_family(i.program) for i in res.best),
        })
    out = Path(base.out) / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    print("\n| seed | evals | evals/s | cache hits | best score (search) | held-out: best | AdamW | Lion | Lion family |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        held = {h["name"]: h["score"] for h in r["heldout"]}
        s = r["stats"]
        print(f"| {r['seed']} | {s['evaluations']} | {s['evals_per_second']:.2f} | "
              f"{100 * s['cache']['hit_rate']:.0f}% | {r['best']['score']:+.3f} | "
              f"{r['heldout_best'] if r['heldout_best'] is None else format(r['heldout_best'], '+.3f')} | "
              f"{held.get('adamw', float('nan')):+.3f} | {held.get('lion', float('nan')):+.3f} | "
              f"{'yes' if r['best']['lion_family'] else ('in hall of fame' if r['lion_family_in_hof'] else 'no')} |")
    for r in rows:
        print(f"\n### seed {r['seed']}: best program (score {r['best']['score']:+.3f})\n")
        print("```python\n" + r["best"]["text"] + "```")
        print("simplified:\n\n```python\n" + r["best"]["simplified"] + "```")
        if r["best"]["math"]:
            print("```\n" + r["best"]["math"] + "\n```")
    print(f"\nsummary: {out}")


if __name__ == "__main__":
    main()
