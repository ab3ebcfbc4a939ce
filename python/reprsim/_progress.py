"""Progress bars of the long calls (permutation tests, bootstraps, pairwise matrices).

``progress=None`` (the default of those calls) shows a tqdm bar when stderr is a terminal, tqdm is installed and
the call is still running after a couple of seconds; ``True`` shows one whenever tqdm is installed (a
RuntimeWarning says when it is not); ``False`` never does. tqdm is an optional dependency.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from ._registry import check_bool

# Seconds a call runs before its bar appears in automatic mode: short calls print nothing.
AUTO_DELAY = 2.0


def check_progress(progress: Any) -> bool | None:
    """``progress`` as True, False or None (automatic); TypeError for anything else."""
    if progress is None:
        return None
    return check_bool("progress")(progress)


def _stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class Progress:
    """A tqdm bar, or nothing (see the module docstring)."""

    def __init__(self, progress: bool | None, total: int | None, desc: str) -> None:
        self._bar: Any = None
        progress = check_progress(progress)
        if progress is False or (progress is None and not _stderr_is_terminal()):
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            if progress:
                warnings.warn("progress=True needs the tqdm package (pip install tqdm); continuing without a progress "
                              "bar", stacklevel=3)
            return
        delay = AUTO_DELAY if progress is None else 0.0
        try:
            self._bar = tqdm(total=total, desc=desc, delay=delay)
        except TypeError:  # tqdm < 4.61 has no delay
            self._bar = tqdm(total=total, desc=desc) if progress else None

    def update(self, k: int) -> None:
        if self._bar is not None:
            self._bar.update(k)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
