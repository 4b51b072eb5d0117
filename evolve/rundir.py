"""A run directory: config, a JSONL log of every candidate, atomic checkpoints, the hall of fame.

    RUN/config.json         the SearchConfig that determines the run
    RUN/log.jsonl           one line per evaluated candidate (program, hashes, scores, stage, time, worker)
    RUN/checkpoint.json     population, caches, random state, counters; written atomically
    RUN/hall_of_fame.json   best distinct programs and the Pareto front, with their validation scores;
                            at the end ordered by validation (the first is the run's winner); atomic
    RUN/validation.jsonl    one line per validated program (evolve/validation.py)
    RUN/test.json           the winner (and the references AdamW, Lion) on the test tasks, at the end
    RUN/heldout.json        (runs from before the three roles) held-out rows, read by show/report

A killed run resumes from its checkpoint: the log and ``validation.jsonl`` are cut back to the
lengths recorded in the checkpoint, so no entry is written twice. Log lines are buffered (``LOG_BUFFER`` bytes) and
flushed at each checkpoint: one ``write`` syscall per line was the cost of an unbuffered log,
and a line lost in a kill is one the checkpoint does not cover anyway.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Optional

__all__ = ["RunDir", "atomic_write_json", "read_jsonl"]

LOG_BUFFER = 1 << 20


def atomic_write_json(path: Path, data: Any, indent: Optional[int] = 1) -> None:
    """Write JSON so that a crash leaves either the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps(data, indent=indent, allow_nan=True, separators=None if indent else (",", ":"))
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_jsonl(path: Path) -> Iterator[dict]:
    """Entries of a JSONL file; a torn last line (a crash mid-write) is skipped."""
    if not path.exists():
        return
    with open(path) as f:
        for line in f:
            if line.endswith("\n"):
                yield json.loads(line)


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.log_path = self.path / "log.jsonl"
        self.checkpoint_path = self.path / "checkpoint.json"
        self.hof_path = self.path / "hall_of_fame.json"
        self.heldout_path = self.path / "heldout.json"
        self.validation_path = self.path / "validation.jsonl"
        self.test_path = self.path / "test.json"
        self._log = None

    def create(self, config: dict, overwrite: bool = False) -> None:
        if self.checkpoint_path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} holds a run already: `evolve resume {self.path}` continues it, "
                                  "or choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)
        for p in (self.log_path, self.checkpoint_path, self.hof_path, self.heldout_path, self.validation_path,
                  self.test_path):
            p.unlink(missing_ok=True)
        atomic_write_json(self.config_path, config)

    def config(self) -> dict:
        if not self.config_path.exists():
            raise FileNotFoundError(f"{self.path} is not a run directory (no config.json)")
        return json.loads(self.config_path.read_text())

    # -- log -----------------------------------------------------------------------------
    def append(self, entry: dict) -> None:
        if self._log is None:
            self._log = open(self.log_path, "a", buffering=LOG_BUFFER)
        self._log.write(json.dumps(entry, allow_nan=True) + "\n")

    def flush(self) -> None:
        if self._log is not None:
            self._log.flush()

    def log_size(self) -> int:
        if self._log is not None:
            self._log.flush()
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def entries(self) -> list[dict]:
        return list(read_jsonl(self.log_path))

    def tail(self, n: int, end: Optional[int] = None) -> list[dict]:
        """The last ``n`` whole entries of the log's first ``end`` bytes, read backwards in
        1 MiB chunks (a resume needs the recent results, not a 100-million-line log)."""
        self.flush()
        if n <= 0 or not self.log_path.exists():
            return []
        with open(self.log_path, "rb") as f:
            pos = f.seek(0, os.SEEK_END) if end is None else min(end, f.seek(0, os.SEEK_END))
            f.seek(pos)
            chunks: list[bytes] = []
            lines = 0
            while pos > 0 and lines <= n:
                step = min(1 << 20, pos)
                pos -= step
                f.seek(pos)
                chunk = f.read(step)
                chunks.append(chunk)
                lines += chunk.count(b"\n")
        raw = b"".join(reversed(chunks)).split(b"\n")
        if pos > 0:
            raw = raw[1:]          # the first piece may be the end of an earlier line
        raw = raw[:-1]             # after the last newline: empty, or a torn line
        return [json.loads(line) for line in raw[-n:] if line.strip()]

    def truncate_log(self, size: int) -> list[dict]:
        """Cut the log back to ``size`` bytes; return the entries that were cut (their results
        can seed the cache, so the work is not lost)."""
        self.close()
        if not self.log_path.exists():
            return []
        with open(self.log_path, "rb+") as f:
            f.seek(size)
            tail = f.read().decode(errors="replace")
            f.truncate(size)
        return [json.loads(line) for line in tail.splitlines(keepends=True) if line.endswith("\n") and line.strip()]

    # -- validation ----------------------------------------------------------------------
    def append_validation(self, record: dict) -> None:
        """One line of ``validation.jsonl``, written through (a few lines per run)."""
        with open(self.validation_path, "a") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")

    def validations(self) -> list[dict]:
        return list(read_jsonl(self.validation_path))

    def validation_size(self) -> int:
        return self.validation_path.stat().st_size if self.validation_path.exists() else 0

    def truncate_validations(self, size: int) -> None:
        """Cut ``validation.jsonl`` back to ``size`` bytes (lines written after the checkpoint:
        their jobs are in its in-flight list and run again)."""
        if self.validation_path.exists():
            with open(self.validation_path, "rb+") as f:
                f.truncate(size)

    def test_rows(self) -> Optional[dict]:
        """``test.json``, or an old run's ``heldout.json`` (tagged ``"heldout": true``), or None."""
        if self.test_path.exists():
            return json.loads(self.test_path.read_text())
        if self.heldout_path.exists():
            return dict(json.loads(self.heldout_path.read_text()), heldout=True)
        return None

    # -- checkpoint ----------------------------------------------------------------------
    def save_checkpoint(self, state: dict) -> None:
        if self._log is not None:
            self._log.flush()
            os.fsync(self._log.fileno())
        state = dict(state, log_bytes=self.log_size(), validation_bytes=self.validation_size())
        atomic_write_json(self.checkpoint_path, state, indent=None)

    def load_checkpoint(self) -> Optional[dict]:
        if not self.checkpoint_path.exists():
            return None
        return json.loads(self.checkpoint_path.read_text())

    def save_hall_of_fame(self, data: dict) -> None:
        atomic_write_json(self.hof_path, data)

    def hall_of_fame(self) -> dict:
        if not self.hof_path.exists():
            raise FileNotFoundError(f"{self.path} has no hall_of_fame.json yet")
        return json.loads(self.hof_path.read_text())

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
