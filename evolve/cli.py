"""The `evolve` command: search, resume, show, plot, replay, tasks, export, seeds, lineage, report, distill."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["main"]


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in _csv(text))


def _stages(text: str) -> tuple[tuple[str, ...], ...]:
    """'a,b;a,b,c' -> (('a','b'), ('a','b','c'))"""
    return tuple(_csv(s) for s in text.split(";") if s.strip())


def _search_flags(p: argparse.ArgumentParser, resume: bool = False) -> None:
    p.add_argument("--max-evals", type=int, help="candidates to evaluate in total")
    p.add_argument("--time-limit", type=float, help="seconds before the search stops proposing")
    p.add_argument("--workers", type=int, help="Ray evaluation actors (default: one per CPU)")
    p.add_argument("--address", help="Ray cluster to join: 'auto', 'HOST:PORT' or 'ray://host:port' "
                   "(default: embedded local Ray); the project's packages are shipped to its nodes")
    p.add_argument("--worker-start-timeout", type=float,
                   help="seconds for the first worker to start before the search stops and says why (default 60)")
    p.add_argument("--local", action="store_true", help="evaluate in this process, without Ray")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                   help="no live progress line")
    if resume:
        return
    p.add_argument("--config", help="TOML or YAML file of settings (flags override it)")
    p.add_argument("--out", help="run directory")
    p.add_argument("--seed", type=int)
    p.add_argument("--seeds", type=_csv, help="warm-start programs: 'adamw' (default), 'adamw,lion' or 'all'")
    p.add_argument("--population", type=int, help="members per island (default: 32, more with many workers)")
    p.add_argument("--tournament", type=int)
    p.add_argument("--batch-size", type=int, help="candidates trained side by side per worker call")
    p.add_argument("--stages", type=_stages, help="funnel of task sets, e.g. 'quadratic,logreg_digits;mlp_digits'")
    p.add_argument("--lr-multipliers", type=_floats, help="lr grid relative to tuned AdamW, e.g. '0.03,0.18,1'")
    p.add_argument("--repeats", type=int, help="seeds per search task; task scores are averaged over them")
    p.add_argument("--aggregate", choices=("mean", "median", "trimmed"),
                   help="task scores -> a stage's score (default trimmed: the mean without the highest and lowest)")
    p.add_argument("--validation-aggregate", choices=("mean", "median", "trimmed"),
                   help="validation task scores -> the score that picks the winner (default mean)")
    p.add_argument("--validation", type=_csv,
                   help="validation tasks: score each new best during the search; the best by them wins")
    p.add_argument("--no-validation", dest="validate", action="store_const", const=False,
                   help="no validation: the winner is the best by search score")
    p.add_argument("--validation-repeats", type=int, help="seeds per validation task (default 1)")
    p.add_argument("--validation-top", type=int,
                   help="hall-of-fame programs validated at the end if not yet (default 10)")
    p.add_argument("--validation-patience", type=int,
                   help="stop after this many validations of new bests without a better validation (0: never)")
    p.add_argument("--test", type=_csv, help="test tasks: the winner is scored on them at the end, reported only")
    p.add_argument("--test-top", type=int,
                   help="validation-ranked programs scored on the test tasks (default 1: the winner; 0: no test)")
    p.add_argument("--test-repeats", type=int, help="seeds per test task (default 3)")
    p.add_argument("--test-timeout", type=float, help="seconds per test row (default 900)")
    p.add_argument("--tasks-module", dest="tasks_modules", action="append", metavar="FILE.py",
                   help="a module whose @tasks.register factories add tasks (a .py file, package directory "
                        "or dotted name); imported here and shipped to every worker; repeatable")
    p.add_argument("--funnel-margin", type=float, help="stage k+1 needs the parent's stage-k score minus this")
    p.add_argument("--funnel-floor", type=float, help="... and at least this stage-k score (0: tuned AdamW's)")
    p.add_argument("--restart-after", type=int)
    p.add_argument("--gpus-per-worker", type=float,
                   help="GPUs per Ray worker when the cluster has GPUs (default 0: auto, 4 workers share each "
                        "GPU so one's Python overlaps the others' kernels; --device cpu: no GPUs)")
    p.add_argument("--device", help="'auto' (default: cuda when workers get a GPU share), 'cpu' or 'cuda'")
    p.add_argument("--task-size", type=int, help="size factor of every proxy task (default 1; larger for GPUs)")
    p.add_argument("--dtype", help="float32 (default), bfloat16 or float64: parameters, data, optimizer state")
    p.add_argument("--compile-tasks", action="store_true", default=None,
                   help="compile each task's forward/backward in the workers (faster after ~20 s of compiles; "
                        "results within float rounding, not bit-identical)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--islands", type=int, help="populations sharing the workers (default 0: one per 16 workers)")
    p.add_argument("--migration-every", type=int,
                   help="results between ring migrations of each island's best (default 0: islands x population)")
    p.add_argument("--cache-size", type=int, help="fitness cache entries kept (LRU; default 100000)")


def _cmd_search(a: argparse.Namespace) -> int:
    from .config import load_config
    from .launch import run_search

    cfg = load_config(a.config).replace(
        out=a.out, seed=a.seed, seeds=a.seeds, population=a.population, tournament=a.tournament,
        max_evals=a.max_evals, time_limit=a.time_limit, workers=a.workers, address=a.address,
        batch_size=a.batch_size, stages=a.stages, lr_multipliers=a.lr_multipliers,
        restart_after=a.restart_after, funnel_margin=a.funnel_margin, funnel_floor=a.funnel_floor, gpus_per_worker=a.gpus_per_worker, device=a.device,
        task_size=a.task_size, dtype=a.dtype, compile_tasks=a.compile_tasks,
        repeats=a.repeats, aggregate=a.aggregate, validation_aggregate=a.validation_aggregate, validate=a.validate, validation=a.validation,
        validation_repeats=a.validation_repeats, validation_top=a.validation_top,
        validation_patience=a.validation_patience, test=a.test, test_top=a.test_top, test_repeats=a.test_repeats,
        test_timeout=a.test_timeout, worker_start_timeout=a.worker_start_timeout, progress=a.progress,
        islands=a.islands, migration_every=a.migration_every, cache_size=a.cache_size)
    if a.tasks_modules:   # resolved here, so a resume from another directory finds them
        cfg = cfg.replace(tasks_modules=tuple(_resolve_module(m) for m in a.tasks_modules))
    run_search(cfg, local=a.local, overwrite=a.overwrite)
    return 0


def _cmd_resume(a: argparse.Namespace) -> int:
    from .launch import resume_search

    resume_search(a.run, local=a.local, max_evals=a.max_evals, time_limit=a.time_limit,
                  workers=a.workers, address=a.address, worker_start_timeout=a.worker_start_timeout,
                  progress=a.progress)
    return 0


def _resolve_module(spec: str) -> str:
    """A task module given as a path becomes absolute; a dotted name stays as it is."""
    p = Path(spec).expanduser()
    return str(p.resolve()) if p.suffix == ".py" or p.exists() or "/" in spec else spec


def _programs_from(paths: Sequence[str], top: int) -> list[tuple[str, "object", dict]]:
    """(label, program, info) from program files and/or run directories."""
    import dsl

    out = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            from .rundir import RunDir

            hof = RunDir(p).hall_of_fame()
            for rank, row in enumerate(hof["best"][:top], 1):
                out.append((f"{p.name} #{rank} (id {row['id']})", dsl.parse(row["flat"]), row))
        else:
            out.append((str(p), dsl.load(p), {}))
    return out


def _cmd_show(a: argparse.Namespace) -> int:
    """Each program as code, its simplified form (or why there is none) and its math.

    The symbolic steps are bounded (`dsl.DEFAULT_TIMEOUT` seconds each) and never stop the
    listing: a step that fails or runs out of time prints a one-line note instead.
    """
    for path in a.paths:
        tests, how = _run_scores(path)
        for label, prog, info in _programs_from([path], a.top):
            _show_one(label, prog, info, tests, how, a.latex)
    return 0


def _run_scores(path: str) -> tuple[dict, str]:
    """A run directory's test rows by program id (test.json, or an old run's heldout.json) and
    its aggregate; ({}, "mean") for a program file."""
    if not Path(path).is_dir():
        return {}, "mean"
    from .rundir import RunDir

    from .heldout import rows_by_id

    rd = RunDir(path)
    how = rd.config().get("aggregate", "mean") if rd.config_path.exists() else "mean"
    return rows_by_id(rd.test_rows()), how


def _show_one(label: str, prog, info: dict, tests: dict, how: str, latex: bool) -> None:
    """One program: its scores by role (run programs), code, simplified code and math."""
    import dsl

    from .scores import score_line, search_summary

    print(f"=== {label}")
    facts = f"length {prog.length}, memory {prog.memory} slot{'s' if prog.memory != 1 else ''}, hash {prog.hash}"
    print(f"# {facts}")
    if info:
        print("# " + score_line(search_summary(info), info.get("validation"), tests.get(info.get("id")), how,
                                len(info.get("stage_scores") or ()) or None))
    if info.get("task_scores"):
        print("# search tasks: " + ", ".join(f"{k} {v:+.3f}" for k, v in info["task_scores"].items()))
    val = info.get("validation") or {}
    if val.get("task_scores"):
        print("# validation tasks: " + ", ".join(f"{k} {v:+.3f}" for k, v in val["task_scores"].items()))
    print(dsl.to_text(prog, readable=True))
    simple = prog
    try:
        text = dsl.simplified_text(prog, timeout=dsl.DEFAULT_TIMEOUT)
        if text is not None and text.startswith("# simplified"):
            simple = dsl.parse(text.split("\n", 1)[1])  # printed text parses back to the program
    except Exception as e:  # noqa: BLE001 - the listing goes on with the raw program
        text = f"# not simplified: {type(e).__name__}: {e}\n"
    if text is not None:
        print(text)
    try:
        math_text = dsl.to_math(simple, latex=latex)
    except Exception as e:  # noqa: BLE001 - SymbolicError: time bound or sympy failure
        print(f"# math skipped: {e}")
    else:
        print("# math:")
        print(math_text)
    print()


def _cmd_plot(a: argparse.Namespace) -> int:
    from .plots import plot_run

    for path in plot_run(a.run, a.out):
        print(path)
    return 0


def _cmd_lineage(a: argparse.Namespace) -> int:
    from .lineage import best_id, format_lineage, lineage, step_to_dict
    from .rundir import RunDir

    rd = RunDir(a.run)
    rd.config()   # a clear error when RUN is not a run directory
    ident = a.id if a.id is not None else best_id(rd.hall_of_fame())
    steps = lineage(rd.entries(), ident)
    if a.json:
        print(json.dumps([step_to_dict(s) for s in steps], indent=1, allow_nan=True))
    else:
        sys.stdout.write(format_lineage(steps))
    return 0


def _cmd_report(a: argparse.Namespace) -> int:
    from .report_html import write_report

    path = write_report(a.run, a.out, task=a.task, steps=a.steps, top=a.top, curves=not a.no_curves)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _cmd_replay(a: argparse.Namespace) -> int:
    from tasks.replay import run_replay

    return run_replay(a.programs, task=a.task, reference=a.reference, steps=a.steps, lr=a.lr, plot=a.plot,
                      out=sys.stdout)


def _cmd_tasks(a: argparse.Namespace) -> int:
    from tasks.replay import list_tasks

    list_tasks(sys.stdout, measure=not a.no_timing)
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    import dsl

    progs = _programs_from([a.source], a.rank)
    index = a.rank - 1 if Path(a.source).is_dir() else 0
    if not 0 <= index < len(progs):
        print(f"error: no program #{a.rank} in {a.source}", file=sys.stderr)
        return 2
    label, prog, _ = progs[index]
    text = dsl.export_optimizer(prog, class_name=a.class_name, compile=a.compile)
    if a.out == "-":
        sys.stdout.write(text)
    else:
        Path(a.out).write_text(text)
        print(f"wrote {a.out} ({label})", file=sys.stderr)
    return 0


def _cmd_distill(a: argparse.Namespace) -> int:
    """Greedy ablation (`evolve.distill`) scored on the search stages' tasks (never the held-out
    ones) by the search's evaluator: in-process with --local, else Ray workers."""
    import dsl

    from .cache import FitnessCache
    from .config import SearchConfig, load_config
    from .distill import distill, executor_scorer, program_of, result_text
    from .launch import load_tasks, make_executor

    prog, run_config, label = program_of(a.source, a.id)
    cfg = SearchConfig.from_run(run_config) if run_config else load_config(a.config)
    cfg = cfg.replace(stages=a.stages, validate=False, test_top=0, workers=a.workers, address=a.address,
                      progress=False)
    modules = load_tasks(cfg)
    stages = "; ".join(",".join(s) for s in cfg.stages) if cfg.stages else "the default stages"
    print(f"distilling {label} (length {prog.length}) on {stages}, tolerance {a.tolerance:g}, "
          f"at most {a.max_evals} programs", file=sys.stderr)
    executor = make_executor(cfg, a.local, modules)
    try:
        score = executor_scorer(executor, FitnessCache(cfg.cache_size), batch_size=a.batch_size or cfg.batch_size)
        result = distill(prog, score, tolerance=a.tolerance, max_evals=a.max_evals,
                         on_step=lambda s: print(f"  {s.score_before:+.4f} -> {s.score_after:+.4f}  {s.description}",
                                                 file=sys.stderr, flush=True))
    finally:
        executor.close()
    print(result_text(result))
    print(f"# {score.trained} programs trained ({result.evals - score.trained} were cache hits by behaviour)")
    if a.out:
        Path(a.out).write_text(dsl.to_text(result.program))
        print(f"wrote {a.out}", file=sys.stderr)
    return 0


def _cmd_seeds(a: argparse.Namespace) -> int:
    import dsl
    import seeds

    for name in seeds.names():
        p = seeds.load(name)
        print(f"# {name}: length {p.length}, memory {p.memory}  ({seeds.path(name)})")
        print(dsl.to_text(p, readable=True))
    return 0


def _cmd_ops(a: argparse.Namespace) -> int:
    import dsl

    print(f"{'function':10s} {'arity':>5s}  meaning")
    for o in dsl.OPS.values():
        name = o.symbol if o.symbol else o.name
        kind = " (per-tensor reduction)" if o.reduction else ""
        print(f"{name:10s} {o.arity:5d}  {o.doc}{kind}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="evolve", description="Discover optimizers by program search.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("search", help="run a search (embedded local Ray by default)")
    _search_flags(p)
    p.set_defaults(fn=_cmd_search)

    p = sub.add_parser("resume", help="continue a stopped or killed run from its checkpoint")
    p.add_argument("run")
    _search_flags(p, resume=True)
    p.set_defaults(fn=_cmd_resume)

    p = sub.add_parser("show", help="print programs (from run directories or files) as code and math")
    p.add_argument("paths", nargs="+")
    p.add_argument("--top", type=int, default=5, help="programs per run")
    p.add_argument("--latex", action="store_true", help="math as LaTeX")
    p.set_defaults(fn=_cmd_show)

    p = sub.add_parser("plot", help="save PNG plots of a run (progress, Pareto front, search vs validation)")
    p.add_argument("run")
    p.add_argument("--out", help="folder for the PNG files (default: the run directory)")
    p.set_defaults(fn=_cmd_plot)

    p = sub.add_parser("lineage", help="the chain of ancestors of a run's program, seed first, with diffs")
    p.add_argument("run")
    p.add_argument("id", nargs="?", type=int, help="candidate id (default: the best, hall of fame #1)")
    p.add_argument("--json", action="store_true", help="the steps as JSON")
    p.set_defaults(fn=_cmd_lineage)

    p = sub.add_parser("report", help="write a self-contained HTML report of a run")
    p.add_argument("run")
    p.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument("--task", help="task for the loss curves (default: the first stage-1 task)")
    p.add_argument("--steps", type=int, default=200, help="training steps of the loss curves (default 200)")
    p.add_argument("--top", type=int, default=5, help="hall-of-fame programs shown (default 5)")
    p.add_argument("--no-curves", action="store_true", help="skip the loss curves (no training)")
    p.set_defaults(fn=_cmd_report)

    p = sub.add_parser("replay", help="train a task with program files (and a torch optimizer to compare)")
    p.add_argument("programs", nargs="+")
    p.add_argument("--task", default="mlp_digits")
    p.add_argument("--reference", help="optimizer class to run beside, e.g. torch.optim.AdamW")
    p.add_argument("--steps", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--plot", help="save the loss curves as this PNG")
    p.set_defaults(fn=_cmd_replay)

    p = sub.add_parser("tasks", help="list the proxy tasks")
    p.add_argument("--no-timing", action="store_true", help="do not time an evaluation of each task")
    p.set_defaults(fn=_cmd_tasks)

    p = sub.add_parser("export", help="write a standalone torch.optim.Optimizer file for a program")
    p.add_argument("source", help="program file or run directory")
    p.add_argument("--out", required=True, help="file to write ('-' for stdout)")
    p.add_argument("--rank", type=int, default=1, help="which program of a run's hall of fame")
    p.add_argument("--class-name")
    p.add_argument("--compile", action="store_true",
                   help="compile the step with torch.compile (uncompiled, with a warning, where that fails)")
    p.set_defaults(fn=_cmd_export)

    p = sub.add_parser("distill", help="simplify a program by ablation while its score stays within a tolerance")
    p.add_argument("source", help="run directory or program file")
    p.add_argument("id", nargs="?", type=int, help="program id in the run (default: the best)")
    p.add_argument("--out", help="write the distilled program here")
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="score the result may lose vs the original (mean log ratio vs tuned AdamW; default 0.02)")
    p.add_argument("--max-evals", type=int, default=300, help="programs scored at most (default 300)")
    p.add_argument("--config", help="settings file, for a program file (a run uses its own)")
    p.add_argument("--stages", type=_stages, help="task stages to score on (default: the run's)")
    p.add_argument("--batch-size", type=int, help="programs trained side by side per worker call (default: the run's)")
    p.add_argument("--local", action="store_true", help="evaluate in this process, without Ray")
    p.add_argument("--workers", type=int, help="Ray evaluation actors")
    p.add_argument("--address", help="Ray cluster to join")
    p.set_defaults(fn=_cmd_distill)

    p = sub.add_parser("seeds", help="print the known methods that searches start from")
    p.set_defaults(fn=_cmd_seeds)

    p = sub.add_parser("ops", help="list the functions and operators of the update-rule language")
    p.set_defaults(fn=_cmd_ops)
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args) or 0
    except KeyboardInterrupt:
        print("\ninterrupted: `evolve resume RUN_DIR` continues a search from its last checkpoint", file=sys.stderr)
        return 130
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as e:
        from dsl import ParseError

        if isinstance(e, ParseError):
            print(f"error: {e}", file=sys.stderr)
        else:
            print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        from .ray_executor import WorkerError

        if not isinstance(e, WorkerError):
            raise
        import ray

        ray.shutdown()   # stops the workers' log stream first, so the message is the last word
        print(f"error: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
