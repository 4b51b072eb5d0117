"""Time bounds for symbolic work: a worker thread, a deadline checked by a trace hook, a reaper.

The sympy work runs in a daemon worker thread; the caller waits at most ``timeout`` seconds
and then takes the last value the worker published. The worker is interrupted without signals
(they only work in the main thread, so not in Ray worker threads): it installs a
``sys.settrace`` hook for its own thread only that, every 64 Python calls, compares the clock
with the deadline and raises `SymbolicTimeout` (a ``BaseException``, so sympy's
``except Exception`` clauses do not swallow it) inside whatever sympy is doing. The worker's
deadline is a little earlier than the caller's so that unwinding (freeing what the interrupted
call built) fits in the bound. A pass may get only a share of the time (`Budget.run_pass`,
`PassTimeout`), after which the caller goes on without it. A trace function already set for
the thread (coverage, a debugger) is called through the hook.

A worker still alive at the deadline is reaped (`reap`): ``PyThreadState_SetAsyncExc`` raises
`SymbolicTimeout` at its next bytecode boundary, repeatedly, until it ends. (An earlier CI run
was killed by the OOM killer: a sympy thread that outlived its deadline kept expanding a
multinomial in a generator the trace hook cannot stop.) Neither mechanism can stop a single
C call, such as an exact integer power with a huge exponent: `dsl.symbolic.form` keeps such
numbers from being built at all. Nothing here needs sympy.
"""
from __future__ import annotations

import ctypes
import inspect
import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

__all__ = ["DEFAULT_TIMEOUT", "SymbolicTimeout", "SymbolicError", "PassTimeout", "Budget", "Outcome",
           "bounded", "bounded_value", "reap"]

DEFAULT_TIMEOUT = 10.0
"""Seconds `simplify`, `equivalent` and `to_math` may spend on one program by default."""


class SymbolicTimeout(BaseException):
    """Raised inside the symbolic worker when its time is up (never reaches callers)."""


class PassTimeout(SymbolicTimeout):
    """One expensive pass ran out of its share of the time; the caller goes on without it."""


class SymbolicError(RuntimeError):
    """A symbolic operation could not give its result: the time bound ran out, or sympy failed.

    The message says which, in one line (``to_math`` raises it; callers print it)."""


_NO_RAISE_FLAGS = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


class Budget:
    """The deadline of one bounded call, and optionally a tighter one for the current pass."""

    def __init__(self, seconds: Optional[float]):
        self.end = math.inf if seconds is None else time.monotonic() + max(0.0, seconds)
        self.pass_end = math.inf
        self.cancelled = False
        self.tracer: Optional[Callable] = None  # set by `bounded` in the worker thread

    def expired(self) -> bool:
        return self.cancelled or time.monotonic() > self.end

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def check(self) -> None:
        if self.tracer is not None and sys.gettrace() is None:
            sys.settrace(self.tracer)  # lost after a raise that something swallowed: re-arm
        now = time.monotonic()
        if self.cancelled or now > self.end:
            raise SymbolicTimeout()
        if now > self.pass_end:
            raise PassTimeout()

    def run_pass(self, seconds: float, fn: Callable[[], Any]) -> Any:
        """``fn()`` with at most ``seconds`` of the remaining time; raises `PassTimeout` after."""
        self.pass_end = time.monotonic() + seconds
        try:
            return fn()
        finally:
            self.pass_end = math.inf
            if self.tracer is not None and sys.gettrace() is None:
                sys.settrace(self.tracer)  # a trace function that raised was removed: re-arm


@dataclass(frozen=True)
class Outcome:
    """What a bounded call gave: the last published value, and whether the work ran to its end."""

    value: Any
    finished: bool


def reap(th: threading.Thread, period: float = 0.01, give_up: float = 60.0) -> None:
    """Stop a worker that outlived its deadline: raise `SymbolicTimeout` in it asynchronously.

    The trace hook cannot stop a loop that makes no Python calls (a generator such as sympy's
    multinomial iterator, resumed from C) and is lost if something swallows its exception.
    ``PyThreadState_SetAsyncExc`` is delivered at the thread's next bytecode boundary, wherever
    it is; it is repeated until the thread ends (a ``finally`` or a generator being closed may
    swallow one).
    """
    def loop() -> None:
        end = time.monotonic() + give_up
        while th.is_alive() and time.monotonic() < end:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(th.ident), ctypes.py_object(SymbolicTimeout))
            th.join(period)

    threading.Thread(target=loop, name="dsl-symbolic-reaper", daemon=True).start()


def bounded(fn: Callable[[Budget, Callable[[Any], None]], None], timeout: Optional[float],
            default: Any) -> Outcome:
    """Run ``fn(budget, publish)`` for at most ``timeout`` seconds; the last published value.

    ``timeout=None`` runs inline without a bound. Otherwise ``fn`` runs in a daemon thread that
    traces its own Python calls and raises `SymbolicTimeout` once the deadline passes.
    ``finished`` is False when the deadline stopped ``fn``. Other exceptions of ``fn`` are
    raised here, in the caller's thread.
    """
    box: dict = {"value": default, "error": None, "finished": False}
    lock = threading.Lock()

    def publish(v: Any) -> None:
        with lock:
            box["value"] = v

    if timeout is None:
        try:
            fn(Budget(None), publish)
            box["finished"] = True
        except SymbolicTimeout:
            pass
        return Outcome(box["value"], box["finished"])

    start = time.monotonic()
    # The worker stops a little before the caller's deadline: unwinding an interrupted sympy
    # call frees what it built, which holds the interpreter lock for a moment.
    budget = Budget(timeout - min(0.25, 0.1 * timeout))
    calls = [0]
    chained: list = [None]  # a tracer already set for new threads (coverage, debugger)

    def tracer(frame, event, arg):
        calls[0] += 1
        # Not inside generator frames: a generator resumed to be closed by the garbage
        # collector would report the exception as "ignored" and lose the trace hook.
        if calls[0] >= 64 and not frame.f_code.co_flags & _NO_RAISE_FLAGS:
            calls[0] = 0
            budget.check()
        prev = chained[0]
        return prev(frame, event, arg) if prev is not None else None

    def work() -> None:
        chained[0] = sys.gettrace()
        budget.tracer = tracer
        sys.settrace(tracer)
        try:
            fn(budget, publish)
            box["finished"] = True
        except SymbolicTimeout:
            pass
        except BaseException as e:  # noqa: BLE001 - reported to the caller below
            box["error"] = e
        finally:
            budget.tracer = None
            sys.settrace(chained[0])

    def target() -> None:
        try:
            work()
        except SymbolicTimeout:  # the reaper's exception arrived in work's own cleanup
            pass

    th = threading.Thread(target=target, name="dsl-symbolic", daemon=True)
    th.start()
    th.join(max(0.0, start + timeout - time.monotonic()))
    budget.cancelled = True
    alive = th.is_alive()
    if alive:
        reap(th)
    if box["error"] is not None:
        raise box["error"]
    with lock:
        return Outcome(box["value"], box["finished"] and not alive)


def bounded_value(compute: Callable[[], Any], timeout: Optional[float], what: str) -> Any:
    """``compute()`` under `bounded`; `SymbolicError` (``"<what>: <why>"``, one line) when it
    raises or is not done within ``timeout`` seconds."""
    def run(budget: Budget, publish: Callable[[Any], None]) -> None:
        publish((compute(),))

    try:
        out = bounded(run, timeout, None)
    except RecursionError:
        raise SymbolicError(f"{what}: expression too deep for sympy") from None
    except Exception as e:  # noqa: BLE001 - one error type for callers
        raise SymbolicError(f"{what}: sympy failed: {type(e).__name__}: {str(e)[:120]}") from e
    if out.value is None:
        raise SymbolicError(f"{what}: not ready within the time bound of {timeout:g} s")
    return out.value[0]
