"""Ctrl-C and state changes: the short sections that commit a new state run with SIGINT held back.

Python raises KeyboardInterrupt between any two bytecodes of the main thread, so an accumulator interrupted
halfway through replacing its fields would be left half-updated. The heavy work (products, factorisations)
runs before the commit, with Ctrl-C delivered as usual (the compiled kernels check for it); the commit itself
runs inside :func:`deferred_interrupt`, which records a SIGINT arriving meanwhile and delivers it right after.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _Pending:
    """What :func:`deferred_interrupt` yields: whether a SIGINT arrived so far in the block."""

    def __init__(self) -> None:
        self.received: list[tuple[int, Any]] = []

    def __bool__(self) -> bool:
        return bool(self.received)

    def check(self) -> None:
        """Raise KeyboardInterrupt now (before anything is committed) if Ctrl-C was pressed in the block."""
        if self.received:
            self.received.clear()
            raise KeyboardInterrupt


@contextmanager
def deferred_interrupt() -> Iterator[_Pending]:
    """Hold SIGINT back during a short block (main thread only; other threads never receive it). A SIGINT that
    arrives meanwhile is passed to the handler that was installed before, right after the block, so the
    KeyboardInterrupt (or whatever that handler does) comes once the state is consistent again."""
    pending = _Pending()
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    try:
        previous = signal.getsignal(signal.SIGINT)
    except (ValueError, AttributeError):  # pragma: no cover - no signal support
        yield pending
        return
    if not callable(previous):  # SIG_IGN or SIG_DFL: nothing Python-level to hold back
        yield pending
        return

    def hold(signum: int, frame: Any) -> None:
        pending.received.append((signum, frame))

    signal.signal(signal.SIGINT, hold)
    try:
        yield pending
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending.received:
            signum, frame = pending.received[0]
            pending.received.clear()
            previous(signum, frame)
