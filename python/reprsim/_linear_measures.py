"""The field's other linear measures, as finalisers over the moments (and per-fold moments).

- ``shape`` — generalized shape metrics (Williams, Kunz, Kornblith & Linderman 2021): partial whitening,
  then the best orthogonal alignment, angular or Euclidean;
- ``nbs`` and ``bures`` — normalized Bures similarity and the Bures distance of linear kernels (Harvey,
  Larsen & Williams 2024);
- ``gulp`` — the distance between the two representations' best ridge predictors (Boix-Adserà,
  Lawrence, Stepaniants & Rigollet 2022);
- ``permutation`` — the best one-to-one matching of neurons (netrep's PermutationMetric);
- ``soft_matching`` — optimal transport between neurons (Khosla & Williams 2023);
- ``predictivity`` — cross-validated ridge regression from x to each column of y (the ``folds`` kind).

Every one of them is a function of the moment statistics, so each has every path: in memory, pairwise
(each representation's eigendecomposition or whitening done once), streamed, on a device, in inference.
Measures invariant to orthogonal maps read ``blocks()`` (each side in an orthonormal basis of its own);
the matching measures read ``coordinates()`` (the neuron basis). For numpy input the whitening-type
measures have a bulk path over the rows: each representation is transformed once (float64), and the
cross-products of every pair are formed in the input dtype from the transformed rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from . import _core
from ._folds import check_folds_for_n, ridge_predictivity, warn_skipped
from ._memory import require_memory
from ._registry import (
    ISOTROPIC_SCALING,
    ORTHOGONAL,
    PERMUTATION,
    TRANSLATION,
    Bound,
    Measure,
    Option,
    check_bool,
    check_choice,
    check_real,
    register,
)
from ._stats import MomentsSet, PairSet, reduced_basis, rounding_slack, scaled_centred

_EPS64 = float(np.finfo(np.float64).eps)
_HALF_PI = math.pi / 2
_ROT = frozenset({ORTHOGONAL, ISOTROPIC_SCALING, TRANSLATION, PERMUTATION})
_ROT_NO_SCALE = frozenset({ORTHOGONAL, TRANSLATION, PERMUTATION})


# ---------------------------------------------------------------------------------------------
# Shared pieces


def rank_floor(w: np.ndarray, size: float) -> float:
    """Eigenvalues of float64 moments (ascending) at or below this are rounding, not variance: the largest
    one times max(n, p)·ε₆₄ (what float64 cross-products resolve: singular values down to √(max(n, p)·ε₆₄)
    of the largest)."""
    top = float(w[-1]) if w.size else 0.0
    return top * float(size) * _EPS64 if top > 0.0 else 0.0


def _sqrt_ratio_norms(a: float, ea: int, b: float, eb: int, sin_half: float) -> float:
    """√((A − B)² + 4AB·sin²(θ/2)) for A = a·2^ea, B = b·2^eb (= √(A² + B² − 2AB cos θ), without the
    cancellation of the cosine form near θ = 0 and without leaving the float64 range in between)."""
    m = max(ea, eb)
    a_, b_ = math.ldexp(a, ea - m), math.ldexp(b, eb - m)
    return math.ldexp(math.sqrt((a_ - b_) ** 2 + 4.0 * a_ * b_ * sin_half * sin_half), m)


def _log2_scale(s: float) -> int:
    """The exponent of a power-of-two scale the C++ kernels applied (1 → 0)."""
    m, e = math.frexp(s)
    return e - 1 if m == 0.5 else int(round(math.log2(s)))


def _norms_from_sums(pair: Any) -> tuple[float, int, float, int]:
    """(‖Xc‖ = a·2^ea, ‖Yc‖ = b·2^eb) from the CKA sums (traces of the scaled inputs' moments)."""
    s = pair.sums(False)
    for name, t in ((pair.name_x, s["tx"]), (pair.name_y, s["ty"])):
        if t == 0.0:
            raise ValueError(f"{name} has zero variance (every column is constant over the {int(s['n'])} rows): "
                             "the measure is undefined for a constant representation")
    return (math.sqrt(s["tx"]), -_log2_scale(s["scale_x"]), math.sqrt(s["ty"]), -_log2_scale(s["scale_y"]))


class _Side:
    """One representation's moments in an orthonormal basis of its own: C = FᵀF (float64, of the input
    scaled by 2^−e), its eigendecomposition, and, for numpy input, the factor rows F (:meth:`rows`)."""

    def __init__(self, c: np.ndarray, n: int, width: int, e: int, dtype: Any = None,
                 source: tuple[np.ndarray, str] | None = None, basis: np.ndarray | None = None) -> None:
        self.c, self.n, self.width, self.e, self.dtype = c, n, width, e, dtype
        self._source, self._basis = source, basis
        self._eig: tuple[np.ndarray, np.ndarray] | None = None
        self.trace = float(np.trace(c))

    @property
    def has_rows(self) -> bool:
        return self._source is not None

    def rows(self) -> np.ndarray:
        """F: the centred, scaled float64 rows (recomputed when asked: a layer matrix keeps only each
        representation's transformed rows), or the n-column basis of a representation wider than n (kept)."""
        if self._basis is not None:
            return self._basis
        assert self._source is not None
        return scaled_centred(*self._source)[0]

    @property
    def eig(self) -> tuple[np.ndarray, np.ndarray]:
        if self._eig is None:
            _eigens([self])
        assert self._eig is not None
        return self._eig

    @property
    def floor(self) -> float:
        return rank_floor(self.eig[0], max(self.n, self.width))


def _side(pset: PairSet, role: str, index: int) -> _Side:
    """The side of representation ``index`` of the x or y list, computed once per representation."""
    cache = (pset.cache_x if role == "x" else pset.cache_y)[index]
    if "lm_side" not in cache:
        if isinstance(pset, MomentsSet):
            a = (pset.xs if role == "x" else pset.ys)[index]
            name = (pset.names_x if role == "x" else pset.names_y)[index]
            n, p = a.shape
            require_memory(8.0 * (2 * n * min(n, p) + min(n, p) ** 2 + n * p),
                           f"the moments of {name} (shape {a.shape})", "reduce the features first, or use fewer samples")
            xc, _, e = scaled_centred(a, name)
            basis = reduced_basis(xc) if p > n else None
            f = xc if basis is None else basis
            cache["lm_side"] = _Side(f.T @ f, n, p, e, a.dtype, (a, name), basis)
        else:
            pair = pset.pair(index, 0) if role == "x" else pset.pair(0, index)
            cxx, cyy, _ = pair.blocks()
            ex, ey = pair.exponents()
            c, e = (cxx, ex) if role == "x" else (cyy, ey)
            cache["lm_side"] = _Side(np.asarray(c, dtype=np.float64), pset.n, c.shape[0], e)
    return cache["lm_side"]


def _eigens(sides: list[_Side]) -> None:
    """The eigendecompositions of the sides not yet decomposed, side by side on the BLAS's threads."""
    todo = [sd for sd in sides if sd._eig is None]
    if todo:
        for sd, (w, v) in zip(todo, _core.symmetric_eigens([sd.c for sd in todo], _core.get_num_threads())):
            sd._eig = (np.maximum(np.asarray(w).ravel(), 0.0), np.asarray(v))


def transformed_cross(pset: PairSet, key: Any, transform: Callable[[_Side], np.ndarray], reduce: str) -> np.ndarray:
    """``reduce(Tᵢᵀ·Cxy·Tⱼ)`` for every pair (k1 × k2), with T = ``transform(side)`` computed once per
    representation (cached under ``key``) and Cxy the pair's cross-moments in the sides' bases;
    ``reduce`` is "nuclear" (the sum of the singular values) or "fro2" (the squared Frobenius norm).

    numpy input: each representation's rows are transformed once, Φ = F·T in float64, kept in the input
    dtype, and Φᵢᵀ·Φⱼ is one product per pair (float32 inputs: a float32 product of whitened rows, whose
    rounding is relative to the whitened values, so no direction is amplified after it, and its singular
    values in float32, summed in float64). Other sets
    (streamed moments, device tensors): Tᵢᵀ·Cxy·Tⱼ from the float64 blocks. The eigendecompositions of
    every representation, and the SVDs of each row of the matrix, run side by side on the BLAS's threads
    (``reprsim.set_num_threads``), each on one thread."""
    rows = isinstance(pset, MomentsSet)
    threads = _core.get_num_threads()

    def t_of(role: str, index: int) -> np.ndarray:
        side = _side(pset, role, index)
        cache = (pset.cache_x if role == "x" else pset.cache_y)[index]
        tkey = ("lm_T", key)
        if tkey not in cache:
            t = transform(side)
            cache[tkey] = (side.rows() @ t).astype(side.dtype, copy=False) if side.has_rows else t
        return cache[tkey]

    def compute() -> np.ndarray:
        sides = [_side(pset, "x", i) for i in range(pset.k1)] + [_side(pset, "y", j) for j in range(pset.k2)]
        if rows:
            # Every representation's transformed rows are kept (n × rank each, in the input dtype), plus one float64
            # copy of a representation at a time.
            distinct = sides[: pset.k1] if pset.same else sides
            need = sum(sd.n * sd.c.shape[0] * np.dtype(sd.dtype).itemsize for sd in distinct)
            need += 16.0 * max(sd.n * sd.c.shape[0] for sd in sides)
            require_memory(need, f"the transformed rows of {len(distinct)} representations",
                           "compare fewer representations per call (blocks of the matrix), or use fewer samples",
                           "each representation's whitened rows are kept for every pair")
        _eigens(sides)
        out = np.empty((pset.k1, pset.k2))
        for i in range(pset.k1):
            ti = t_of("x", i)
            cols = [j for j in range(pset.k2) if not (pset.same and j < i)]
            mats = []
            for j in cols:
                tj = t_of("y", j)
                mats.append(ti.T @ tj if rows else ti.T @ pset.blocks(i, j)[2] @ tj)
            if reduce == "nuclear" and mats and all(m.dtype == np.float32 for m in mats):
                # a float32 product of float32 rows: its singular values in float32 (sgesdd) add rounding of the
                # product's own order
                vals = _core.nuclear_norms_f32(mats, threads)
            elif reduce == "nuclear":
                vals = _core.nuclear_norms([np.asarray(m, dtype=np.float64) for m in mats], threads) if mats else []
            else:
                vals = [float(np.einsum("ij,ij->", m, m, dtype=np.float64)) for m in mats]
            for j, v in zip(cols, vals):
                out[i, j] = v
            for j in range(pset.k2):
                if pset.same and j < i:
                    out[i, j] = out[j, i]
        return out

    return pset.bulk(("lm_cross", key), compute)


# ---------------------------------------------------------------------------------------------
# Generalized shape metrics (Williams et al. 2021)


def _shape_d(side: _Side, alpha: float) -> np.ndarray:
    """Diagonal of the partial whitening α·I + (1 − α)·(XcᵀXc)^{+1/2} in the eigenbasis of the moments
    (pseudo-inverse square root on the numerical rank: directions at rounding level are left at α).

    The moments C are those of 2^−e·x: (XcᵀXc)^{−1/2} = 2^−e·C^{−1/2}, and φ(x) = 2^e·(2^−e·Xc)·diag(d)
    (the factor 2^e cancels in the angle; the Euclidean form rescales φ anyway). For 0 < α < 1 the mix
    depends on the data's scale, as netrep's does."""
    w, _ = side.eig
    keep = w > side.floor
    d = np.full(w.shape, alpha)
    d[keep] += np.ldexp((1.0 - alpha) / np.sqrt(w[keep]), -side.e)
    return d


def _shape_parts(pair: Any, alpha: float) -> tuple[float, float, float]:
    """(‖φxᵀφy‖_*, ‖φx‖_F, ‖φy‖_F) of the partially whitened, centred inputs (scaled by 2^−e)."""

    def transform(side: _Side) -> np.ndarray:
        w, v = side.eig
        d = _shape_d(side, alpha)
        keep = d > 0.0  # α = 0: the null space maps to 0
        return v[:, keep] * d[keep]

    nuc = transformed_cross(pair.set, ("shape", alpha), transform, "nuclear")[pair.i, pair.j]
    norms = []
    for role, index, name in (("x", pair.i, pair.name_x), ("y", pair.j, pair.name_y)):
        side = _side(pair.set, role, index)
        w, _ = side.eig
        if not w.size or w[-1] <= 0.0:
            raise ValueError(f"{name} has zero variance (every column is constant over the {side.n} rows): the shape "
                             "distance is undefined for a constant representation")
        d = _shape_d(side, alpha)
        norms.append(math.sqrt(float(w @ (d * d))))
    return float(nuc), norms[0], norms[1]


def _shape_cos(pair: Any, b: Bound) -> tuple[float, float]:
    """(cos θ, sin(θ/2)) of the angle between the aligned, partially whitened inputs."""
    if b["alpha"] == 1.0:
        theta = pair.angle()  # plain Procrustes: the compiled kernels
        return math.cos(theta), math.sin(theta / 2.0)
    nuc, nx, ny = _shape_parts(pair, b["alpha"])
    cos = nuc / nx / ny
    if cos > 1.0 + rounding_slack(pair.eps):
        raise FloatingPointError(f"the shape metric's cosine came out as {cos}, above 1 beyond rounding; please "
                                 "report this input")
    cos = min(cos, 1.0)
    return cos, math.sqrt((1.0 - cos) / 2.0)


def _shape(pair: Any, b: Bound) -> float:
    cos, sin_half = _shape_cos(pair, b)
    if b["form"] == "angular":
        return 2.0 * math.asin(min(sin_half, 1.0)) if b["alpha"] != 1.0 else pair.angle()
    # Euclidean: φ rescaled to ‖Xc‖_F, so min_Q ‖φx − φyQ‖ = √(‖Xc‖² + ‖Yc‖² − 2‖Xc‖‖Yc‖cos θ).
    a, ea, c, ec = _norms_from_sums(pair)
    return _sqrt_ratio_norms(a, ea, c, ec, sin_half)


def _shape_ranges(b: Bound) -> tuple[tuple[float, float], tuple[float, float]]:
    r = (0.0, _HALF_PI) if b["form"] == "angular" else (0.0, math.inf)
    return r, r


_FORMS = ("angular", "euclidean")

register(Measure(
    name="shape", title="the shape distance", function="shape_distance", value_kind="distance",
    statistics="moments", value=_shape, distance=_shape,
    definition="generalized shape metric: φ_α(X) = Xc(αI + (1−α)(XcᵀXc)^{−1/2}) (pseudo-inverse square root on the "
    "numerical rank), then the best orthogonal alignment; form='angular': arccos(‖φxᵀφy‖_*/(‖φx‖_F‖φy‖_F)), "
    "form='euclidean': min_Q ‖φx − φyQ‖_F with φ rescaled to ‖Xc‖_F",
    distance_definition="the value itself",
    range=(0.0, _HALF_PI), value_range=(0.0, _HALF_PI), symmetric=True, is_metric=True,
    invariances=_ROT, estimator="exact", reference="Williams, Kunz, Kornblith & Linderman 2021 (netrep)",
    options=(
        Option("alpha", 1.0, check_real("alpha", low=0.0, high=1.0),
               "partial whitening in [0, 1]: 1 rotations only (angular Procrustes), 0 full whitening (CCA-like)"),
        Option("form", "angular", check_choice("form", _FORMS), "'angular' (scale-free) or 'euclidean'"),
    ),
    min_n=2, identity=0.0, ranges=_shape_ranges, float64_products=True,
))


# ---------------------------------------------------------------------------------------------
# Normalized Bures similarity and the Bures distance (Harvey, Larsen & Williams 2024)


def _nbs(pair: Any, b: Bound) -> float:
    return pair.nuclear()


def _nbs_distance(pair: Any, b: Bound) -> float:
    return pair.angle()


register(Measure(
    name="nbs", title="NBS", function="nbs", value_kind="similarity", statistics="moments",
    value=_nbs, distance=_nbs_distance,
    definition="‖XcᵀYc‖_* / √(tr XcᵀXc · tr YcᵀYc): the fidelity of the normalized linear kernels "
    "XcXcᵀ/tr, = 1 − procrustes/2",
    distance_definition="arccos NBS (the Bures angle, = angular_procrustes; a metric)",
    range=(0.0, _HALF_PI), value_range=(0.0, 1.0), symmetric=True, is_metric=True, invariances=_ROT,
    estimator="exact", reference="Harvey, Larsen & Williams 2024", min_n=2, identity=1.0,
))


def _bures(pair: Any, b: Bound) -> float:
    # d² = tr Kx + tr Ky − 2‖Kx^{1/2}Ky^{1/2}‖_* with K = XcXcᵀ/n: (‖Xc‖² + ‖Yc‖² − 2‖XcᵀYc‖_*)/n.
    theta = pair.angle()
    a, ea, c, ec = _norms_from_sums(pair)
    return _sqrt_ratio_norms(a, ea, c, ec, math.sin(theta / 2.0)) / math.sqrt(pair.n)


register(Measure(
    name="bures", title="the Bures distance", function="bures_distance", value_kind="distance",
    statistics="moments", value=_bures, distance=_bures,
    definition="√(tr Kx + tr Ky − 2‖Kx^{1/2}Ky^{1/2}‖_*) with K = XcXcᵀ/n = √((‖Xc‖² + ‖Yc‖² − 2‖XcᵀYc‖_*)/n): "
    "the root-mean-square distance per sample after the best rotation",
    distance_definition="the value itself",
    range=(0.0, math.inf), value_range=(0.0, math.inf), symmetric=True, is_metric=True, invariances=_ROT_NO_SCALE,
    estimator="biased", reference="Harvey, Larsen & Williams 2024; Bhatia, Jain & Lim 2019", min_n=2, identity=0.0,
))


# ---------------------------------------------------------------------------------------------
# GULP (Boix-Adserà et al. 2022)


def _gulp_h(side: _Side, lam: float) -> np.ndarray:
    """Eigenvalues of R = (Σ + λI)^{-1} for Σ = C/tr C (GULP's normalisation ‖Xc‖_F = √n); λ = 0: the
    pseudo-inverse on the numerical rank."""
    w, _ = side.eig
    if side.trace <= 0.0:  # a constant representation (refused by the finaliser that asks for it)
        return np.zeros_like(w)
    e = w / side.trace
    if lam > 0.0:
        return 1.0 / (e + lam)
    h = np.zeros_like(e)
    keep = w > side.floor
    h[keep] = 1.0 / e[keep]
    return h


def _gulp(pair: Any, b: Bound) -> float:
    lam = b["lam"]

    def transform(side: _Side) -> np.ndarray:
        # R^{1/2} in the eigenbasis, over √tr C: then Tᵢᵀ·Cxy·Tⱼ = Rx^{1/2}·Σxy·Ry^{1/2}.
        _, v = side.eig
        h = _gulp_h(side, lam)
        keep = h > 0.0
        return v[:, keep] * np.sqrt(h[keep] / side.trace)

    sides = []
    for role, index, name in (("x", pair.i, pair.name_x), ("y", pair.j, pair.name_y)):
        side = _side(pair.set, role, index)
        if side.trace <= 0.0:
            raise ValueError(f"{name} has zero variance (every column is constant over the {side.n} rows): the GULP "
                             "distance is undefined for a constant representation")
        sides.append(side)
    cross = transformed_cross(pair.set, ("gulp", lam), transform, "fro2")[pair.i, pair.j]
    selfs = [float(np.sum((sd.eig[0] / sd.trace * _gulp_h(sd, lam)) ** 2)) for sd in sides]
    d2 = selfs[0] + selfs[1] - 2.0 * float(cross)
    # The three terms are of the size of the ranks; d² below 0 within their rounding is 0.
    slack = rounding_slack(pair.eps) * (selfs[0] + selfs[1] + 1.0)
    if d2 < -slack:
        raise FloatingPointError(f"the squared GULP distance came out as {d2}, below 0 beyond rounding; please report "
                                 "this input")
    return math.sqrt(max(d2, 0.0))


register(Measure(
    name="gulp", title="the GULP distance", function="gulp_distance", value_kind="distance", statistics="moments",
    value=_gulp, distance=_gulp,
    definition="d = √(tr(RxΣxRxΣx) + tr(RyΣyRyΣy) − 2tr(RxΣxyRyΣyx)), Σ = XcᵀXc/n after scaling ‖Xc‖_F = √n, "
    "R = (Σ + λI)^{−1} (λ = 0: the pseudo-inverse on the numerical rank)",
    distance_definition="the value itself",
    range=(0.0, math.inf), value_range=(0.0, math.inf), symmetric=True, is_metric=True, invariances=_ROT,
    estimator="biased", reference="Boix-Adserà, Lawrence, Stepaniants & Rigollet 2022",
    options=(Option("lam", 1e-2, check_real("lam", low=0.0), "ridge penalty λ ≥ 0, relative to tr Σ = 1"),),
    min_n=2, identity=0.0, float64_products=True,
))


# ---------------------------------------------------------------------------------------------
# Neuron matching: the permutation metric and soft matching


def _scipy_optimize() -> Any:
    try:
        import scipy.optimize
    except ImportError:  # pragma: no cover - scipy is a test dependency
        raise ImportError("the matching measures need scipy: pip install scipy (or pip install \"reprsim[optional]\")") \
            from None
    return scipy.optimize


def _neuron_variances(pair: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    mx, my, cxx, cyy, cxy = pair.coordinates()
    return np.diag(cxx).copy(), np.diag(cyy).copy(), cxy, np.asarray(mx), np.asarray(my)


def _permutation_cos(pair: Any) -> float:
    vx, vy, cxy, _, _ = _neuron_variances(pair)
    tx, ty = float(vx.sum()), float(vy.sum())
    for name, t in ((pair.name_x, tx), (pair.name_y, ty)):
        if t <= 0.0:
            raise ValueError(f"{name} has zero variance (every column is constant over the {pair.n} rows): the "
                             "permutation distance is undefined for a constant representation")
    require_memory(16.0 * cxy.size, f"a {cxy.shape[0]}×{cxy.shape[1]} assignment problem", "compare fewer neurons")
    rows, cols = _scipy_optimize().linear_sum_assignment(cxy, maximize=True)
    m = float(cxy[rows, cols].sum())
    cos = m / math.sqrt(tx) / math.sqrt(ty)
    if abs(cos) > 1.0 + rounding_slack(_EPS64):
        raise FloatingPointError(f"the matched correlation came out as {cos}, beyond ±1; please report this input")
    return max(-1.0, min(cos, 1.0))


def _permutation(pair: Any, b: Bound) -> float:
    cos = _permutation_cos(pair)
    if b["form"] == "angular":
        return math.acos(cos)
    a, ea, c, ec = _norms_from_sums(pair)
    return _sqrt_ratio_norms(a, ea, c, ec, math.sqrt((1.0 - cos) / 2.0))


def _permutation_ranges(b: Bound) -> tuple[tuple[float, float], tuple[float, float]]:
    r = (0.0, math.pi) if b["form"] == "angular" else (0.0, math.inf)
    return r, r


register(Measure(
    name="permutation", title="the permutation distance", function="permutation_distance", value_kind="distance",
    statistics="moments", value=_permutation, distance=_permutation,
    definition="the best one-to-one matching of neurons, m = max over matchings π of Σᵢ (XcᵀYc)_{i,π(i)} "
    "(Hungarian; the narrower side zero-padded); form='angular': arccos(m/(‖Xc‖_F‖Yc‖_F)), form='euclidean': "
    "√(‖Xc‖² + ‖Yc‖² − 2m)",
    distance_definition="the value itself",
    range=(0.0, math.pi), value_range=(0.0, math.pi), symmetric=True, is_metric=True,
    invariances=frozenset({PERMUTATION, TRANSLATION, ISOTROPIC_SCALING}), estimator="exact",
    reference="Williams, Kunz, Kornblith & Linderman 2021 (netrep's PermutationMetric)",
    options=(Option("form", "angular", check_choice("form", _FORMS), "'angular' (scale-free) or 'euclidean'"),),
    min_n=2, identity=0.0, ranges=_permutation_ranges,
))


# Rough bytes per transport variable of each solver (cost, plan and the solver's own structures).
_OT_BYTES = {"assignment": 24, "pot": 64, "highs": 400}


def _soft_matching_cost(pair: Any) -> float:
    """min over transport plans T with uniform marginals of ⟨T, 1 − R⟩, R the neurons' correlations.

    A constant neuron (a dead unit) has no correlation with anything; it is taken as a unit vector
    orthogonal to every sample direction, the same for all constant neurons: r = 0 with every varying
    neuron, r = 1 with another constant one. The cost stays a squared distance between unit vectors
    (1 − r = ‖zᵢ − zⱼ‖²/2), so the distance stays a metric."""
    vx, vy, cxy, mx, my = _neuron_variances(pair)
    live = []
    for name, v, mean in ((pair.name_x, vx, mx), (pair.name_y, vy, my)):
        ok = v > pair.n * (16.0 * _EPS64 * np.abs(mean)) ** 2
        if not ok.any():
            raise ValueError(f"{name} has zero variance (every column is constant over the {pair.n} rows): soft "
                             "matching is undefined for a constant representation")
        live.append(ok)
    p1, p2 = cxy.shape
    solver = _ot_solver(p1, p2)
    require_memory(_OT_BYTES[solver] * float(p1) * p2,
                   f"soft matching between {p1} and {p2} neurons (an optimal transport problem with {p1 * p2} "
                   f"variables, solved by {'scipy' if solver != 'pot' else 'POT'})",
                   "compare fewer neurons (e.g. a random subset of each layer)")
    lx, ly = live
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cxy / np.sqrt(np.where(lx, vx, 1.0))[:, None] / np.sqrt(np.where(ly, vy, 1.0))[None, :]
    r = np.where(lx[:, None] & ly[None, :], r, np.where(~lx[:, None] & ~ly[None, :], 1.0, 0.0))
    cost = 1.0 - r
    if solver == "assignment":
        # Equal widths: the uniform transport polytope is the Birkhoff polytope scaled by 1/p, whose vertices are
        # permutations, so the optimum is the best one-to-one matching (Hungarian, exact).
        rows, cols = _scipy_optimize().linear_sum_assignment(cost)
        return float(cost[rows, cols].mean())
    if solver == "pot":
        import ot

        a, b_ = np.full(p1, 1.0 / p1), np.full(p2, 1.0 / p2)
        plan, log = ot.emd(a, b_, cost, numItermax=max(100_000, 100 * p1 * p2), log=True)
        if log.get("warning"):
            raise FloatingPointError(f"POT's network simplex did not converge ({log['warning']}); please report this "
                                     "input")
        return float(np.sum(plan * cost))
    return _highs_transport(cost)


def _ot_solver(p1: int, p2: int) -> str:
    if p1 == p2:
        return "assignment"
    try:
        import ot  # noqa: F401
    except ImportError:
        return "highs"
    return "pot"


def _highs_transport(cost: np.ndarray) -> float:
    """The transport problem as a linear program for scipy's HiGHS (dual simplex: an exact vertex)."""
    import scipy.sparse as sp

    p1, p2 = cost.shape
    rows = sp.kron(sp.identity(p1), np.ones((1, p2)))
    cols = sp.kron(np.ones((1, p1)), sp.identity(p2))
    a_eq = sp.vstack([rows, cols]).tocsr()
    b_eq = np.concatenate([np.full(p1, 1.0 / p1), np.full(p2, 1.0 / p2)])
    res = _scipy_optimize().linprog(cost.ravel(), A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs-ds",
                                    options={"primal_feasibility_tolerance": 1e-10,
                                             "dual_feasibility_tolerance": 1e-10})
    if res.status != 0:
        raise FloatingPointError(f"the transport problem was not solved ({res.message}); please report this input")
    return float(res.fun)


def _soft_matching(pair: Any, b: Bound) -> float:
    return 1.0 - _soft_matching_cost(pair)


def _soft_matching_distance(pair: Any, b: Bound) -> float:
    return math.sqrt(2.0 * max(_soft_matching_cost(pair), 0.0))


register(Measure(
    name="soft_matching", title="soft matching", function="soft_matching", value_kind="similarity",
    statistics="moments", value=_soft_matching, distance=_soft_matching_distance,
    definition="1 − ⟨T*, C⟩: optimal transport between the neurons of x and y with uniform marginals (1/p1, 1/p2) "
    "and cost C_ij = 1 − Pearson r between neuron i of x and neuron j of y over the samples, solved exactly "
    "(a constant neuron: r = 0 with varying neurons, 1 with constant ones)",
    distance_definition="√(2⟨T*, C⟩): the 2-Wasserstein distance between the z-scored neurons (over √n)",
    range=(0.0, 2.0), value_range=(-1.0, 1.0), symmetric=True, is_metric=True,
    invariances=frozenset({PERMUTATION, TRANSLATION, ISOTROPIC_SCALING}), estimator="exact",
    reference="Khosla & Williams 2023", min_n=2, identity=1.0,
))


# ---------------------------------------------------------------------------------------------
# Linear predictivity (folds: per-fold moments)


def _check_alpha(value: Any) -> Any:
    """A ridge penalty ≥ 0, or a non-empty sequence of them (a grid)."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"alpha must be a number ≥ 0 or a list of them, got {value!r}")
    if isinstance(value, (Sequence, np.ndarray)) and not np.isscalar(value):
        items = list(np.asarray(value, dtype=object).ravel()) if isinstance(value, np.ndarray) else list(value)
        if not items:
            raise ValueError("alpha is an empty list; pass a number ≥ 0 or a non-empty list of them")
        grid = tuple(check_real("alpha", low=0.0)(v) for v in items)
        if len(set(grid)) != len(grid):
            raise ValueError(f"alpha lists a penalty twice: {list(grid)}; pass distinct values")
        return grid if len(grid) > 1 else grid[0]
    return check_real("alpha", low=0.0)(value)


def _check_folds(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 2:
        raise ValueError(f"folds must be an integer ≥ 2 (held-out folds) or None (in-sample), got {value!r}")
    return int(value)


def _check_predictivity(opts: Mapping[str, Any]) -> None:
    grid = isinstance(opts["alpha"], tuple)
    if opts["alpha_per_target"] and not grid:
        raise ValueError("alpha_per_target=True chooses among several penalties: pass a list, e.g. "
                         "alpha=[0.1, 1.0, 10.0]")
    if opts["alpha_per_target"] and opts["folds"] is None:
        raise ValueError("alpha_per_target=True chooses each target's alpha on inner folds: pass folds= (≥ 3)")
    if opts["alpha_per_target"] and opts["folds"] is not None and opts["folds"] < 3:
        raise ValueError("alpha_per_target=True needs folds ≥ 3 (inner folds are the other training folds)")
    if grid and opts["folds"] is None:
        raise ValueError("a grid of alphas is chosen by held-out scores: pass folds= (in-sample scores always favour "
                         "the smallest alpha), or a single alpha")


def _predictivity_min_n(b: Bound) -> int:
    # Folds need 2·folds rows; that check names folds (reprsim._folds.check_folds_for_n).
    return 3


def predictivity_result(pair: Any, b: Bound) -> Any:
    """The full :class:`~reprsim._folds.PredictivityResult` of one pair (cached per pair and options)."""
    def compute() -> Any:
        check_folds_for_n(pair.n, b["folds"])
        fm = pair.folds(b["folds"])
        grid = isinstance(b["alpha"], tuple)
        alphas = list(b["alpha"]) if grid else [b["alpha"]]
        # The training eigendecompositions depend on x alone: cached with x, reused for every y.
        res = ridge_predictivity(fm, alphas=alphas, grid=grid, per_target=b["alpha_per_target"], score=b["score"],
                                 aggregate=b["aggregate"], folds=b["folds"], cache=pair.cache_x,
                                 names=(pair.name_x, pair.name_y))
        warn_skipped(res)
        return res

    return pair.set.bulk(("predictivity", pair.i, pair.j, b.key()), compute)


def _predictivity(pair: Any, b: Bound) -> float:
    return predictivity_result(pair, b).value


def _predictivity_distance(pair: Any, b: Bound) -> float:
    return 1.0 - _predictivity(pair, b)


def _predictivity_ranges(b: Bound) -> tuple[tuple[float, float], tuple[float, float]]:
    if b["score"] == "pearson":
        return (-1.0, 1.0), (0.0, 2.0)
    return (-math.inf, 1.0), (0.0, math.inf)


register(Measure(
    name="predictivity", title="linear predictivity", function="linear_predictivity", value_kind="similarity",
    statistics="folds", value=_predictivity, distance=_predictivity_distance,
    definition="ridge regression from x to each column of y with an unpenalised intercept (scikit-learn's "
    "Ridge(alpha) objective), fitted on the training folds; Pearson r per target on the held-out fold, median over "
    "targets, mean over k contiguous unshuffled folds (KFold sizes); folds=None: in-sample",
    distance_definition="1 − value",
    range=(0.0, 2.0), value_range=(-1.0, 1.0), symmetric=False, is_metric=False,
    invariances=frozenset({TRANSLATION, PERMUTATION}), estimator="cross-validated",
    reference="Yamins et al. 2014; Schrimpf et al. 2018 (Brain-Score's neural predictivity)",
    options=(
        Option("alpha", 1.0, _check_alpha, "ridge penalty ≥ 0, or a list of them chosen by held-out score"),
        Option("folds", 5, _check_folds, "contiguous folds ≥ 2, or None for in-sample scores"),
        Option("score", "pearson", check_choice("score", ("pearson", "r2")), "'pearson' (r) or 'r2' per target"),
        Option("aggregate", "median", check_choice("aggregate", ("median", "mean")), "over targets"),
        Option("alpha_per_target", False, check_bool("alpha_per_target"),
               "choose each target's alpha on inner folds (nested cross-validation)"),
    ),
    min_n=_predictivity_min_n, identity=None, zero_diagonal=False, ranges=_predictivity_ranges,
    validate=_check_predictivity, float64_products=True,
))
