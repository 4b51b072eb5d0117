"""Numeric checks behind simplification and equivalence: programs stepped on random float64 inputs.

Every run goes through `dsl.probe`. These checks are what make the symbolic results sound:
a rewrite sympy considers equal (``g * m / m`` -> ``g``) is rejected when IEEE arithmetic
disagrees (``m = 0`` gives nan). Nothing here needs sympy.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch

from ..compiler import compile as _compile
from ..probe import Inputs, random_inputs, trajectory
from ..program import Program
from .bounds import SymbolicTimeout

__all__ = ["numerically_equal", "close", "updates_differ", "slot_trajectories", "steps_in_place"]


def close(x: Any, y: Any, shape: torch.Size, rtol: float) -> bool:
    """Equal within ``rtol`` (and an absolute tolerance scaled by the largest finite value); nan == nan."""
    x = torch.as_tensor(x, dtype=torch.float64).expand(shape)
    y = torch.as_tensor(y, dtype=torch.float64).expand(shape)
    finite = x[torch.isfinite(x)]
    scale = float(finite.abs().max()) if finite.numel() else 1.0
    return bool(torch.allclose(x, y, rtol=rtol, atol=rtol * 1e-3 * max(1.0, scale), equal_nan=True))


def _perturbed(hparams: Mapping[str, float], gen: torch.Generator) -> dict:
    """Each value moved by up to 10% of (1 + |value|), drawn from ``gen``."""
    return {k: v + 0.1 * (1 + abs(v)) * (2 * float(torch.rand((), generator=gen, dtype=torch.float64)) - 1)
            for k, v in hparams.items()}


def numerically_equal(a: Program, b: Program, slot_map: Optional[Mapping[str, str]] = None, *,
                      steps: int = 4, perturb_hparams: bool = True, rtol: float = 1e-6,
                      seed: int = 0) -> bool:
    """Do ``a`` and ``b`` give the same updates and slot values on random float64 inputs?

    Two trials of ``steps`` steps each: from the slots' initial values with default
    hyperparameters, then from random positive slot values with perturbed hyperparameters
    (those of ``b`` are matched to ``a``'s by name). ``slot_map`` maps each slot of ``b`` to the
    slot of ``a`` it should equal (default: same names); other slots are not compared.
    """
    try:
        ca, cb = _compile(a), _compile(b)
        if slot_map is None:
            slot_map = {s: s for s in b.slot_names if s in a.slot_names}
        gen = torch.Generator().manual_seed(seed)
        for trial in range(2):
            hp = dict(a.hparams)
            if trial == 1 and perturb_hparams:
                hp = _perturbed(hp, gen)
            hp_a = {k: hp[k] for k in a.hparam_names}
            hp_b = {k: hp.get(k, v) for k, v in b.hparams}
            inputs = random_inputs(gen, steps=steps, lr=(0.05, 1.0), t0=1 + 7 * trial)
            sa = ca.init_state(inputs.w0)
            if trial == 1:
                sa = {k: torch.randn(inputs.w0.shape, generator=gen, dtype=torch.float64).abs() + 0.1 for k in sa}
            sb = cb.init_state(inputs.w0)
            for bs, as_ in slot_map.items():
                sb[bs] = sa[as_].clone()
            shape = inputs.w0.shape
            for (ua, na), (ub, nb) in zip(trajectory(ca, inputs, sa, hp_a), trajectory(cb, inputs, sb, hp_b)):
                if not close(ua, ub, shape, rtol):
                    return False
                if not all(close(na[as_], nb[bs], shape, rtol) for bs, as_ in slot_map.items()):
                    return False
        return True
    except SymbolicTimeout:
        raise
    except Exception:  # noqa: BLE001 - a candidate that cannot run is simply not equal
        return False


def updates_differ(a: Program, b: Program, substitute: bool) -> bool:
    """A cheap necessary test for equivalence: from their own initial states, on the same random
    inputs, do the updates differ (at the defaults, then with the shared hyperparameters perturbed)?"""
    try:
        ca, cb = _compile(a), _compile(b)
        gen = torch.Generator().manual_seed(3)
        shared = set(a.hparam_names) & set(b.hparam_names)
        for trial in range(1 if substitute else 2):
            hp = _perturbed({k: v for k, v in a.hparams if k in shared}, gen) if trial == 1 else {}
            ha = {k: hp[k] for k in a.hparam_names if k in hp}
            hb = {k: hp[k] for k in b.hparam_names if k in hp}
            inputs = random_inputs(gen, steps=4)
            for (ua, _), (ub, _) in zip(trajectory(ca, inputs, None, ha), trajectory(cb, inputs, None, hb)):
                if not close(ua, ub, inputs.w0.shape, 1e-6):
                    return True
        return False
    except SymbolicTimeout:
        raise
    except Exception:  # noqa: BLE001 - undecided here; the symbolic comparison decides
        return False


def slot_trajectories(p: Program, inputs: Inputs) -> Optional[dict[str, list]]:
    """Each slot's values over the steps of ``inputs`` from its initial value; None if ``p`` fails."""
    try:
        steps = trajectory(p, inputs)
    except SymbolicTimeout:
        raise
    except Exception:  # noqa: BLE001
        return None
    return {x: [st[x] for _, st in steps] for x in p.slot_names}


def steps_in_place(p: Program) -> bool:
    """Does the optimizer path (``step_foreach``, several parameters at once) run this program?"""
    try:
        cp = _compile(p)
        gen = torch.Generator().manual_seed(1)
        params = [torch.randn(3, 4, generator=gen, dtype=torch.float64),
                  torch.randn(5, generator=gen, dtype=torch.float64)]
        grads = [torch.randn(x.shape, generator=gen, dtype=torch.float64) for x in params]
        states = [cp.init_state(x) for x in params]
        for t in (1.0, 2.0):
            cp.step_foreach(params, grads, states, 0.1, t)
        return True
    except SymbolicTimeout:
        raise
    except Exception:  # noqa: BLE001
        return False
