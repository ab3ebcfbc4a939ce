"""Compiled permutation nulls: measures whose value under a permutation of y's rows costs far less than a
full recomputation register a builder here as ``Measure.permutation_null``."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._memory import fits, require_memory


def _null_memory_bytes(n: int, p1: int, p2: int, itemsize: int, space: str, n_jobs: int) -> int:
    """Peak memory of the compiled permutation null of linear CKA in the given space."""
    if space == "gram":
        # K packed (n²/2), L in full (n²) and, while L is formed, its packed triangle (n²/2); before that
        # one n×n Gram and a centred copy as scratch; a row buffer per thread.
        return itemsize * (2 * n * n + n * max(p1, p2) + n * n_jobs)
    # Centred features of both inputs, one p×p product while forming them, the gathered Yc[π] and XcᵀYc[π].
    return itemsize * (n * (p1 + p2) + max(p1, p2) ** 2 + n * p2 + p1 * p2)


def _null_space(xa: np.ndarray, ya: np.ndarray, n_permutations: int, n_jobs: int, space: str) -> str:
    """The space of the compiled null (the kernel's choice, or the other one when only that one fits in
    memory); ValueError before allocating when neither fits."""
    if space != "auto":
        return space
    (n, p1), p2, itemsize = xa.shape, ya.shape[1], xa.itemsize
    space = _core.choose_null_space(n, p1, p2, itemsize, float(max(n_permutations, 1)))
    need = _null_memory_bytes(n, p1, p2, itemsize, space, n_jobs)
    if fits(need):
        return space
    other = "gram" if space == "feature" else "feature"
    need_other = _null_memory_bytes(n, p1, p2, itemsize, other, n_jobs)
    if fits(need_other):
        return other
    require_memory(
        min(need, need_other),
        f"the permutation null of linear CKA with n = {n} samples and widths {p1} and {p2}",
        "use fewer samples or features, or a random subset of the rows for the test",
        "two n×n Gram matrices, or the centred features and a p×p product",
    )
    return space  # pragma: no cover


def linear_cka_null(xa: np.ndarray, ya: np.ndarray, bound: Any, n_permutations: int, n_jobs: int,
                    space: str = "auto") -> Any:
    """Linear CKA under permutations of y's rows: both inputs are centred and reduced to factors once, and
    each permutation π recomputes only the cross term (centring commutes with permuting rows and the self
    terms do not change): ⟨K, L_π⟩ over the packed Grams in Gram space, one product XcᵀYc[π] in feature
    space; the cheaper space is chosen from n, the widths and the number of permutations."""
    space = _null_space(xa, ya, n_permutations, n_jobs, space)
    return _core.LinearCKANull(xa, ya, bool(bound["debiased"]), space, float(max(n_permutations, 1)))
