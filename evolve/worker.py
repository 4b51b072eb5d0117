"""What a worker runs: programs through the funnel of task stages, on the batched evaluator.

`TaskEvaluator` is a small picklable value; calling it (inside a Ray actor, or in-process)
builds the evaluation function once, so task data and tuned AdamW baselines stay cached in that
process. A batch of jobs is trained side by side stage by stage: all jobs on stage 1; those
whose stage-1 score reaches their threshold go on to the tasks stage 2 adds, and so on.
A stage's score is the mean of ``log(loss_AdamW / loss_program)`` over the stage's tasks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from dsl import ParseError, parse

from .candidate import WORST, Fitness, Job
from .config import SearchConfig
from .executor import EvaluateFn

__all__ = ["TaskEvaluator", "default_stages", "heldout_stage"]


def default_stages() -> tuple[tuple[str, ...], ...]:
    from tasks import STAGES

    return (tuple(STAGES["stage1"]), tuple(STAGES["stage2"]))


def heldout_stage(config: SearchConfig) -> tuple[str, ...]:
    from tasks import STAGES

    return tuple(config.heldout) if config.heldout else tuple(STAGES["heldout"])


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class TaskEvaluator:
    """Factory of the evaluation function (see module doc)."""

    stages: tuple[tuple[str, ...], ...]
    lr_multipliers: tuple[float, ...] = ()
    device: str = "auto"
    seed: int = 0
    baseline_cache: Optional[str] = None   # JSON file of tuned AdamW baselines, shared by workers
    repeats: int = 1                       # seeds per task (a job's ``repeats`` overrides)
    modules: tuple[str, ...] = ()          # user task modules to import first (they register tasks)

    @classmethod
    def from_config(cls, config: SearchConfig, baseline_cache: Optional[str] = None,
                    modules: tuple[str, ...] = ()) -> "TaskEvaluator":
        return cls(config.stages or default_stages(), tuple(config.lr_multipliers), config.device,
                   0, baseline_cache, config.repeats, tuple(modules))

    def __call__(self) -> EvaluateFn:
        from dataclasses import replace

        from tasks import EvalConfig, evaluate

        from .shipping import import_task_modules

        import_task_modules(self.modules)

        kw = {"device": _device(self.device), "seed": self.seed}
        if self.lr_multipliers:
            kw["lr_multipliers"] = tuple(self.lr_multipliers)
        cfg = EvalConfig(repeats=self.repeats, **kw)
        stages = self.stages
        cache = self.baseline_cache

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
                    for i, r in zip(ids, evaluate([programs[i] for i in ids], list(todo), c, cache_path=cache)):
                        scores[i].update(r.scores)
                        bad = next((tr for tr in r.results if tr.status != "ok"), None)
                        if bad is not None and i not in reasons:
                            reasons[i] = f"{bad.task}: {bad.status} {bad.reason}".strip()
                passed = []
                for i in alive:
                    s = sum(scores[i][t] for t in plan[i][k]) / len(plan[i][k])
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
