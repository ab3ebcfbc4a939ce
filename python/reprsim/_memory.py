"""The one memory check every large allocation of the public API goes through, before allocating."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux: MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def gib(nbytes: float) -> str:
    """A byte count in GiB for messages."""
    return f"{nbytes / 2**30:.3g} GiB"


def fits(need: float) -> bool:
    """Whether ``need`` bytes fit in the memory available now (True when that is unknown)."""
    available = available_memory()
    return available is None or need <= available


@contextmanager
def explain_out_of_memory(what: str) -> Iterator[None]:
    """A MemoryError from the compiled core (C++'s std::bad_alloc, which pybind11 turns into a bare
    MemoryError) re-raised as a MemoryError that says what ran out of memory and what to do. It means an
    estimate made before allocating was too low, or other processes took the memory meanwhile."""
    try:
        yield
    except MemoryError as exc:
        if str(exc).startswith("reprsim:"):
            raise
        raise MemoryError(
            f"reprsim: {what} ran out of memory ({exc or 'allocation failed'}) although the estimate checked before "
            "allocating fitted: other processes may have taken memory meanwhile; use fewer samples or features, or "
            "free memory, and retry"
        ) from exc


def require_memory(need: float, what: str, fix: str, detail: str = "") -> None:
    """Raise ValueError, before anything is allocated, when ``need`` bytes exceed the memory available now.

    Every O(n²), O(p²) or O(n·p) allocation of the public API is checked here first, with the same error
    type as any other request that cannot be carried out for these inputs (ValueError); the message gives
    the figure needed, the figure available, and the fix.
    """
    available = available_memory()
    if available is not None and need > available:
        detail = f" ({detail})" if detail else ""
        raise ValueError(
            f"{what} needs about {gib(need)}{detail}, but only {gib(available)} of memory is available; {fix}"
        )
