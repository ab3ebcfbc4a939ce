"""Neighbourhood measures: mutual, Jaccard and cycle k-NN alignment and CKNNA (Huh et al. 2024).

Every measure is a finaliser of two per-representation statistics objects, :class:`KnnLists`: the
exact k-nearest-neighbour lists of one representation, computed once by :func:`knn_lists` (one blocked
search, O(n·k) memory, never an n×n matrix). A pair then costs O(n·k) (O(n·k·log k) for cycle k-NN and
CKNNA), so a layer × layer matrix over m representations costs m searches and m² cheap finalisers, and
a permutation null reuses the lists (:func:`knn_permutation_null`). The measures need every sample at
once (a neighbour can be any other row), so they do not stream.

Conventions (shared by the CPU search, the CUDA search in ``reprsim.torch._neighbours`` and the
finalisers): the similarity of rows i and j is the inner product of the L2-normalised rows (of the
column-centred rows with ``center=True``), as platonic-rep computes it after ``F.normalize``; the sample
itself is never its own neighbour; exactly k neighbours per row, and of rows with equal similarity the
one with the smaller row index is taken first (platonic-rep's unstable argsort leaves that order
unspecified, so its lists are not reproducible when rows are duplicated).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import _core, _stats
from ._backend import device_backend
from ._compute import pair_value
from ._fork import busy
from ._memory import require_memory as _require_memory
from ._registry import check_bool
from ._validation import as_representation

ArrayLike = Any

# The search's block of similarities (neighbours.hpp: kKnnBlockRows × kKnnBlockCols).
_BLOCK = 1024 * 4096

_CORE_MEASURE = {
    "mutual_knn": "mutual",
    "jaccard_knn": "jaccard",
    "cycle_knn": "cycle",
    "cknna": "cknna",
}
_CKNNA_VARIANTS = {"hsic": "cknna", "row_anchored": "cknna_row"}


@dataclass(frozen=True, eq=False)
class KnnLists:
    """The k-nearest-neighbour lists of one representation: the statistics of the k-NN measures.

    Attributes
    ----------
    indices : numpy.ndarray, shape (n, k), int64
        Row i holds the k neighbours of sample i in ascending index order (a set: the order carries no
        rank); never i itself. Read-only.
    similarities : numpy.ndarray, shape (n, k), float64
        ``similarities[i, t]`` is the cosine similarity K_ij of sample i and ``j = indices[i, t]``,
        computed in the input's dtype (float32 products for float32 input). Read-only.
    row_means : numpy.ndarray, shape (n,), float64
        The mean of row i of the similarity matrix over all n columns, i itself included (the anchor
        of the row-anchored CKNNA). Read-only.
    k : int
        Neighbours per sample.
    center : bool
        Whether the columns were centred before the rows were normalised.
    cknna_self : float
        CKNNA's self term of this representation (platonic-rep's formula: the unbiased HSIC of its
        neighbour-masked kernel with itself); NaN for n < 4.
    cknna_self_row : float
        The row-anchored CKNNA's self term, Σ_i Σ_{j ∈ N(i)} (K_ij − row_means[i])².
    """

    indices: np.ndarray
    similarities: np.ndarray
    row_means: np.ndarray
    k: int
    center: bool
    cknna_self: float
    cknna_self_row: float

    @property
    def n(self) -> int:
        """Number of samples.

        Returns
        -------
        int
            ``indices.shape[0]``.
        """
        return int(self.indices.shape[0])

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (self.indices, self.similarities, self.row_means)


def check_k(k: Any, n: int) -> int:
    """k as an int in [1, n − 1], or TypeError/ValueError naming k."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an integer number of neighbours, got {type(k).__name__}")
    if not 1 <= int(k) <= n - 1:
        raise ValueError(
            f"k must be between 1 and n - 1 = {n - 1} (the other samples) for n = {n} samples, got {k}; "
            "choose k in that range"
        )
    return int(k)


def _knn_memory_bytes(n: int, p: int, k: int, itemsize: int) -> int:
    # The normalised copy, one block of similarities, the heaps and the three output arrays.
    return itemsize * (n * p + min(n * n, _BLOCK)) + n * k * (itemsize + 4 + 16) + 16 * n


def lists_from_arrays(indices: np.ndarray, similarities: np.ndarray, row_means: np.ndarray, k: int, center: bool,
                      name: str) -> KnnLists:
    """A KnnLists from the three arrays of a search (CPU or device), with its CKNNA self terms."""
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    similarities = np.ascontiguousarray(similarities, dtype=np.float64)
    row_means = np.ascontiguousarray(row_means, dtype=np.float64)
    self_hsic, self_row = _core.knn_self_terms((indices, similarities, row_means), name)
    for a in (indices, similarities, row_means):
        a.flags.writeable = False
    return KnnLists(indices, similarities, row_means, int(k), bool(center), float(self_hsic), float(self_row))


def knn_lists(x: ArrayLike, k: int = 10, *, center: bool = False, name: str = "x") -> KnnLists:
    """The exact k-NN lists of one representation (the statistics of every k-NN measure).

    Parameters
    ----------
    x : array_like, shape (n, p)
        One representation (rows are samples); a CUDA torch tensor is searched on its device.
    k : int, default 10
        Neighbours per sample, 1 ≤ k ≤ n − 1.
    center : bool, default False
        Centre the columns before normalising the rows.
    name : str, default "x"
        How error messages call the input.

    Returns
    -------
    KnnLists
        The lists, their similarities, the row means and the CKNNA self terms.
    """
    center = check_bool("center")(center)
    backend = device_backend(x)
    if backend is not None:
        return backend.knn_lists(x, k, center, name)
    xa = as_representation(x, name)
    n, p = xa.shape
    if n < 2:
        raise ValueError(f"{name} has n = {n} samples; a k-NN search needs at least 2")
    k = check_k(k, n)
    _require_memory(
        _knn_memory_bytes(n, p, k, xa.itemsize),
        f"the k-NN search of {name} with n = {n} samples and {p} features",
        "use fewer samples or features",
        "a normalised copy of the input and one block of similarities",
    )
    with busy():  # a fork waits for the search (see reprsim._fork)
        indices, similarities, row_means = _core.knn_lists(xa, k, bool(center), name)
    return lists_from_arrays(indices, similarities, row_means, k, bool(center), name)


def _check_lists(a: Any, b: Any) -> None:
    if not isinstance(a, KnnLists) or not isinstance(b, KnnLists):
        raise TypeError(
            f"pass two KnnLists (from knn_lists), got {type(a).__name__} and {type(b).__name__}"
        )
    if a.n != b.n or a.k != b.k:
        raise ValueError(
            f"the k-NN lists of x and y differ: x has n = {a.n}, k = {a.k} and y has n = {b.n}, k = {b.k}; "
            "compute both with the same k over the same samples"
        )


def _mutual_from_lists(a: KnnLists, b: KnnLists) -> float:
    """Mutual k-NN from two representations' lists."""
    _check_lists(a, b)
    return float(_core.knn_measure(a._arrays(), b._arrays(), "mutual"))


def _jaccard_from_lists(a: KnnLists, b: KnnLists) -> float:
    """Jaccard k-NN from two representations' lists."""
    _check_lists(a, b)
    return float(_core.knn_measure(a._arrays(), b._arrays(), "jaccard"))


def _cycle_from_lists(a: KnnLists, b: KnnLists) -> float:
    """Cycle k-NN of (x, y) from x's lists ``a`` and y's lists ``b``."""
    _check_lists(a, b)
    return float(_core.knn_measure(a._arrays(), b._arrays(), "cycle"))


def _cknna_core(variant: Any) -> str:
    if not isinstance(variant, str) or variant not in _CKNNA_VARIANTS:
        raise ValueError(f"variant must be one of {sorted(_CKNNA_VARIANTS)}, got {variant!r}")
    return _CKNNA_VARIANTS[variant]


def _self_terms(a: KnnLists, b: KnnLists, core: str) -> tuple[float, float]:
    if core == "cknna":
        return a.cknna_self, b.cknna_self
    return a.cknna_self_row, b.cknna_self_row


def _cknna_from_lists(a: KnnLists, b: KnnLists, variant: str = "hsic") -> float:
    """CKNNA from two representations' lists (``variant`` as in :func:`cknna`)."""
    core = _cknna_core(variant)
    _check_lists(a, b)
    if a.n < 4:
        raise ValueError(f"x and y have n = {a.n} samples; CKNNA (an unbiased HSIC) needs at least 4")
    sx, sy = _self_terms(a, b, core)
    return _finite(float(_core.knn_measure(a._arrays(), b._arrays(), core, sx, sy)), "CKNNA")


FINALISERS: dict[str, Callable[..., float]] = {
    "mutual_knn": _mutual_from_lists,
    "jaccard_knn": _jaccard_from_lists,
    "cycle_knn": _cycle_from_lists,
    "cknna": _cknna_from_lists,
}


def knn_permutation_null(a: KnnLists, b: KnnLists, permutations: Any, measure: str, *, variant: str = "hsic",
                         n_threads: int | None = None) -> np.ndarray:
    """The measure of (x, y[π]) for many row permutations π, from the two lists alone.

    Permuting the rows of y relabels y's lists: the neighbours of sample i in y[π] are π⁻¹ of the
    neighbours of sample π(i) in y, with the same similarities, so each permutation costs O(n·k)
    (O(n·k·log k) for cycle k-NN and CKNNA) and no search. The CKNNA self terms do not change. This is
    exact for lists without ties at the k-th neighbour; where tied rows straddle the k-th place, the
    relabelled lists keep y's original tie order (ties by original row index), which a fresh search of
    y[π] would resolve by the permuted index.

    Parameters
    ----------
    a, b : KnnLists
        The lists of x and of y (same n and k).
    permutations : array_like of int, shape (m, n)
        Each row a permutation π of 0..n−1; row i of the permuted y is row π(i) of y.
    measure : {"mutual_knn", "jaccard_knn", "cycle_knn", "cknna"}
        The measure.
    variant : {"hsic", "row_anchored"}, default "hsic"
        CKNNA's form (see :func:`cknna`); ignored by the other measures.
    n_threads : int, optional
        Threads over permutations; default: the number of CPUs.

    Returns
    -------
    numpy.ndarray, shape (m,)
        The measure under each permutation, float64.
    """
    if measure not in _CORE_MEASURE:
        raise ValueError(f"measure must be one of {sorted(_CORE_MEASURE)}, got {measure!r}")
    _check_lists(a, b)
    core = _CORE_MEASURE[measure]
    sx = sy = 0.0
    if measure == "cknna":
        core = _cknna_core(variant)
        if a.n < 4:
            raise ValueError(f"x and y have n = {a.n} samples; CKNNA (an unbiased HSIC) needs at least 4")
        sx, sy = _self_terms(a, b, core)
    perms = np.asarray(permutations)
    if perms.dtype.kind not in "iu":
        raise TypeError(f"permutations must be integers, got dtype {perms.dtype}")
    perms = np.ascontiguousarray(perms, dtype=np.int64)
    if perms.ndim != 2 or perms.shape[1] != a.n:
        raise ValueError(f"permutations must have shape (count, {a.n}), got {perms.shape}")
    threads = (os.cpu_count() or 1) if n_threads is None else int(n_threads)
    return np.asarray(_core.knn_permutation_null(a._arrays(), b._arrays(), perms, core, sx, sy, max(1, threads)))


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise FloatingPointError(f"{what} came out as {value}; please report this input")
    return value


_PARAMS_DOC = """    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y. float32 stays float32 for the products; other dtypes
        are promoted to float64. CUDA torch tensors are searched on their device.
    k : int, default 10
        Neighbours per sample, 1 ≤ k ≤ n − 1.
    center : bool, default False
        Centre the columns of each input before normalising its rows (platonic-rep does not)."""


def mutual_knn(x: ArrayLike, y: ArrayLike, *, k: int = 10, center: bool = False) -> float:
    """Mutual k-nearest-neighbour alignment (Huh et al. 2024).

    ``mean_i |N_k^x(i) ∩ N_k^y(i)| / k``, where N_k^x(i) are the k samples most cosine-similar to
    sample i in x (i itself excluded; ties to the smaller row index). Similarity in [0, 1], symmetric;
    invariant to orthogonal maps of the features and to scaling each row by a positive factor (and,
    with ``center=True``, to translation). Exact: the lists come from a blocked exact search in
    O(n·k) memory. Needs every sample at once (no streaming).

    Parameters
    ----------
{params}

    Returns
    -------
    float
        1 when every sample has the same k neighbours in both representations.

    Raises
    ------
    ValueError
        k outside [1, n − 1], mismatched n, NaN/Inf, a row of zero norm (cosine undefined; the message
        lists the rows), empty input, or a search too large for the available memory.
    TypeError
        An input that is not a real-valued 2-D array, or a k that is not an integer.

    References
    ----------
    .. [1] M. Huh, B. Cheung, T. Wang, P. Isola. "The Platonic Representation Hypothesis." ICML 2024.
    """
    return pair_value("mutual_knn", x, y, {"k": k, "center": center})


def jaccard_knn(x: ArrayLike, y: ArrayLike, *, k: int = 10, center: bool = False) -> float:
    """Jaccard k-nearest-neighbour alignment.

    ``mean_i |N^x(i) ∩ N^y(i)| / |N^x(i) ∪ N^y(i)|`` over the k-NN lists of :func:`mutual_knn` (same
    neighbour convention). Similarity in [0, 1], symmetric, with the invariances of
    :func:`mutual_knn`. Needs every sample at once (no streaming).

    Parameters
    ----------
{params}

    Returns
    -------
    float
        1 when every sample has the same k neighbours in both representations.

    Raises
    ------
    ValueError
        The bad inputs listed under :func:`mutual_knn`.
    TypeError
        An input that is not a real-valued 2-D array, or a k that is not an integer.

    References
    ----------
    .. [1] M. Huh, B. Cheung, T. Wang, P. Isola. "The Platonic Representation Hypothesis." ICML 2024.
    """
    return pair_value("jaccard_knn", x, y, {"k": k, "center": center})


def cycle_knn(x: ArrayLike, y: ArrayLike, *, k: int = 10, center: bool = False) -> float:
    """Cycle k-nearest-neighbour alignment (platonic-rep's ``cycle_knn(x, y)``).

    The fraction of samples i that are an x-neighbour of at least one of their y-neighbours:
    ``mean_i 1[∃ j ∈ N^y(i): i ∈ N^x(j)]`` — go from i to its neighbours in y, then back through x.
    Not symmetric (the direction is y first, then x). Similarity in [0, 1], with the invariances of
    :func:`mutual_knn` (same neighbour convention). Needs every sample at once (no streaming).

    Parameters
    ----------
{params}

    Returns
    -------
    float
        The fraction of samples whose y-to-x neighbour cycle closes.

    Raises
    ------
    ValueError
        The bad inputs listed under :func:`mutual_knn`.
    TypeError
        An input that is not a real-valued 2-D array, or a k that is not an integer.

    References
    ----------
    .. [1] M. Huh, B. Cheung, T. Wang, P. Isola. "The Platonic Representation Hypothesis." ICML 2024.
    """
    return pair_value("cycle_knn", x, y, {"k": k, "center": center})


def cknna(x: ArrayLike, y: ArrayLike, *, k: int = 10, center: bool = False, variant: str = "hsic") -> float:
    """Centred kernel nearest-neighbour alignment, CKNNA (Huh et al. 2024).

    CKA restricted to the pairs that are mutual k-nearest neighbours. With K, L the cosine-similarity
    kernels of x and y (the neighbour convention of :func:`mutual_knn`) and the mask
    ``M_ij = 1[j ∈ N^x(i) and j ∈ N^y(i)]`` (zero diagonal, not symmetric), the default
    ``variant="hsic"`` is platonic-rep's ``cknna(..., unbiased=True)`` evaluated exactly as its code
    does: the unbiased HSIC of Song et al. (2012, eq. 5) applied literally to the masked kernels
    A = M∘K and B = M∘L,

        HSIC₁(A, B) = [Σ_ij A_ij B_ji + (Σ A)(Σ B)/((n−1)(n−2)) − 2/(n−2)·Σ_l (Σ_i A_il)(Σ_j B_lj)] / (n(n−3)),

    (note the transpose in the first term, which on these non-symmetric matrices keeps only pairs that
    are mutual neighbours in both directions) and ``CKNNA = HSIC₁(A, B) / √(HSIC₁(A_x, A_x)·HSIC₁(B_y,
    B_y))``, where the self terms use each representation's own mask (M_ij = 1[j ∈ N^x(i)] for x).
    platonic-rep adds 1e-6 to the denominator; this does not. Where a self term is not positive beyond
    rounding, CKNNA is undefined and ValueError says so (platonic-rep would return NaN, or a number when
    both are negative).

    ``variant="row_anchored"`` is the paper's formula: ``Align(K, L) = Σ_i Σ_j M_ij (K_ij − μ^K_i)(L_ij −
    μ^L_i)``, μ^K_i the mean of row i of K over all n columns (the diagonal K_ii = 1 included), and
    CKNNA = Align(K, L)/√(Align(K, K)·Align(L, L)) with each self term over its own neighbour mask.

    The "hsic" form is not symmetric in x and y (its last term, 1ᵀAB1, differs from 1ᵀBA1 for these
    non-symmetric matrices); the row-anchored form is. Both are invariant to orthogonal maps of the
    features and to scaling each row by a positive factor. Kernel values are those of the search
    (float32 products for float32 input); every sum is float64. Needs every sample at once (no
    streaming).

    Parameters
    ----------
{params}
    variant : {{"hsic", "row_anchored"}}, default "hsic"
        platonic-rep's code ("hsic") or the paper's row-anchored alignment.

    Returns
    -------
    float
        Similarity; 1 for identical inputs, near 0 for unrelated ones (it can be negative).

    Raises
    ------
    ValueError
        n < 4, a self term that is not positive (CKNNA undefined), an unknown variant, or the bad inputs
        listed under :func:`mutual_knn`.
    TypeError
        An input that is not a real-valued 2-D array, or a k that is not an integer.

    References
    ----------
    .. [1] M. Huh, B. Cheung, T. Wang, P. Isola. "The Platonic Representation Hypothesis." ICML 2024;
       code: github.com/minyoungg/platonic-rep, ``metrics.py``.
    .. [2] L. Song, A. Smola, A. Gretton, J. Bedo, K. Borgwardt. "Feature Selection via Dependence
       Maximization." JMLR 13, 2012.
    """
    _cknna_core(variant)
    return pair_value("cknna", x, y, {"k": k, "center": center, "variant": variant})


for _f in (mutual_knn, jaccard_knn, cycle_knn, cknna):
    _f.__doc__ = (_f.__doc__ or "").replace("{params}", _PARAMS_DOC).replace("{{", "{").replace("}}", "}")
del _f


class NeighboursSet(_stats.NumpySet):
    """``neighbours`` statistics of numpy input: each representation's k-NN lists, searched once for every
    pair it is in (per k and centring)."""

    kind = "neighbours"

    def knn_lists(self, side: str, index: int, k: int, center: bool) -> KnnLists:
        cache = (self.cache_x if side == "x" else self.cache_y)[index]
        a = (self.xs if side == "x" else self.ys)[index]
        name = (self.names_x if side == "x" else self.names_y)[index]
        key = ("knn", check_k(k, self.n), bool(center))
        if key not in cache:
            cache[key] = knn_lists(a, key[1], center=key[2], name=name)
        return cache[key]


_stats.NUMPY_SETS["neighbours"] = NeighboursSet


class KnnNull:
    """The permutation null of a k-NN measure: y's lists relabelled for each permutation, no new search
    (see :func:`knn_permutation_null`)."""

    space = "lists"

    def __init__(self, a: KnnLists, b: KnnLists, measure: str, variant: str) -> None:
        self.a, self.b, self.measure, self.variant = a, b, measure, variant

    def evaluate(self, permutations: np.ndarray, n_jobs: int) -> np.ndarray:
        return knn_permutation_null(self.a, self.b, permutations, self.measure, variant=self.variant,
                                    n_threads=n_jobs)


def knn_null(xa: np.ndarray, ya: np.ndarray, bound: Any, n_permutations: int, n_jobs: int,
             space: str = "auto") -> KnnNull:
    """``Measure.permutation_null`` of the k-NN measures: both inputs searched once."""
    k = check_k(bound["k"], xa.shape[0])
    a = knn_lists(xa, k, center=bool(bound["center"]), name="x")
    b = knn_lists(ya, k, center=bool(bound["center"]), name="y")
    return KnnNull(a, b, bound.name, bound.options.get("variant", "hsic"))

