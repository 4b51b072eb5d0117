"""The task suite: search stages, validation tasks and test tasks, three roles never mixed.

A search is scored on its **stages** (a funnel: cheap stage 1, then larger stages), picks its
winner by **validation** (tasks it never trains on, scored during the search for each new best,
as the Lion paper's meta-validation), and only **reports** its winner on **test** tasks: a
score that is never used to choose anything. A task in two roles would leak: a validation task
that is also searched on rewards overfitting it; a test task used to choose is a validation
task. `check_roles` refuses that. Variants are distinct tasks (``"mlp_digits@3"`` is not
``"mlp_digits"``: other widths, data subset and seed).

- stage 1: four fast tasks, one of each kind, that separate good from bad update rules
  quickly: an ill-conditioned noisy quadratic (convex, noisy), the Rosenbrock valley
  (non-convex, deterministic), an MLP on digits (a neural net on real data) and the sparse
  Zipf embedding bag (per-coordinate adaptivity).
- stage 2: stage 1 plus logistic regression on digits (convex, real data) and an
  autoencoder (a deeper, saturating model with a regression loss).

  (Until 2026-11-25 stage 1 had logistic regression where it now has Rosenbrock: two convex
  problems out of four made stage 1 a test of per-coordinate scaling on convex losses, where
  AdamW is hard to beat, and sign-based rules such as Signum/Lion, which match AdamW on the
  neural tasks and beat it on Rosenbrock, were cut before stage 2. See RESULTS.md.)
- validation: a deep narrow tanh MLP without normalization and a recurrent char LM: kinds of
  model the stages lack, cheap enough to score every new best during a search.
- test: architectures the search never trains on nor chooses by, convolution and attention.

``STAGES`` names each set ("stage1", "stage2", ..., "validation", "test") for `resolve`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence, Union

__all__ = ["Suite", "SUITE", "STAGES", "resolve", "check_roles"]


@dataclass(frozen=True)
class Suite:
    """Task names by role: ``stages`` (the search's funnel, any number of stages; a task may be
    in several stages), ``validation`` (chooses the winner) and ``test`` (reported only)."""

    stages: tuple[tuple[str, ...], ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]

    @property
    def search_tasks(self) -> tuple[str, ...]:
        """Every task of every stage, once, in order of first appearance."""
        return tuple(dict.fromkeys(t for stage in self.stages for t in stage))


SUITE = Suite(
    stages=(("quadratic", "rosenbrock", "mlp_digits", "zipf_bag"),
            ("quadratic", "rosenbrock", "mlp_digits", "zipf_bag", "logreg_digits", "autoencoder_digits")),
    validation=("deep_narrow_mlp", "gru_charlm"),
    test=("conv_digits", "char_lm"),
)

STAGES: Mapping[str, tuple[str, ...]] = {
    **{f"stage{k}": stage for k, stage in enumerate(SUITE.stages, 1)},
    "validation": SUITE.validation,
    "test": SUITE.test,
}


def check_roles(suite: Suite) -> None:
    """Raise ValueError naming the first task that is in two roles (search, validation, test).
    Names are compared as written: a variant ``family@N`` is its own task."""
    roles = (("search", suite.search_tasks), ("validation", suite.validation), ("test", suite.test))
    seen: dict[str, str] = {}
    for role, names in roles:
        for name in dict.fromkeys(names):
            if name in seen:
                raise ValueError(f"task {name!r} is both a {seen[name]} task and a {role} task: the search, "
                                 "validation and test roles must not share a task")
            seen[name] = role


def resolve(task_names: Union[str, Sequence[str]]) -> tuple[str, ...]:
    """A stage name, a single task name, or a sequence of task names -> task names."""
    if isinstance(task_names, str):
        return STAGES.get(task_names, (task_names,))
    return tuple(task_names)
