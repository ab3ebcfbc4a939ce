"""Statistics kinds, and their producers for numpy input (the C++ core).

Every measure of the registry is a finaliser over the statistics of one pair of representations. The
statistics of k1 × k2 pairs are held by a *pair set* of one kind; ``set.pair(i, j)`` is the view a
finaliser reads. A pair set computes its statistics lazily and in bulk: the first finaliser that asks for,
say, the CKA sums of one pair makes the set compute them for every pair at once (one factor per
representation, one pass over all cross terms), and every later pair reads the cached result. So the same
finaliser serves one pair in memory, a layer × layer matrix, an accumulator's state and a device.

Kinds and what their pairs offer (producers implement the bulk methods of the same name):

``moments`` (:class:`MomentsSet`)
    ``sums(debiased)`` — the scalars of linear CKA (see ``_core.cka_from_sums``): n, ‖Cxy‖²_F, ‖Cxx‖²_F,
    ‖Cyy‖²_F, tr Cxx, tr Cyy, Σd², Σe², Σde, the power-of-two scales applied to the inputs and the rounding
    unit of the products; ``nuclear()`` — ‖x̂ᵀŷ‖_* of the centred inputs scaled to unit Frobenius norm;
    ``angle()`` — the Procrustes angle arccos ‖x̂ᵀŷ‖_*, computed stably near 0; ``blocks()`` — (Cxx, Cyy,
    Cxy) in float64, in an orthonormal basis of each side's row space (the neuron basis, or an n-column
    basis when a side is wider than n: exact for every measure invariant to orthogonal maps);
    ``coordinates()`` — the same in the neuron basis, with the column means; ``exponents()`` — (ex, ey):
    blocks and coordinates are the moments of 2^−ex·x and 2^−ey·y (exact power-of-two scales that keep
    the products of inputs of any magnitude inside the float64 range; (0, 0) for streamed moments).
``factor`` (:class:`FactorSet`)
    ``cca(stat, keep, on_variance)`` — a summary of the canonical correlations from a QR factor of each
    centred input (``stat``: "mean", "mean_sq", "pwcca_x", "pwcca_y", "pwcca_smaller"; SVCCA's reduction
    when ``keep`` > 0); ``correlations()``.
``kernel`` (:class:`KernelSet`)
    ``rbf_cka(debiased, rule, threshold, sigma)`` — CKA of RBF kernel matrices (all n² pairs of samples).
``minibatch`` (:class:`MinibatchSet`)
    ``hsic(batch_size, debiased)`` — Σ_b HSIC(K_b, L_b), Σ_b HSIC(K_b, K_b), Σ_b HSIC(L_b, L_b) over
    consecutive minibatches.
``neighbours``
    ``knn(k, center)`` — the exact k-NN lists of each representation, searched once per representation
    (see ``reprsim._neighbours``).
``rdm``
    ``rsa(method, compare)`` — the comparison of the two representations' RDMs (see ``reprsim._rsa``).
``folds``
    ``folds(k)`` — per-fold moments over k contiguous folds of the rows (scikit-learn's ``KFold`` sizes,
    unshuffled; k = None: one fold of every row) for cross-validated measures (see
    ``reprsim._folds.FoldMoments``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._memory import fits, require_memory

# ---------------------------------------------------------------------------------------------
# Pair sets and pair views


class PairSet:
    """Statistics of every pair (i, j) of k1 x-representations and k2 y-representations, of one kind.

    ``same`` is True when the y side is the x side (``pairwise(xs)``): pair (i, i) is a representation with
    itself. ``cache_x[i]``/``cache_y[j]`` hold per-representation results of finalisers (e.g. a whitening
    computed once per representation for a whole matrix). ``eps`` is the rounding unit of the products the
    statistics were formed with (float32 inputs: ε₃₂).
    """

    kind = ""

    def __init__(self, k1: int, k2: int, names_x: list[str], names_y: list[str], n: int, eps: float,
                 same: bool = False) -> None:
        self.k1, self.k2 = k1, k2
        self.names_x, self.names_y = names_x, names_y
        self.n = n
        self.eps = eps
        self.same = same
        self.cache_x: list[dict[Any, Any]] = [{} for _ in range(k1)]
        self.cache_y: list[dict[Any, Any]] = self.cache_x if same else [{} for _ in range(k2)]
        self._bulk: dict[Any, Any] = {}

    def pair(self, i: int, j: int) -> Pair:
        return Pair(self, i, j)

    def bulk(self, key: Any, compute: Any) -> Any:
        """``compute()`` once per key for the whole set."""
        if key not in self._bulk:
            self._bulk[key] = compute()
        return self._bulk[key]

    # The statistics a kind offers; each producer implements those of its kind (see the module docstring).
    def _missing(self, what: str) -> Any:
        raise TypeError(f"{type(self).__name__} holds {self.kind or 'no'} statistics, which do not provide {what}")

    def sums(self, debiased: bool) -> dict[str, Any]:
        return self._missing("the CKA sums")

    def nuclear(self) -> np.ndarray:
        return self._missing("the Procrustes nuclear norm")

    def angle(self) -> np.ndarray:
        return self._missing("the Procrustes angle")

    def blocks(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._missing("moment blocks")

    def coordinates(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self._missing("moments in the neuron basis")

    def exponents(self, i: int, j: int) -> tuple[int, int]:
        """Power-of-two exponents (ex, ey) of the scales blocks() and coordinates() are taken at."""
        return 0, 0

    def folds(self, i: int, j: int, k: int | None) -> Any:
        return self._missing("per-fold moments")

    def cca(self, stat: str, keep: float, on_variance: bool) -> np.ndarray:
        return self._missing("canonical correlations")

    def correlations(self, i: int, j: int) -> np.ndarray:
        return self._missing("canonical correlations")

    def summary(self, i: int, j: int, pwcca_stat: str) -> tuple[np.ndarray, float, float, float]:
        return self._missing("canonical correlations")

    def ranks(self, i: int, j: int) -> tuple[int, int] | None:
        """The numerical ranks of x and y (the CCA rank rule), or None where the path does not know them."""
        return None

    def rbf_cka(self, debiased: bool, rule: str, threshold: float, sigma: float) -> np.ndarray:
        return self._missing("kernel matrices")

    def hsic(self, batch_size: int | None, debiased: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        return self._missing("minibatch HSIC terms")

    def knn_lists(self, side: str, index: int, k: int, center: bool) -> Any:
        return self._missing("k-NN lists")

    def rsa(self, method: str, compare: str) -> np.ndarray:
        return self._missing("RDMs")


class Pair:
    """One pair of a :class:`PairSet`: what a finaliser reads."""

    def __init__(self, pset: PairSet, i: int, j: int) -> None:
        self.set, self.i, self.j = pset, i, j

    @property
    def n(self) -> int:
        return self.set.n

    @property
    def eps(self) -> float:
        return self.set.eps

    @property
    def name_x(self) -> str:
        return self.set.names_x[self.i]

    @property
    def name_y(self) -> str:
        return self.set.names_y[self.j]

    @property
    def cache_x(self) -> dict[Any, Any]:
        return self.set.cache_x[self.i]

    @property
    def cache_y(self) -> dict[Any, Any]:
        return self.set.cache_y[self.j]

    # moments
    def sums(self, debiased: bool) -> dict[str, float]:
        s = self.set.sums(debiased)
        i, j = self.i, self.j
        return {
            "n": float(s["n"]), "cross": float(s["cross"][i, j]), "sxx": float(s["sxx"][i]),
            "syy": float(s["syy"][j]), "tx": float(s["tx"][i]), "ty": float(s["ty"][j]),
            "sum_d2": float(s["sum_d2"][i]), "sum_e2": float(s["sum_e2"][j]), "sum_de": float(s["sum_de"][i, j]),
            "scale_x": float(s["scale_x"][i]), "scale_y": float(s["scale_y"][j]), "eps": float(s["eps"]),
        }

    def nuclear(self) -> float:
        return float(self.set.nuclear()[self.i, self.j])

    def angle(self) -> float:
        return float(self.set.angle()[self.i, self.j])

    def blocks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.set.blocks(self.i, self.j)

    def coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.set.coordinates(self.i, self.j)

    def exponents(self) -> tuple[int, int]:
        return self.set.exponents(self.i, self.j)

    # folds
    def folds(self, k: int | None) -> Any:
        """Per-fold moments of this pair over k contiguous folds (see ``reprsim._folds.FoldMoments``)."""
        return self.set.folds(self.i, self.j, k)

    # factor
    def cca(self, stat: str, keep: float = 0.0, on_variance: bool = True) -> float:
        return float(self.set.cca(stat, keep, on_variance)[self.i, self.j])

    def correlations(self) -> np.ndarray:
        return self.set.correlations(self.i, self.j)

    def ranks(self) -> tuple[int, int] | None:
        return self.set.ranks(self.i, self.j)

    # kernel
    def rbf_cka(self, debiased: bool, rule: str, threshold: float, sigma: float) -> float:
        return float(self.set.rbf_cka(debiased, rule, threshold, sigma)[self.i, self.j])

    # minibatch
    def hsic(self, batch_size: int | None, debiased: bool) -> tuple[float, float, float, int]:
        xy, xx, yy, batches = self.set.hsic(batch_size, debiased)
        return float(xy[self.i, self.j]), float(xx[self.i]), float(yy[self.j]), int(batches)

    # neighbours
    def knn(self, k: int, center: bool) -> tuple[Any, Any]:
        """The k-NN lists of x and of y (each representation searched once per set)."""
        return self.set.knn_lists("x", self.i, k, center), self.set.knn_lists("y", self.j, k, center)

    # rdm
    def rsa(self, method: str, compare: str) -> float:
        return float(self.set.rsa(method, compare)[self.i, self.j])


# ---------------------------------------------------------------------------------------------
# Shared pieces


NUCLEAR_SLACK_F32 = 1e-4
NUCLEAR_SLACK_F64 = 1e-10
# Within this distance of 1 the Procrustes nuclear norm gives way to the residual of the optimal rotation
# (the chord ‖x̂ − ŷQ*‖_F = 2 sin(θ/2)): arccos and 2 − 2‖·‖_* of a number within rounding of 1 turn ε into √ε.
CHORD_BAND = 1e-3


def rounding_slack(eps: float) -> float:
    """Relative slack within which a value computed from products of this rounding unit is at a bound."""
    return NUCLEAR_SLACK_F32 if eps > 1e-10 else NUCLEAR_SLACK_F64


def angle_from_nuclear(nuc: np.ndarray, eps: float) -> np.ndarray:
    """arccos of normalised nuclear norms; within rounding of 1 the angle is 0, beyond it an error."""
    nuc = np.asarray(nuc, dtype=np.float64)
    if not np.all(np.isfinite(nuc)):
        raise FloatingPointError("Procrustes nuclear norm came out non-finite; please report this input")
    if np.any(nuc > 1.0 + rounding_slack(eps)):
        raise FloatingPointError(f"Procrustes nuclear norm {nuc.max()} exceeds 1 beyond rounding; please report")
    return np.arccos(np.minimum(nuc, 1.0))


def scaled_centred(a: np.ndarray, name: str = "x") -> tuple[np.ndarray, np.ndarray, int]:
    """(2^−e·(a − ā), 2^−e·ā, e) in float64, with e the exponent of the largest centred magnitude, so that
    the scaled centred values lie in [−1, 1) whatever the magnitude of the input (subnormal to 1e308):
    products of them neither overflow nor underflow. Scaling by a power of two is exact. A constant column
    whose mean came out inexact (centred values within 16 units in the last place of the mean) is set to
    exactly 0: that is rounding, not variance, and scaling would blow it up. ValueError naming ``name`` for
    NaN or Inf."""
    a = np.asarray(a)
    lo, hi = a.min(axis=0).astype(np.float64), a.max(axis=0).astype(np.float64)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError(f"{name} contains NaN or Inf; remove or replace them (e.g. numpy.nan_to_num) before comparing")
    pre = 0
    big = max(float(np.abs(lo).max()), float(np.abs(hi).max())) if a.size else 0.0
    if big > 2.0**500:  # sums of such values can overflow: centre a scaled copy
        pre = int(np.frexp(big)[1])
        a = np.ldexp(np.asarray(a, dtype=np.float64), -pre)
        lo, hi = np.ldexp(lo, -pre), np.ldexp(hi, -pre)
    mean = a.mean(axis=0, dtype=np.float64)
    spread = np.maximum(hi - mean, mean - lo)  # the largest centred magnitude of each column
    flat = (spread <= 16.0 * np.finfo(np.float64).eps * np.abs(mean)) & (mean != 0.0)
    top = float(np.where(flat, 0.0, spread).max()) if a.size else 0.0
    e = int(np.frexp(top)[1]) if top > 0.0 else 0
    xc = np.subtract(a, mean, dtype=np.float64)
    if flat.any():
        xc[:, flat] = 0.0
    if e:
        xc = np.ldexp(xc, -e, out=xc)
        mean = np.ldexp(mean, -e)
    return xc, mean, e + pre


def reduced_basis(xc: np.ndarray) -> np.ndarray:
    """An n×r matrix F with F·Fᵀ = Xc·Xcᵀ (r ≤ n the numerical rank): the coordinates of the rows of Xc
    in an orthonormal basis of its row space. Exact for every statistic invariant to orthogonal maps."""
    k = xc @ xc.T
    w, v = np.linalg.eigh(k)
    keep = w > w[-1] * k.shape[0] * np.finfo(np.float64).eps if w[-1] > 0 else np.zeros_like(w, dtype=bool)
    return v[:, keep] * np.sqrt(w[keep])


# ---------------------------------------------------------------------------------------------
# Producers for numpy input


def _itemsize(arrays: list[np.ndarray]) -> int:
    return int(arrays[0].itemsize)


def _linear_cka_memory_bytes(n: int, widths: list[int], itemsize: int, space: str) -> int:
    """Peak scratch memory of one linear CKA comparison (both inputs' widths) in the given space."""
    p = sum(widths)
    if space == "feature":
        # x and y centred side by side, and the (p1+p2)² cross-product matrix of one syrk.
        return itemsize * (n * p + p * p) + 16 * n
    # Two n×n Gram matrices and the centred copies they are formed from.
    return itemsize * (2 * n * n + n * p) + 16 * n


def _pairwise_cka_memory_bytes(n: int, xw: list[int], yw: list[int] | None, itemsize: int, space: str) -> int:
    """Peak memory of the pairwise linear CKA sums: every factor is held at once."""
    right = xw if yw is None else yw
    every = xw + ([] if yw is None else yw)
    if space == "feature":
        # Centred features of every representation, one p×p syrk at a time, the y side stacked once,
        # and one (p_x × Σp_y) product at a time.
        return itemsize * (n * sum(every) + max(every) ** 2 + n * sum(right) + max(xw) * sum(right))
    # A packed n(n+1)/2 triangle per representation, plus one n×n Gram and one centred copy as scratch.
    return itemsize * (len(every) * (n * (n + 1) // 2) + n * n + n * max(every))


CKA_FIX = (
    "use fewer samples (Gram space holds n×n matrices) or fewer features (feature space holds a "
    "(p1+p2)×(p1+p2) matrix), or reprsim.minibatch_cka, whose memory grows with the batch size only"
)


def linear_cka_space(n: int, widths: list[int], itemsize: int) -> str:
    """The space the kernel chooses for one comparison, or the other one when only that one fits in
    memory; ValueError (before allocating) when neither does."""
    space = _core.choose_space(n, widths[0], widths[1], itemsize)
    need = _linear_cka_memory_bytes(n, widths, itemsize, space)
    if fits(need):
        return space
    other = "gram" if space == "feature" else "feature"
    need_other = _linear_cka_memory_bytes(n, widths, itemsize, other)
    if fits(need_other):
        return other
    require_memory(
        min(need, need_other),
        f"linear CKA with n = {n} samples and widths {widths[0]} and {widths[1]}", CKA_FIX,
        "in the cheaper of Gram and feature space",
    )
    return space  # pragma: no cover (available memory grew meanwhile)


def pairwise_cka_space(xl: list[np.ndarray], yl: list[np.ndarray] | None) -> str:
    """The space for pairwise linear CKA (the kernel's choice, or the other one when only that one
    fits in memory); ValueError before allocating when neither fits."""
    n, itemsize = xl[0].shape[0], _itemsize(xl)
    xw = [a.shape[1] for a in xl]
    yw = None if yl is None else [a.shape[1] for a in yl]
    k1, k2 = len(xw), len(xw if yw is None else yw)
    space = _core.choose_space(n, max(xw), max(xw if yw is None else yw), itemsize, k1, k2)
    need = _pairwise_cka_memory_bytes(n, xw, yw, itemsize, space)
    if fits(need):
        return space
    other = "gram" if space == "feature" else "feature"
    need_other = _pairwise_cka_memory_bytes(n, xw, yw, itemsize, other)
    if fits(need_other):
        return other
    count = k1 + (0 if yw is None else k2)
    require_memory(
        min(need, need_other),
        f"pairwise linear CKA of {count} representations with n = {n} samples",
        "pass fewer representations per call (e.g. blocks of the matrix), or " + CKA_FIX,
        "every representation's factor is held at once",
    )
    return space  # pragma: no cover


def _cca_factor_bytes(n: int, p: int) -> tuple[int, int]:
    """(held, scratch) bytes of one input's CCA factor: the float64 orthonormal basis (n×k, k = min(n, p)),
    R (k×p) and a triangular inverse (k×k) are kept; making it takes a centred float64 copy (n×p) and an SVD
    of R for SVCCA's reduction."""
    k = min(n, p)
    return 8 * (n * k + k * p + k * k), 8 * (n * p + k * p + k * k)


def cca_memory_bytes(n: int, wx: list[int], wy: list[int] | None) -> int:
    """Peak memory of the CCA family over every pair of xs × ys (ys None: xs × xs): every representation's
    factor is held at once, one more is being made, and one pair's M = QxᵀQy with its SVD (and PWCCA's
    projection weights) is formed at a time."""
    every = wx + ([] if wy is None else wy)
    right = wx if wy is None else wy
    parts = [_cca_factor_bytes(n, p) for p in every]
    kx, ky = max(min(n, p) for p in wx), max(min(n, p) for p in right)
    pair = 8 * (4 * kx * ky + kx * kx + ky * ky + max(kx, ky) * max(every))
    return sum(h for h, _ in parts) + max(s for _, s in parts) + pair


def check_cca_memory(n: int, wx: list[int], wy: list[int] | None) -> None:
    count = len(wx) + (0 if wy is None else len(wy))
    what = (f"CCA with n = {n} samples and widths {wx[0]} and {wy[0]}" if count == 2 and wy is not None
            else f"the CCA family over {count} representations with n = {n} samples")
    require_memory(
        cca_memory_bytes(n, wx, wy), what,
        "reduce the features first (e.g. PCA to a few hundred components; reprsim.svcca keeps the top ones), use "
        "fewer samples, stream the rows through reprsim.StreamingSimilarity (memory O(p²), not O(n·p)), or pass "
        "fewer representations per pairwise call",
        "a float64 QR factor of every centred input, held at once",
    )


def procrustes_memory_bytes(n: int, wx: list[int], wy: list[int] | None, itemsize: int) -> int:
    """Peak memory of the Procrustes nuclear norms over every pair: each representation's centred factor
    (n×min(n, p) in the input dtype) held at once; one being made (a centred copy and, when p > n, the n×n Gram
    and its float64 eigendecomposition); one pair's k1×k2 cross-product and its float64 SVD at a time."""
    every = wx + ([] if wy is None else wy)
    right = wx if wy is None else wy
    held = sum(itemsize * n * min(n, p) for p in every)
    making = max(itemsize * n * p + (itemsize * n * n + 8 * 3 * n * n if p > n else 0) for p in every)
    kx, ky = max(min(n, p) for p in wx), max(min(n, p) for p in right)
    return held + making + (itemsize + 24) * kx * ky


def check_procrustes_memory(n: int, wx: list[int], wy: list[int] | None, itemsize: int) -> None:
    count = len(wx) + (0 if wy is None else len(wy))
    what = (f"the Procrustes distance with n = {n} samples and widths {wx[0]} and {wy[0]}"
            if count == 2 and wy is not None else f"computing Procrustes distances over {count} representations with n = {n} samples")
    require_memory(
        procrustes_memory_bytes(n, wx, wy, itemsize), what,
        "reduce the features or the samples first, stream the rows through reprsim.StreamingSimilarity (memory "
        "O(p²)), or pass fewer representations per pairwise call",
        "a centred factor of every input, held at once, and one cross-product",
    )


class NumpySet(PairSet):
    """A pair set over validated numpy arrays (one float dtype), computed by the C++ core."""

    def __init__(self, xs: list[np.ndarray], ys: list[np.ndarray], names_x: list[str], names_y: list[str],
                 same: bool = False) -> None:
        eps = float(np.finfo(xs[0].dtype).eps)
        super().__init__(len(xs), len(ys), names_x, names_y, xs[0].shape[0], eps, same)
        self.xs, self.ys = xs, ys

    @property
    def single(self) -> bool:
        return self.k1 == 1 and self.k2 == 1 and not self.same

    def _ys_arg(self) -> list[np.ndarray] | None:
        return None if self.same else self.ys


class MomentsSet(NumpySet):
    """``moments`` statistics of numpy input."""

    kind = "moments"

    def sums(self, debiased: bool) -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            if self.single:
                x, y = self.xs[0], self.ys[0]
                space = linear_cka_space(x.shape[0], [x.shape[1], y.shape[1]], x.itemsize)
                s = _core.linear_cka_sums(x, y, debiased, space)
                out = {k: np.array([[v]]) if k in ("cross", "sum_de") else np.array([v]) for k, v in s.items()}
                out["n"], out["eps"] = s["n"], s["eps"]
                return out
            space = pairwise_cka_space(self.xs, self._ys_arg())
            return dict(_core.linear_cka_sums_matrix(self.xs, self._ys_arg(), debiased, space))

        # The debiased sums include the biased ones.
        if not debiased and ("sums", True) in self._bulk:
            return self._bulk[("sums", True)]
        return self.bulk(("sums", bool(debiased)), compute)

    def nuclear(self) -> np.ndarray:
        def compute() -> np.ndarray:
            check_procrustes_memory(self.n, [a.shape[1] for a in self.xs],
                                    None if self.same else [a.shape[1] for a in self.ys], self.xs[0].itemsize)
            if self.single:
                return np.array([[_core.procrustes_nuclear(self.xs[0], self.ys[0])]])
            return np.asarray(_core.procrustes_nuclear_matrix(self.xs, self._ys_arg()))

        return self.bulk("nuclear", compute)

    def angle(self) -> np.ndarray:
        def compute() -> np.ndarray:
            nuc = self.nuclear()
            theta = angle_from_nuclear(nuc, self.eps)
            for i, j in zip(*np.nonzero(nuc >= 1.0 - CHORD_BAND)):
                # Near 0 the angle comes from the residual of the optimal rotation, computed from the rows.
                chord = float(_core.procrustes_chord(self.xs[i], self.ys[j]))
                if not np.isfinite(chord):
                    raise FloatingPointError("the Procrustes residual came out non-finite; please report this input")
                theta[i, j] = 2.0 * np.arcsin(min(1.0, 0.5 * chord))
            return theta

        return self.bulk("angle", compute)

    def _side(self, cache: dict[Any, Any], a: np.ndarray, coordinates: bool, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(factor F, FᵀF) of one representation scaled by 2^−e (see :meth:`exponents`): its centred float64
        columns, or, when it is wider than n and coordinates are not needed, the n-column basis of its row
        space."""
        key = ("moments_side", coordinates)
        if key not in cache:
            n, p = a.shape
            wide = p > n and not coordinates
            # The centred float64 copy, and its p×p moments, or the n×n Gram and its eigendecomposition.
            require_memory(8.0 * (n * p + (3 * n * n if wide else p * p)), f"the moments of a ({n}, {p}) representation",
                           "reduce the features first, or use fewer samples")
            xc, mean, e = scaled_centred(a, name)
            f = reduced_basis(xc) if wide else xc
            cache[key] = (f, f.T @ f)
            cache["moments_mean"], cache["moments_exponent"] = mean, e
        return cache[key]

    def blocks(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        fx, cxx = self._side(self.cache_x[i], self.xs[i], False, self.names_x[i])
        fy, cyy = self._side(self.cache_y[j], self.ys[j], False, self.names_y[j])
        return cxx, cyy, fx.T @ fy

    def coordinates(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        fx, cxx = self._side(self.cache_x[i], self.xs[i], True, self.names_x[i])
        fy, cyy = self._side(self.cache_y[j], self.ys[j], True, self.names_y[j])
        return self.cache_x[i]["moments_mean"], self.cache_y[j]["moments_mean"], cxx, cyy, fx.T @ fy

    def exponents(self, i: int, j: int) -> tuple[int, int]:
        self._side(self.cache_x[i], self.xs[i], False, self.names_x[i])
        self._side(self.cache_y[j], self.ys[j], False, self.names_y[j])
        return int(self.cache_x[i]["moments_exponent"]), int(self.cache_y[j]["moments_exponent"])


class FactorSet(NumpySet):
    """``factor`` statistics of numpy input (QR factors of the centred inputs, in float64)."""

    kind = "factor"

    def _check_memory(self, xs: list[np.ndarray], ys: list[np.ndarray] | None) -> None:
        check_cca_memory(self.n, [a.shape[1] for a in xs], None if ys is None else [a.shape[1] for a in ys])

    def cca(self, stat: str, keep: float, on_variance: bool) -> np.ndarray:
        def compute() -> np.ndarray:
            self._check_memory(self.xs, self._ys_arg())
            if self.single:
                value, rx, ry = _core.cca_statistic(self.xs[0], self.ys[0], stat, keep, on_variance, with_ranks=True)
                self._bulk.setdefault(("ranks", 0, 0), (int(rx), int(ry)))
                return np.array([[value]])
            return np.asarray(_core.cca_matrix(self.xs, self._ys_arg(), stat, keep, on_variance))

        return self.bulk(("cca", stat, keep, on_variance), compute)

    def ranks(self, i: int, j: int) -> tuple[int, int] | None:
        """The numerical ranks of the pair's inputs. Only a pair whose widths add up to n − 1 or more can
        have ranks that do (the case PWCCA's uniqueness depends on); below that, min(width, n − 1) stands in,
        without a factorisation."""
        x, y = self.xs[i], self.ys[j]
        if x.shape[1] + y.shape[1] <= self.n - 1:
            return min(x.shape[1], self.n - 1), min(y.shape[1], self.n - 1)

        def compute() -> tuple[int, int]:
            _, rx, ry = _core.cca_statistic(x, y, "mean", 0.0, True, with_ranks=True)
            return int(rx), int(ry)

        return self.bulk(("ranks", i, j), compute)

    def correlations(self, i: int, j: int) -> np.ndarray:
        def compute() -> np.ndarray:
            self._check_memory([self.xs[i]], [self.ys[j]])
            return np.asarray(_core.canonical_correlations(self.xs[i], self.ys[j]))

        return self.bulk(("rho", i, j), compute)

    def summary(self, i: int, j: int, pwcca_stat: str) -> tuple[np.ndarray, float, float, float]:
        """(correlations, mean, mean square, PWCCA) of pair (i, j) from one factorisation of each input."""
        def compute() -> tuple[np.ndarray, float, float, float]:
            self._check_memory([self.xs[i]], [self.ys[j]])
            rho, mean, mean_sq, pw, rx, ry = _core.cca_summary(self.xs[i], self.ys[j], pwcca_stat, with_ranks=True)
            self._bulk.setdefault(("ranks", i, j), (int(rx), int(ry)))
            return np.asarray(rho), float(mean), float(mean_sq), float(pw)

        return self.bulk(("summary", i, j, pwcca_stat), compute)


def rbf_memory_bytes(n: int, p1: int, p2: int) -> int:
    # Two n×n float64 kernel matrices, the off-diagonal distances copied once for the median, and a
    # float64 centred copy of the wider input.
    return 8 * (2 * n * n + n * (n - 1) // 2 + n * max(p1, p2))


class KernelSet(NumpySet):
    """``kernel`` statistics of numpy input: RBF kernel matrices over every pair of samples."""

    kind = "kernel"

    def rbf_cka(self, debiased: bool, rule: str, threshold: float, sigma: float) -> np.ndarray:
        def compute() -> np.ndarray:
            out = np.empty((self.k1, self.k2))
            for i, x in enumerate(self.xs):
                for j, y in enumerate(self.ys):
                    n = x.shape[0]
                    require_memory(
                        rbf_memory_bytes(n, x.shape[1], y.shape[1]), f"RBF kernel CKA with n = {n} samples",
                        "use fewer samples, linear CKA (reprsim.cka or reprsim.StreamingSimilarity), or "
                        "reprsim.minibatch_cka", f"two {n}x{n} float64 kernel matrices and scratch",
                    )
                    out[i, j] = _core.rbf_cka(x, y, debiased, rule, threshold, sigma)
            return out

        return self.bulk(("rbf", debiased, rule, threshold, sigma), compute)


def minibatch_memory_bytes(b: int, wx: list[int], wy: list[int]) -> int:
    """Scratch memory of one minibatch's HSIC terms in the space the kernel chooses for it."""
    space = _core.choose_space(b, max(wx), max(wy), 8, len(wx), len(wy))
    every = wx + wy
    if space == "feature":
        # Float64 centred copies of every layer, one p×p and one p1×p2 product at a time.
        return 8 * (b * sum(every) + max(every) ** 2 + max(wx) * max(wy))
    # One centred copy at a time and a b×b Gram matrix per layer.
    return 8 * (b * max(every) + len(every) * b * b)


def check_minibatch_memory(b: int, wx: list[int], wy: list[int]) -> None:
    require_memory(
        minibatch_memory_bytes(b, wx, wy),
        f"minibatch CKA over minibatches of {b} rows and widths {tuple(wx)} and {tuple(wy)}",
        "use smaller minibatches (the Gram matrices are b×b) or fewer features",
        "each minibatch's Gram matrices or cross-products",
    )


def minibatch_rows(n: int, batch_size: int | None, debiased: bool) -> int:
    """Rows per minibatch of n rows (None: one minibatch); ValueError when the last one is too short for the
    estimator (4 rows debiased, 2 biased)."""
    b = n if batch_size is None else batch_size
    need = 4 if debiased else 2
    tail = n % b
    if 0 < tail < need:
        raise ValueError(
            f"n = {n} rows in minibatches of {b} leave a last minibatch of {tail} rows, too few for "
            f"minibatch CKA with debiased={debiased} (needs {need}); trim the data to {n - tail} rows "
            "(x[:n - n % batch_size]) or choose another batch_size"
        )
    return b


class MinibatchSet(NumpySet):
    """``minibatch`` statistics of numpy input: HSIC terms summed over consecutive minibatches."""

    kind = "minibatch"

    def hsic(self, batch_size: int | None, debiased: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
            n = self.n
            b = minibatch_rows(n, batch_size, debiased)
            check_minibatch_memory(min(b, n), [a.shape[1] for a in self.xs], [a.shape[1] for a in self.ys])
            xy = np.zeros((self.k1, self.k2))
            xx, yy = np.zeros(self.k1), np.zeros(self.k2)
            batches = 0
            for start in range(0, n, b):
                sl = slice(start, start + b)
                txy, txx, tyy = _core.batch_hsic([a[sl] for a in self.xs], [a[sl] for a in self.ys], debiased,
                                                 self.names_x, self.names_y)
                xy += txy
                xx += np.asarray(txx).ravel()
                yy += np.asarray(tyy).ravel()
                batches += 1
            return xy, xx, yy, batches

        return self.bulk(("hsic", batch_size, debiased), compute)


NUMPY_SETS: dict[str, type[NumpySet]] = {
    "moments": MomentsSet,
    "factor": FactorSet,
    "kernel": KernelSet,
    "minibatch": MinibatchSet,
}
