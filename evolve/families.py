"""Which known family a discovered rule belongs to (for reports; never used for selection).

`sign_momentum(p)`: the Lion family. The update's direction is ``sign(X)`` where ``X`` mixes the
gradient with a state slot (an interpolation of momentum and gradient, as in Lion's
``sign(interp(g, m, beta1))`` or Signum's ``sign(m)``), up to positive scalar factors and
terms in ``w`` alone (decoupled weight decay). Checked two ways:

- structure: a ``sign`` statement reaches the update, and its argument depends on ``g`` and
  on a slot's previous value;
- numbers: over a few steps of random heavy-tailed gradients, with ``w = 0`` every coordinate
  of the update has the same magnitude and its direction is not just ``sign(g)`` (the
  momentum matters); with random ``w`` the update changes by ``k * w`` for one scalar ``k``
  (decoupled weight decay, not ``sign(m + k w)``).
"""
from __future__ import annotations

import networkx as nx
import torch

import dsl
from dsl.compiler import compile as compile_program

__all__ = ["sign_momentum"]


def _structure(p: dsl.Program) -> bool:
    gr = dsl.dataflow_graph(p)
    if "update" not in gr:
        return False
    feeds_update = nx.ancestors(gr, "update")
    for s in p.body:
        if s.op != "sign" or s.target not in feeds_update:
            continue
        up = nx.ancestors(gr, s.target)
        if "g" in up and any(str(n).startswith("slot:") for n in up):
            return True
    return False


def _numbers(p: dsl.Program, steps: int = 4, n: int = 512) -> bool:
    gen = torch.Generator().manual_seed(0)
    cp = compile_program(p)
    w = torch.zeros(n, dtype=torch.float64)
    w_rand = torch.randn(n, generator=gen, dtype=torch.float64)
    state = {s: torch.full_like(w, float(v)) for s, v in p.slots}
    uses_momentum = False
    try:
        for t in range(1, steps + 1):
            g = torch.randn(n, generator=gen, dtype=torch.float64)
            g = g * torch.exp(2 * torch.randn(n, generator=gen, dtype=torch.float64))
            one = torch.tensor(1.0, dtype=torch.float64)
            uw, _ = cp.apply(w_rand, g, one, float(t), state)
            u, state = cp.apply(w, g, one, float(t), state)
            u = torch.as_tensor(u, dtype=torch.float64).expand_as(w)
            du = torch.as_tensor(uw, dtype=torch.float64).expand_as(w) - u
            k = float((du * w_rand).sum() / (w_rand * w_rand).sum())
            if not torch.allclose(du, k * w_rand, rtol=1e-6, atol=1e-9 * float(u.abs().max())):
                return False
            a = u.abs()
            if not torch.isfinite(a).all() or a.max() <= 0:
                return False
            nz = a[a > 0]
            if nz.numel() < 0.9 * n or (nz.max() - nz.min()) > 1e-9 * nz.max():
                return False
            agree = (torch.sign(u) * torch.sign(g))[(u != 0) & (g != 0)]
            if t > 1 and bool((agree > 0).any()) and bool((agree < 0).any()):
                uses_momentum = True  # not +-sign(g): some coordinates follow the momentum
    except Exception:  # noqa: BLE001 - a rule that cannot run belongs to no family
        return False
    return uses_momentum


def sign_momentum(p: dsl.Program) -> bool:
    """True if ``p`` is a sign-based momentum rule of the Lion family (see module doc)."""
    return _structure(p) and _numbers(p)
