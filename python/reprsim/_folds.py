"""The ``folds`` statistics kind: moments per fold of the rows, for cross-validated measures.

Cross-validated ridge predictivity needs, for every held-out fold, the moments of the training rows
(to fit) and of the held-out rows (to score). Both come from the moments of each fold alone: the
training moments are the other folds' moments merged (Chan et al.'s pairwise update), and every score
of a linear prediction on the held-out rows — Pearson r, R² — is a function of the held-out moments
and the fitted coefficients. So k folds' moments are sufficient statistics, O(k·p²) whatever n.

Folds are contiguous and unshuffled, with scikit-learn's ``KFold`` sizes (the first n mod k folds one
row longer). A stream must therefore know n before it starts (``StreamingSimilarity(n=...)``): row r
of the stream belongs to the fold whose range holds r.

Per fold the statistics are (:class:`FoldMoments`): the row count, the means of x and y, the x
moments (in the neuron basis, or, in memory when x is wider than n, an orthonormal basis of x's row
space — exact, ridge regression being invariant to orthogonal maps of x), the cross-moments and the
diagonal of the y moments (the targets' variances): never y's full q×q moments.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _core
from ._memory import require_memory
from ._stats import NUMPY_SETS, NumpySet, PairSet, reduced_basis, scaled_centred

_EPS64 = float(np.finfo(np.float64).eps)


def fold_bounds(n: int, k: int | None) -> list[tuple[int, int]]:
    """(start, stop) of each of k contiguous folds of n rows with scikit-learn's KFold sizes (the first
    n mod k folds hold n // k + 1 rows, the others n // k); k None: one fold of every row."""
    if k is None:
        return [(0, n)]
    sizes = [n // k + (1 if f < n % k else 0) for f in range(k)]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]


def check_folds_for_n(n: int, k: int | None, what: str = "linear predictivity") -> None:
    """Every held-out fold needs at least 2 rows (a correlation over one row is undefined)."""
    if k is not None and n < 2 * k:
        raise ValueError(
            f"folds={k} needs at least {2 * k} rows (2 per held-out fold) but x and y have n = {n} samples; "
            f"use fewer folds (folds={max(2, n // 2)} or less) or more samples"
        )


@dataclass
class FoldMoments:
    """Moments of each of k folds of one pair (x, y), float64.

    Attributes
    ----------
    counts : numpy.ndarray, shape (k,)
        Rows per fold.
    mean_x, cxx : numpy.ndarray, shapes (k, r) and (k, r, r)
        Per fold: the mean of x's rows and Σ(x − x̄_f)(x − x̄_f)ᵀ over the fold, in an orthonormal basis of
        x's coordinates (the neurons, or x's row space), x scaled by 2^−ex.
    mean_y, vyy : numpy.ndarray, shapes (k, q)
        Per fold: the mean of y's rows and the diagonal of Σ(y − ȳ_f)(y − ȳ_f)ᵀ (each target's sum of
        squares about its fold mean), y scaled by 2^−ey.
    cxy : numpy.ndarray, shape (k, r, q)
        Per fold: Σ(x − x̄_f)(y − ȳ_f)ᵀ.
    ex, ey : int
        The power-of-two exponents of the scales (0 for streamed moments).
    level_y : numpy.ndarray, shape (q,)
        The magnitude of each target's values (|mean| of the scaled y, or 0): a target's variance
        below the rounding of this level is zero.
    """

    counts: np.ndarray
    mean_x: np.ndarray
    cxx: np.ndarray
    mean_y: np.ndarray
    vyy: np.ndarray
    cxy: np.ndarray
    ex: int = 0
    ey: int = 0
    level_y: np.ndarray | None = None

    @property
    def k(self) -> int:
        return int(self.counts.shape[0])


def merge_moments(counts: np.ndarray, means: np.ndarray, moments: np.ndarray, means2: np.ndarray | None = None,
                  ) -> tuple[float, np.ndarray, np.ndarray]:
    """(n, mean, Σ(u − ū)(v − v̄)ᵀ) of the union of groups from each group's count, mean(s) and moments
    (Chan et al.'s pairwise update, summed over groups): the within-group moments plus Σ n_g d_g e_gᵀ
    with d_g, e_g the group means' deviations from the union's."""
    n = float(counts.sum())
    mean = counts @ means / n
    d = means - mean
    if means2 is None:
        e = d
    else:
        e = means2 - counts @ means2 / n
    return n, mean, moments.sum(axis=0) + (d * counts[:, None]).T @ e


# ---------------------------------------------------------------------------------------------
# The numpy producer


class FoldsSet(NumpySet):
    """``folds`` statistics of numpy input: each representation centred once (float64, power-of-two
    scaled), moments per fold formed from its rows."""

    kind = "folds"

    def _x_side(self, i: int, k: int | None) -> dict[str, Any]:
        cache = self.cache_x[i]
        key = ("folds_x", k)
        if key not in cache:
            a, name = self.xs[i], self.names_x[i]
            n, p = a.shape
            wide = p > n
            r = min(n, p)
            require_memory(8.0 * (n * p + (n * n if wide else 0) + (k or 1) * r * r + n * r),
                           f"the per-fold moments of {name} (shape {a.shape})",
                           "reduce the features first (e.g. PCA or pooling), or use fewer samples or folds")
            xc, _, e = scaled_centred(a, name)
            # Ridge regression is invariant to orthogonal maps of x: an x wider than n is taken in an
            # orthonormal basis of its row space (n columns at most), exactly.
            f = reduced_basis(xc) if wide else xc
            bounds = fold_bounds(n, k)
            counts = np.array([b - a_ for a_, b in bounds], dtype=np.float64)
            means = np.stack([f[a_:b].mean(axis=0) for a_, b in bounds])
            cxx = np.empty((len(bounds), f.shape[1], f.shape[1]))
            for g, (a_, b) in enumerate(bounds):
                u = f[a_:b] - means[g]
                cxx[g] = u.T @ u
            cache[key] = {"f": f, "e": e, "counts": counts, "means": means, "cxx": cxx, "bounds": bounds}
        return cache[key]

    def _y_side(self, j: int, k: int | None) -> dict[str, Any]:
        cache = self.cache_y[j]
        key = ("folds_y", k)
        if key not in cache:
            a, name = self.ys[j], self.names_y[j]
            n, q = a.shape
            require_memory(8.0 * (2 * n * q + 2 * (k or 1) * q), f"the per-fold moments of {name} (shape {a.shape})",
                           "use fewer targets or samples")
            yc, mean, e = scaled_centred(a, name)
            bounds = fold_bounds(n, k)
            means = np.stack([yc[a_:b].mean(axis=0) for a_, b in bounds])
            vyy = np.stack([((yc[a_:b] - means[g]) ** 2).sum(axis=0) for g, (a_, b) in enumerate(bounds)])
            cache[key] = {"g": yc, "e": e, "means": means, "vyy": vyy, "level": np.abs(mean)}
        return cache[key]

    def folds(self, i: int, j: int, k: int | None) -> FoldMoments:
        def compute() -> FoldMoments:
            sx, sy = self._x_side(i, k), self._y_side(j, k)
            f, g = sx["f"], sy["g"]
            require_memory(8.0 * len(sx["bounds"]) * f.shape[1] * g.shape[1],
                           f"the per-fold cross-moments of {self.names_x[i]} and {self.names_y[j]}",
                           "use fewer targets, features or folds")
            cxy = np.empty((len(sx["bounds"]), f.shape[1], g.shape[1]))
            for h, (a_, b) in enumerate(sx["bounds"]):
                cxy[h] = (f[a_:b] - sx["means"][h]).T @ (g[a_:b] - sy["means"][h])
            return FoldMoments(sx["counts"], sx["means"], sx["cxx"], sy["means"], sy["vyy"], cxy, sx["e"], sy["e"],
                               sy["level"])

        return self.bulk(("folds", i, j, k), compute)


NUMPY_SETS["folds"] = FoldsSet


# ---------------------------------------------------------------------------------------------
# Per-fold moments from C++ stream states (StreamingSimilarity)


def fold_moments_from_raw(raws: Sequence[dict[str, Any]], i: int, j: int, k2: int) -> FoldMoments:
    """FoldMoments of pair (i, j) from one ``StreamState.to_dict()`` per fold (neuron basis, no scaling)."""
    counts = np.array([float(r["n"]) for r in raws])
    mean_x = np.stack([np.asarray(r["mean_x"][i]) for r in raws])
    mean_y = np.stack([np.asarray(r["mean_y"][j]) for r in raws])
    cxx = np.stack([np.asarray(r["cxx"][i]) for r in raws])
    vyy = np.stack([np.diag(np.asarray(r["cyy"][j])) for r in raws])
    cxy = np.stack([np.asarray(r["cxy"][i * k2 + j]) for r in raws])
    _, mean, _ = merge_moments(counts, mean_y, np.zeros((len(raws), 1, 1)))
    return FoldMoments(counts, mean_x, cxx, mean_y, vyy, cxy, 0, 0, np.abs(mean))


# ---------------------------------------------------------------------------------------------
# Ridge predictivity from per-fold moments


class SkippedTargetsWarning(UserWarning):
    """Targets of linear predictivity were left out: their variance is zero on a held-out fold (or on
    every row), where a correlation or R² is undefined. :func:`reprsim.predictivity_scores` lists them."""


@dataclass(frozen=True, eq=False)
class PredictivityResult:
    """Result of :func:`reprsim.predictivity_scores`: linear predictivity and its parts.

    Attributes
    ----------
    value : float
        What :func:`reprsim.linear_predictivity` returns: the mean over folds of the aggregate (median by
        default) over targets of the held-out scores.
    fold_values : numpy.ndarray, shape (k,)
        The aggregate over targets of each held-out fold.
    scores : numpy.ndarray, shape (k, q)
        Each target's held-out score per fold (Pearson r or R²); NaN where the target was left out.
    valid : numpy.ndarray of bool, shape (k, q)
        Where a score exists: False for a target whose variance is zero on that held-out fold.
    skipped : numpy.ndarray of int
        The targets left out of at least one fold.
    alpha : float or numpy.ndarray
        The ridge penalty used: the one given, the grid's choice (one for every target), or with
        ``alpha_per_target`` a (k, q) array of each fold's choice per target.
    alphas : numpy.ndarray
        The grid of penalties considered.
    criterion : numpy.ndarray
        For a grid chosen over the folds: the mean over folds of each penalty's aggregate score (the
        value is its maximum); otherwise the value alone.
    folds : int or None
        Number of folds (None: in-sample).
    score, aggregate : str
        The options used.
    """

    value: float
    fold_values: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)
    valid: np.ndarray = field(repr=False)
    skipped: np.ndarray = field(repr=False)
    alpha: Any
    alphas: np.ndarray = field(repr=False)
    criterion: np.ndarray = field(repr=False)
    folds: int | None
    score: str
    aggregate: str


def _rank_floor(w: np.ndarray, count: float) -> float:
    """Eigenvalues of float64 moments at or below this are rounding: the top one times max(n, r)·ε₆₄."""
    top = float(w[-1]) if w.size else 0.0
    return top * max(count, w.size) * _EPS64 if top > 0.0 else 0.0


def _inverse(w: np.ndarray, alpha: float, floor: float, scale_free: bool) -> np.ndarray:
    """1/(λ + α) for each eigenvalue λ of the training moments, over the numerical rank: directions the
    float64 moments do not resolve (λ at or below ``floor``) are left out of the fit for every α (with
    α = 0 this is the pseudo-inverse). ``scale_free``: the same up to a common factor, normalised to a
    largest entry of 1, which stays defined when α is too large for float64 (the limit: coefficients
    along the cross-moments) — for scores invariant to the scale of the predictions (Pearson r)."""
    out = np.zeros_like(w)
    keep = w > floor
    if not keep.any():
        return out
    if math.isinf(alpha):
        out[keep] = 1.0 if scale_free else 0.0
        return out
    out[keep] = 1.0 / (w[keep] + alpha)
    if scale_free:
        out[keep] = (w[keep].min() + alpha) / (w[keep] + alpha)
    return out


def _train_moments(fm: FoldMoments, test: int | None, exclude: Sequence[int] = ()) -> tuple[float, np.ndarray,
                                                                                          np.ndarray]:
    """(n, mean, moments) of x over the training folds: every fold but the held-out one and ``exclude``."""
    train = [g for g in range(fm.k) if g != test and g not in exclude]
    return merge_moments(fm.counts[train], fm.mean_x[train], fm.cxx[train])


class _Fold:
    """One held-out fold's training fit (eigendecomposition of the training x moments) and the held-out
    moments rotated into its eigenbasis."""

    def __init__(self, fm: FoldMoments, test: int | None, exclude: Sequence[int] = (), eig: Any = None) -> None:
        k = fm.k
        train = [g for g in range(k) if g != test and g not in exclude]
        counts = fm.counts[train]
        self.n_train, mx_tr, cxx_tr = _train_moments(fm, test, exclude)
        _, _, cxy_tr = merge_moments(counts, fm.mean_x[train], fm.cxy[train], fm.mean_y[train])
        my_tr = counts @ fm.mean_y[train] / self.n_train
        if eig is None:
            w, v = np.linalg.eigh(cxx_tr)
        else:
            w, v = eig
        self.eig = (w, v)
        self.w, self.floor = w, _rank_floor(w, self.n_train)
        t = test if test is not None else 0
        if test is None:  # in-sample: the fit is scored on its own rows
            cxx_te, cxy_te, n_te = cxx_tr, cxy_tr, self.n_train
            dmx, dmy = np.zeros(v.shape[0]), np.zeros(fm.mean_y.shape[1])
            self.vyy = self._merged_vyy(fm, train)
        else:
            cxx_te, cxy_te, n_te = fm.cxx[t], fm.cxy[t], float(fm.counts[t])
            dmx, dmy = fm.mean_x[t] - mx_tr, fm.mean_y[t] - my_tr
            self.vyy = fm.vyy[t]
        self.n_test = n_te
        self.p = v.T @ cxy_tr  # training cross-moments in the eigenbasis
        self.b = v.T @ cxy_te  # held-out cross-moments
        self.a = v.T @ cxx_te @ v  # held-out x moments
        self.dmx = v.T @ dmx
        self.dmy = dmy

    @staticmethod
    def _merged_vyy(fm: FoldMoments, groups: list[int]) -> np.ndarray:
        counts = fm.counts[groups]
        n = counts.sum()
        mean = counts @ fm.mean_y[groups] / n
        return fm.vyy[groups].sum(axis=0) + counts @ (fm.mean_y[groups] - mean) ** 2

    def scores(self, h: np.ndarray, score: str) -> np.ndarray:
        """Each target's held-out score for coefficients G = diag(h)·P (h: r, or r × q per target)."""
        g = self.p * (h if h.ndim == 2 else h[:, None])
        num = np.einsum("ij,ij->j", g, self.b)
        var = np.einsum("ij,ij->j", g, self.a @ g)
        if score == "pearson":
            den = np.sqrt(np.maximum(var, 0.0) * self.vyy)
            with np.errstate(invalid="ignore", divide="ignore"):
                r = np.where(den > 0.0, num / np.where(den > 0.0, den, 1.0), 0.0)
            return r
        shift = self.dmy - self.dmx @ g
        ss_res = self.vyy - 2.0 * num + var + self.n_test * shift * shift
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1.0 - ss_res / np.where(self.vyy > 0.0, self.vyy, 1.0)


def _scaled_penalty(alpha: float, ex: int) -> float:
    """The penalty of the problem on 2^−ex·x that gives the same predictions: α·2^(−2·ex) (inf beyond
    float64, 0 below it)."""
    try:
        return math.ldexp(alpha, -2 * ex)
    except OverflowError:
        return math.inf


def _aggregate(s: np.ndarray, valid: np.ndarray, how: str) -> np.ndarray:
    """Median or mean over the valid targets, along the last axis (s: ... × q, valid: q)."""
    v = s[..., valid]
    return np.median(v, axis=-1) if how == "median" else v.mean(axis=-1)


def _check_scores(s: np.ndarray, score: str) -> np.ndarray:
    """Correlations within rounding of ±1 are ±1; beyond it an error (R² is at most 1 alike)."""
    if not np.all(np.isfinite(s)):
        raise FloatingPointError("linear predictivity came out non-finite; please report this input")
    slack = 1e-8
    if np.any(s > 1.0 + slack) or (score == "pearson" and np.any(s < -1.0 - slack)):
        raise FloatingPointError(f"a held-out score came out as {s.max()!r}, beyond 1 by more than rounding; "
                                 "please report this input")
    return np.clip(s, -1.0 if score == "pearson" else -np.inf, 1.0)


def ridge_predictivity(fm: FoldMoments, *, alphas: Sequence[float], grid: bool, per_target: bool, score: str,
                       aggregate: str, folds: int | None, cache: dict[Any, Any] | None = None,
                       names: tuple[str, str] = ("x", "y")) -> PredictivityResult:
    """Cross-validated (or in-sample) ridge predictivity from per-fold moments; see
    :func:`reprsim.linear_predictivity` for the definition."""
    k = fm.k
    cache = {} if cache is None else cache
    # x was scaled by 2^−ex: the penalty of the scaled problem that gives the same predictions.
    scaled = [_scaled_penalty(a, fm.ex) for a in alphas]
    free = score == "pearson"
    q = fm.vyy.shape[1]
    tests: list[int | None] = [None] if folds is None else list(range(k))

    def fits_of(splits: list[tuple[int | None, tuple[int, ...]]]) -> list[_Fold]:
        """The fits of these (held-out fold, excluded folds), their training eigendecompositions computed
        side by side on the BLAS's threads and cached with x (every y reuses them)."""
        keys = [("ridge_eig", folds, t, ex) for t, ex in splits]
        missing = [i for i, key in enumerate(keys) if key not in cache]
        if missing:
            mats = [_train_moments(fm, *splits[i])[2] for i in missing]
            for i, (w, v) in zip(missing, _core.symmetric_eigens(mats, _core.get_num_threads())):
                cache[keys[i]] = (np.asarray(w).ravel(), np.asarray(v))
        out = []
        for (t, ex), key in zip(splits, keys):
            fd = _Fold(fm, t, ex, cache[key])
            if not fd.w.size or fd.w[-1] <= 0.0:
                where = " on its training rows" if t is not None else ""
                raise ValueError(f"{names[0]} has zero variance{where} (every column constant): linear predictivity "
                                 "is undefined")
            out.append(fd)
        return out

    def fold(test: int | None, exclude: tuple[int, ...] = ()) -> _Fold:
        return fits_of([(test, exclude)])[0]

    # Targets whose variance on a held-out fold is zero (within the rounding of their values) are left out
    # of that fold.
    level = np.zeros(q) if fm.level_y is None else fm.level_y
    fits = fits_of([(t, ()) for t in tests])
    valid = np.array([fd.vyy > fd.n_test * (16.0 * _EPS64 * (level + np.abs(fm.mean_y[t or 0]))) ** 2
                      for t, fd in zip(tests, fits)])
    for row, t in zip(valid, tests):
        if not row.any():
            where = f" on the held-out rows of fold {t}" if t is not None else ""
            raise ValueError(f"{names[1]} has zero variance{where} (every target constant): linear predictivity "
                             "is undefined")

    if per_target:
        scores = np.empty((k, q))
        chosen = np.empty((k, q))
        for t, fd in zip(tests, fits):
            assert t is not None
            inner = [g for g in range(k) if g != t]
            crit = np.zeros((len(scaled), q))
            weight = np.zeros(q)
            for g, fi in zip(inner, fits_of([(g, (t,)) for g in inner])):
                ok = fi.vyy > fi.n_test * (16.0 * _EPS64 * (level + np.abs(fm.mean_y[g]))) ** 2
                for a_i, a in enumerate(scaled):
                    crit[a_i] += np.where(ok, _check_scores(fi.scores(_inverse(fi.w, a, fi.floor, free), score),
                                                            score), 0.0)
                weight += ok
            best = np.argmax(crit / np.maximum(weight, 1.0), axis=0)  # first of equals, in the given order
            h = np.stack([_inverse(fd.w, a, fd.floor, free) for a in scaled], axis=1)[:, best]
            scores[t] = _check_scores(fd.scores(h, score), score)
            chosen[t] = np.asarray(alphas)[best]
        fold_values = np.array([_aggregate(scores[t], valid[t], aggregate) for t in range(k)])
        value = float(fold_values.mean())
        alpha_out: Any = chosen
        criterion = np.array([value])
    else:
        all_scores = np.stack([
            np.stack([_check_scores(fd.scores(_inverse(fd.w, a, fd.floor, free), score), score) for a in scaled])
            for fd in fits])  # folds × alphas × targets
        per_fold = np.stack([_aggregate(all_scores[f], valid[f], aggregate) for f in range(len(fits))])  # folds × alphas
        criterion = per_fold.mean(axis=0)
        best = int(np.argmax(criterion)) if grid else 0
        scores = all_scores[:, best, :]
        fold_values = per_fold[:, best]
        value = float(criterion[best])
        alpha_out = float(alphas[best])
    skipped = np.flatnonzero(~valid.all(axis=0))
    out_scores = np.where(valid, scores, np.nan)
    return PredictivityResult(value, fold_values, out_scores, valid, skipped, alpha_out,
                              np.asarray(alphas, dtype=np.float64), criterion, folds, score, aggregate)


def warn_skipped(result: PredictivityResult) -> None:
    """Say that targets were left out. One text for every call, so that Python's default warning filter shows
    it once per session (pairwise matrices of ReLU layers would repeat it for every pair); the count and the
    columns are in the result (:func:`reprsim.predictivity_scores`)."""
    if result.skipped.size:
        warnings.warn(SkippedTargetsWarning(
            "linear predictivity left out targets of y with zero variance on a held-out fold (constant columns, "
            "e.g. dead units) from those folds' aggregates; reprsim.predictivity_scores gives their count and "
            "columns (PredictivityResult.skipped)"), stacklevel=2)


# ---------------------------------------------------------------------------------------------
# Per-fold moments of a stream (StreamingSimilarity with n known in advance)


class FoldStream:
    """Moments of each of k contiguous folds of a stream of n rows (row r of the stream goes to the fold whose
    range holds r), one C++ stream state per fold; batches that arrive on a device are accumulated there
    per fold, with float64 products. Every row of the stream is in exactly one fold, so the merge of the
    fold states is the moments of all rows."""

    def __init__(self, k1: int, k2: int, n: int, k: int) -> None:
        from . import _core

        if n < 2 * k:
            raise ValueError(f"folds={k} needs at least {2 * k} rows (2 per held-out fold), but the accumulator was "
                             f"told n={n}; use fewer folds or stream more rows")
        self.k1, self.k2, self.n, self.k = k1, k2, n, k
        self.bounds = fold_bounds(n, k)
        self.states = [_core.StreamState(k1, k2) for _ in range(k)]
        self.device: list[Any] = [None] * k
        self.device_eps = 0.0
        self.pos = 0

    def _pieces(self, b: int) -> list[tuple[int, int, int]]:
        """(fold, start, stop) of the batch rows [0, b) that fall in each fold, at the current position."""
        if self.pos + b > self.n:
            raise ValueError(f"this batch of {b} rows would bring the accumulator to {self.pos + b} rows, more than the "
                             f"n={self.n} it was told (the folds of cross-validated measures are placed from n): "
                             "pass the right n, or stop the stream")
        out = []
        for f, (a, c) in enumerate(self.bounds):
            lo, hi = max(a, self.pos), min(c, self.pos + b)
            if lo < hi:
                out.append((f, lo - self.pos, hi - self.pos))
        return out

    def add(self, xs: list[np.ndarray], ys: list[np.ndarray], names_x: list[str], names_y: list[str]) -> None:
        """One batch of numpy rows: each fold's share absorbed into its state (all or nothing)."""
        from . import _core

        pieces = self._pieces(xs[0].shape[0])
        parts = []
        for f, a, c in pieces:
            st = _core.StreamState(self.k1, self.k2)
            st.update([x[a:c] for x in xs], [y[a:c] for y in ys], names_x, names_y)
            parts.append((f, st))
        for f, st in parts:
            self.states[f].absorb(st)
        self.pos += xs[0].shape[0]

    def add_device(self, backend: Any, xs: list[Any], ys: list[Any], eps: float) -> None:
        """One batch of device tensors: each fold's share merged into that fold's device moments."""
        pieces = self._pieces(int(xs[0].shape[0]))
        for f, a, c in pieces:
            if self.device[f] is None:
                self.device[f] = backend.device_accumulator(self.k1, self.k2, False, True)
            self.device[f].update([x[a:c] for x in xs], [y[a:c] for y in ys])
        self.device_eps = max(self.device_eps, eps)
        self.pos += int(xs[0].shape[0])

    def _flush_device(self) -> None:
        from . import _core

        for f, dev in enumerate(self.device):
            if dev is not None and dev.n > 0:
                on_device = dev.export(self.device_eps)
                self.states[f] = on_device if self.states[f].n == 0 else self.states[f].merged(on_device)
            self.device[f] = None

    def raws(self) -> list[dict[str, Any]]:
        self._flush_device()
        return [st.to_dict() for st in self.states]

    def merged(self) -> Any:
        """The moments of every row seen (the fold states merged)."""
        from . import _core

        self._flush_device()
        out = _core.StreamState(self.k1, self.k2)
        for st in self.states:
            if st.n:
                out = st if out.n == 0 else out.merged(st)
        return out

    def check_complete(self, k: int) -> None:
        if k != self.k:
            raise ValueError(f"the accumulator keeps moments of {self.k} folds, not folds={k}: pass folds={self.k}, or "
                             "create the accumulator with folds=" + str(k))
        if self.pos != self.n:
            raise ValueError(f"the accumulator was told n={self.n} rows but has seen {self.pos}: the folds of "
                             "cross-validated measures are placed from n, so every row must arrive first")


class FoldStateSet(PairSet):
    """``folds`` statistics of an accumulator: per-fold stream states (or, for in-sample scores, the
    moments of every row as one fold)."""

    kind = "folds"

    def __init__(self, raws: list[dict[str, Any]], k: int | None, k1: int, k2: int, names_x: list[str],
                 names_y: list[str]) -> None:
        n = int(sum(float(r["n"]) for r in raws))
        super().__init__(k1, k2, names_x, names_y, n, _EPS64)
        self.raws, self.k_folds = raws, k

    def folds(self, i: int, j: int, k: int | None) -> FoldMoments:
        if k != self.k_folds:  # pragma: no cover - the accumulator checks the fold count first
            raise ValueError(f"these statistics hold {self.k_folds} folds, not {k}")
        return self.bulk(("folds", i, j), lambda: fold_moments_from_raw(self.raws, i, j, self.k2))


def heldout_predictions(x: np.ndarray, y: np.ndarray, alpha: float, folds: int | None) -> np.ndarray:
    """Every row's prediction by the ridge fit on the other folds (in-sample: on every row), from the same
    per-fold moments and eigendecompositions the measure uses, in y's units: for checks against other
    implementations (bench/measures.py and the tests)."""
    from ._validation import as_pair

    xa, ya = as_pair(x, y, min_n=3, what="linear predictivity")
    pset = FoldsSet([xa], [ya], ["x"], ["y"])
    fm = pset.folds(0, 0, folds)
    sx = pset._x_side(0, folds)
    f = sx["f"]  # x's coordinates, centred and scaled by 2^−ex
    out = np.empty(ya.shape, dtype=np.float64)
    a = _scaled_penalty(alpha, fm.ex)
    _, my_all, ey = scaled_centred(ya, "y")
    tests: list[int | None] = [None] if folds is None else list(range(fm.k))
    for t in tests:
        fd = _Fold(fm, t)
        w, v = fd.eig
        coef = v @ (fd.p * _inverse(w, a, fd.floor, False)[:, None])  # scaled units: 2^−ey·y from 2^−ex·x
        train = [g for g in range(fm.k) if g != t]
        counts = fm.counts[train]
        mx_tr = counts @ fm.mean_x[train] / counts.sum()
        my_tr = counts @ fm.mean_y[train] / counts.sum()
        rows = slice(0, xa.shape[0]) if t is None else slice(*sx["bounds"][t])
        pred = (f[rows] - mx_tr) @ coef + my_tr  # centred, scaled y
        out[rows] = np.ldexp(pred + my_all, ey)
    return out
