"""Which BLAS the kernels call: numpy's own OpenBLAS when it can, else the linked scipy-openblas32.

Two OpenBLAS thread pools in one process fight for the cores whenever numpy (or torch) and reprsim
calls alternate: each pool's idle threads spin after a call, on the cores the other pool needs next.
numpy >= 2 wheels bundle an ILP64 OpenBLAS (scipy-openblas64, symbols ``scipy_cblas_sgemm64_`` ...)
that is already loaded once numpy is imported; calling it gives numpy and reprsim one pool. Where
numpy's BLAS is something else (MKL, Accelerate, a system BLAS) or lacks a symbol, the linked
scipy-openblas32 stays in use, with its idle threads told to sleep quickly (see ``__init__``).

``REPRSIM_BLAS=scipy-openblas32`` (read at import) keeps the linked library whatever numpy has.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

from . import _core

_reason = ""


def _numpy_openblas_candidates() -> list[str]:
    """Files of an ILP64 OpenBLAS shipped inside the numpy wheel (Linux, macOS, Windows layouts)."""
    root = Path(np.__file__).resolve().parent
    folders = [root.parent / "numpy.libs", root / ".dylibs", root / ".libs", root / "_core" / ".libs"]
    names = ["libscipy_openblas64_*", "libopenblas64_*"]
    found: list[str] = []
    for folder in folders:
        for name in names:
            found += sorted(glob.glob(str(folder / name)))
    return found


def _select() -> None:
    global _reason
    choice = os.environ.get("REPRSIM_BLAS", "auto").strip().lower()
    if choice in ("scipy-openblas32", "own", "linked"):
        _reason = f"REPRSIM_BLAS={choice}"
        return
    candidates = _numpy_openblas_candidates()
    if not candidates:
        _reason = "numpy's BLAS is not a bundled ILP64 OpenBLAS (e.g. MKL or Accelerate)"
        return
    reasons = []
    for path in candidates:
        ok, why = _core.use_blas_library(path)
        if ok:
            _reason = ""
            return
        reasons.append(f"{Path(path).name}: {why}")
    _reason = "; ".join(reasons)


def info() -> dict[str, object]:
    lib = _core.blas_library()
    return {
        "library": "numpy" if lib["external"] else "scipy-openblas32",
        "path": lib["path"],
        "config": lib["config"],
        "threads": int(_core.get_num_threads()),
        "reason": _reason,
    }


_select()
