"""Named task sets used by the search: a cheap first stage, a larger second stage, a held-out set.

- ``stage1``: four fast tasks that separate good from bad update rules quickly: an
  ill-conditioned noisy quadratic, logistic regression and an MLP on digits, and the sparse
  Zipf embedding bag (per-coordinate adaptivity).
- ``stage2``: stage1 plus a deterministic non-convex valley (Rosenbrock) and an autoencoder
  (a deeper, saturating model with a regression loss).
- ``heldout``: architectures the search never trains on, convolution and attention; use them
  only to report how discovered programs generalize.
"""
from __future__ import annotations

from typing import Mapping, Sequence, Union

__all__ = ["STAGES", "resolve"]

STAGES: Mapping[str, tuple[str, ...]] = {
    "stage1": ("quadratic", "logreg_digits", "mlp_digits", "zipf_bag"),
    "stage2": ("quadratic", "logreg_digits", "mlp_digits", "zipf_bag", "rosenbrock", "autoencoder_digits"),
    "heldout": ("conv_digits", "char_lm"),
}


def resolve(task_names: Union[str, Sequence[str]]) -> tuple[str, ...]:
    """A stage name, a single task name, or a sequence of task names -> task names."""
    if isinstance(task_names, str):
        return STAGES.get(task_names, (task_names,))
    return tuple(task_names)
