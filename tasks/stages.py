"""The task suite: search stages, validation tasks and test tasks, three roles never mixed.

A search is scored on its **stages** (a funnel: cheap stage 1, then larger stages), picks its
winner by **validation** (tasks it never trains on, scored during the search for each new best,
as the Lion paper's meta-validation), and only **reports** its winner on **test** tasks: a
score that is never used to choose anything. A task in two roles would leak: a validation task
that is also searched on rewards overfitting it; a test task used to choose is a validation
task. `check_roles` refuses that. Variants are distinct tasks (``"mlp_digits@3"`` is not
``"mlp_digits"``: other widths, data subset and seed).

Eighteen families (README, "Tasks"), spread so that every role has several architectures and
no role holds a task of another (variants of a family are distinct tasks: validation and test
use variants the search never trains on):

- stage 1 (search, cheap, ~0.25 s per task for a program's 3 learning rates on one core): an
  ill-conditioned noisy quadratic, the Rosenbrock valley, an MLP on digits, the sparse Zipf
  embedding bag: one of each kind, to cut bad rules quickly. (Until 2026-11-25 stage 1 had
  logistic regression where it now has Rosenbrock: with two convex problems, sign-based rules
  such as Signum/Lion were cut before stage 2; RESULTS.md.)
- stage 2: adds logistic regression (convex, real data), the digit autoencoder (reconstruction
  loss) and a student MLP regressing a teacher on fresh inputs (the large-data regime).
- stage 3: adds a GRU character model and an MLP overfitting 100 digits for 1,500 steps
  (regularisation decides its validation loss); each ~6x a stage-1 task, so a candidate that
  reaches stage 3 costs ~6 s of one core against ~1 s for stage 1 (the Lion funnel grows each
  stage ~10x).
- validation (chooses the winner; scored for each new best during a search, ~4 s per program
  at one seed): a deep narrow MLP without normalization, sparse matrix factorization, a
  full-batch tabular classifier, a vision transformer, and unseen variants of two search
  families (mlp_digits@2, gru_charlm@2).
- test (reported only, 3 seeds): a conv net, a transformer char LM, an LSTM on the adding
  problem, a large-batch teacher classifier, a small-batch regression on the diabetes data, and
  unseen variants of three search families (zipf_bag@1, autoencoder_digits@1,
  overfit_digits@1).

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


_STAGE1 = ("quadratic", "rosenbrock", "mlp_digits", "zipf_bag")
_STAGE2 = _STAGE1 + ("logreg_digits", "autoencoder_digits", "teacher_regression")
_STAGE3 = _STAGE2 + ("gru_charlm", "overfit_digits")

SUITE = Suite(
    stages=(_STAGE1, _STAGE2, _STAGE3),
    validation=("deep_narrow_mlp", "matrix_factorization", "breast_cancer_fullbatch", "vit_digits",
                "mlp_digits@2", "gru_charlm@2"),
    test=("conv_digits", "char_lm", "lstm_adding", "teacher_classification", "diabetes_regression",
          "zipf_bag@1", "autoencoder_digits@1", "overfit_digits@1"),
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
