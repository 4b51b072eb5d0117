"""No work twice: a fitness cache keyed by structural hash and by functional fingerprint.

The functional fingerprint (as in AutoML-Zero) runs a program for a few steps on fixed random
inputs and hashes its rounded updates: programs that compute the same thing (``2*g`` and
``g+g``) share a fingerprint and are scored once.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import torch

from dsl import Program, compile
from dsl.probe import Inputs, trajectory

from .candidate import TRANSIENT, Fitness

__all__ = ["fingerprint", "FitnessCache"]

_STEPS = 4
_LRS = (0.0123, 0.0117, 0.0131, 0.0109)  # differ per step, so lr-free rules do not collide with lr-scaled ones


def _inputs() -> list[Inputs]:
    """One `dsl.probe.Inputs` per tensor shape; the weights follow the updates, as in training."""
    gen = torch.Generator().manual_seed(1234)
    shapes = [(3, 5), (7,)]
    ws = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    gs = [[torch.randn(s, generator=gen, dtype=torch.float64) * (1 + i) for s in shapes] for i in range(_STEPS)]
    ts = tuple(float(k + 1) for k in range(_STEPS))
    return [Inputs(w, tuple(gs[k][j] for k in range(_STEPS)), _LRS, ts) for j, w in enumerate(ws)]


_PROBES = _inputs()


def _tall_inputs() -> Inputs:
    """A tall matrix, for programs that read the parameter's shape (`aspect`, `is_matrix`): the
    (3, 5) and (7,) probes have rows <= cols, where Muon's factor sqrt(maximum(1, aspect(w)))
    is 1, so with those alone it shares the fingerprint of the same rule without it."""
    gen = torch.Generator().manual_seed(4321)
    w = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    gs = tuple(torch.randn(5, 3, generator=gen, dtype=torch.float64) * (1 + k) for k in range(_STEPS))
    return Inputs(w, gs, _LRS, tuple(float(k + 1) for k in range(_STEPS)))


_TALL = _tall_inputs()


def fingerprint(program: Program) -> str:
    """Hash of the program's updates over a few steps on fixed inputs, rounded to 6 significant digits.

    Per tensor (a matrix and a vector, so shape functions such as ``is_matrix`` and ``row_mean``
    show); a program that reads the parameter's shape also on a tall matrix (`_tall_inputs`); a
    program with a whole-group function also on both tensors as one group, so ``global_norm(g)``
    and ``norm(g)`` differ. Fingerprints of other programs are unchanged."""
    cp = compile(program)
    parts = []
    try:
        shape_aware = any(ins.op.param_ndim for ins in cp.instrs)
        for inputs in _PROBES + ([_TALL] if shape_aware else []):
            for upd, _ in trajectory(cp, inputs):
                parts.append(";".join(f"{v:.5e}" for v in upd.flatten().tolist()))
        if cp.uses_group:  # global_norm: also the whole group (apply alone sees one tensor)
            ws = [p.w0.clone() for p in _PROBES]
            states = [cp.init_state(w) for w in ws]
            for step in range(_STEPS):
                gs = [p.gs[step] for p in _PROBES]
                ups, states = cp.apply_group(ws, gs, _LRS[step], float(step + 1), states)
                ws = [w - u.expand_as(w) for w, u in zip(ws, ups)]
                parts += [";".join(f"{v:.5e}" for v in u.expand_as(w).flatten().tolist()) for w, u in zip(ws, ups)]
    except Exception as e:  # a program that cannot run has a fingerprint of its own
        parts = [f"error:{program.hash}:{type(e).__name__}"]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@dataclass
class CacheStats:
    lookups: int = 0
    structural_hits: int = 0
    functional_hits: int = 0
    inflight_hits: int = 0      # an identical program was being evaluated: wait for its result

    @property
    def hits(self) -> int:
        return self.structural_hits + self.functional_hits + self.inflight_hits

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0

    def to_dict(self) -> dict:
        return {"lookups": self.lookups, "structural_hits": self.structural_hits,
                "functional_hits": self.functional_hits, "inflight_hits": self.inflight_hits,
                "hit_rate": self.hit_rate}


class FitnessCache:
    """hash -> (fitness, fingerprint) and fingerprint -> fitness, each a least-recently-used
    map of at most ``size`` entries (AutoML-Zero keeps 100,000), so a long run's memory and
    checkpoint stay bounded; the full record is the run log, from which `Search.resume`
    refills the cache."""

    def __init__(self, size: int = 100_000) -> None:
        if size < 1:
            raise ValueError(f"cache size must be >= 1, got {size}")
        self.size = size
        self.by_hash: OrderedDict[str, tuple[Fitness, str]] = OrderedDict()
        self.by_fingerprint: OrderedDict[str, Fitness] = OrderedDict()
        self.stats = CacheStats()

    def fingerprint_of(self, program_hash: str) -> Optional[str]:
        """The fingerprint stored with a known program (saves recomputing it); no stats counted."""
        hit = self.by_hash.get(program_hash)
        return hit[1] if hit is not None else None

    def lookup(self, program_hash: str, fp: str) -> Optional[tuple[Fitness, str]]:
        """``(fitness, "hash" | "function")`` for a known program, else None."""
        self.stats.lookups += 1
        hit = self.by_hash.get(program_hash)
        if hit is not None:
            self.stats.structural_hits += 1
            self.by_hash.move_to_end(program_hash)
            return hit[0], "hash"
        f = self.by_fingerprint.get(fp)
        if f is not None:
            self.stats.functional_hits += 1
            self.by_fingerprint.move_to_end(fp)
            self._put_hash(program_hash, f, fp)
            return f, "function"
        return None

    def store(self, program_hash: str, fp: str, fitness: Fitness) -> None:
        # Timeouts, lost workers and evaluator crashes are not properties of the program.
        if fitness.status in TRANSIENT:
            return
        self._put_hash(program_hash, fitness, fp)
        if fp in self.by_fingerprint:
            self.by_fingerprint.move_to_end(fp)   # first result per behaviour wins, as before
        else:
            self.by_fingerprint[fp] = fitness
            if len(self.by_fingerprint) > self.size:
                self.by_fingerprint.popitem(last=False)

    def _put_hash(self, program_hash: str, fitness: Fitness, fp: str) -> None:
        self.by_hash[program_hash] = (fitness, fp)
        self.by_hash.move_to_end(program_hash)
        if len(self.by_hash) > self.size:
            self.by_hash.popitem(last=False)

    def __len__(self) -> int:
        return len(self.by_hash)

    def stats_dict(self) -> dict:
        return self.stats.to_dict()

    def load_stats(self, s: dict) -> None:
        self.stats = CacheStats(s.get("lookups", 0), s.get("structural_hits", 0), s.get("functional_hits", 0),
                                s.get("inflight_hits", 0))
