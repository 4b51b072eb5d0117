"""Distillation by ablation: simplify a program while its score stays within a tolerance.

`candidates` lists every one-step simplification of a program (each a valid, pruned program):

- drop a statement: its uses read one of its arguments, or the constant 0 or 1;
- round a constant or a hyperparameter's default to fewer significant digits (a decay rate
  ``c`` in (0.5, 1) also as ``1 - round(1 - c)``: 0.99901 -> 0.999);
- merge near-equal values (within 10%): one hyperparameter's uses read another, or a constant
  becomes the hyperparameter it is near (the two betas of an interp, 0.9 and 0.90001).

`distill` is greedy: it scores all candidates of the current program as one batch, accepts the
simplest (`complexity`: length, then the number of distinct values, then their significant
digits) whose score is at least the original's minus ``tolerance``, and repeats until no
candidate qualifies or ``max_evals`` programs were scored. The tolerance is measured from the
original, not from the previous step, so the accepted changes together cost at most it.

The score function is any ``list[Program] -> list[float]``: `executor_scorer` makes one from
the search's `Executor` and `FitnessCache` (the CLI), tests use a cheap numeric one. Nothing
here imports Ray.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from itertools import count
from typing import Callable, Optional

from dsl import Arg, Program, Stmt, format_number, prune, to_text

from .cache import FitnessCache, fingerprint
from .candidate import WORST, Fitness, Job
from .executor import run_all

__all__ = ["Step", "DistillResult", "candidates", "complexity", "distill", "executor_scorer",
           "significant_digits", "round_significant"]

ScoreFn = Callable[[list[Program]], list[float]]

NEAR = 0.1
"""Relative gap under which two values are merge candidates: |a - b| <= NEAR * max(|a|, |b|)."""

MAX_DIGITS = 6
"""Roundings proposed per value: to 1 .. min(digits - 1, MAX_DIGITS) significant digits."""


@dataclass(frozen=True)
class Step:
    """One accepted simplification: what changed, and the score before and after it."""

    kind: str              # drop | round | merge
    description: str
    score_before: float
    score_after: float
    program: Program       # the program after the change


@dataclass(frozen=True)
class DistillResult:
    original: Program
    program: Program
    base_score: float      # the original's score
    score: float           # the distilled program's score
    tolerance: float
    steps: tuple[Step, ...]
    evals: int             # programs scored (distinct structures; the scorer may dedupe further)
    stopped: str           # "converged" (no candidate within tolerance) | "max-evals"


# ---------------------------------------------------------------- numbers

def significant_digits(x: float) -> int:
    """Significant digits of the shortest decimal that reads back as ``x`` (0.90001 -> 5, 1e-8 -> 1)."""
    if x == 0 or not math.isfinite(x):
        return 0
    mantissa = repr(abs(x)).lower().split("e")[0].replace(".", "").lstrip("0").rstrip("0")
    return max(1, len(mantissa))


def round_significant(x: float, digits: int) -> float:
    return float(f"{x:.{digits - 1}e}")


def _roundings(x: float) -> list[float]:
    out: list[float] = []
    n = significant_digits(x)
    for d in range(1, min(n - 1, MAX_DIGITS) + 1):
        out.append(round_significant(x, d))
        if 0.5 < x < 1:
            out.append(1.0 - round_significant(1.0 - x, d))
    seen, res = set(), []
    for r in out:
        if r != x and math.isfinite(r) and r not in seen and significant_digits(r) < n:
            seen.add(r)
            res.append(r)
    return res


def _near(a: float, b: float) -> bool:
    return a != b and abs(a - b) <= NEAR * max(abs(a), abs(b))


def _constants(p: Program) -> list[float]:
    """Distinct constants read by statements, the update and next values, in order of appearance."""
    seen: dict[float, None] = {}
    for a in [*(a for s in p.body for a in s.args), p.update, *p.next_state]:
        if isinstance(a, float):
            seen.setdefault(a, None)
    return list(seen)


def complexity(p: Program) -> tuple[int, int, int]:
    """(statements, distinct constants + hyperparameters, their significant digits): smaller is simpler."""
    values = _constants(p) + [v for _, v in p.hparams]
    return (p.length, len(values), sum(significant_digits(v) for v in values))


# ---------------------------------------------------------------- edits

def _map_args(p: Program, f: Callable[[Arg], Arg]) -> Program:
    body = tuple(Stmt(s.target, s.op, tuple(f(a) for a in s.args)) for s in p.body)
    return prune(p.replace(body=body, update=f(p.update), next_state=tuple(f(a) for a in p.next_state)))


def _substitute(p: Program, old: str, new: Arg) -> Program:
    """Every read of the name ``old`` reads ``new`` instead; then dead code is pruned."""
    return _map_args(p, lambda a: new if isinstance(a, str) and a == old else a)


def _replace_constant(p: Program, old: float, new: Arg) -> Program:
    return _map_args(p, lambda a: new if isinstance(a, float) and a == old else a)


def _arg_text(a: Arg) -> str:
    return format_number(a) if isinstance(a, float) else a


def _stmt_text(s: Stmt) -> str:
    return f"{s.target} = {s.op}({', '.join(_arg_text(a) for a in s.args)})"


def candidates(program: Program) -> list[tuple[Program, str]]:
    """Every one-step simplification of ``program`` (see the module doc) as (program, description),
    distinct structures only, none equal to ``program``. An edit that would make an invalid
    program (which `Program` rejects) is skipped."""
    out: list[tuple[Program, str]] = []
    seen = {program.hash}

    def add(make: Callable[[], Program], what: str) -> None:
        try:
            q = make()
        except ValueError:   # ProgramError: the edit does not make a valid program
            return
        if q.hash not in seen:
            seen.add(q.hash)
            out.append((q, what))

    p = program
    for s in p.body:
        options: list[Arg] = []
        for a in [*s.args, 0.0, 1.0]:
            if a != s.target and a not in options:
                options.append(a)
        for a in options:
            add(lambda s=s, a=a: _substitute(p, s.target, a),
                f"drop: {_stmt_text(s)}; its uses read {_arg_text(a)}")

    for c in _constants(p):
        for r in _roundings(c):
            add(lambda c=c, r=r: _replace_constant(p, c, r), f"round: constant {format_number(c)} -> {format_number(r)}")
    for i, (name, v) in enumerate(p.hparams):
        for r in _roundings(v):
            hp = p.hparams[:i] + ((name, r),) + p.hparams[i + 1:]
            add(lambda hp=hp: p.replace(hparams=hp), f"round: {name}={format_number(v)} -> {format_number(r)}")

    for a, va in p.hparams:
        for b, vb in p.hparams:
            if a != b and _near(va, vb):
                add(lambda a=a, b=b: _substitute(p, b, a),
                    f"merge: {b}={format_number(vb)} into {a}={format_number(va)}")
        for c in _constants(p):
            if _near(va, c):
                add(lambda a=a, c=c: _replace_constant(p, c, a),
                    f"merge: constant {format_number(c)} into {a}={format_number(va)}")
    return out


# ---------------------------------------------------------------- the greedy loop

def distill(program: Program, score_fn_batch: ScoreFn, tolerance: float = 0.02, max_evals: int = 500, *,
            on_step: Optional[Callable[[Step], None]] = None) -> DistillResult:
    """Greedy ablation (module doc). ``score_fn_batch`` scores a batch (higher is better; NaN
    counts as -inf); every distinct structure is scored once. ``on_step`` sees each accepted step."""
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    if max_evals < 1:
        raise ValueError(f"max_evals must be >= 1, got {max_evals}")
    scores: dict[str, float] = {}

    def score(progs: list[Program]) -> None:
        if not progs:
            return
        got = score_fn_batch(progs)
        if len(got) != len(progs):
            raise RuntimeError(f"score function returned {len(got)} scores for {len(progs)} programs")
        for q, s in zip(progs, got):
            s = float(s)
            scores[q.hash] = s if math.isfinite(s) else -math.inf

    start = prune(program)
    score([start])
    base = scores[start.hash]
    floor = base - tolerance
    cur, steps, stopped = start, [], "converged"
    while True:
        size = complexity(cur)
        cands = [(q, what) for q, what in candidates(cur) if complexity(q) < size]
        cands.sort(key=lambda c: complexity(c[0]))   # the most simplifying first, if the budget is short
        new = [q for q, _ in cands if q.hash not in scores]
        budget = max_evals - len(scores)
        if len(new) > budget:
            new, stopped = new[:max(0, budget)], "max-evals"
        score(new)
        ok = [(i, q, what) for i, (q, what) in enumerate(cands) if scores.get(q.hash, -math.inf) >= floor]
        if not ok:
            break
        i, best, what = min(ok, key=lambda c: (complexity(c[1]), -scores[c[1].hash], c[0]))
        step = Step(what.split(":", 1)[0], what, scores[cur.hash], scores[best.hash], best)
        steps.append(step)
        if on_step is not None:
            on_step(step)
        cur = best
        if stopped == "max-evals":
            break
    return DistillResult(program, cur, base, scores[cur.hash], tolerance, tuple(steps), len(scores), stopped)


# ---------------------------------------------------------------- scoring with the search's executor

def executor_scorer(executor, cache: Optional[FitnessCache] = None, batch_size: int = 4,
                    wait_s: float = 1.0) -> ScoreFn:
    """A score function over an `evolve.executor.Executor` (local or Ray workers), as the search
    scores: jobs without funnel thresholds (every stage is trained; the score is the last
    stage's), a `FitnessCache` keyed by structural hash and fingerprint so no behaviour is
    trained twice, batches of ``batch_size`` submitted as workers free up. The returned
    function has ``.trained`` (programs sent to workers) and ``.fitness`` (hash -> `Fitness`)."""
    cache = cache if cache is not None else FitnessCache()
    ids = count()
    fitness: dict[str, Fitness] = {}

    def run(programs: list[Program]) -> list[float]:
        out: list[Optional[Fitness]] = [None] * len(programs)
        todo: dict[str, list[int]] = {}
        fps: list[str] = []
        for i, p in enumerate(programs):
            fp = cache.fingerprint_of(p.hash) or fingerprint(p)
            fps.append(fp)
            hit = cache.lookup(p.hash, fp)
            if hit is not None:
                out[i] = hit[0]
            else:
                todo.setdefault(fp, []).append(i)
        jobs = {next(ids): idx for idx in todo.values()}
        results = run_all(executor, [Job(k, to_text(programs[idx[0]])) for k, idx in jobs.items()],
                          batch_size, wait_s)
        run.trained += len(results)
        for k, fit in results.items():
            for i in jobs[k]:
                cache.store(programs[i].hash, fps[i], fit)
                out[i] = fit
        for p, f in zip(programs, out):
            fitness[p.hash] = f
        return [f.score if f.ok else WORST for f in out]

    run.trained = 0
    run.fitness = fitness
    return run


# ---------------------------------------------------------------- printing

def result_text(r: DistillResult, math_timeout: float = 10.0, simplify_timeout: float = 10.0) -> str:
    """The report: each accepted step with its scores, then the result as code, simplified code and math
    (the symbolic steps bounded; a failure prints one line saying why)."""
    import dsl

    lines = [f"# distilled {r.original.name}: score {r.base_score:+.4f} -> {r.score:+.4f} "
             f"(tolerance {r.tolerance:g}), length {r.original.length} -> {r.program.length}, "
             f"{len(r.steps)} steps, {r.evals} programs scored, stopped: {r.stopped}"]
    for k, s in enumerate(r.steps, 1):
        lines.append(f"# {k:2d}. {s.score_before:+.4f} -> {s.score_after:+.4f}  {s.description}")
    lines.append(to_text(r.program, readable=True).rstrip("\n"))
    shown = r.program
    t0 = time.perf_counter()
    try:
        simple = dsl.simplify(r.program, timeout=simplify_timeout)
        if simple.length < r.program.length:
            lines.append(f"# simplified (length {simple.length}):")
            lines.append(to_text(simple, readable=True).rstrip("\n"))
            shown = simple
    except Exception as e:  # noqa: BLE001 - the report goes on with the unsimplified program
        lines.append(f"# not simplified: {type(e).__name__}: {e}")
    try:
        lines.append("# math:")
        lines.append(dsl.to_math(shown, timeout=max(1.0, math_timeout - (time.perf_counter() - t0) / 2)).rstrip("\n"))
    except dsl.SymbolicError as e:
        lines[-1] = f"# math skipped: {e}"
    return "\n".join(lines) + "\n"


def program_of(source: str, ident: Optional[int] = None) -> tuple[Program, dict, str]:
    """(program, run config or {}, label) from a program file, or a run directory's best program
    (or the one with id ``ident``, from the hall of fame or the run log)."""
    from pathlib import Path

    import dsl

    path = Path(source)
    if not path.is_dir():
        if ident is not None:
            raise ValueError(f"an id ({ident}) needs a run directory, and {source} is a program file")
        return dsl.load(path), {}, str(path)
    from .rundir import RunDir

    run = RunDir(path)
    config = run.config()
    best = run.hall_of_fame().get("best", []) if run.hof_path.exists() else []
    if ident is None:
        if not best:
            raise ValueError(f"{source} has no hall of fame yet: give a program id")
        return dsl.parse(best[0]["flat"]), config, f"{path.name} best (id {best[0]['id']})"
    for row in best:
        if row["id"] == ident:
            return dsl.parse(row["flat"]), config, f"{path.name} id {ident}"
    for e in run.entries():
        c = e.get("candidate") if isinstance(e.get("candidate"), dict) else e
        if isinstance(c, dict) and c.get("id") == ident and "program" in c:
            return dsl.parse(c["program"]), config, f"{path.name} id {ident}"
    raise ValueError(f"no program with id {ident} in {source}")
