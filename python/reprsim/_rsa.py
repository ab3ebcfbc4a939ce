"""Representational similarity analysis: RDMs and their comparison, with rsatoolbox's definitions.

The RDM is computed in row panels of one GEMM each (never an n×n matrix); ``rsa`` with a streaming
comparison (Pearson, cosine) never holds an RDM at all, and the rank comparisons hold one vector of
N = n(n−1)/2 entries plus a sort buffer. Every allocation that grows with N is checked against the
available memory first. RDMs need every sample at once (no streaming over batches of samples).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _core, _memory, _stats
from ._fork import busy
from ._memory import gib
from ._backend import device_backend
from ._compute import pair_value
from ._validation import as_representation

ArrayLike = Any

RDM_METHODS = ("euclidean", "correlation", "cosine")
COMPARISONS = ("spearman", "pearson", "kendall_tau_a", "cosine")
# Bytes held per RDM entry at the peak of each comparison (cpp/src/rsa.cpp): Spearman holds a (value,
# position) sort buffer (16) and both vectors of ranks (8 + 8); Kendall's tau-a both vectors of values
# (8 + 8) and an (x, y) pair buffer (16); Pearson and cosine stream.
ENTRY_BYTES = {"spearman": 32, "pearson": 0, "kendall_tau_a": 32, "cosine": 0}


def _panel_bytes(n: int, itemsize: int) -> int:
    """One RDM panel's products and condensed entries (cpp/src/rsa.cpp: rdm_panel_rows)."""
    rows = min(n, max(32, int(32 * 2**20 / (n * (itemsize + 8)))))
    return rows * n * (itemsize + 8)


def _check_method(method: Any, name: str = "method") -> str:
    if not isinstance(method, str) or method not in RDM_METHODS:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, RDM_METHODS))}, got {method!r}")
    return method


def _check_compare(compare: Any) -> str:
    if not isinstance(compare, str) or compare not in COMPARISONS:
        raise ValueError(f"compare must be one of {', '.join(map(repr, COMPARISONS))}, got {compare!r}")
    return compare


def _largest_n(per_entry: float, fixed_per_sample: float, available: float) -> int:
    """The largest n with per_entry·n(n−1)/2 + fixed_per_sample·n ≤ available."""
    if per_entry <= 0:
        return int(available // max(fixed_per_sample, 1.0))
    a, b = per_entry / 2.0, fixed_per_sample - per_entry / 2.0
    return max(0, int((-b + math.sqrt(b * b + 4.0 * a * max(available, 0.0))) / (2.0 * a)))


def _require_entries(n: int, per_entry: int, fixed: int, fixed_per_sample: float, what: str, fix: str) -> None:
    """ValueError before allocating when N = n(n−1)/2 entries of per_entry bytes (plus fixed) do not fit."""
    count = n * (n - 1) // 2
    need = per_entry * count + fixed
    available = _memory.available_memory()
    if available is None or need <= available:
        return
    largest = _largest_n(per_entry, fixed_per_sample, available)
    raise ValueError(
        f"{what} needs about {gib(need)} ({per_entry} bytes for each of the N = n(n-1)/2 = {count} "
        f"RDM entries, plus {gib(fixed)}), but only {gib(available)} of memory is available; "
        f"the largest n that fits is about {largest}; {fix}"
    )


def rdm(x: ArrayLike, *, method: str = "correlation") -> Any:
    """The representational dissimilarity matrix of one representation, as its condensed upper triangle.

    Entry (i, j), i < j, row by row (the order of ``scipy.spatial.distance.pdist``; ``squareform``
    makes the square matrix). Dissimilarities, with rsatoolbox's definitions:

    - ``"correlation"``: 1 − Pearson r between rows i and j (each row centred across its features),
      in [0, 2];
    - ``"euclidean"``: the squared Euclidean distance divided by the number of features p,
      ‖x_i − x_j‖² / p (rsatoolbox's ``calc_rdm(method='euclidean')``), ≥ 0;
    - ``"cosine"``: 1 − cosine similarity of the rows, in [0, 2].

    Computed in row panels, one GEMM each, in the input's dtype (float32 products for float32 input),
    every entry formed in float64. Euclidean entries come from the column-centred rows as
    ‖z_i‖² + ‖z_j‖² − 2 z_i·z_j; a value below zero within that formula's rounding bound is 0. Needs
    every sample at once (no streaming).

    Parameters
    ----------
    x : array_like, shape (n, p)
        Rows are conditions/samples, n ≥ 2. A CUDA torch tensor is computed on its device.
    method : {"correlation", "euclidean", "cosine"}, default "correlation"
        The dissimilarity.

    Returns
    -------
    numpy.ndarray, shape (n(n-1)/2,)
        The float64 dissimilarities (a float64 tensor on the input's device for a CUDA tensor).

    Raises
    ------
    ValueError
        An unknown method, n < 2, NaN/Inf, rows whose correlation or cosine is undefined (constant rows
        for "correlation", zero rows for "cosine"; the message lists them), or an RDM too large for the
        available memory (8·n(n−1)/2 bytes; the message gives the largest n that fits).
    TypeError
        An input that is not a real-valued 2-D array.

    References
    ----------
    .. [1] N. Kriegeskorte, M. Mur, P. Bandettini. "Representational similarity analysis – connecting
       the branches of systems neuroscience." Front. Syst. Neurosci. 2, 2008.
    .. [2] H. Nili et al. "A toolbox for representational similarity analysis." PLoS Comput. Biol. 10,
       2014 (rsatoolbox).
    """
    _check_method(method)
    backend = device_backend(x)
    if backend is not None:
        return backend.rdm(x, method, "x")
    xa = as_representation(x, "x")
    n, p = xa.shape
    if n < 2:
        raise ValueError(f"x has n = {n} samples; an RDM needs at least 2")
    _require_entries(
        n, 8, xa.itemsize * n * p + _panel_bytes(n, xa.itemsize), xa.itemsize * p,
        f"the {method} RDM of n = {n} samples", "use fewer samples",
    )
    with busy():  # a fork waits for the products (see reprsim._fork)
        return _core.rdm(xa, method, "x")


def rsa(x: ArrayLike, y: ArrayLike, *, rdm: str = "correlation", compare: str = "spearman") -> float:
    """Representational similarity analysis: the comparison of the RDMs of two representations.

    Both RDMs are computed as in :func:`reprsim.rdm` with the same ``rdm`` method, and their condensed
    upper triangles a, b (N = n(n−1)/2 entries) are compared as rsatoolbox's ``compare`` does:

    - ``"spearman"``: Pearson r of the ranks, tied entries sharing their average rank
      (``scipy.stats.spearmanr``); ranks from one O(N log N) sort per RDM;
    - ``"pearson"``: Pearson r of the entries (rsatoolbox's ``'corr'``), streamed;
    - ``"kendall_tau_a"``: (concordant − discordant pairs) / (N(N−1)/2), tied pairs counting as
      neither (rsatoolbox's ``'tau-a'``), in O(N log N) by a merge sort;
    - ``"cosine"``: a·b / (‖a‖‖b‖), streamed.

    Similarity in [−1, 1], symmetric. Invariances follow the RDM: "cosine" RDMs are invariant to
    orthogonal maps of the features and to scaling each row by a positive factor; "correlation" RDMs
    to permutations of the features and to maps x_i → a_i·x_i + b_i (a_i > 0) of each row;
    "euclidean" RDMs to orthogonal maps and translation, and (through every comparison here) to
    isotropic scaling. Pearson and cosine hold no RDM (memory
    O(n·p)); Spearman and Kendall's tau-a hold 32 bytes per RDM entry at the peak, checked against the
    available memory first. Needs every sample at once (no streaming).

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are conditions/samples, aligned between x and y; n ≥ 3. float32 stays float32 for the
        products. CUDA torch tensors are computed on their device.
    rdm : {"correlation", "euclidean", "cosine"}, default "correlation"
        The dissimilarity of both RDMs.
    compare : {"spearman", "pearson", "kendall_tau_a", "cosine"}, default "spearman"
        How the two RDMs are compared.

    Returns
    -------
    float
        The similarity of the two RDMs: 1 for RDMs equal up to the comparison's invariance.

    Raises
    ------
    ValueError
        An unknown ``rdm`` or ``compare``, n < 3, mismatched n, NaN/Inf, rows whose dissimilarity is
        undefined (see :func:`reprsim.rdm`), an RDM whose entries are all equal (Pearson and Spearman
        undefined) or all zero (cosine undefined), or a comparison too large for the available memory
        (the message gives the largest n that fits).
    TypeError
        An input that is not a real-valued 2-D array.

    References
    ----------
    .. [1] N. Kriegeskorte, M. Mur, P. Bandettini. "Representational similarity analysis – connecting
       the branches of systems neuroscience." Front. Syst. Neurosci. 2, 2008.
    .. [2] H. Nili et al. "A toolbox for representational similarity analysis." PLoS Comput. Biol. 10,
       2014 (rsatoolbox).
    """
    return pair_value("rsa", x, y, {"rdm": rdm, "compare": compare})


def rsa_pair(xa: np.ndarray, ya: np.ndarray, method: str, compare: str) -> float:
    """RSA of two checked numpy representations by the C++ kernels (the ``rdm`` statistics of one pair:
    Pearson and cosine stream the RDMs without holding them)."""
    n = xa.shape[0]
    itemsize = xa.itemsize
    fixed = itemsize * n * (xa.shape[1] + ya.shape[1]) + 2 * _panel_bytes(n, itemsize)
    if compare == "spearman":
        fixed += 16 * min(n * (n - 1) // 2, 2**21)  # the rank scatter's staging buffer
    _require_entries(
        n, ENTRY_BYTES[compare], fixed, itemsize * (xa.shape[1] + ya.shape[1]),
        f"rsa with compare={compare!r} over n = {n} samples",
        "use fewer samples, or compare='pearson' or 'cosine', which stream the RDMs without holding them",
    )
    with busy():
        value = float(_core.rsa(xa, ya, method, compare))
    if not math.isfinite(value):
        raise FloatingPointError(f"RSA came out as {value}; please report this input")
    return value


def compare_rdms(a: Any, b: Any, compare: str, *, names: tuple[str, str] = ("a", "b")) -> float:
    """The comparison of two condensed RDMs (the second half of :func:`rsa`), by the C++ kernels."""
    compare = _check_compare(compare)
    va = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    vb = np.ascontiguousarray(np.asarray(b, dtype=np.float64))
    if va.ndim != 1 or vb.ndim != 1:
        raise ValueError(f"the RDMs must be 1-D condensed vectors, got shapes {va.shape} and {vb.shape}")
    per_entry = ENTRY_BYTES[compare]
    n_approx = int((1 + math.sqrt(1 + 8 * va.shape[0])) / 2)
    _require_entries(n_approx, per_entry, 0, 0.0, f"comparing two RDMs of {va.shape[0]} entries",
                     "use fewer samples")
    return float(_core.rdm_compare(va, vb, compare, names[0], names[1], max(1, int(_core.get_num_threads()))))


class RDMSet(_stats.NumpySet):
    """``rdm`` statistics of numpy input. One pair is compared by :func:`rsa` (which streams the Pearson and
    cosine comparisons without holding an RDM); several pairs hold each representation's RDM once."""

    kind = "rdm"

    def rsa(self, method: str, compare: str) -> np.ndarray:
        def compute() -> np.ndarray:
            if self.single:
                return np.array([[rsa_pair(self.xs[0], self.ys[0], method, compare)]])
            out = np.empty((self.k1, self.k2))
            for i in range(self.k1):
                for j in range(self.k2):
                    a = self._rdm(self.cache_x[i], self.xs[i], method)
                    b = self._rdm(self.cache_y[j], self.ys[j], method)
                    out[i, j] = compare_rdms(a, b, compare, names=(self.names_x[i], self.names_y[j]))
            return out

        return self.bulk(("rsa", method, compare), compute)

    @staticmethod
    def _rdm(cache: dict[Any, Any], a: np.ndarray, method: str) -> np.ndarray:
        if ("rdm", method) not in cache:
            cache[("rdm", method)] = rdm(a, method=method)
        return cache[("rdm", method)]


_stats.NUMPY_SETS["rdm"] = RDMSet

