"""A live progress line for long searches (redrawn in place on a terminal, periodic lines otherwise)."""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO

__all__ = ["Progress"]


class Progress:
    """``clock`` gives the run's time (a simulated executor's virtual seconds); redraws are paced
    by the wall clock either way."""

    def __init__(self, total: int, enabled: bool = True, stream: TextIO = sys.stderr, every: float = 10.0,
                 clock: Optional[Callable[[], float]] = None, time_limit: float = 0.0, elapsed_before: float = 0.0):
        self.total, self.enabled, self.stream, self.every = total, enabled, stream, every
        self.time_limit, self.elapsed_before = time_limit, elapsed_before
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.clock = clock or time.monotonic
        self.start = self.clock()
        self.last = 0.0
        self.width = 0

    def update(self, done: int, trained: int, best: float, hit_rate: float, workers: int,
               force: bool = False, validation: Optional[float] = None) -> None:
        """``best``: the best search score; ``validation``: the best validation score (None: none yet)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and not self.tty and now - self.last < self.every:
            return
        if not force and self.tty and now - self.last < 0.2:
            return
        self.last = now
        elapsed = max(self.clock() - self.start, 1e-9)
        clock = f"{elapsed + self.elapsed_before:.0f}s"
        if self.time_limit:  # a run bounded by time says how much of it is left
            clock += f" of {self.time_limit:.0f}s"
        val = f" | validation {validation:+.4f}" if validation is not None else ""
        line = (f"evals {done}/{self.total} | {done / elapsed:.2f}/s (trained {trained}) | search {best:+.4f}{val} "
                f"| cache hits {100 * hit_rate:.0f}% | workers {workers} | {clock}")
        if self.tty:
            pad = max(0, self.width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self.width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
