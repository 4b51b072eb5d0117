"""No work twice: a fitness cache keyed by structural hash and by functional fingerprint.

The functional fingerprint (as in AutoML-Zero) runs a program for a few steps on fixed random
inputs and hashes its rounded updates: programs that compute the same thing (``2*g`` and
``g+g``) share a fingerprint and are scored once.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

import torch

from dsl import Program, compile
from dsl.probe import Inputs, trajectory

from .candidate import Fitness

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


def fingerprint(program: Program) -> str:
    """Hash of the program's updates over a few steps on fixed inputs, rounded to 6 significant digits."""
    cp = compile(program)
    parts = []
    try:
        for inputs in _PROBES:
            for upd, _ in trajectory(cp, inputs):
                parts.append(";".join(f"{v:.5e}" for v in upd.flatten().tolist()))
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
    """hash -> fitness and fingerprint -> fitness."""

    def __init__(self) -> None:
        self.by_hash: dict[str, Fitness] = {}
        self.by_fingerprint: dict[str, Fitness] = {}
        self.stats = CacheStats()

    def lookup(self, program_hash: str, fp: str) -> Optional[tuple[Fitness, str]]:
        """``(fitness, "hash" | "function")`` for a known program, else None."""
        self.stats.lookups += 1
        if program_hash in self.by_hash:
            self.stats.structural_hits += 1
            return self.by_hash[program_hash], "hash"
        if fp in self.by_fingerprint:
            self.stats.functional_hits += 1
            f = self.by_fingerprint[fp]
            self.by_hash[program_hash] = f
            return f, "function"
        return None

    def store(self, program_hash: str, fp: str, fitness: Fitness) -> None:
        # Timeouts and lost workers are not properties of the program: do not cache them.
        if fitness.status in ("timeout", "lost"):
            return
        self.by_hash[program_hash] = fitness
        self.by_fingerprint.setdefault(fp, fitness)

    def state_dict(self) -> dict:
        return {"by_hash": {k: v.to_dict() for k, v in self.by_hash.items()},
                "by_fingerprint": {k: v.to_dict() for k, v in self.by_fingerprint.items()},
                "stats": self.stats.to_dict()}

    def load_state_dict(self, d: dict) -> None:
        self.by_hash = {k: Fitness.from_dict(v) for k, v in d["by_hash"].items()}
        self.by_fingerprint = {k: Fitness.from_dict(v) for k, v in d["by_fingerprint"].items()}
        s = d.get("stats", {})
        self.stats = CacheStats(s.get("lookups", 0), s.get("structural_hits", 0), s.get("functional_hits", 0),
                                s.get("inflight_hits", 0))
