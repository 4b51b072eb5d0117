"""Named task sets used by the search: a cheap first stage, a larger second stage, a held-out set.

- ``stage1``: four fast tasks, one of each kind, that separate good from bad update rules
  quickly: an ill-conditioned noisy quadratic (convex, noisy), the Rosenbrock valley
  (non-convex, deterministic), an MLP on digits (a neural net on real data) and the sparse
  Zipf embedding bag (per-coordinate adaptivity).
- ``stage2``: stage1 plus logistic regression on digits (convex, real data) and an
  autoencoder (a deeper, saturating model with a regression loss).

  (Until 2026-11-25 stage 1 had logistic regression where it now has Rosenbrock: two convex
  problems out of four made stage 1 a test of per-coordinate scaling on convex losses, where
  AdamW is hard to beat, and sign-based rules such as Signum/Lion, which match AdamW on the
  neural tasks and beat it on Rosenbrock, were cut before stage 2. See RESULTS.md.)
- ``heldout``: architectures the search never trains on, convolution and attention; use them
  only to report how discovered programs generalize.
"""
from __future__ import annotations

from typing import Mapping, Sequence, Union

__all__ = ["STAGES", "resolve"]

STAGES: Mapping[str, tuple[str, ...]] = {
    "stage1": ("quadratic", "rosenbrock", "mlp_digits", "zipf_bag"),
    "stage2": ("quadratic", "rosenbrock", "mlp_digits", "zipf_bag", "logreg_digits", "autoencoder_digits"),
    "heldout": ("conv_digits", "char_lm"),
}


def resolve(task_names: Union[str, Sequence[str]]) -> tuple[str, ...]:
    """A stage name, a single task name, or a sequence of task names -> task names."""
    if isinstance(task_names, str):
        return STAGES.get(task_names, (task_names,))
    return tuple(task_names)
