"""Streaming accumulators: exact full-dataset measures over data streamed in batches, and minibatch CKA.

An accumulator keeps the statistics its measures need (see :mod:`reprsim._stats`) and merges them batch
by batch; every value is the registered measure's finaliser over those statistics, the same function the
in-memory path calls. Two routes hold the rows' information:

- ``"moments"``: the float64 moments about the running mean (means, XcᵀXc, YcᵀYc, XcᵀYc and the
  debiased-HSIC extras), O(p²) memory whatever the number of rows — the route for layers narrower than
  the number of rows;
- ``"rows"``: the rows themselves, O(n·p) memory, finalised in memory (Gram space when the layers are wider
  than n) — the route for wide layers, where p×p moments would be larger than the data, and for measures
  that need every pair of rows (RBF kernel CKA, neighbourhood measures).

``route="auto"`` picks the smaller of the two from the widths and the number of rows (given as ``n``,
or discovered: the rows are kept until the moments become the smaller, then turned into moments).
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import _core
from . import _measures  # noqa: F401  (registers the measures)
from ._backend import device_backend, pair_set
from ._compute import check_range, evaluate
from ._folds import FoldStateSet, FoldStream
from ._fork import busy
from ._interrupt import deferred_interrupt
from ._memory import explain_out_of_memory, fits, gib, require_memory
from ._registry import KINDS, STREAMING_KINDS, Bound, bind, check_bool, describe, get
from ._stats import CHORD_BAND, PairSet, angle_from_nuclear, check_minibatch_memory
from ._validation import _common_dtype, as_representation, check_n

ArrayLike = Any

_LAYER_FIELDS_X = ("mean_x", "cxx", "sum_d2", "sum_xd")
_LAYER_FIELDS_Y = ("mean_y", "cyy", "sum_e2", "sum_ye")
_PAIR_FIELDS = ("cxy", "sum_de", "sum_xe", "sum_yd")
# The fields of the QR-factor state (route 2): the joint R of every layer replaces the moment matrices.
_FACTOR_FIELDS_X = ("mean_x", "mean_x_lo", "sum_d2", "sum_xd")
_FACTOR_FIELDS_Y = ("mean_y", "mean_y_lo", "sum_e2", "sum_ye")
_EPS32 = float(np.finfo(np.float32).eps)
_EPS64 = float(np.finfo(np.float64).eps)
# Buffered rows are turned into moments once this many have arrived (or on any read): the merge of a
# batch into the running moments costs a few passes over the p×p matrices, which a few hundred rows
# amortise, so that batches of one row cost about what batches of hundreds do.
_FLUSH_ROWS = 512
_FLUSH_BYTES = 64 << 20
# Streamed moments are sums of up to fourth powers of the data: centred magnitudes beyond 2**±200
# overflow or underflow them (the C++ accumulator refuses the same range).
_STREAM_EXPONENT = 200


def _check_layers(layers_x: Any, layers_y: Any) -> tuple[bool, int, int]:
    if (layers_x is None) != (layers_y is None):
        raise TypeError("pass both layers_x and layers_y (for all pairs of two lists of layers), or neither")
    if layers_x is None:
        return False, 1, 1
    for name, k in (("layers_x", layers_x), ("layers_y", layers_y)):
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"{name} must be a positive integer (the number of layers), got {k!r}")
    return True, int(layers_x), int(layers_y)


def _batch(x: Any, y: Any, multi: bool, k1: int, k2: int) -> tuple[list[np.ndarray], list[np.ndarray], list[str], list[str]]:
    """Validate one batch: lists of 2-D float arrays sharing n, in one dtype."""
    if multi:
        for name, b, k in (("x", x, k1), ("y", y, k2)):
            if isinstance(b, np.ndarray) or not isinstance(b, Sequence) or isinstance(b, (str, bytes)):
                raise TypeError(
                    f"{name} must be a list of {k} arrays (one batch per layer) when the accumulator was made "
                    f"with layers_x/layers_y, got {type(b).__name__}"
                )
            if len(b) != k:
                raise ValueError(f"{name} must hold {k} arrays (one per layer), got {len(b)}")
        names_x = [f"x[{i}]" for i in range(k1)]
        names_y = [f"y[{j}]" for j in range(k2)]
        xs = [as_representation(a, nm) for a, nm in zip(x, names_x)]
        ys = [as_representation(a, nm) for a, nm in zip(y, names_y)]
    else:
        names_x, names_y = ["x"], ["y"]
        xs, ys = [as_representation(x, "x")], [as_representation(y, "y")]
    n = xs[0].shape[0]
    for a, nm in zip(xs + ys, names_x + names_y):
        if a.shape[0] != n:
            raise ValueError(
                f"every array of a batch must have the same number of rows: {names_x[0]} has {n} rows, "
                f"{nm} has shape {a.shape}; pass aligned batches of x and y"
            )
    both = _common_dtype(xs + ys)
    return both[:k1], both[k1:], names_x, names_y


def _column_ranges(arrays: list[np.ndarray], names: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each array's float64 column minima and maxima; raises on NaN/Inf (naming the array and column)."""
    out = []
    for a, name in zip(arrays, names):
        lo, hi = a.min(axis=0).astype(np.float64), a.max(axis=0).astype(np.float64)
        bad = np.flatnonzero(~(np.isfinite(lo) & np.isfinite(hi)))
        if bad.size:
            raise ValueError(
                f"{name} contains NaN or Inf (column {bad[0]}), or values so large that their sum overflows "
                "float64; remove or replace them (e.g. numpy.nan_to_num) before comparing"
            )
        out.append((lo, hi))
    return out


def _check_spread(ranges: list[tuple[np.ndarray, np.ndarray]], names: list[str]) -> None:
    """Centred values of a magnitude the streamed moments can hold (sums of up to fourth powers of the data:
    beyond 2**±200 they overflow or underflow float64), over every row kept so far and the new batch."""
    for (lo, hi), name in zip(ranges, names):
        spread = float(np.max(hi - lo))
        if spread > 0.0 and abs(math.frexp(spread)[1]) > _STREAM_EXPONENT:
            word = "overflow" if spread > 1.0 else "underflow"
            raise ValueError(
                f"{name} has centred values of magnitude up to {spread:.3g}: the streaming accumulators keep "
                f"float64 sums of up to fourth powers of the data, which {word} beyond about 1e"
                f"{'' if spread > 1.0 else '-'}60; rescale the data (e.g. divide every batch by one constant: the "
                "metrics are invariant to scaling)"
            )


def _check_widths(seen: tuple[list[int], list[int]], xs: list[Any], ys: list[Any], names_x: list[str],
                  names_y: list[str]) -> None:
    wx, wy = seen
    if not wx:
        return
    for a, w, nm in list(zip(xs, wx, names_x)) + list(zip(ys, wy, names_y)):
        if a.shape[1] != w:
            raise ValueError(
                f"{nm} has shape {tuple(a.shape)} but earlier batches had {w} features; every batch of a layer must "
                "have the same width (start a new accumulator for a different layer)"
            )


@contextmanager
def _both_locked(a: Any, b: Any) -> Iterator[None]:
    """Hold the locks of two accumulators, always taken in the same order (no deadlock when two
    threads merge a into b and b into a at once)."""
    first, second = sorted((a, b), key=id)
    with first._lock, second._lock:
        yield


def moments_bytes(wx: list[int], wy: list[int], factor: bool = False) -> int:
    """Memory of an accumulator's statistics for k1 x-layers and k2 y-layers: float64 moments (p×p per layer,
    p1×p2 per pair), or, with ``factor``, the joint R factor of every layer and its row buffer."""
    if factor:
        state, workspace = _core.FactorState.estimate_bytes(list(wx), list(wy))
        return int(state + workspace)
    return 8 * (sum(p * p for p in wx + wy) + sum(p * q for p in wx for q in wy) + 4 * sum(wx + wy))


def _stream_memory_bytes(b: int, wx: list[int], wy: list[int]) -> int:
    """Scratch memory of turning a batch of b rows into moments: float64 centred copies, a p×p moment matrix
    per layer and a p1×p2 one per pair (twice: product and copy), and the row sums."""
    every = wx + wy
    return 8 * (b * sum(every) + sum(p * p for p in every) + 2 * sum(p * q for p in wx for q in wy)
                + len(every) * sum(every) + b * len(every))


def _stream_values_bytes(wx: list[int], wy: list[int]) -> int:
    """Scratch memory of the CCA-family values of the moments: a pivoted Cholesky copy, R factor and
    triangle per layer (3 p² each), and one pair's M and its SVD at a time."""
    every = wx + wy
    return 8 * (3 * sum(p * p for p in every) + 2 * max(p * q for p in wx for q in wy))


def plan_route(wx: list[int], wy: list[int], n: int | None, itemsize: int, kinds: frozenset[str],
               route: str = "auto") -> tuple[str, int]:
    """The route an accumulator over these widths takes, and the memory it needs for ``n`` rows.

    "rows" when a measure needs every row (kernel, neighbours) or when the stored rows are smaller than
    the moments; "moments" otherwise. With ``n`` unknown, "auto" starts with the rows (see the module
    docstring) and the figure is that of the moments.
    """
    mom = moments_bytes(wx, wy, "factor" in kinds)
    every = sum(wx + wy)
    needs_rows = bool(kinds - STREAMING_KINDS)
    if route == "auto":
        if needs_rows:
            route = "rows"
        elif n is None:
            return "auto", mom
        else:
            route = "rows" if n * every * itemsize < mom else "moments"
    if route == "rows":
        # The rows, and their concatenation once when the values are asked for.
        return "rows", 2 * (n or 0) * every * itemsize
    return route, mom


_WIDTH_FIX = (
    "the moments' memory does not depend on the number of rows but grows with the square of the widths: "
    "reduce the features first (e.g. a random projection, PCA, or pooling), compare fewer layers per "
    "accumulator, or keep the rows instead (route='rows', memory n × width)"
)


class _StateSet(PairSet):
    """``moments`` and ``factor`` statistics of an accumulator's state: float64 moments
    (``reprsim._core.StreamState``) or the joint QR factor of every layer (``reprsim._core.FactorState``).

    With moments, the CCA family comes from a pivoted Cholesky factor of each layer's moments (which square
    the condition number; its rank rule is never finer than √(max(n, p)·ε₆₄)); with the factor, from a
    pivoted QR of the layer's block of R, with the in-memory rank rule, and small Procrustes angles from the
    residual of the optimal rotation."""

    def __init__(self, kind: str, state: Any, names_x: list[str], names_y: list[str]) -> None:
        super().__init__(state.k1, state.k2, names_x, names_y, int(state.n), _EPS64)
        self.kind = kind
        self.state = state
        self.factor = isinstance(state, _core.FactorState)

    def _raw(self) -> dict[str, Any]:
        return self.bulk("raw", self.state.to_dict)

    def sums(self, debiased: bool) -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            if not self.factor:
                return dict(self.state.cka_sums())
            a = np.asarray(self.state.cka_sums())  # (k1, k2, 9): n, cross, sxx, syy, tx, ty, Σd², Σe², Σde
            ones = np.ones
            return {"n": float(self.n), "eps": _EPS64, "cross": a[:, :, 1], "sum_de": a[:, :, 8],
                    "sxx": a[:, 0, 2], "tx": a[:, 0, 4], "sum_d2": a[:, 0, 6], "scale_x": ones(self.k1),
                    "syy": a[0, :, 3], "ty": a[0, :, 5], "sum_e2": a[0, :, 7], "scale_y": ones(self.k2)}

        return self.bulk("sums", compute)

    def nuclear(self) -> np.ndarray:
        return self.bulk("nuclear", lambda: np.asarray(self.state.procrustes_nuclear(self.names_x, self.names_y)))

    def angle(self) -> np.ndarray:
        def compute() -> np.ndarray:
            nuc = self.nuclear()
            theta = angle_from_nuclear(nuc, self.eps)
            near = nuc >= 1.0 - CHORD_BAND
            if self.factor and np.any(near):
                chord = np.asarray(self.state.procrustes_chord(self.names_x, self.names_y))
                theta = np.where(near, 2.0 * np.arcsin(np.minimum(1.0, 0.5 * chord)), theta)
            return theta

        return self.bulk("angle", compute)

    def blocks(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.factor:
            return (np.asarray(self.state.cxx(i)), np.asarray(self.state.cyy(j)), np.asarray(self.state.cxy(i, j)))
        raw = self._raw()
        return (np.asarray(raw["cxx"][i]), np.asarray(raw["cyy"][j]), np.asarray(raw["cxy"][i * self.k2 + j]))

    def coordinates(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        raw = self._raw()
        mx, my = np.asarray(raw["mean_x"][i]), np.asarray(raw["mean_y"][j])
        if self.factor:
            mx, my = mx + np.asarray(raw["mean_x_lo"][i]), my + np.asarray(raw["mean_y_lo"][j])
        cxx, cyy, cxy = self.blocks(i, j)
        return mx, my, cxx, cyy, cxy

    def _check_values_memory(self) -> None:
        wx, wy = self.state.widths()
        if self.factor:
            need = _core.FactorState.estimate_bytes(list(wx), list(wy))[1]
            detail = "a pivoted QR of every layer's block of the factor"
        else:
            need, detail = _stream_values_bytes(list(wx), list(wy)), "a Cholesky factor of every layer's p×p moments"
        require_memory(need, f"the CCA family of a StreamingSimilarity over widths {tuple(wx)} and {tuple(wy)}",
                       _WIDTH_FIX, detail)

    def cca(self, stat: str, keep: float, on_variance: bool) -> np.ndarray:
        def compute() -> np.ndarray:
            self._check_values_memory()
            return np.asarray(self.state.cca_statistic(stat, float(keep), bool(on_variance), self.names_x,
                                                       self.names_y))

        return self.bulk(("cca", stat, keep, on_variance), compute)

    def correlations(self, i: int, j: int) -> np.ndarray:
        def compute() -> list[np.ndarray]:
            self._check_values_memory()
            return [np.asarray(r) for r in self.state.canonical_correlations(self.names_x, self.names_y)]

        return self.bulk("rho", compute)[i * self.k2 + j]

    def ranks(self, i: int, j: int) -> tuple[int, int] | None:
        if not self.factor:
            return None
        rx, ry = self.bulk("ranks", lambda: self.state.cca_ranks(self.names_x, self.names_y))
        return int(rx[i]), int(ry[j])

    def summary(self, i: int, j: int, pwcca_stat: str) -> tuple[np.ndarray, float, float, float]:
        rho = self.correlations(i, j)
        return rho, float(rho.mean()), float(np.mean(rho**2)), float(self.cca(pwcca_stat, 0.0, True)[i, j])


class _MinibatchSums(PairSet):
    """``minibatch`` statistics of an accumulator: each update was one minibatch."""

    kind = "minibatch"

    def __init__(self, terms: tuple[np.ndarray, np.ndarray, np.ndarray, int], n: int, names_x: list[str],
                 names_y: list[str]) -> None:
        xy = terms[0]
        super().__init__(xy.shape[0], xy.shape[1], names_x, names_y, n, _EPS64)
        self.terms = terms

    def hsic(self, batch_size: int | None, debiased: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        return self.terms


def _declared_kinds(metrics: Any) -> tuple[frozenset[str], tuple[str, ...] | None]:
    if metrics is None:
        return frozenset({"moments", "factor"}), None
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, Sequence) or len(metrics) == 0:
        raise TypeError(f"metrics must be a list of measure names (see reprsim.METRICS) or None, got {metrics!r}")
    names = tuple(metrics)
    return frozenset(get(m).statistics for m in names), names


class StreamingSimilarity:
    """Exact full-dataset measures over data streamed in batches.

    Feed aligned batches of two representations with :meth:`update` (and combine accumulators built
    on other processes or machines with :meth:`merge`); :meth:`measure` then returns exactly what
    :func:`reprsim.measure` returns on all rows seen, concatenated, for any registered measure whose
    statistics the accumulator keeps, and :meth:`distance` the dissimilarity. The named methods
    (:meth:`cka`, :meth:`mean_cca`, :meth:`svcca`, :meth:`pwcca`, :meth:`procrustes_distance`,
    :meth:`canonical_correlations`, ...) are shortcuts. The split into batches (even batches of one row)
    and the order of merges change the values only at rounding level.

    With ``layers_x=k1, layers_y=k2`` one accumulator holds every pair of two lists of layers (e.g. two
    models): :meth:`update` takes a list of k1 and a list of k2 arrays, and every value is a k1 × k2
    numpy array.

    **Routes.** With ``route="moments"`` the accumulator keeps float64 moments about the running mean
    (Chan et al.'s pairwise update merges them exactly; nothing is subtracted from already-summed raw
    products): memory O(p²) per layer and O(p1·p2) per pair, whatever the number of rows. Batches of
    fewer than 512 rows are buffered and turned into moments together, so small batches cost about what
    large ones do. With ``route="rows"`` it keeps the rows (memory O(n·p)) and computes every value in
    memory when asked — cheaper than moments for layers wider than the number of rows (e.g. flattened
    conv maps) and the only route for measures that need every pair of rows (``"rbf_cka"``, the
    neighbourhood measures). ``route="auto"`` (default) takes the smaller of the two for the widths of
    the first batch and ``n`` rows; when ``n`` is not given, it keeps the rows until the moments would be
    smaller, then turns them into moments (exactly). The memory the chosen route needs is checked before
    anything is kept.

    **Measures.** ``metrics`` declares which measures will be asked for (default: every exact linear
    measure — linear CKA, the CCA family, Procrustes, ENSD, ...); it decides what is accumulated:
    ``"minibatch_cka"`` adds per-update HSIC terms (each update is one minibatch), ``"rbf_cka"`` and the
    neighbourhood measures need the rows route.

    **The QR factor.** When the CCA family is declared (the default, ``metrics=None``), route "moments" keeps
    the R factor of the centred rows of every layer side by side, [X_1 … X_k1 Y_1 … Y_k2] (diag ≥ 0), merged
    by a QR of the stacked factors plus the mean-shift row √(n_a·n_b/n)·(x̄_a − x̄_b) (the TSQR form of Chan's
    update): the moments are RᵀR, and the CCA family is computed from a pivoted QR of each layer's block of R
    with the in-memory rank rule — the condition number of the data is not squared. Its state (``route`` = 2)
    holds ``r`` (P×P, P the total width), ``mean_x``/``mean_y`` with ``mean_x_lo``/``mean_y_lo`` (the means
    in two parts), ``sum_d2``, ``sum_xd``, ``sum_e2``, ``sum_ye`` and the per-pair ``sum_de``, ``sum_xe``,
    ``sum_yd`` below. Its updates cost more than the moments' (a QR of the buffered rows against R: 2–4× for
    large batches), so declare only moment measures (e.g. ``metrics=["cka"]``) when no CCA is wanted.

    **The moments** (route "moments" when only moment measures are declared; :meth:`state` returns them,
    :meth:`from_state` reads them back), for x of width p1 and y of width p2, with d_i = ‖x_i − x̄‖² and
    e_i = ‖y_i − ȳ‖² (float64 numpy arrays):

    ========== ========= =================================================
    field      shape     meaning
    ========== ========= =================================================
    n          ()        rows seen
    rank_eps   ()        machine epsilon of the least precise input dtype seen (CCA's rank rule)
    mean_x     (p1,)     x̄
    mean_y     (p2,)     ȳ
    cxx        (p1, p1)  Σ (x_i − x̄)(x_i − x̄)ᵀ        (Σ d_i = trace)
    cyy        (p2, p2)  Σ (y_i − ȳ)(y_i − ȳ)ᵀ
    cxy        (p1, p2)  Σ (x_i − x̄)(y_i − ȳ)ᵀ
    sum_d2     ()        Σ d_i²
    sum_e2     ()        Σ e_i²
    sum_de     ()        Σ d_i e_i
    sum_xd     (p1,)     Σ (x_i − x̄) d_i
    sum_xe     (p1,)     Σ (x_i − x̄) e_i
    sum_yd     (p2,)     Σ (y_i − ȳ) d_i
    sum_ye     (p2,)     Σ (y_i − ȳ) e_i
    ========== ========= =================================================

    With several layers the per-layer fields are named ``mean_x[i]``, ``cxx[i]``, ``sum_d2[i]``,
    ``sum_xd[i]``, ``mean_y[j]``, ``cyy[j]``, ``sum_e2[j]``, ``sum_ye[j]``, the per-pair fields
    ``cxy[i,j]``, ``sum_de[i,j]``, ``sum_xe[i,j]``, ``sum_yd[i,j]``, and ``layers`` holds (k1, k2).
    Route "rows" stores ``rows_x[i]``/``rows_y[j]`` (the rows, in their dtype) and ``route`` = 1.
    Declared minibatch CKA adds ``mb_xy``, ``mb_xx``, ``mb_yy``, ``mb_batches`` (debiased terms) and
    ``mb0_xy``, ``mb0_xx``, ``mb0_yy`` (biased terms).

    The factor and the moments compute and accumulate every product in float64, for float32 batches too (the
    rows route is the in-memory computation on the kept rows). CCA's rank rule is the in-memory one,
    |R_ii| > tol·|R_11| with tol = max(n, p)·ε₆₄ (+ √p·ε₃₂ for float32 inputs).

    Parameters
    ----------
    layers_x, layers_y : int, optional
        Numbers of layers on each side for the all-pairs form. Omit both for two representations.
    metrics : list of str, optional
        The measures that will be asked for (names of ``reprsim.METRICS``); default: the exact linear
        measures.
    route : {"auto", "moments", "rows"}, default "auto"
        What is kept (see above).
    n : int, optional
        The number of rows that will be streamed, if known (e.g. ``len(loader.dataset)``): lets "auto"
        choose the route and check its memory at the first batch. Required with a cross-validated
        measure in ``metrics`` ("predictivity"): its folds are placed from n.
    folds : int, optional
        With a cross-validated measure in ``metrics``: the number of contiguous folds whose moments are
        kept (default 5, the measure's default). Row r of the stream (in the order the updates complete)
        belongs to the fold whose range of scikit-learn's ``KFold`` sizes holds it; each fold keeps its own
        moments (k times the memory of the moments), and the moments of every row are their merge.
        Accumulators declared with a cross-validated measure do not merge with others that hold rows (a
        second stream's rows would need their positions in the first's).

    Raises
    ------
    ValueError
        Only one of ``layers_x``, ``layers_y`` given, a count that is not a positive integer, an unknown
        route or metric, or ``route="moments"`` with a measure that needs every row.

    References
    ----------
    .. [1] T. Chan, G. Golub, R. LeVeque. "Updating Formulae and a Pairwise Algorithm for Computing
       Sample Variances." COMPSTAT 1982.

    Examples
    --------
    >>> acc = StreamingSimilarity()
    >>> for xb, yb in batches:                      # doctest: +SKIP
    ...     acc.update(xb, yb)
    >>> acc.cka(), acc.distance("procrustes")       # doctest: +SKIP
    """

    def __init__(self, *, layers_x: int | None = None, layers_y: int | None = None, metrics: Any = None,
                 route: str = "auto", n: int | None = None, folds: int | None = None) -> None:
        self._multi, self._k1, self._k2 = _check_layers(layers_x, layers_y)
        self._kinds, self._metrics = _declared_kinds(metrics)
        if route not in ("auto", "moments", "rows"):
            raise ValueError(f"route must be 'auto', 'moments' or 'rows', got {route!r}")
        if route == "moments" and self._kinds - STREAMING_KINDS:
            raise ValueError(
                f"route='moments' cannot compute {', '.join(self._metrics or ())}: "
                "these measures need every row; use route='rows' (or 'auto')"
            )
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
            raise ValueError(f"n must be a positive integer (the number of rows that will be streamed) or None, got {n!r}")
        self._route_arg = route
        self._n_hint = None if n is None else int(n)
        self._folds_k = _check_stream_folds(folds, self._kinds, self._n_hint, self._metrics)
        # Guards the state: updates, merges and reads from several threads are serialised here (the
        # heavy part of an update, a batch's own moments, is computed outside it).
        self._lock = threading.RLock()
        # The CCA family needs a QR factor (FactorState: the joint R of every layer, which keeps the condition
        # number of the data); measures of the moments alone take the float64 moments (StreamState), whose
        # updates are cheaper.
        self._factor = "factor" in self._kinds
        # Moments of GPU batches with float64 products (as the C++ path computes them) for measures whose rank
        # decisions need them (the registry's float64_products flag); the CCA family keeps a factor instead.
        self._dev_float64_products = any(get(m).float64_products for m in self._metrics or ())
        self._names_x = [f"x[{i}]" for i in range(self._k1)] if self._multi else ["x"]
        self._names_y = [f"y[{j}]" for j in range(self._k2)] if self._multi else ["y"]
        self.reset()

    def reset(self) -> None:
        """Forget every row seen."""
        with self._lock, deferred_interrupt():
            self._version = 0  # counts the changes of the state (see update)
            self._route: str | None = None if self._route_arg == "auto" else self._route_arg
            self._state = self._new_state()
            self._pending: list[tuple[list[np.ndarray], list[np.ndarray]]] = []
            self._pending_rows = 0
            self._rows: list[list[Any]] = [[] for _ in range(self._k1 + self._k2)]
            self._rows_n = 0
            self._mb: dict[bool, list[Any] | None] | None = None
            if "minibatch" in self._kinds:
                self._mb = {True: [np.zeros((self._k1, self._k2)), np.zeros(self._k1), np.zeros(self._k2), 0],
                            False: [np.zeros((self._k1, self._k2)), np.zeros(self._k1), np.zeros(self._k2), 0]}
            self._mb_n = 0
            self._dev: Any = None  # moments of batches that arrived on a device, kept there
            self._fold_stream: FoldStream | None = None  # per-fold moments (cross-validated measures)
            self._dev_eps = 0.0
            self._widths: tuple[list[int], list[int]] = ([], [])
            self._ranges: list[tuple[np.ndarray, np.ndarray]] = []  # column minima and maxima of the rows seen
            self._eps = 0.0

    # -- accumulation ------------------------------------------------------------------------------

    @property
    def n_seen(self) -> int:
        """Number of rows accumulated so far."""
        with self._lock:
            dev = self._dev.n if self._dev is not None else 0
            folded = self._fold_stream.pos if self._fold_stream is not None else 0
            return int(self._state.n) + self._pending_rows + self._rows_n + int(dev) + folded

    @property
    def layers(self) -> tuple[int, int] | None:
        """(k1, k2) for the all-pairs form, None for two representations."""
        return (self._k1, self._k2) if self._multi else None

    @property
    def route(self) -> str | None:
        """"moments" or "rows" once decided (None before the first batch under route="auto")."""
        return self._route

    def update(self, x: Any, y: Any) -> StreamingSimilarity:
        """Add one batch of aligned rows (any number ≥ 1).

        A batch that is rejected leaves the accumulator exactly as it was.

        Safe to call from several threads at once: each batch's moments are computed in parallel and
        merged into the accumulator one at a time (the result equals the serial one up to rounding).

        Parameters
        ----------
        x, y : array_like or list of array_like
            Arrays of shapes (b, p1) and (b, p2), or, for the all-pairs form, lists of k1 and k2 such
            arrays (all with the same b). CUDA torch tensors are accumulated on their device.

        Returns
        -------
        StreamingSimilarity
            The accumulator itself, for chaining.

        Raises
        ------
        ValueError
            Widths that differ from earlier batches, arrays that differ in b, NaN/Inf, an empty batch,
            lists of the wrong length, too few rows for a declared minibatch measure, or a route whose
            memory would not fit (raised before anything is kept).
        TypeError
            An input that is not a real-valued 2-D array (or list of them).
        """
        backend = device_backend(x, y)
        if backend is not None:
            with self._lock:
                saved = self._snapshot()
                try:
                    # Device work is queued asynchronously and short per batch: Ctrl-C waits for it.
                    with deferred_interrupt():
                        self._update_on_device(backend, x, y)
                        self._version += 1
                except BaseException:
                    with deferred_interrupt():
                        self._restore(saved)
                    raise
            return self
        xs, ys, names_x, names_y = _batch(x, y, self._multi, self._k1, self._k2)
        with self._lock:
            self._check_widths(xs, ys, names_x, names_y)
        ranges = _column_ranges(xs + ys, names_x + names_y)
        b = xs[0].shape[0]
        wx, wy = [a.shape[1] for a in xs], [a.shape[1] for a in ys]
        terms = self._minibatch_terms(xs, ys, names_x, names_y) if self._mb is not None else None
        with self._lock:
            saved = self._snapshot()
            try:
                batches = self._keep_batch(xs, ys, names_x, names_y, ranges, terms)
            except BaseException:
                # Back as it was, unless the QR factor took the batch (Ctrl-C is held back while it does, and
                # raised once it has): the factor changes in place, so the batch stays, kept whole.
                if not (self._factor and self._route == "moments" and self._version != saved["version"]):
                    with deferred_interrupt():
                        self._restore(saved)
                raise
            version = self._version
        if batches is None:
            return self
        try:
            state = self._moments_of(batches)  # the heavy part, outside the lock
        except BaseException:
            with self._lock, deferred_interrupt():
                if self._version == version:  # nothing else happened meanwhile: back exactly as it was
                    self._restore(saved)
                else:  # the rows go back to the buffer, except this batch
                    kept = batches if b >= _FLUSH_ROWS else batches[:-1]
                    self._pending = kept + self._pending
                    self._pending_rows += sum(bt[0][0].shape[0] for bt in kept)
                    self._undo_terms(terms, b)
                    self._version += 1
            raise
        with self._lock, deferred_interrupt():
            self._state.absorb(state)  # checks the widths again, then an O(p²) merge in place
            self._version += 1
        return self

    def _keep_batch(self, xs: list[np.ndarray], ys: list[np.ndarray], names_x: list[str], names_y: list[str],
                    ranges: list[tuple[np.ndarray, np.ndarray]], terms: dict[bool, Any] | None
                    ) -> list[tuple[list[np.ndarray], list[np.ndarray]]] | None:
        """Under the lock: check a validated batch against the state and keep it (rows, or the buffer of rows
        waiting to become moments). Returns the batches to turn into moments outside the lock, if any. On an
        exception the caller restores the snapshot taken before."""
        self._check_widths(xs, ys, names_x, names_y)  # again: another thread may have set them
        b = xs[0].shape[0]
        wx, wy = [a.shape[1] for a in xs], [a.shape[1] for a in ys]
        if not self._widths[0]:
            self._decide_route(wx, wy, xs[0].itemsize)
        if self._route == "moments":
            # The magnitudes the moments will hold, over every row so far and this batch, and what
            # turning the buffered rows and this batch into moments will need: both checked before the
            # batch is kept.
            if self._ranges:
                ranges = [(np.minimum(a, c), np.maximum(b_, d)) for (a, b_), (c, d) in zip(self._ranges, ranges)]
            _check_spread(ranges, names_x + names_y)
            if self._factor:
                require_memory(16.0 * b * sum(wx + wy), f"a StreamingSimilarity over widths {tuple(wx)} and {tuple(wy)}",
                               _WIDTH_FIX, "a float64 centred copy of the batch")
            else:
                require_memory(
                    _stream_memory_bytes(self._pending_rows + b, wx, wy),
                    f"a StreamingSimilarity over widths {tuple(wx)} and {tuple(wy)}", _WIDTH_FIX,
                    "float64 moments of size p×p per layer and p1×p2 per pair",
                )
        else:
            self._check_rows_memory(b, xs + ys)
        factor = self._route == "moments" and self._factor
        folds = self._route == "moments" and self._folds_k is not None
        copies = ([np.array(a, copy=True) for a in xs + ys]
                  if (self._route == "rows" or (b < _FLUSH_ROWS and not factor and not folds)) else None)
        with deferred_interrupt() as interrupted:
            interrupted.check()
            if factor:
                # The factor buffers small batches itself and checks the batch in full before it changes; as the
                # first step of the commit, an exception from it leaves everything as it was.
                with busy(), explain_out_of_memory(f"a StreamingSimilarity update over widths {tuple(wx)} and "
                                                   f"{tuple(wy)}"):
                    self._state.update(xs, ys, names_x, names_y)
            elif folds:  # each row into its fold's moments, in arrival order (all or nothing: first step of the commit)
                self._folds_now(wx, wy).add(xs, ys, names_x, names_y)
            self._add_terms(terms, b)
            self._ranges = ranges
            self._widths = (wx, wy)
            self._eps = max(self._eps, float(np.finfo(xs[0].dtype).eps))
            self._version += 1
            if self._route == "rows":
                assert copies is not None
                self._rows_n += b
                for k, a in enumerate(copies):
                    self._rows[k].append(a)
            elif factor or folds:
                return None
            elif b >= _FLUSH_ROWS:
                return [(xs, ys)]
            else:
                assert copies is not None
                self._pending.append((copies[: self._k1], copies[self._k1 :]))
                self._pending_rows += b
                if self._pending_rows < _FLUSH_ROWS and self._pending_rows * sum(wx + wy) * 8 < _FLUSH_BYTES:
                    return None
                batches, self._pending, self._pending_rows = self._pending, [], 0
                return batches
        self._maybe_leave_rows()
        return None

    def _check_rows_memory(self, b: int, arrays: list[np.ndarray]) -> None:
        """The rows route keeps a copy of each batch and, when a value is asked for, concatenates every
        layer's rows once: both checked before the batch is kept."""
        every = sum(int(a.shape[1]) for a in arrays)
        itemsize = int(arrays[0].itemsize)
        require_memory(
            itemsize * every * (2 * b + self._rows_n),
            f"a StreamingSimilarity keeping the rows of widths {tuple(int(a.shape[1]) for a in arrays)}",
            "pass n=... (the number of rows) so that route='auto' can keep moments instead when they are smaller, "
            "use route='moments', or reduce the features first",
            "a copy of this batch, and every layer's rows concatenated once when a value is asked for",
        )

    def _snapshot(self) -> dict[str, Any]:
        """Every field an update or merge changes (the moments by reference: they are changed in place only
        after the last check, with Ctrl-C held back)."""
        return {
            "route": self._route, "state": self._state, "pending": list(self._pending),
            "pending_rows": self._pending_rows, "rows": [list(r) for r in self._rows], "rows_n": self._rows_n,
            "mb": None if self._mb is None else {k: None if v is None else list(v) for k, v in self._mb.items()},
            "mb_n": self._mb_n, "dev": self._dev, "dev_eps": self._dev_eps, "widths": self._widths,
            "ranges": list(self._ranges), "eps": self._eps, "version": self._version,
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        self._route, self._state = saved["route"], saved["state"]
        self._pending, self._pending_rows = saved["pending"], saved["pending_rows"]
        self._rows, self._rows_n = saved["rows"], saved["rows_n"]
        self._mb, self._mb_n = saved["mb"], saved["mb_n"]
        self._dev, self._dev_eps = saved["dev"], saved["dev_eps"]
        self._widths, self._ranges, self._eps = saved["widths"], saved["ranges"], saved["eps"]
        self._version = saved["version"] + 1

    def _check_widths(self, xs: list[Any], ys: list[Any], names_x: list[str], names_y: list[str]) -> None:
        _check_widths(self._widths, xs, ys, names_x, names_y)

    def _new_state(self) -> Any:
        return (_core.FactorState if self._factor else _core.StreamState)(self._k1, self._k2)

    def _decide_route(self, wx: list[int], wy: list[int], itemsize: int) -> None:
        route, need = plan_route(wx, wy, self._n_hint, itemsize, self._kinds, self._route_arg)
        what = f"a StreamingSimilarity over widths {tuple(wx)} and {tuple(wy)}"
        if route == "rows" and self._n_hint is not None:
            require_memory(need, what, "use fewer rows, pool or reduce the features first, or compare fewer layers",
                           f"the {self._n_hint} rows of every layer, kept until the values are computed")
        elif route in ("moments", "auto"):
            require_memory(need if route == "moments" else min(need, _FLUSH_BYTES), what, _WIDTH_FIX,
                           "float64 moments of size p×p per layer and p1×p2 per pair")
        self._route = "rows" if route == "auto" else route

    def _maybe_leave_rows(self) -> None:
        """Under route "auto" with n unknown: once the rows kept outgrow the moments, turn them into
        moments (exactly) and continue on that route."""
        if self._route_arg != "auto" or self._n_hint is not None or self._kinds - STREAMING_KINDS:
            return
        wx, wy = self._widths
        every = sum(wx + wy)
        itemsize = self._rows[0][0].itemsize
        mom = moments_bytes(wx, wy, self._factor)
        if self._rows_n * every * itemsize < mom or not fits(mom + _stream_memory_bytes(self._rows_n, wx, wy)):
            return
        xs = [np.concatenate(r) if len(r) > 1 else r[0] for r in self._rows]
        state = self._moments_of([(xs[: self._k1], xs[self._k1 :])])
        with deferred_interrupt():
            self._state = state if self._state.n == 0 else self._state.merged(state)
            self._rows = [[] for _ in range(self._k1 + self._k2)]
            self._rows_n = 0
            self._route = "moments"
            self._version += 1

    def _moments_of(self, batches: list[tuple[list[np.ndarray], list[np.ndarray]]]) -> Any:
        """The moments of some batches (concatenated), as a state of their own."""
        if len(batches) == 1:
            xs, ys = batches[0]
        else:
            both = _common_dtype([np.concatenate([bt[0][i] for bt in batches]) for i in range(self._k1)]
                                 + [np.concatenate([bt[1][j] for bt in batches]) for j in range(self._k2)])
            xs, ys = both[: self._k1], both[self._k1 :]
        wx, wy = [a.shape[1] for a in xs], [a.shape[1] for a in ys]
        require_memory(
            _stream_memory_bytes(xs[0].shape[0], wx, wy),
            f"a StreamingSimilarity over widths {tuple(wx)} and {tuple(wy)}",
            _WIDTH_FIX,
            "float64 moments of size p×p per layer and p1×p2 per pair",
        )
        state = self._new_state()
        with busy(), explain_out_of_memory(f"a StreamingSimilarity update over widths {tuple(wx)} and {tuple(wy)}"):
            state.update(xs, ys, self._names_x, self._names_y)
        return state

    def _minibatch_terms(self, xs: list[np.ndarray], ys: list[np.ndarray], names_x: list[str],
                         names_y: list[str]) -> dict[bool, Any]:
        b = xs[0].shape[0]
        if b < 2:
            raise ValueError(
                f"this batch has {b} row; minibatch CKA (declared in metrics) needs at least 2 rows per update "
                "(4 for the debiased estimator): merge short batches or drop them"
            )
        check_minibatch_memory(b, [a.shape[1] for a in xs], [a.shape[1] for a in ys])
        with busy():
            out: dict[bool, Any] = {False: _core.batch_hsic(xs, ys, False, names_x, names_y)}
            out[True] = _core.batch_hsic(xs, ys, True, names_x, names_y) if b >= 4 else None
        return out

    def _add_terms(self, terms: dict[bool, Any] | None, b: int) -> None:
        if terms is None or self._mb is None:
            return
        for debiased, t in terms.items():
            acc = self._mb[debiased]
            if acc is None:
                continue
            if t is None:  # a batch too short for the debiased estimator
                self._mb[debiased] = None
                continue
            acc[0] = acc[0] + t[0]
            acc[1] = acc[1] + np.asarray(t[1]).ravel()
            acc[2] = acc[2] + np.asarray(t[2]).ravel()
            acc[3] += 1
        self._mb_n += b

    def _undo_terms(self, terms: dict[bool, Any] | None, b: int) -> None:
        if terms is None or self._mb is None:
            return
        for debiased, t in terms.items():
            acc = self._mb[debiased]
            if acc is None or t is None:
                continue
            acc[0], acc[1], acc[2] = acc[0] - t[0], acc[1] - np.asarray(t[1]).ravel(), acc[2] - np.asarray(t[2]).ravel()
            acc[3] -= 1
        self._mb_n -= b

    def _update_on_device(self, backend: Any, x: Any, y: Any) -> None:
        """A batch of tensors on a device: its moments are computed and merged there (float64
        accumulation) and stay there until a value is asked for; or, on the rows route, its rows are kept
        on the device."""
        xs_in, ys_in = (x, y) if self._multi else ([x], [y])
        for name, b, k in (("x", xs_in, self._k1), ("y", ys_in, self._k2)):
            if not isinstance(b, Sequence) or len(b) != k:
                raise ValueError(f"{name} must hold {k} tensors (one per layer)")
        xs, ys = backend.check_batch(xs_in, ys_in, self._names_x, self._names_y)
        self._check_widths(xs, ys, self._names_x, self._names_y)
        wx, wy = [int(t.shape[1]) for t in xs], [int(t.shape[1]) for t in ys]
        b = int(xs[0].shape[0])
        if not self._widths[0]:
            if self._route_arg == "auto" and self._n_hint is None and not self._kinds - STREAMING_KINDS:
                self._route = "moments"  # device batches: moments on the device, unless told the rows are few
            self._decide_route(wx, wy, xs[0].element_size())
        terms = backend.minibatch_terms(xs, ys) if self._mb is not None else None
        if self._route == "rows":
            for k, t in enumerate(xs + ys):
                self._rows[k].append(t.clone())
            self._rows_n += b
        elif self._folds_k is not None:
            eps = float(np.finfo(np.float32).eps) if xs[0].element_size() == 4 else _EPS64
            self._folds_now(wx, wy).add_device(backend, xs, ys, eps)
        else:
            if self._dev is None:
                self._dev = backend.device_accumulator(self._k1, self._k2, self._factor, self._dev_float64_products)
            self._dev.update(xs, ys)
        self._add_terms(terms, b)
        eps = float(np.finfo(np.float32).eps) if xs[0].element_size() == 4 else _EPS64
        self._widths = (wx, wy)
        self._dev_eps = max(self._dev_eps, eps)
        self._eps = max(self._eps, eps)

    def _folds_now(self, wx: list[int], wy: list[int]) -> FoldStream:
        """The per-fold moments, created (memory checked) at the first batch of the moments route."""
        if self._fold_stream is None:
            assert self._folds_k is not None and self._n_hint is not None
            require_memory(self._folds_k * moments_bytes(wx, wy),
                           f"the moments of {self._folds_k} folds over widths {tuple(wx)} and {tuple(wy)}", _WIDTH_FIX,
                           "one set of float64 moments per fold")
            self._fold_stream = FoldStream(self._k1, self._k2, self._n_hint, self._folds_k)
        return self._fold_stream

    def _st(self) -> Any:
        """The C++ state of every row seen (route "moments"): buffered rows flushed, the moments kept on
        a device merged in."""
        if self._fold_stream is not None:
            return self._fold_stream.merged()
        if self._pending:
            state = self._moments_of(self._pending)  # may raise: the buffered rows stay buffered
            with deferred_interrupt():
                self._pending, self._pending_rows = [], 0
                self._state.absorb(state)
                self._version += 1
        if self._dev is not None and self._dev.n > 0:
            wx, wy = self._widths
            require_memory(2 * moments_bytes(wx, wy, self._factor), f"the statistics of a StreamingSimilarity over "
                           f"widths {tuple(wx)} and {tuple(wy)}, copied from the device", _WIDTH_FIX,
                           "float64 statistics in host memory, read from the device and merged")
            on_device = self._dev.export(self._dev_eps)
            merged = on_device if self._state.n == 0 else self._state.merged(on_device)
            with deferred_interrupt():
                self._state = merged
                self._dev = None
                self._version += 1
        return self._state

    def _rows_now(self) -> list[Any]:
        """Every layer's rows as one array (route "rows"), concatenated once, layer by layer: the values are then
        exactly the in-memory ones on these arrays (float32 rows keep float32 products for linear CKA and float32's
        rank rule for the CCA family, as ``reprsim.measure`` does)."""
        parts = [r for r in self._rows if len(r) > 1]
        if parts and isinstance(parts[0][0], np.ndarray):
            require_memory(sum(sum(a.nbytes for a in r) for r in parts),
                           f"the {self._rows_n} rows kept by a StreamingSimilarity, concatenated",
                           "use route='moments' (or pass n=... to route='auto'), or reduce the features first",
                           "one array per layer")
        out = []
        for k, r in enumerate(self._rows):
            if len(r) > 1:
                r = [_concatenate(r)]
                self._rows[k] = r  # the same rows, in one array
            out.append(r[0])
        return out

    def merge(self, other: StreamingSimilarity) -> StreamingSimilarity:
        """Absorb the rows of ``other`` (which is not modified).

        The combined state is a pure function of the two states (Chan et al.'s pairwise update for
        moments; concatenation for rows), so accumulators from any number of processes merge in any
        order to the same values.

        Parameters
        ----------
        other : StreamingSimilarity
            An accumulator over the same layers and widths.

        Returns
        -------
        StreamingSimilarity
            The accumulator itself, for chaining.

        Raises
        ------
        TypeError
            ``other`` is not a StreamingSimilarity.
        ValueError
            The two accumulators are over different layers or widths, or keep different statistics.
        """
        if not isinstance(other, StreamingSimilarity):
            raise TypeError(f"other must be a StreamingSimilarity, got {type(other).__name__}")
        if (self._multi, self._k1, self._k2) != (other._multi, other._k1, other._k2):
            raise ValueError(
                f"cannot merge accumulators over different layers: layers {self.layers} and {other.layers}"
            )
        if (self._mb is None) != (other._mb is None):
            raise ValueError("cannot merge an accumulator that keeps minibatch terms with one that does not "
                             "(declare the same metrics for both)")
        for one, two in ((self, other), (other, self)):
            if one._folds_k is not None and two.n_seen:
                raise ValueError("cannot merge accumulators that keep per-fold moments (cross-validated measures): "
                                 "rows are placed in folds by their position in one stream, which a second "
                                 "accumulator's rows do not have; stream every row through one accumulator")
        with _both_locked(self, other):
            if self._widths[0] and other._widths[0] and self._widths != other._widths:
                raise ValueError(f"cannot merge accumulators over different widths: {self._widths} and {other._widths}")
            mine = self._route or ("moments" if self._state.n else None)
            theirs = other._route or ("moments" if other._state.n else None)
            if "rows" in (mine, theirs) and mine != theirs and None not in (mine, theirs):
                if self._kinds - STREAMING_KINDS or other._kinds - STREAMING_KINDS:
                    raise ValueError("cannot merge an accumulator that keeps rows with one that keeps moments: the "
                                     "declared measures need every row")
                if mine == "rows":
                    self._route_to_moments()
                else:
                    other = StreamingSimilarity.from_state(other.state())
                    other._route_to_moments()
                    theirs = "moments"
            # Everything is computed first (the changes of representation above keep the values); the new
            # fields are then committed together, with Ctrl-C held back.
            rows = other._rows_now() if theirs == "rows" else None
            if rows is None and other.n_seen and self._factor != other._factor:
                if self.n_seen:
                    raise ValueError("cannot merge an accumulator that keeps the QR factor (for the CCA family) with one "
                                     "that keeps moments: create both with the same metrics=")
                self._factor, self._state = other._factor, other._new_state()
            merged = self._st().merged(other._st()) if rows is None and other.n_seen else None
            mb: dict[bool, list[Any] | None] | None = None
            if self._mb is not None and other._mb is not None:
                mb = {}
                for debiased in (True, False):
                    a, b = self._mb[debiased], other._mb[debiased]
                    mb[debiased] = None if a is None or b is None else [a[0] + b[0], a[1] + b[1], a[2] + b[2],
                                                                        a[3] + b[3]]
            ranges = self._ranges
            if self._ranges and other._ranges:
                ranges = [(np.minimum(a, c), np.maximum(b, d)) for (a, b), (c, d) in zip(self._ranges, other._ranges)]
            with deferred_interrupt() as interrupted:
                interrupted.check()
                if rows is not None:
                    self._rows = [mine_k + [r] for mine_k, r in zip(self._rows, rows)]
                    self._rows_n += other._rows_n
                    self._route = "rows"
                elif merged is not None:
                    self._state = merged
                    self._route = self._route or "moments"
                if mb is not None:
                    self._mb = mb
                    self._mb_n += other._mb_n
                if not self._widths[0]:
                    self._widths = other._widths
                self._ranges = ranges or list(other._ranges)
                self._eps = max(self._eps, other._eps)
                self._version += 1
        return self

    def _route_to_moments(self) -> None:
        """The kept rows turned into moments (the values do not change)."""
        state = None
        if self._rows_n:
            xs = self._rows_now()
            state = self._moments_of([(xs[: self._k1], xs[self._k1 :])])
        with deferred_interrupt():
            if state is not None:
                self._state = state if self._state.n == 0 else self._state.merged(state)
            self._rows = [[] for _ in range(self._k1 + self._k2)]
            self._rows_n = 0
            self._route = "moments"
            self._version += 1

    # -- state ---------------------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        """The statistics as a dict of numpy arrays (float64, except stored rows, which keep their dtype).

        Returns
        -------
        dict of str to numpy.ndarray
            The fields listed in the class docstring; :meth:`from_state` reads them back.
        """
        with self._lock:
            out: dict[str, np.ndarray] = {}
            if self._multi:
                out["layers"] = np.array([self._k1, self._k2], dtype=np.float64)
            if self._mb is not None:
                for debiased, prefix in ((True, "mb_"), (False, "mb0_")):
                    t = self._mb[debiased]
                    if t is not None:
                        out[prefix + "xy"], out[prefix + "xx"], out[prefix + "yy"] = (np.array(v, dtype=np.float64)
                                                                                      for v in t[:3])
                        out[prefix + "batches"] = np.float64(t[3])
                out["mb_n"] = np.float64(self._mb_n)
            if self._route == "rows":
                out["route"] = np.float64(1.0)
                out["n"] = np.float64(self._rows_n)
                out["rank_eps"] = np.float64(self._eps)
                rows = self._rows_now()
                if rows and isinstance(rows[0], np.ndarray):
                    require_memory(sum(r.nbytes for r in rows), f"a copy of the {self._rows_n} rows kept by a "
                                   "StreamingSimilarity", "use route='moments' for states to pass around",
                                   "every layer's rows")
                for k, r in enumerate(rows):
                    key = f"rows_x[{k}]" if k < self._k1 else f"rows_y[{k - self._k1}]"
                    out[key] = np.array(r, copy=True)
                return out
            wx, wy = self._widths
            if wx:
                copies = 2 * (1 + (self._fold_stream.k if self._fold_stream is not None else 0))
                require_memory(copies * moments_bytes(wx, wy, self._factor), f"the state of a StreamingSimilarity "
                               f"over widths {tuple(wx)} and {tuple(wy)}", _WIDTH_FIX,
                               "the statistics (and each fold's), exported and copied")
            st = self._st()
            raw = st.to_dict()
            if self._fold_stream is not None:
                fs = self._fold_stream
                out["folds_k"], out["folds_n"], out["folds_pos"] = (np.float64(fs.k), np.float64(fs.n),
                                                                    np.float64(fs.pos))
                for fold, fraw in enumerate(fs.raws()):
                    out.update({f"folds[{fold}].{name}": v for name, v in
                                _moment_fields(fraw, self._k1, self._k2, self._multi).items()})
        out["n"] = np.float64(raw["n"])
        out["rank_eps"] = np.float64(raw["rank_eps"])
        if raw["n"] == 0:
            return {k: np.asarray(v) for k, v in out.items()}
        factor = isinstance(st, _core.FactorState)
        layer_x, layer_y = _LAYER_FIELDS_X, _LAYER_FIELDS_Y
        if factor:
            out["route"] = np.float64(2.0)
            out["r"] = np.array(raw["r"], dtype=np.float64)
            layer_x, layer_y = _FACTOR_FIELDS_X, _FACTOR_FIELDS_Y
        for fields, k in ((layer_x, self._k1), (layer_y, self._k2)):
            for f in fields:
                for i in range(k):
                    key = f"{f}[{i}]" if self._multi else f
                    out[key] = np.array(raw[f][i], dtype=np.float64)
        for f in _PAIR_FIELDS[1:] if factor else _PAIR_FIELDS:
            for i in range(self._k1):
                for j in range(self._k2):
                    key = f"{f}[{i},{j}]" if self._multi else f
                    out[key] = np.array(raw[f][i * self._k2 + j], dtype=np.float64)
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StreamingSimilarity:
        """An accumulator holding the given statistics, checked field by field.

        Parameters
        ----------
        state : dict of str to array_like
            Fields as returned by :meth:`state`.

        Returns
        -------
        StreamingSimilarity
            A new accumulator equal to the one whose state was taken.

        Raises
        ------
        TypeError
            ``state`` is not a dict.
        ValueError
            A missing field, a field of the wrong shape, NaN/Inf, an invalid count or epsilon, moments that
            are not symmetric positive semidefinite within rounding (jointly, so cross-moments that break
            the Cauchy–Schwarz inequality are refused), or debiased sums inconsistent with the moments;
            the message names the field.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict of arrays as returned by state(), got {type(state).__name__}")
        get_field = _FieldReader(state)
        if "layers" in state:
            layers = get_field("layers", 1)
            if layers.shape != (2,) or np.any(layers < 1) or np.any(layers != np.round(layers)):
                raise ValueError(f"state field 'layers' must be two positive integers, got {layers}")
            kw: dict[str, Any] = {"layers_x": int(layers[0]), "layers_y": int(layers[1])}
        else:
            kw = {}
        has_mb = "mb_n" in state
        acc = cls(**kw)
        if has_mb:
            acc._kinds = acc._kinds | {"minibatch"}
            acc._mb = {True: None, False: None}
        n = get_field.count("n")
        rank_eps = float(get_field("rank_eps", 0))
        if rank_eps not in (0.0, _EPS32, _EPS64):
            raise ValueError(f"state field 'rank_eps' must be 0, the float32 epsilon {_EPS32} or the float64 epsilon "
                             f"{_EPS64}, got {rank_eps!r}")
        if n == 0 and rank_eps != 0.0:
            raise ValueError(f"state field 'rank_eps' must be 0 before any row was seen, got {rank_eps!r}")
        if has_mb:
            acc._mb_n = get_field.count("mb_n")
            if acc._mb_n != n:
                raise ValueError(f"state field 'mb_n' = {acc._mb_n} must equal the state's n = {n}: the minibatch "
                                 "terms are sums over the same rows")
            for debiased, prefix in ((True, "mb_"), (False, "mb0_")):
                if prefix + "xy" in state:
                    acc._mb[debiased] = list(_minibatch_terms_of(  # type: ignore[index]
                        get_field, (prefix + "xy", prefix + "xx", prefix + "yy", prefix + "batches"), acc._k1, acc._k2,
                        n, debiased))
                elif not debiased or n == 0:
                    # The biased terms exist for every batch of 2 rows or more, which an accumulator requires.
                    raise ValueError(f"state is missing the field {prefix + 'xy'!r} (the minibatch terms of the "
                                     f"{'debiased' if debiased else 'biased'} estimator)")
                else:  # a batch of fewer than 4 rows was seen: no debiased terms
                    acc._mb[debiased] = None  # type: ignore[index]
        if "route" in state and float(get_field("route", 0)) not in (0.0, 1.0, 2.0):
            raise ValueError(f"state field 'route' must be 1 (rows kept), 2 (QR factor) or 0 (moments), got "
                             f"{state['route']!r}")
        if "route" in state and float(get_field("route", 0)) == 1.0:
            acc._route = "rows"
            rows: list[list[Any]] = []
            for k in range(acc._k1 + acc._k2):
                key = f"rows_x[{k}]" if k < acc._k1 else f"rows_y[{k - acc._k1}]"
                rows.append([get_field.rows(key, n)])
            acc._rows, acc._rows_n, acc._eps = rows, n, rank_eps
            acc._widths = ([r[0].shape[1] for r in rows[: acc._k1]], [r[0].shape[1] for r in rows[acc._k1 :]])
            return acc
        raw: dict[str, Any] = {"k1": acc._k1, "k2": acc._k2, "n": float(n), "rank_eps": rank_eps}
        if "folds_k" in state:
            _read_fold_state(acc, state, get_field, n, rank_eps)
            return acc
        factor = "route" in state and float(get_field("route", 0)) == 2.0
        acc._factor = factor
        if n > 0:
            if factor:
                raw.update(_read_factor(get_field, acc._k1, acc._k2, acc._multi))
            else:
                raw.update(_read_moments(get_field, acc._k1, acc._k2, acc._multi, n))
            acc._route = "moments"
            acc._eps = rank_eps
            acc._widths = ([len(m) for m in raw["mean_x"]], [len(m) for m in raw["mean_y"]])
        try:
            acc._state = (_core.FactorState if factor else _core.StreamState).from_dict(raw)
        except ValueError as exc:
            raise ValueError(f"state is not a valid StreamingSimilarity state: {exc}") from None
        if not factor:
            acc._kinds = acc._kinds - {"factor"}
        return acc

    def __getstate__(self) -> dict[str, Any]:
        return self.state()

    def __setstate__(self, state: dict[str, Any]) -> None:
        other = StreamingSimilarity.from_state(state)
        self.__dict__.update(other.__dict__)

    def __repr__(self) -> str:
        layers = f"layers_x={self._k1}, layers_y={self._k2}, " if self._multi else ""
        return f"StreamingSimilarity({layers}route={self._route!r}, n_seen={self.n_seen})"

    # -- values --------------------------------------------------------------------------------------

    def _pair_set(self, bound: Bound, options: dict[str, Any]) -> PairSet:
        kind = bound.measure.statistics
        if self._metrics is not None and kind not in self._kinds and self._route != "rows":
            raise ValueError(
                f"{bound.name!r} needs {kind} statistics, which this accumulator does not keep: it was made with "
                f"metrics={list(self._metrics)}; declare {bound.name!r} there"
            )
        check_n(self.n_seen, bound.min_n, describe(bound), names="the rows seen so far")
        if kind == "minibatch":
            if self._mb is None:
                raise ValueError("minibatch CKA needs the per-update HSIC terms: create the accumulator with "
                                 "metrics=[..., 'minibatch_cka'] (each update is then one minibatch)")
            if options.get("batch_size") is not None:
                raise ValueError("an accumulator's minibatches are its updates: drop batch_size (or use "
                                 "reprsim.minibatch_cka on arrays in memory)")
            terms = self._mb[bound["debiased"]]
            if terms is None:
                raise ValueError("a batch of fewer than 4 rows was seen, so debiased minibatch CKA is undefined; "
                                 "use debiased=False or merge short batches")
            return _MinibatchSums((terms[0], terms[1], terms[2], terms[3]), self._mb_n, self._names_x, self._names_y)
        if self._route == "rows":
            rows = self._rows_now()
            return pair_set(kind, rows[: self._k1], rows[self._k1 :], names_x=self._names_x, names_y=self._names_y,
                            min_n=bound.min_n, what=describe(bound))
        if kind not in STREAMING_KINDS:
            raise ValueError(
                f"{bound.name!r} needs every pair of rows ({kind} statistics) and cannot be computed from streamed "
                "moments: create the accumulator with route='rows' (memory n × width), or compute it in memory "
                "with reprsim.measure / reprsim.pairwise"
            )
        if kind == "folds":
            return self._fold_set(bound)
        return _StateSet(kind, self._st(), self._names_x, self._names_y)

    def _fold_set(self, bound: Bound) -> PairSet:
        """Per-fold moments for a cross-validated measure (or, in-sample, the moments of every row)."""
        k = bound["folds"]
        if k is None:
            raws = [_moments_dict(self._st())]
        elif self._fold_stream is None:
            raise ValueError(
                f"{bound.name!r} with folds={k} needs the moments of each fold, which the accumulator does not keep: "
                f"create it with metrics=[{bound.name!r}, ...], n=<the number of rows> and folds={k} (or ask for "
                "folds=None, in-sample)")
        else:
            self._fold_stream.check_complete(k)
            raws = self._fold_stream.raws()
        return FoldStateSet(raws, k, self._k1, self._k2, self._names_x, self._names_y)

    def _evaluate(self, metric: str, options: dict[str, Any], want: str) -> Any:
        bound = bind(metric, options)
        with self._lock:
            values = evaluate(bound, self._pair_set(bound, options), want)
        return values if self._multi else float(values[0, 0])

    def measure(self, metric: str = "cka", **options: Any) -> Any:
        """The value of a registered measure over all rows seen: what :func:`reprsim.measure` returns.

        Parameters
        ----------
        metric : str, default "cka"
            A name of ``reprsim.METRICS`` whose statistics the accumulator keeps.
        **options
            The measure's options.

        Returns
        -------
        float or numpy.ndarray
            The value, or a k1 × k2 float64 array of them for several layers.

        Raises
        ------
        ValueError
            An unknown metric or option value, too few rows, statistics the accumulator does not keep, or
            what the measure raises for the data.
        TypeError
            An option the measure does not take.
        """
        return self._evaluate(metric, options, "value")

    def distance(self, metric: str = "cka", **options: Any) -> Any:
        """Dissimilarity of all rows seen, by metric name: what :func:`reprsim.distance` returns.

        Parameters
        ----------
        metric : str, default "cka"
            A name of ``reprsim.METRICS`` whose statistics the accumulator keeps.
        **options
            The measure's options (``variance`` and ``convention`` for "svcca", ``convention`` for
            "pwcca", ...).

        Returns
        -------
        float or numpy.ndarray
            The dissimilarity, or a k1 × k2 array of them for several layers.

        Raises
        ------
        ValueError
            An unknown metric, or what the metric raises.
        TypeError
            A metric that is not a string, or an option the metric does not take.
        """
        return self._evaluate(metric, options, "distance")

    def cka(self, *, debiased: bool = False) -> Any:
        """Linear CKA of all rows seen (see :func:`reprsim.cka`): a similarity in [0, 1].

        Biased (Kornblith et al. 2019) or, with ``debiased=True``, with the U-statistic HSIC
        (Song et al. 2012; needs n ≥ 4; in [-1, 1]).

        Parameters
        ----------
        debiased : bool, default False
            Use the U-statistic HSIC estimator.

        Returns
        -------
        float or numpy.ndarray
            The CKA, or a k1 × k2 float64 array of them for several layers.

        Raises
        ------
        ValueError
            Fewer rows seen than the estimator needs (2, or 4 debiased), or a constant representation.
        """
        return self.measure("cka", debiased=debiased)

    def canonical_correlations(self) -> Any:
        """Canonical correlations of all rows seen, descending (see :func:`reprsim.canonical_correlations`).

        Returns
        -------
        numpy.ndarray
            The correlations (float64), or for several layers a k1 × k2 object array of such arrays.

        Raises
        ------
        ValueError
            Fewer than 3 rows seen, or a rank reaching n − 1.
        """
        bound = bind("mean_cca", {})
        with self._lock:
            pset = self._pair_set(bound, {})
            out = np.empty((self._k1, self._k2), dtype=object)
            for i in range(self._k1):
                for j in range(self._k2):
                    rho = np.asarray(pset.pair(i, j).correlations(), dtype=np.float64)
                    out[i, j] = check_range(rho, 0.0, 1.0, pset.eps, "a canonical correlation")
        return out if self._multi else out[0, 0]

    def mean_cca(self) -> Any:
        """Mean canonical correlation ρ̄ of all rows seen: a similarity in [0, 1] (Ding et al. 2021).

        Returns
        -------
        float or numpy.ndarray
            The mean canonical correlation ρ̄ (see :func:`reprsim.mean_cca`), or a k1 × k2 array of them
            for several layers.

        Raises
        ------
        ValueError
            Fewer than 3 rows seen, or a rank reaching n − 1.
        """
        return self.measure("mean_cca")

    def mean_sq_cca(self) -> Any:
        """Mean squared canonical correlation R²_CCA of all rows seen: a similarity in [0, 1].

        Returns
        -------
        float or numpy.ndarray
            The mean squared canonical correlation R²_CCA (see :func:`reprsim.mean_sq_cca`), or a k1 × k2
            array of them for several layers.

        Raises
        ------
        ValueError
            Fewer than 3 rows seen, or a rank reaching n − 1.
        """
        return self.measure("mean_sq_cca")

    def svcca(self, *, variance: float = 0.99, convention: str = "variance") -> Any:
        """SVCCA of all rows seen (Raghu et al. 2017): a similarity in [0, 1].

        Parameters
        ----------
        variance : float, default 0.99
            Share of the total to keep, in (0, 1]; see :func:`reprsim.svcca`.
        convention : {"variance", "singular_values"}, default "variance"
            How the share is measured; see :func:`reprsim.svcca`.

        Returns
        -------
        float or numpy.ndarray
            SVCCA, or a k1 × k2 array of them for several layers.

        Raises
        ------
        ValueError
            A bad option, fewer than 3 rows seen, or a rank reaching n − 1.
        """
        return self.measure("svcca", variance=variance, convention=convention)

    def pwcca(self, *, convention: str = "x") -> Any:
        """Projection-weighted CCA of all rows seen (Morcos et al. 2018): a similarity in [0, 1].

        Parameters
        ----------
        convention : {"x", "y", "smaller"}, default "x"
            Whose canonical variates give the weights; see :func:`reprsim.pwcca`.

        Returns
        -------
        float or numpy.ndarray
            PWCCA, or a k1 × k2 array of them for several layers.

        Raises
        ------
        ValueError
            An unknown convention, fewer than 3 rows seen, or a rank reaching n − 1.
        """
        return self.measure("pwcca", convention=convention)

    def procrustes_distance(self, *, angular: bool = False) -> Any:
        """Orthogonal Procrustes distance of all rows seen (Ding et al. 2021): 2 − 2‖x̂ᵀŷ‖_* in [0, 2].

        Parameters
        ----------
        angular : bool, default False
            Return arccos ‖x̂ᵀŷ‖_* in [0, π/2] (Williams et al. 2021), a metric, instead.

        Returns
        -------
        float or numpy.ndarray
            The distance, or a k1 × k2 array of them for several layers.

        Raises
        ------
        ValueError
            Fewer than 2 rows seen, or a constant representation.
        """
        return self.measure("procrustes", angular=angular)


def _moments_dict(state: Any) -> dict[str, Any]:
    """The fields of a moments state (``n``, ``mean_x``, ``mean_y``, ``cxx``, ``cyy``, ``cxy``) of a state of either
    kind: a QR factor state gives its means (both parts) and the blocks of RᵀR."""
    if not isinstance(state, _core.FactorState):
        return dict(state.to_dict())
    raw = state.to_dict()
    k1, k2 = int(raw["k1"]), int(raw["k2"])
    return {"n": raw["n"],
            "mean_x": [np.asarray(raw["mean_x"][i]) + np.asarray(raw["mean_x_lo"][i]) for i in range(k1)],
            "mean_y": [np.asarray(raw["mean_y"][j]) + np.asarray(raw["mean_y_lo"][j]) for j in range(k2)],
            "cxx": [np.asarray(state.cxx(i)) for i in range(k1)], "cyy": [np.asarray(state.cyy(j)) for j in range(k2)],
            "cxy": [np.asarray(state.cxy(i, j)) for i in range(k1) for j in range(k2)]}


def _check_stream_folds(folds: Any, kinds: frozenset[str], n: int | None, metrics: Any) -> int | None:
    """The number of folds whose moments an accumulator keeps (None when no cross-validated measure is
    declared)."""
    if "folds" not in kinds:
        if folds is not None:
            raise ValueError("folds= is the number of folds of a cross-validated measure: declare one in metrics= "
                             "(e.g. metrics=['predictivity']), or drop folds=")
        return None
    if n is None:
        raise ValueError(f"the cross-validated measures in metrics={list(metrics or ())} place their folds from the "
                         "number of rows: pass n=<the number of rows that will be streamed> (reprsim.torch.compare "
                         "takes it from len(loader.dataset)), or ask for in-sample scores (folds=None) of an "
                         "accumulator made without metrics=")
    if folds is None:
        return 5
    if isinstance(folds, (bool, np.bool_)) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"folds must be an integer ≥ 2, got {folds!r}")
    return int(folds)


def _moment_fields(raw: dict[str, Any], k1: int, k2: int, multi: bool) -> dict[str, np.ndarray]:
    """A C++ state's moments as the named fields of :meth:`StreamingSimilarity.state` (n and rank_eps too)."""
    out: dict[str, np.ndarray] = {"n": np.float64(raw["n"]), "rank_eps": np.float64(raw["rank_eps"])}
    if raw["n"] == 0:
        return out
    for fields, k in ((_LAYER_FIELDS_X, k1), (_LAYER_FIELDS_Y, k2)):
        for f in fields:
            for i in range(k):
                out[f"{f}[{i}]" if multi else f] = np.array(raw[f][i], dtype=np.float64)
    for f in _PAIR_FIELDS:
        for i in range(k1):
            for j in range(k2):
                out[f"{f}[{i},{j}]" if multi else f] = np.array(raw[f][i * k2 + j], dtype=np.float64)
    return out


def _read_fold_state(acc: StreamingSimilarity, state: dict[str, Any], get_field: _FieldReader, n: int,
                     rank_eps: float) -> None:
    """Restore the per-fold moments of a state (fields ``folds_k``, ``folds_n``, ``folds_pos`` and
    ``folds[f].<moment field>``), each fold checked like the moments themselves."""
    k, total, pos = get_field.count("folds_k"), get_field.count("folds_n"), get_field.count("folds_pos")
    if k < 2 or pos > total or pos != n:
        raise ValueError(f"state fields folds_k/folds_n/folds_pos ({k}, {total}, {pos}) do not describe the {n} rows "
                         "of the state")
    acc._kinds = acc._kinds | {"folds"}
    acc._folds_k, acc._n_hint = k, total
    stream = FoldStream(acc._k1, acc._k2, total, k)
    for f in range(k):
        prefix = f"folds[{f}]."
        sub = {key[len(prefix):]: v for key, v in state.items() if key.startswith(prefix)}
        reader = _FieldReader(sub)
        fn = reader.count("n")
        raw: dict[str, Any] = {"k1": acc._k1, "k2": acc._k2, "n": float(fn), "rank_eps": rank_eps if fn else 0.0}
        if fn > 0:
            raw.update(_read_moments(reader, acc._k1, acc._k2, acc._multi, fn))
        if fn != max(0, min(stream.bounds[f][1], pos) - stream.bounds[f][0]):
            raise ValueError(f"state field folds[{f}].n = {fn} does not match fold {f} of {k} over {total} rows after "
                             f"{pos} rows")
        stream.states[f] = _core.StreamState.from_dict(raw)
    stream.pos = pos
    acc._fold_stream = stream
    if pos:
        acc._route = "moments"
        acc._eps = rank_eps
        merged = stream.merged().to_dict()
        acc._widths = ([len(m) for m in merged["mean_x"]], [len(m) for m in merged["mean_y"]])


def _concatenate(parts: list[Any]) -> Any:
    """Rows kept batch by batch, as one array (numpy, or a tensor on its device)."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return sys.modules["torch"].cat(parts)


class _FieldReader:
    """Reads and checks the fields of a state dict, naming the field in every error."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def __call__(self, key: str, ndim: int) -> np.ndarray:
        if key not in self.state:
            raise ValueError(f"state is missing the field {key!r}")
        try:
            a = np.asarray(self.state[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"state field {key!r} must be a numeric array, got {type(self.state[key]).__name__}") from None
        if a.ndim != ndim:
            raise ValueError(f"state field {key!r} must have {ndim} dimensions, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"state field {key!r} contains NaN or Inf")
        return a

    def count(self, key: str) -> int:
        v = float(self(key, 0))
        if v < 0 or v != round(v) or v > 2.0**53:
            raise ValueError(f"state field {key!r} must be a non-negative integer count, got {v!r}")
        return int(v)

    def rows(self, key: str, n: int) -> np.ndarray:
        if key not in self.state:
            raise ValueError(f"state is missing the field {key!r}")
        a = as_representation(self.state[key], f"state field {key!r}")
        if a.shape[0] != n:
            raise ValueError(f"state field {key!r} has {a.shape[0]} rows, but the state's n is {n}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"state field {key!r} contains NaN or Inf")
        return np.array(a, copy=True)


def _psd_violation(c: np.ndarray) -> float:
    """How far below zero the smallest eigenvalue of a symmetric matrix lies, relative to its largest."""
    w = np.linalg.eigvalsh(c)
    top = max(float(np.abs(w).max()), np.finfo(np.float64).tiny)
    return max(0.0, -float(w[0]) / top)


def _read_factor(get_field: _FieldReader, k1: int, k2: int, multi: bool) -> dict[str, Any]:
    """The fields of a QR-factor state as FactorState.from_dict reads them (it checks them: shapes against
    the widths, a triangular R with a non-negative diagonal, the debiased sums against R)."""
    raw: dict[str, Any] = {"r": get_field("r", 2)}
    for fields, k in ((_FACTOR_FIELDS_X, k1), (_FACTOR_FIELDS_Y, k2)):
        for f in fields:
            ndim = 0 if f in ("sum_d2", "sum_e2") else 1
            vals = [get_field(f"{f}[{i}]" if multi else f, ndim) for i in range(k)]
            raw[f] = [float(v) if ndim == 0 else v for v in vals]
    for f in _PAIR_FIELDS[1:]:
        ndim = 0 if f == "sum_de" else 1
        vals = [get_field(f"{f}[{i},{j}]" if multi else f, ndim) for i in range(k1) for j in range(k2)]
        raw[f] = [float(v) if ndim == 0 else v for v in vals]
    raw["widths_x"] = [len(m) for m in raw["mean_x"]]
    raw["widths_y"] = [len(m) for m in raw["mean_y"]]
    return raw


def _read_moments(get_field: _FieldReader, k1: int, k2: int, multi: bool, n: int) -> dict[str, Any]:
    """The moment fields of a state, checked: shapes, symmetry, joint positive semidefiniteness within
    rounding, the debiased sums against the moments."""
    ndims = {"mean_x": 1, "cxx": 2, "sum_d2": 0, "sum_xd": 1, "mean_y": 1, "cyy": 2, "sum_e2": 0,
             "sum_ye": 1, "cxy": 2, "sum_de": 0, "sum_xe": 1, "sum_yd": 1}
    raw: dict[str, Any] = {}
    names: dict[str, list[str]] = {}
    for fields, k in ((_LAYER_FIELDS_X, k1), (_LAYER_FIELDS_Y, k2)):
        for f in fields:
            keys = [f"{f}[{i}]" if multi else f for i in range(k)]
            vals = [get_field(key, ndims[f]) for key in keys]
            raw[f] = [float(v) if ndims[f] == 0 else v for v in vals]
            names[f] = keys
    for f in _PAIR_FIELDS:
        keys = [f"{f}[{i},{j}]" if multi else f for i in range(k1) for j in range(k2)]
        vals = [get_field(key, ndims[f]) for key in keys]
        raw[f] = [float(v) if ndims[f] == 0 else v for v in vals]
        names[f] = keys
    # Rounding slack of float64 sums of n products.
    tol = 64.0 * max(n, 1) * _EPS64
    for side, cf, mf, d2f, udf in (("x", "cxx", "mean_x", "sum_d2", "sum_xd"), ("y", "cyy", "mean_y", "sum_e2", "sum_ye")):
        for c, mean, d2, ud, key, d2key, udkey in zip(raw[cf], raw[mf], raw[d2f], raw[udf], names[cf], names[d2f],
                                                      names[udf]):
            p = mean.shape[0]
            if c.shape != (p, p) or ud.shape != (p,):
                raise ValueError(f"state field {key!r} has shape {c.shape}, but its layer's mean has {p} entries "
                                 f"(and {udkey!r} must have shape ({p},))")
            scale = max(float(np.abs(c).max()), np.finfo(np.float64).tiny)
            if np.abs(c - c.T).max() > tol * scale:
                raise ValueError(f"state field {key!r} is not symmetric: moments Σ(x−x̄)(x−x̄)ᵀ are")
            if np.any(np.diag(c) < -tol * scale):
                raise ValueError(f"state field {key!r} has a negative diagonal entry: a sum of squares cannot be")
            tr = float(np.trace(c))
            if d2 < 0 or d2 < tr * tr / max(n, 1) * (1.0 - tol) - tol * tr * tr:
                raise ValueError(f"state field {d2key!r} = {d2!r} is below (tr {key})²/n = {tr * tr / max(n, 1)!r}, "
                                 "which Σd² is at least (Cauchy–Schwarz)")
    for i in range(k1):
        for j in range(k2):
            cxx, cyy, cxy = raw["cxx"][i], raw["cyy"][j], raw["cxy"][i * k2 + j]
            key = names["cxy"][i * k2 + j]
            if cxy.shape != (cxx.shape[0], cyy.shape[0]):
                raise ValueError(f"state field {key!r} has shape {cxy.shape}, expected {(cxx.shape[0], cyy.shape[0])}")
            sx, sy = np.sqrt(np.maximum(np.diag(cxx), 0.0)), np.sqrt(np.maximum(np.diag(cyy), 0.0))
            scale = max(float(sx.max()) * float(sy.max()), np.finfo(np.float64).tiny)
            if np.any(np.abs(cxy) > np.outer(sx, sy) * (1.0 + tol) + tol * scale):
                raise ValueError(f"state field {key!r} breaks the Cauchy–Schwarz inequality against the diagonals of "
                                 f"{names['cxx'][i]!r} and {names['cyy'][j]!r}: it is not a cross-moment of these layers")
            joint = np.block([[cxx, cxy], [cxy.T, cyy]])
            if _psd_violation(joint) > 1e3 * tol:
                raise ValueError(f"the moments {names['cxx'][i]!r}, {names['cyy'][j]!r} and {key!r} are not jointly "
                                 "positive semidefinite: they are not the moments of any data")
    return raw


def _minibatch_terms_of(get_field: _FieldReader, keys: tuple[str, str, str, str], k1: int, k2: int, n: int,
                        debiased: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Minibatch HSIC sums read from a state and checked: shapes, counts (every minibatch has at least 4 rows for
    the debiased estimator, 2 for the biased one), non-negative self terms (HSIC(K, K) is a squared norm for
    both estimators: of the centred Gram, or of the U-centred one; Székely & Rizzo 2014) and the
    Cauchy–Schwarz inequality between the cross and self terms, within rounding."""
    kxy, kxx, kyy, kb = keys
    xy, xx, yy = get_field(kxy, 2), get_field(kxx, 1), get_field(kyy, 1)
    for key, a, shape in ((kxy, xy, (k1, k2)), (kxx, xx, (k1,)), (kyy, yy, (k2,))):
        if a.shape != shape:
            raise ValueError(f"state field {key!r} has shape {a.shape}, expected {shape} for {k1} x {k2} layers")
    batches = get_field.count(kb)
    need = 4 if debiased else 2
    if (batches == 0) != (n == 0) or batches * need > n:
        raise ValueError(f"state field {kb!r} = {batches} does not fit n = {n} rows: every minibatch has at least "
                         f"{need} rows ({'debiased' if debiased else 'biased'} estimator), and rows come in minibatches")
    scale = max(float(np.abs(xx).max()), float(np.abs(yy).max()), float(np.abs(xy).max()), np.finfo(np.float64).tiny)
    tol = 64.0 * max(n, 1) * _EPS64
    for key, h in ((kxx, xx), (kyy, yy)):
        if np.any(h < -tol * scale):
            raise ValueError(f"state field {key!r} holds a negative self term {float(h.min())!r}: HSIC(K, K) is a "
                             "squared norm, never negative")
        if n == 0 and np.any(h != 0.0):
            raise ValueError(f"state field {key!r} must be 0 before any row was seen")
    bound = np.sqrt(np.outer(np.maximum(xx, 0.0), np.maximum(yy, 0.0)))
    if np.any(np.abs(xy) > bound * (1.0 + tol) + tol * scale):
        raise ValueError(f"state field {kxy!r} breaks the Cauchy–Schwarz inequality against {kxx!r} and {kyy!r}: "
                         "|Σ HSIC(K, L)| ≤ √(Σ HSIC(K, K) · Σ HSIC(L, L))")
    return xy, xx, yy, batches


def _check_debiased(debiased: Any) -> bool:
    return check_bool("debiased")(debiased)


class StreamingMinibatchCKA:
    """Minibatch CKA (Nguyen, Raghu & Kornblith 2021), fed one minibatch per :meth:`update`.

    ``CKA_mb = Σ_b HSIC(K_b, L_b) / √(Σ_b HSIC(K_b, K_b) · Σ_b HSIC(L_b, L_b))`` with K_b, L_b the
    linear Gram matrices of minibatch b. With ``debiased=True`` (the default, as in the paper) each
    HSIC is the U-statistic HSIC₁ (Song et al. 2012) and every minibatch needs at least 4 rows; with
    ``debiased=False`` it is the biased HSIC₀ = tr(K H L H)/(b − 1)² and needs at least 2 rows. A
    similarity, an estimator with its own value: it is *not* the CKA of the concatenated data (for
    that, use :class:`StreamingSimilarity`), and it depends on how the rows are grouped into batches.
    A minibatch with too few rows raises ValueError and leaves the accumulator unchanged.

    With ``layers_x=k1, layers_y=k2``, :meth:`update` takes lists of k1 and k2 arrays and
    :meth:`result` returns a k1 × k2 array.

    The state (:meth:`state`, :meth:`from_state`, pickling) is ``n`` (rows), ``batches``, ``hsic_xy``
    (k1×k2), ``hsic_xx`` (k1) and ``hsic_yy`` (k2): the running sums of the per-batch HSIC terms.

    Parameters
    ----------
    debiased : bool, default True
        The U-statistic HSIC₁ (as in the paper); False: the biased HSIC₀.
    layers_x, layers_y : int, optional
        Numbers of layers on each side for the all-pairs form. Omit both for two representations.

    Raises
    ------
    TypeError
        ``debiased`` is not a bool.
    ValueError
        Only one of ``layers_x``, ``layers_y`` given, or a count that is not a positive integer.

    References
    ----------
    .. [1] T. Nguyen, M. Raghu, S. Kornblith. "Do Wide and Deep Networks Learn the Same Things?
       Uncovering How Neural Network Representations Vary with Width and Depth." ICLR 2021.
    .. [2] L. Song, A. Smola, A. Gretton, J. Bedo, K. Borgwardt. "Feature Selection via Dependence
       Maximization." JMLR 13, 2012.
    """

    def __init__(self, *, debiased: bool = True, layers_x: int | None = None, layers_y: int | None = None) -> None:
        self._debiased = _check_debiased(debiased)
        self._multi, self._k1, self._k2 = _check_layers(layers_x, layers_y)
        self._lock = threading.RLock()  # updates, merges and reads from several threads are serialised
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen."""
        with self._lock, deferred_interrupt():
            self._n = 0
            self._batches = 0
            self._xy = np.zeros((self._k1, self._k2))
            self._xx = np.zeros(self._k1)
            self._yy = np.zeros(self._k2)
            self._widths: tuple[list[int], list[int]] = ([], [])

    @property
    def n_seen(self) -> int:
        """Rows seen."""
        return self._n

    @property
    def n_batches(self) -> int:
        """Minibatches seen."""
        return self._batches

    @property
    def debiased(self) -> bool:
        """Whether each minibatch's HSIC is the U-statistic (True) or the biased estimator."""
        return self._debiased

    def update(self, x: Any, y: Any) -> StreamingMinibatchCKA:
        """Add one minibatch; a rejected minibatch leaves the accumulator unchanged.

        Safe to call from several threads at once (the minibatches' terms are computed in parallel and
        added one at a time).

        Parameters
        ----------
        x, y : array_like or list of array_like
            Arrays of shapes (b, p1) and (b, p2), or, for the all-pairs form, lists of k1 and k2 such
            arrays; b ≥ 4 (debiased) or b ≥ 2.

        Returns
        -------
        StreamingMinibatchCKA
            The accumulator itself, for chaining.

        Raises
        ------
        ValueError
            Too few rows, widths that differ from earlier minibatches, arrays that differ in b, NaN/Inf,
            empty input, or Gram or cross-product matrices that would not fit in the available memory
            (raised before anything is allocated).
        TypeError
            An input that is not a real-valued 2-D array (or list of them).
        """
        xs, ys, names_x, names_y = _batch(x, y, self._multi, self._k1, self._k2)
        with self._lock:
            _check_widths(self._widths, xs, ys, names_x, names_y)
        b = xs[0].shape[0]
        need = 4 if self._debiased else 2
        if b < need:
            raise ValueError(
                f"this minibatch has {b} rows; minibatch CKA with debiased={self._debiased} needs at least {need} "
                "rows per minibatch (drop or merge the short batch)"
            )
        check_minibatch_memory(b, [a.shape[1] for a in xs], [a.shape[1] for a in ys])
        with busy():
            xy, xx, yy = _core.batch_hsic(xs, ys, self._debiased, names_x, names_y)
        with self._lock:
            _check_widths(self._widths, xs, ys, names_x, names_y)  # again: another thread may have set them
            new_xy, new_xx, new_yy = self._xy + xy, self._xx + np.ravel(xx), self._yy + np.ravel(yy)
            with deferred_interrupt() as interrupted:  # the fields change together or not at all
                interrupted.check()
                self._xy, self._xx, self._yy = new_xy, new_xx, new_yy
                self._n += b
                self._batches += 1
                self._widths = ([a.shape[1] for a in xs], [a.shape[1] for a in ys])
        return self

    def merge(self, other: StreamingMinibatchCKA) -> StreamingMinibatchCKA:
        """Absorb the minibatches of ``other`` (which is not modified).

        Parameters
        ----------
        other : StreamingMinibatchCKA
            An accumulator with the same layers, estimator and widths.

        Returns
        -------
        StreamingMinibatchCKA
            The accumulator itself, for chaining.

        Raises
        ------
        TypeError
            ``other`` is not a StreamingMinibatchCKA.
        ValueError
            Different layers, estimator or widths.
        """
        if not isinstance(other, StreamingMinibatchCKA):
            raise TypeError(f"other must be a StreamingMinibatchCKA, got {type(other).__name__}")
        if (self._multi, self._k1, self._k2, self._debiased) != (
            other._multi, other._k1, other._k2, other._debiased
        ):
            raise ValueError("cannot merge minibatch CKA accumulators with different layers or estimators")
        with _both_locked(self, other):
            if self._widths[0] and other._widths[0] and self._widths != other._widths:
                raise ValueError(
                    f"cannot merge accumulators over different widths: {self._widths} and {other._widths}"
                )
            new_xy, new_xx, new_yy = self._xy + other._xy, self._xx + other._xx, self._yy + other._yy
            with deferred_interrupt() as interrupted:  # the fields change together or not at all
                interrupted.check()
                self._xy, self._xx, self._yy = new_xy, new_xx, new_yy
                self._n += other._n
                self._batches += other._batches
                if not self._widths[0]:
                    self._widths = other._widths
        return self

    def result(self) -> Any:
        """Minibatch CKA over the minibatches seen: a similarity, usually in [0, 1].

        Returns
        -------
        float or numpy.ndarray
            The minibatch CKA, or a k1 × k2 array of them for several layers.

        Raises
        ------
        ValueError
            No minibatch added yet, or a summed self-HSIC that is not positive (a constant
            representation).
        """
        with self._lock:
            batches, xy, xx, yy = self._batches, self._xy.copy(), self._xx.copy(), self._yy.copy()
        if batches == 0:
            raise ValueError("no minibatch has been added yet; call update first")
        names = ([f"x[{i}]" for i in range(self._k1)] if self._multi else ["x"],
                 [f"y[{j}]" for j in range(self._k2)] if self._multi else ["y"])
        for side, h in ((0, xx), (1, yy)):
            bad = np.flatnonzero(~(h > 0))
            if bad.size:
                raise ValueError(
                    f"the summed HSIC of {names[side][bad[0]]} with itself is {h[bad[0]]} (not positive) over "
                    f"{batches} minibatches: minibatch CKA is undefined (a constant representation, or too "
                    "few rows for the debiased estimator)"
                )
        # Square roots taken apart: the product of the two sums can leave the float64 range.
        out = xy / np.outer(np.sqrt(xx), np.sqrt(yy))
        lo, hi = bind("minibatch_cka", {"debiased": self._debiased}).value_range
        out = check_range(out, lo, hi, _EPS64, "minibatch CKA")
        return out if self._multi else float(out[0, 0])

    def state(self) -> dict[str, np.ndarray]:
        """The running sums as float64 arrays.

        Returns
        -------
        dict of str to numpy.ndarray
            The fields listed in the class docstring, plus ``debiased``, ``widths_x``, ``widths_y``
            (and ``layers`` for several layers); :meth:`from_state` reads them back.
        """
        with self._lock:
            return self._state_unlocked()

    def _state_unlocked(self) -> dict[str, np.ndarray]:
        out = {
            "n": np.float64(self._n),
            "batches": np.float64(self._batches),
            "debiased": np.float64(self._debiased),
            "hsic_xy": self._xy.copy(),
            "hsic_xx": self._xx.copy(),
            "hsic_yy": self._yy.copy(),
            "widths_x": np.array(self._widths[0], dtype=np.float64),
            "widths_y": np.array(self._widths[1], dtype=np.float64),
        }
        if self._multi:
            out["layers"] = np.array([self._k1, self._k2], dtype=np.float64)
        return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StreamingMinibatchCKA:
        """An accumulator holding the given sums.

        Parameters
        ----------
        state : dict of str to array_like
            Fields as returned by :meth:`state`.

        Returns
        -------
        StreamingMinibatchCKA
            A new accumulator equal to the one whose state was taken.

        Raises
        ------
        TypeError
            ``state`` is not a dict.
        ValueError
            A missing field, a field of the wrong shape, NaN/Inf, a count that is negative, fractional or does not
            fit the rows (each minibatch has at least 4 rows debiased, 2 biased), negative self terms, cross terms
            breaking the Cauchy–Schwarz inequality, or widths that are not positive integers; the message names
            the field.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict of arrays as returned by state(), got {type(state).__name__}")
        get_field = _FieldReader(state)
        kw: dict[str, Any] = {}
        if "layers" in state:
            layers = get_field("layers", 1)
            if layers.shape != (2,) or np.any(layers < 1) or np.any(layers != np.round(layers)):
                raise ValueError(f"state field 'layers' must be two positive integers, got {layers}")
            kw = {"layers_x": int(layers[0]), "layers_y": int(layers[1])}
        flag = float(get_field("debiased", 0))
        if flag not in (0.0, 1.0):
            raise ValueError(f"state field 'debiased' must be 1 (debiased) or 0 (biased), got {state['debiased']!r}")
        acc = cls(debiased=flag == 1.0, **kw)
        n = get_field.count("n")
        xy, xx, yy, batches = _minibatch_terms_of(get_field, ("hsic_xy", "hsic_xx", "hsic_yy", "batches"), acc._k1,
                                                  acc._k2, n, acc._debiased)
        widths = []
        for key, k in (("widths_x", acc._k1), ("widths_y", acc._k2)):
            w = get_field(key, 1)
            if (w.shape != (k,) and not (n == 0 and w.size == 0)) or np.any(w < 1) or np.any(w != np.round(w)):
                raise ValueError(f"state field {key!r} must hold {k} positive integer width(s) (none before any "
                                 f"minibatch), got {w}")
            widths.append([int(v) for v in w])
        if (len(widths[0]) == 0) != (n == 0) or (len(widths[1]) == 0) != (n == 0):
            raise ValueError("state fields 'widths_x' and 'widths_y' must be given once a minibatch was seen, and "
                             "only then")
        acc._xy, acc._xx, acc._yy, acc._n, acc._batches = xy, xx, yy, n, batches
        acc._widths = (widths[0], widths[1])
        return acc

    def __getstate__(self) -> dict[str, Any]:
        return self.state()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(StreamingMinibatchCKA.from_state(state).__dict__)

    def __repr__(self) -> str:
        return f"StreamingMinibatchCKA(debiased={self._debiased}, n_seen={self._n}, n_batches={self._batches})"
