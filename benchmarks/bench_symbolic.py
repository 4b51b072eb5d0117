"""Symbolic work on long chains: memoized rebuilds vs sympy's own tree walks, and the bounded API.

    python benchmarks/bench_symbolic.py [--lengths 8,12,14]

A chain ``x = x * x + sign(x) * g - m`` repeated n times is a DAG of ~4n nodes whose tree has
~2**n. `dsl.symbolic.form.tidy` (one memoized bottom-up pass) is timed against the same rewrite
done with sympy's ``replace`` (a tree walk, as the code did before), on the same expression;
then the public operations on the chain and on the seeds, each with its time bound.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sympy as sp  # noqa: E402

import dsl  # noqa: E402
import seeds  # noqa: E402
from dsl.symbolic import form  # noqa: E402


def chain(n: int) -> dsl.Program:
    lines = ["def patho(w, g, lr, m=0.0):", "    x = g + m"]
    lines += ["    x = x * x + sign(x) * g - m"] * n
    lines += ["    m = interp(g, m, 0.9)", "    return lr * x"]
    return dsl.parse("\n".join(lines) + "\n")


def tree_walk_tidy(e: sp.Expr) -> sp.Expr:
    """The float tidying as a sympy ``replace`` (walks every path of the tree)."""
    def nice(x):
        v = form.nice_float(float(x))
        return sp.Integer(int(v)) if v == int(v) and abs(v) <= form.EXACT_INT else sp.Float(v)

    return e.replace(lambda x: x.is_Float, nice)


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="8,12,14")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    print(f"{'n':>3} {'tree nodes':>11} {'memoized':>10} {'tree walk':>10} {'ratio':>8}")
    for n in (int(x) for x in a.lengths.split(",")):
        e = form.to_sympy(chain(n)).update + sp.Float(0.30000000000000004)  # one float to tidy
        t_new, r_new = timed(lambda: form.tidy(e))
        t_old, r_old = timed(lambda: tree_walk_tidy(e))
        assert r_new == r_old
        print(f"{n:>3} {form.tree_size(e):>11} {t_new:>9.4f}s {t_old:>9.4f}s {t_old / t_new:>7.0f}x")

    print("\npublic operations (time bound 10 s each):")
    p = chain(200)
    for name, fn in [("to_math(chain 200)", lambda: dsl.to_math(p)),
                     ("simplify(chain 200)", lambda: dsl.simplify(p)),
                     ("export(chain 200)", lambda: dsl.export_optimizer(p))]:
        print(f"  {name:<24} {timed(fn)[0]:6.2f}s")
    progs = seeds.load_all()
    t, _ = timed(lambda: [dsl.simplify(q) for q in progs.values()])
    print(f"  {f'simplify({len(progs)} seeds)':<24} {t:6.2f}s  ({t / len(progs):.2f}s each)")
    t, _ = timed(lambda: [dsl.to_math(q) for q in progs.values()])
    print(f"  {f'to_math({len(progs)} seeds)':<24} {t:6.2f}s")


if __name__ == "__main__":
    main()
