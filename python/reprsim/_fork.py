"""A fork waits for reprsim's calls in other threads to finish.

OpenBLAS's thread pool is not fork-safe: ``os.fork()`` while another thread is inside a threaded BLAS call
(reprsim's, or numpy's own ``x.T @ y``) hangs in OpenBLAS's pre-fork handler. reprsim cannot make every BLAS
call fork-safe, but it can keep its own calls out of the way: the work of every measure runs inside
:func:`busy`, and a hook registered with :func:`os.register_at_fork` makes ``os.fork()`` (and so
``multiprocessing``'s "fork" start method) wait until no other thread is inside such a section, holding new
ones back until the fork is done. A section already running in the thread that forks does not count, and the
wait gives up after :data:`FORK_WAIT` seconds (with a RuntimeWarning) rather than hang. numpy's, torch's or
the user's own BLAS calls in other threads are not covered: use the "spawn" or "forkserver" start method, or
one BLAS thread, for processes started while other threads compute (see the README, Reliability).
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# Seconds a fork waits for reprsim's calls in other threads before going ahead anyway.
FORK_WAIT = 60.0

_cond = threading.Condition(threading.Lock())
_busy = 0  # threads inside a busy() section
_forking = False  # a fork is waiting or under way: new sections wait
_local = threading.local()


@contextmanager
def busy() -> Iterator[None]:
    """A section of reprsim work (BLAS calls) that a fork waits for. Nested sections count once."""
    global _busy
    depth = getattr(_local, "depth", 0)
    if depth == 0:
        with _cond:
            while _forking and not getattr(_local, "forking", False):
                _cond.wait()
            _busy += 1
    _local.depth = depth + 1
    try:
        yield
    finally:
        _local.depth = depth
        if depth == 0:
            with _cond:
                _busy -= 1
                if _busy == 0:
                    _cond.notify_all()


def _before_fork() -> None:
    global _forking
    mine = 1 if getattr(_local, "depth", 0) else 0  # a section of the forking thread itself
    with _cond:
        _forking = True
        _local.forking = True
        deadline = time.monotonic() + FORK_WAIT
        while _busy > mine:
            left = deadline - time.monotonic()
            if left <= 0:
                warnings.warn(
                    f"os.fork() waited {FORK_WAIT:.0f} s for reprsim calls in other threads and goes ahead while "
                    f"{_busy - mine} still run(s); a fork during a threaded BLAS call can hang (use the 'spawn' or "
                    "'forkserver' start method, or reprsim.set_num_threads(1))", RuntimeWarning, stacklevel=2)
                return
            _cond.wait(left)


def _after_fork_in_parent() -> None:
    global _forking
    with _cond:
        _forking = False
        _local.forking = False
        _cond.notify_all()


def _after_fork_in_child() -> None:
    # Only the forking thread exists in the child; the other threads' sections died with them.
    global _cond, _busy, _forking, _local
    depth = getattr(_local, "depth", 0)
    _cond = threading.Condition(threading.Lock())
    _busy = 1 if depth else 0
    _forking = False
    _local = threading.local()
    _local.depth = depth


def install() -> None:
    """Register the hooks (once per process; called when reprsim is imported)."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                            after_in_child=_after_fork_in_child)
