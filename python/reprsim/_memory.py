"""The one memory check every large allocation of the public API goes through, before allocating."""

from __future__ import annotations

import os


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
