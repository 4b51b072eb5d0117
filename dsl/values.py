"""Program values as tensors: shared by the compiler's paths and the fast path (`dsl.fastpath`).

A value of a running program is a Python float, a tensor, or (on the multi-tensor paths) a list
with one tensor per parameter. These helpers give such a value a parameter's dtype, shape and
device, and decide when a slot's next value must be copied.

Copying is decided per tensor, by identity against that parameter's own tensors: an op may
return one of its arguments unchanged (``where`` with a scalar condition returns ``w`` itself),
so a list that is not ``params`` can still hold parameter tensors, and a slot holding one would
follow the parameter as it is stepped in place.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

__all__ = ["fit", "as_tensor", "materialize", "owns_input", "slot_values"]


def fit(x: Any, fmax: float) -> Any:
    """A Python float beyond ``±fmax`` (a dtype's largest finite value) becomes ±inf (IEEE overflow)
    instead of an error in torch; anything else is returned as is."""
    if isinstance(x, float) and abs(x) > fmax and x == x:
        return float("inf") if x > 0 else float("-inf")
    return x


def as_tensor(v: Any, like: Tensor) -> Tensor:
    """``v`` itself if it is a tensor, else a 0-dim tensor of ``like``'s dtype and device."""
    if isinstance(v, Tensor):
        return v
    return torch.as_tensor(fit(v, torch.finfo(like.dtype).max), dtype=like.dtype, device=like.device)


def materialize(v: Any, like: Tensor, copy: bool) -> Tensor:
    """A state tensor with ``like``'s shape, dtype and device from a value of the program;
    ``copy``: never ``v``'s own memory (a different shape or dtype always gives new memory)."""
    if not isinstance(v, Tensor):
        return torch.full_like(like, fit(float(v), torch.finfo(like.dtype).max),
                               memory_format=torch.preserve_format)
    if v.shape != like.shape:
        return v.expand_as(like).to(like.dtype).clone()
    if v.dtype != like.dtype:
        return v.to(like.dtype)
    return v.clone() if copy else v


def owns_input(v: Any, w: Tensor, g: Tensor) -> bool:
    """Is ``v`` the parameter's or the gradient's own tensor (so a slot must copy it)?"""
    return v is w or v is g


def slot_values(v: Any, params: Sequence[Tensor], grads: Sequence[Tensor]) -> list[Tensor]:
    """One slot's next value per parameter, from a scalar or a list of per-parameter values;
    an element that is its parameter's or gradient's own tensor is copied (module doc)."""
    if isinstance(v, list):
        return [materialize(vi, p, copy=owns_input(vi, p, gi)) for vi, p, gi in zip(v, params, grads)]
    return [materialize(v, p, copy=False) for p in params]
