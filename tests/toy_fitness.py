"""A tiny, real fitness for testing the search without the task suite: a noisy quadratic.

score = log(loss_adamw / loss_program) after 60 steps on a 20-dim ill-conditioned quadratic.
"""
from __future__ import annotations

import math
import os
import time

import torch

import dsl
from evolve.candidate import WORST, Fitness, Job

_D = 20
_SCALES = torch.logspace(-2, 1, _D, dtype=torch.float64)


def _loss_after(program: dsl.Program, steps: int = 60, lr: float = 0.05) -> float:
    gen = torch.Generator().manual_seed(0)
    w = torch.ones(_D, dtype=torch.float64)
    cp = dsl.compile(program)
    state = cp.init_state(w)
    for t in range(1, steps + 1):
        g = _SCALES * w + 0.01 * torch.randn(_D, generator=gen, dtype=torch.float64)
        upd, state = cp.apply(w, g, lr, float(t), state)
        w = w - upd.expand_as(w)
        if not torch.isfinite(w).all():
            return math.inf
    return float(0.5 * (_SCALES * w * w).sum())


_REF = None


def toy_evaluate(jobs: list[Job]) -> list[Fitness]:
    global _REF
    if _REF is None:
        import seeds

        _REF = _loss_after(seeds.load("adamw"))
    out = []
    for job in jobs:
        if "raise_here" in job.text:
            raise RuntimeError("evaluator blew up")
        loss = _loss_after(dsl.parse(job.text))
        if not math.isfinite(loss):
            out.append(Fitness.failed("failed", "non-finite loss"))
            continue
        score = max(WORST, math.log(_REF / max(loss, 1e-30)))
        out.append(Fitness(score, (score,), {"toy": score}))
    return out


def factory():
    return toy_evaluate


class Flaky:
    """An evaluator whose process dies the first time it sees a marked job."""

    def __init__(self, marker: str):
        self.marker = marker

    def __call__(self):
        marker = self.marker

        def evaluate(jobs):
            for j in jobs:
                if "die" in j.text and not os.path.exists(marker):
                    open(marker, "w").close()
                    os._exit(1)
                if "hang" in j.text:
                    time.sleep(60)
            return toy_evaluate([Job(j.id, j.text.replace("#die", "").replace("#hang", "")) for j in jobs])

        return evaluate




class CrashOnce:
    """An evaluator that raises (as out of memory would) in the first process that uses it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __call__(self):
        marker = self.marker

        def evaluate(jobs):
            if not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("CUDA out of memory (simulated)")
            return toy_evaluate(jobs)

        return evaluate


# Roles (tests/test_roles.py, test_report.py): the search stage is "toy"; validation and test tasks are names.
VAL, TEST = ("val_a", "val_b"), ("test_a",)


def validation_of(search: float) -> float:
    """Peaks at search score 0.2: later, better-searching programs validate worse (meta-overfit)."""
    return 0.2 - abs(search - 0.2)


class RoleFitness:
    """toy_evaluate for the search stage; validation and test scores derived from the toy score,
    the test score in the reverse order of validation (choosing by it would pick another winner)."""

    def __init__(self, validation=validation_of, flaky: int = 0):
        self.validation, self.flaky, self.jobs = validation, flaky, []

    def __call__(self, jobs):
        self.jobs.extend(jobs)
        out = []
        for j in jobs:
            (toy,) = toy_evaluate([Job(j.id, j.text)])
            if j.stages is None:
                out.append(toy)
            elif j.stages == (VAL,) and self.flaky > 0:
                self.flaky -= 1
                out.append(Fitness.failed("timeout", "ran past 120s"))
            else:
                v = self.validation(toy.score)
                v = v if j.stages == (VAL,) else -v
                names = j.stages[0]
                ts = {names[0]: v + 0.1, names[-1]: v - 0.1} if len(names) > 1 else {names[0]: v}
                out.append(Fitness(v, (v,), ts))
        return out
