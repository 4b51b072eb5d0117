"""What a worker runs: programs through the funnel of task stages, on the batched evaluator.

`TaskEvaluator` is a small picklable value; calling it (inside a Ray actor, or in-process)
builds the evaluation function once, so task data stays cached in that process. It carries the
tuned AdamW baselines as values (`evolve.baseline_job` computes them once per run), so a worker
on another machine needs no file from the driver and never tunes: a baseline it lacks raises
`tasks.baselines.MissingBaseline`. A batch of jobs is trained side by side stage by stage: all
jobs on stage 1; those whose stage-1 score reaches their threshold go on to the tasks stage 2
adds, and so on.
A stage's score is the evaluator's ``aggregate`` (`tasks.results.aggregate`: mean, median or
trimmed mean) of ``log(loss_AdamW / loss_program)`` over the stage's tasks.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from dsl import ParseError, parse

from .candidate import WORST, Fitness, Job
from .config import SearchConfig
from .executor import EvaluateFn

if TYPE_CHECKING:
    from tasks import Baseline, EvalConfig
    from tasks.stages import Suite

__all__ = ["TaskEvaluator", "default_stages", "validation_tasks", "test_tasks", "suite_of", "resolve_device"]


def default_stages() -> tuple[tuple[str, ...], ...]:
    from tasks.stages import SUITE

    return SUITE.stages


def validation_tasks(config: SearchConfig) -> tuple[str, ...]:
    """The run's validation tasks: the config's, else the suite's; () when it does not validate."""
    from tasks.stages import SUITE

    if not config.validate:
        return ()
    return tuple(config.validation) if config.validation else SUITE.validation


def test_tasks(config: SearchConfig) -> tuple[str, ...]:
    """The run's test tasks: the config's, else the suite's; () when it scores no test rows."""
    from tasks.stages import SUITE

    if not config.test_top:
        return ()
    return tuple(config.test) if config.test else SUITE.test


def suite_of(config: SearchConfig) -> "Suite":
    """The tasks a run uses in each role (a role it does not use is empty)."""
    from tasks.stages import Suite

    return Suite(tuple(config.stages or default_stages()), validation_tasks(config), test_tasks(config))


def resolve_device(name: str) -> str:
    """``"auto"``: cuda when this process has a GPU. Inside a Ray actor, only a GPU Ray assigned
    to it counts: Ray (2.60, ray-project/ray#54868) no longer empties CUDA_VISIBLE_DEVICES for
    actors with ``num_gpus=0``, so such an actor on a GPU node sees every GPU and must use the cpu."""
    if name != "auto":
        return name
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
        return "cuda" if ray.get_gpu_ids() else "cpu"
    return "cuda"


@dataclass(frozen=True)
class TaskEvaluator:
    """Factory of the evaluation function (see module doc)."""

    stages: tuple[tuple[str, ...], ...]
    lr_multipliers: tuple[float, ...] = ()
    device: str = "auto"
    seed: int = 0
    baselines: Optional[tuple["Baseline", ...]] = None  # shipped tuned AdamW; None: tune in this process
    repeats: int = 1                       # seeds per task (a job's ``repeats`` overrides)
    task_size: int = 1                     # every task factory's ``size``
    dtype: str = "float32"                 # torch dtype name of parameters, data and optimizer state
    compile_tasks: bool = False            # compiled forward/backward passes (tasks.compiled_model)
    modules: tuple[str, ...] = ()          # user task modules to import first (they register tasks)
    aggregate: str = "mean"                # task scores -> stage score (tasks.results.AGGREGATES)

    @classmethod
    def from_config(cls, config: SearchConfig, baselines: Optional[tuple["Baseline", ...]] = None,
                    device: Optional[str] = None, modules: tuple[str, ...] = ()) -> "TaskEvaluator":
        """``device``: the workers' device when the caller resolved it (default ``config.device``)."""
        return cls(stages=config.stages or default_stages(), lr_multipliers=tuple(config.lr_multipliers),
                   device=device or config.device, seed=0, baselines=None if baselines is None else tuple(baselines),
                   repeats=config.repeats, task_size=config.task_size, dtype=config.dtype,
                   modules=tuple(modules), aggregate=config.aggregate, compile_tasks=config.compile_tasks)

    def eval_config(self, repeats: Optional[int] = None) -> "EvalConfig":
        """How this evaluator trains (device resolved in the calling process)."""
        from tasks import EvalConfig

        kw = {"lr_multipliers": tuple(self.lr_multipliers)} if self.lr_multipliers else {}
        return EvalConfig(seed=self.seed, repeats=repeats or self.repeats, size=self.task_size,
                          device=resolve_device(self.device), dtype=self.dtype, compile=self.compile_tasks, **kw)

    def known_baselines(self) -> Optional[dict[str, "Baseline"]]:
        """The shipped baselines by key (None: none shipped, tune in-process)."""
        return None if self.baselines is None else {b.key: b for b in self.baselines}

    def check_baselines(self, cfg: "EvalConfig", known: dict[str, "Baseline"]) -> None:
        """Raise `MissingBaseline` unless the shipped baselines of the stages' tasks are keyed as
        this process keys them (same task build, device type, dtype, torch version): a mismatch
        fails the worker at start, not every candidate later. (Held-out tasks, used once at the
        end, are not built here: that would add ~1 s to each worker's start.)"""
        names = {t for stage in self.stages for t in stage}
        for b in self.baselines or ():
            if b.task in names:
                cfg.baseline(cfg.task(b.task), seed=b.seed, baselines=known)

    def __call__(self) -> EvaluateFn:
        from dataclasses import replace

        from tasks import evaluate
        from tasks.results import aggregate

        from .shipping import import_task_modules

        import_task_modules(self.modules)
        cfg = self.eval_config()
        stages = self.stages
        how = self.aggregate
        aggregate([0.0], how)        # an unknown name fails the worker at start, not every batch
        known = self.known_baselines()
        if known is not None:
            self.check_baselines(cfg, known)

        def run(jobs: list[Job]) -> list[Fitness]:
            t0 = time.perf_counter()
            programs, out = {}, {}
            for j in jobs:
                try:
                    programs[j.id] = parse(j.text)
                except ParseError as e:
                    out[j.id] = Fitness.failed("error", f"program does not parse: {e}")
            job = {j.id: j for j in jobs}
            plan = {i: (job[i].stages or stages) for i in programs}
            scores: dict[int, dict[str, float]] = {i: {} for i in programs}
            stage_scores: dict[int, list[float]] = {i: [] for i in programs}
            reasons: dict[int, str] = {}
            alive = list(programs)
            for k in range(max((len(v) for v in plan.values()), default=0)):
                alive = [i for i in alive if k < len(plan[i])]
                by_tasks: dict[tuple, list[int]] = {}   # (tasks still to run, seeds) -> programs (one batch each)
                for i in alive:
                    todo = tuple(t for t in plan[i][k] if t not in scores[i])
                    by_tasks.setdefault((todo, job[i].repeats or cfg.repeats), []).append(i)
                for (todo, repeats), ids in by_tasks.items():
                    if not todo:
                        continue
                    c = cfg if repeats == cfg.repeats else replace(cfg, repeats=repeats)
                    for i, r in zip(ids, evaluate([programs[i] for i in ids], list(todo), c, baselines=known)):
                        scores[i].update(r.scores)
                        bad = next((tr for tr in r.results if tr.status != "ok"), None)
                        if bad is not None and i not in reasons:
                            reasons[i] = f"{bad.task}: {bad.status} {bad.reason}".strip()
                passed = []
                for i in alive:
                    s = aggregate([scores[i][t] for t in plan[i][k]], how)
                    stage_scores[i].append(s)
                    if k >= len(job[i].thresholds) or s >= job[i].thresholds[k]:
                        passed.append(i)
                alive = passed
            seconds = (time.perf_counter() - t0) / max(1, len(jobs))
            for i in programs:
                ss = tuple(stage_scores[i])
                score = ss[-1] if ss else WORST
                out[i] = Fitness(score, ss, dict(scores[i]), "ok" if score > WORST else "failed",
                                 reasons.get(i, ""), seconds)
            return [out[j.id] for j in jobs]

        return run
