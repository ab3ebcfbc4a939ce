"""Ctrl-C and state changes: the short sections that commit a new state run with SIGINT held back.

Python raises KeyboardInterrupt between any two bytecodes of the main thread, so an accumulator interrupted
halfway through replacing its fields would be left half-updated. The heavy work (products, factorisations)
runs before the commit, with Ctrl-C delivered as usual (the compiled kernels check for it); the commit itself
runs inside :func:`deferred_interrupt`, which records a SIGINT arriving meanwhile and delivers it right after.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


class deferred_interrupt:  # noqa: N801 (used as a context manager, like contextlib's)
    """Hold SIGINT back during a short block (main thread only; other threads never receive it).

    A SIGINT that arrives meanwhile is passed to the handler that was installed before, right after the block, so
    the KeyboardInterrupt (or whatever that handler does) comes once the state is consistent again. Inside the
    block, ``pending.check()`` raises KeyboardInterrupt at once if Ctrl-C was pressed so far (to give up before
    committing anything), and ``bool(pending)`` says whether it was.
    """

    __slots__ = ("received", "_previous")

    def __init__(self) -> None:
        self.received: list[tuple[int, Any]] = []
        self._previous: Any = None

    def __bool__(self) -> bool:
        return bool(self.received)

    def check(self) -> None:
        """Raise KeyboardInterrupt now (before anything is committed) if Ctrl-C was pressed in the block."""
        if self.received:
            self.received.clear()
            raise KeyboardInterrupt

    def _hold(self, signum: int, frame: Any) -> None:
        self.received.append((signum, frame))

    def __enter__(self) -> deferred_interrupt:
        if threading.current_thread() is threading.main_thread():
            try:
                previous = signal.signal(signal.SIGINT, self._hold)
            except (ValueError, OSError):  # pragma: no cover - no signals in this interpreter
                return self
            if callable(previous):
                self._previous = previous
            else:  # SIG_IGN or SIG_DFL: nothing Python-level to hold back
                signal.signal(signal.SIGINT, previous)
        return self

    def __exit__(self, *exc: Any) -> None:
        previous, self._previous = self._previous, None
        if previous is None:
            return
        signal.signal(signal.SIGINT, previous)
        if self.received:
            signum, frame = self.received[0]
            self.received.clear()
            previous(signum, frame)
