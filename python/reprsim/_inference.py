"""Inference on a similarity value: permutation tests, bootstrap intervals, chance-calibrated CKA.

A similarity score alone does not say how it compares with what unrelated representations of the
same widths and sample count would score. The permutation test answers that by breaking the
correspondence of samples (shuffling the rows of y); the bootstrap gives a confidence interval for
the population value by resampling rows; ``calibrated_cka`` subtracts the chance level of CKA.

Results are shaped like scipy's (``scipy.stats.permutation_test`` and ``scipy.stats.bootstrap``).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _measures  # noqa: F401  (registers the measures)
from ._backend import device_backend, pair_set, permute_rows
from ._compute import evaluate
from ._registry import Bound, bind, describe
from ._validation import as_pair

ArrayLike = Any
Seed = Any  # None, an int, a numpy SeedSequence or a numpy Generator

_ALTERNATIVES = ("greater", "less", "two-sided")
_BOOTSTRAP_METHODS = {"percentile": "percentile", "basic": "basic", "bca": "BCa"}
# Same relative tolerance as scipy.stats.permutation_test: null values within 100·ε·|observed| of
# the observed value count as ties (the same value reached through a different rounding path).
_TIE_RTOL = 100 * np.finfo(np.float64).eps
# bootstrap warns when fewer than this share of the bootstrap values lie on one side of the observed
# statistic: the resampling is then biased (see the Notes of bootstrap).
_SHIFT_TAIL = 0.025
# At most this many int64 entries (~32 MiB) of permutations are handed to the compiled kernel at once.
_CHUNK_ELEMENTS = 1 << 22


# ---------------------------------------------------------------------------------------------
# Result types


@dataclass(frozen=True, eq=False)
class PermutationTestResult:
    """Result of :func:`permutation_test` (shaped like ``scipy.stats.permutation_test``'s).

    Attributes
    ----------
    statistic : float
        The statistic on the observed pairing: the similarity for CKA and the CCA family, the
        distance for the Procrustes metrics.
    pvalue : float
        ``(1 + #{null values at least as extreme}) / (n_permutations + 1)``; never 0.
    null_distribution : numpy.ndarray, shape (n_permutations,)
        The statistic for each permutation of y's rows (read-only).
    metric : str
        The metric name (a key of ``reprsim.METRICS``).
    alternative : {"greater", "less", "two-sided"}
        "greater": more similar than chance (similarities); "less": closer than chance (distances).
    n_permutations : int
        Number of permutations drawn.
    method : {"gram", "feature", "loop"}
        How the null was computed: the compiled linear-CKA kernel in Gram or feature space, or a
        loop over the public metric function.
    """

    statistic: float
    pvalue: float
    null_distribution: np.ndarray = field(repr=False)
    metric: str
    alternative: str
    n_permutations: int
    method: str


@dataclass(frozen=True)
class ConfidenceInterval:
    """A two-sided confidence interval ``[low, high]``.

    Attributes
    ----------
    low : float
        Lower end.
    high : float
        Upper end.
    """

    low: float
    high: float


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """Result of :func:`bootstrap` (shaped like ``scipy.stats.bootstrap``'s).

    Attributes
    ----------
    confidence_interval : ConfidenceInterval
        Two-sided interval at ``confidence_level``.
    standard_error : float
        Standard deviation (ddof=1) of the bootstrap distribution.
    bootstrap_distribution : numpy.ndarray
        The statistic on each valid resample (read-only); degenerate resamples are left out.
    statistic : float
        The statistic on the full sample.
    metric : str
        The metric name (a key of ``reprsim.METRICS``).
    method : {"percentile", "basic", "BCa"}
        The interval's construction.
    confidence_level : float
        The interval's confidence level.
    n_resamples : int
        Resamples drawn (valid and degenerate).
    n_degenerate : int
        Resamples on which the metric is undefined (see :func:`bootstrap`), left out.
    """

    confidence_interval: ConfidenceInterval
    standard_error: float
    bootstrap_distribution: np.ndarray = field(repr=False)
    statistic: float
    metric: str
    method: str
    confidence_level: float
    n_resamples: int
    n_degenerate: int


@dataclass(frozen=True, eq=False)
class CalibratedCKAResult:
    """Result of :func:`calibrated_cka`.

    Attributes
    ----------
    calibrated : float
        ``(cka − null_mean) / (1 − null_mean)``: 0 at chance level, 1 for CKA = 1.
    cka : float
        The uncalibrated (biased or debiased) linear CKA.
    null_mean : float
        The exact mean of CKA over all n! pairings of the rows (closed form, no sampling).
    debiased : bool
        Whether the debiased estimator was calibrated.
    pvalue : float or None
        Permutation p-value for "more similar than chance" (None when ``n_permutations=0``).
    null_std : float or None
        Standard deviation of the sampled null distribution (None when ``n_permutations=0``).
    null_distribution : numpy.ndarray
        CKA for each sampled permutation (empty when ``n_permutations=0``; read-only).
    """

    calibrated: float
    cka: float
    null_mean: float
    debiased: bool
    pvalue: float | None
    null_std: float | None
    null_distribution: np.ndarray = field(repr=False)


# ---------------------------------------------------------------------------------------------
# Argument checks and helpers


@dataclass(frozen=True)
class _Statistic:
    bound: Bound
    direction: str  # "greater" for similarities, "less" for distances
    min_n: int
    what: str

    def fn(self, a: Any, b: Any) -> float:
        """The measure's value for one pair (numpy arrays, or tensors on a device)."""
        pset = pair_set(self.bound.measure.statistics, [a], [b], names_x=["x"], names_y=["y"], min_n=self.min_n,
                        what=self.what)
        return float(evaluate(self.bound, pset)[0, 0])


def _statistic_for(metric: str, options: dict[str, Any]) -> _Statistic:
    """The statistic of a registered measure: its value (a similarity or a distance, by the registry)."""
    bound = bind(metric, options)
    direction = "greater" if bound.measure.value_kind == "similarity" else "less"
    return _Statistic(bound, direction, bound.min_n, describe(bound))


def _prepare(x: Any, y: Any, stat: _Statistic) -> tuple[Any, Any, bool]:
    """Inputs checked once: numpy arrays in one dtype, or tensors left on their device."""
    if device_backend(x, y) is not None:
        return x, y, True
    xa, ya = as_pair(x, y, min_n=stat.min_n, what=stat.what)
    return xa, ya, False


def _positive_int(value: Any, name: str, *, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
    return int(value)


def _n_jobs(n_jobs: Any) -> int:
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1 (all CPUs), got {n_jobs!r}")
    if n_jobs == -1:
        return os.cpu_count() or 1
    return int(n_jobs)


def _generator(seed: Seed) -> np.random.Generator:
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"seed must be None, a non-negative integer, a numpy SeedSequence or a numpy Generator; got {seed!r} ({exc})"
        ) from None


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


class _Progress:
    """A tqdm bar when asked for and tqdm is installed; otherwise nothing."""

    def __init__(self, enabled: bool, total: int, desc: str) -> None:
        self._bar = None
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            warnings.warn("progress=True needs the tqdm package (pip install tqdm); continuing without a progress bar",
                          stacklevel=3)
            return
        self._bar = tqdm(total=total, desc=desc)

    def update(self, k: int) -> None:
        if self._bar is not None:
            self._bar.update(k)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _chunks(total: int, size: int) -> Iterator[int]:
    done = 0
    while done < total:
        k = min(size, total - done)
        yield k
        done += k


def _map_threads(fn: Callable[[Any], float], items: list[Any], n_jobs: int, pool: ThreadPoolExecutor | None) -> list:
    if pool is None or n_jobs == 1:
        return [fn(it) for it in items]
    return list(pool.map(fn, items))


def _pvalue(null: np.ndarray, observed: float, alternative: str) -> float:
    # scipy.stats.permutation_test's definition, with its tolerance for rounding ties.
    gamma = abs(_TIE_RTOL * observed)
    b = null.size
    less = (np.count_nonzero(null <= observed + gamma) + 1.0) / (b + 1.0)
    greater = (np.count_nonzero(null >= observed - gamma) + 1.0) / (b + 1.0)
    if alternative == "less":
        p = less
    elif alternative == "greater":
        p = greater
    else:
        p = 2.0 * min(less, greater)
    return float(min(p, 1.0))


# ---------------------------------------------------------------------------------------------
# Permutation test


def _compiled_null(
    xa: np.ndarray, ya: np.ndarray, bound: Bound, n_permutations: int, rng: np.random.Generator,
    n_jobs: int, progress: bool, space: str = "auto",
) -> tuple[Any, np.ndarray]:
    """The measure's compiled null kernel (see ``Measure.permutation_null``) and its values for permutations
    drawn one by one from rng."""
    builder = bound.measure.permutation_null
    assert builder is not None
    kernel = builder(xa, ya, bound, n_permutations, n_jobs, space)
    n = xa.shape[0]
    null = np.empty(n_permutations)
    bar = _Progress(progress, n_permutations, "permutations")
    try:
        done = 0
        # About 50 steps for the progress bar, at least 4 permutations per thread per call.
        step = max(4 * n_jobs, min(_CHUNK_ELEMENTS // n, -(-n_permutations // 50)))
        for k in _chunks(n_permutations, step):
            perms = np.stack([rng.permutation(n) for _ in range(k)]).astype(np.int64, copy=False)
            null[done : done + k] = kernel.evaluate(perms, n_jobs)
            done += k
            bar.update(k)
    finally:
        bar.close()
    return kernel, null


def _looped_null(stat: _Statistic, x: Any, y: Any, n_permutations: int, rng: np.random.Generator, n_jobs: int,
                 progress: bool) -> np.ndarray:
    """The measure recomputed on y's rows in each drawn order (threads over permutations)."""
    n = int(x.shape[0])
    null = np.empty(n_permutations)
    bar = _Progress(progress, n_permutations, "permutations")
    pool = ThreadPoolExecutor(max_workers=n_jobs) if n_jobs > 1 else None
    try:
        done = 0
        for k in _chunks(n_permutations, max(4 * n_jobs, 16)):
            perms = [rng.permutation(n) for _ in range(k)]
            null[done : done + k] = _map_threads(lambda p: stat.fn(x, permute_rows(y, p)), perms, n_jobs, pool)
            done += k
            bar.update(k)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()
    return null


def permutation_test(
    x: ArrayLike,
    y: ArrayLike,
    metric: str = "cka",
    *,
    n_permutations: int = 1000,
    seed: Seed = None,
    alternative: str | None = None,
    n_jobs: int | None = 1,
    progress: bool = False,
    **options: Any,
) -> PermutationTestResult:
    """Permutation test of "more similar (or closer) than chance" for two representations.

    The null hypothesis is that the pairing of the rows of x and y carries no information: the
    rows of y are shuffled, the statistic recomputed for each shuffle, and the p-value is the share
    of shuffles at least as extreme as the observed pairing, with the +1 correction that makes it
    valid for a finite number of shuffles (Phipson & Smyth 2010):
    ``pvalue = (1 + #{null at least as extreme}) / (n_permutations + 1)``. Values within
    ``100·ε·|statistic|`` of the statistic count as ties, as in ``scipy.stats.permutation_test``.

    The statistic is the similarity where the metric has one ("cka", "debiased_cka", "mean_cca",
    "mean_sq_cca", "svcca", "pwcca"; alternative "greater") and the distance for "procrustes" and
    "angular_procrustes" (alternative "less").

    Cost. For "cka" and "debiased_cka" both inputs are centred and reduced to factors once; each
    permutation π then only recomputes the cross term, because centring commutes with permuting rows
    and the self terms do not change. In Gram space (centred Grams K, L, two n×n matrices) a
    permutation costs ⟨K, L_π⟩ = Σ_ij K_ij L_π(i)π(j): n(n+1)/2 multiply-adds, no product, no
    re-centring, split over ``n_jobs`` threads. In feature space it costs one product XcᵀYc[π],
    2·n·p1·p2 flops in the BLAS. The cheaper space is chosen from n, the widths and
    ``n_permutations``. The debiased estimator adds Σ_i d_i e_π(i), O(n), with d, e the squared
    row norms of the centred inputs. Every other metric calls its public function on ``y[perm]``
    for each permutation (a full recomputation, threads over permutations).

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y.
    metric : str, default "cka"
        A name in ``reprsim.METRICS``.
    n_permutations : int, default 1000
        Number of random permutations B (the smallest attainable p-value is 1/(B+1)).
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator
        Permutation b is the b-th call of ``numpy.random.default_rng(seed).permutation(n)``, whatever
        ``n_jobs`` is, so results are reproducible.
    alternative : {"greater", "less", "two-sided"}, optional
        Default: "greater" for similarities, "less" for distances. "two-sided" doubles the smaller
        one-sided p-value (capped at 1), as scipy does.
    n_jobs : int or None, default 1
        Threads over permutations (-1 or None: all CPUs). The compiled kernels release the GIL. In feature
        space the BLAS's own threads (``reprsim.set_num_threads``) do the parallel work instead. For
        the other metrics each thread also runs BLAS calls: with n_jobs > 1, consider
        ``reprsim.set_num_threads(1)`` to avoid oversubscribing the cores.
    progress : bool, default False
        Show a tqdm progress bar (needs the optional tqdm package).
    **options
        Passed to the metric function (``variance=``/``convention=`` for "svcca", ``convention=``
        for "pwcca").

    Returns
    -------
    PermutationTestResult
        The observed statistic, the p-value, the null distribution and how it was computed.

    Raises
    ------
    ValueError, TypeError
        Unknown metric or option, bad ``n_permutations``/``alternative``/``n_jobs``/``seed``, or the
        bad inputs of the metric itself (mismatched n, NaN/Inf, constant representation, ...).

    Examples
    --------
    >>> import numpy as np, reprsim
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((200, 30)); y = x @ rng.standard_normal((30, 20))
    >>> res = reprsim.permutation_test(x, y, metric="cka", n_permutations=99, seed=1)
    >>> res.pvalue  # no shuffle comes close: the smallest attainable p-value
    0.01
    """
    stat = _statistic_for(metric, options)
    b = _positive_int(n_permutations, "n_permutations")
    if alternative is None:
        alternative = stat.direction
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {list(_ALTERNATIVES)} or None, got {alternative!r}")
    jobs = _n_jobs(n_jobs)
    rng = _generator(seed)
    xa, ya, on_device = _prepare(x, y, stat)
    observed = stat.fn(xa, ya)  # the public value, and its input checks
    if stat.bound.measure.permutation_null is not None and not on_device:
        kernel, null = _compiled_null(xa, ya, stat.bound, b, rng, jobs, progress)
        method = str(kernel.space)
    else:
        null = _looped_null(stat, xa, ya, b, rng, jobs, progress)
        method = "loop"
    if not np.all(np.isfinite(null)):
        raise FloatingPointError(f"the permutation null of {metric} has non-finite values; please report this input")
    return PermutationTestResult(
        statistic=float(observed),
        pvalue=_pvalue(null, float(observed), alternative),
        null_distribution=_readonly(null),
        metric=metric,
        alternative=alternative,
        n_permutations=b,
        method=method,
    )


# ---------------------------------------------------------------------------------------------
# Calibrated CKA


def calibrated_cka(
    x: ArrayLike,
    y: ArrayLike,
    *,
    debiased: bool = False,
    n_permutations: int = 1000,
    seed: Seed = None,
    n_jobs: int | None = 1,
    progress: bool = False,
) -> CalibratedCKAResult:
    """Linear CKA corrected for its chance level: ``(CKA − μ₀) / (1 − μ₀)``.

    Similarity, at most 1; 0 when x and y are no more similar than a random pairing of their rows,
    negative below that. Biased linear CKA of unrelated representations is far from 0 when the
    widths are not small against n (it tends to 1 as the widths grow at fixed n), so raw values
    are not comparable across widths and sample sizes; subtracting the chance level μ₀ removes that
    inflation. Dividing by 1 − μ₀ keeps 1 for identical representations (up to rotation and scale),
    as the adjusted Rand index (Hubert & Arabie 1985) and Cohen's κ do for agreement.

    μ₀ is the exact mean of CKA(x, y[π]) over all n! permutations π, in closed form rather than
    sampled: for the biased estimator μ₀ = tr K · tr L / ((n − 1) ‖K‖_F ‖L‖_F), with K, L the centred
    Gram matrices (since the rows of a centred Gram sum to zero); for the debiased estimator
    (U-statistic HSIC, Song et al. 2012) μ₀ = 0 exactly, so its calibrated value equals debiased
    CKA: that estimator is already centred at chance in this sense. The sampled permutation null
    (``n_permutations``) adds a p-value and the null's spread.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y.
    debiased : bool, default False
        Calibrate debiased CKA (needs n ≥ 4) instead of biased CKA.
    n_permutations : int, default 1000
        Sampled permutations for ``pvalue`` and ``null_std``; 0 skips them (μ₀ needs none).
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator
        As in :func:`permutation_test` (the same permutations for the same seed).
    n_jobs : int or None, default 1
        As in :func:`permutation_test`.
    progress : bool, default False
        As in :func:`permutation_test`.

    Returns
    -------
    CalibratedCKAResult
        The calibrated value, the raw CKA, the exact chance level μ₀ and, with permutations, a
        p-value and the null's spread.

    Raises
    ------
    ValueError
        When μ₀ = 1 (both centred inputs are whitened with rank n − 1, so every pairing has CKA 1
        and nothing can be calibrated), and for the bad inputs of :func:`reprsim.cka`.

    References
    ----------
    .. [1] S. Kornblith, M. Norouzi, H. Lee, G. Hinton. "Similarity of Neural Network
       Representations Revisited." ICML 2019.
    .. [2] L. Hubert, P. Arabie. "Comparing Partitions." Journal of Classification 2, 1985 (the
       chance correction).
    """
    b = _positive_int(n_permutations, "n_permutations", allow_zero=True)
    jobs = _n_jobs(n_jobs)
    rng = _generator(seed)
    stat = _statistic_for("cka", {"debiased": debiased})
    debiased = bool(stat.bound["debiased"])
    xa, ya, on_device = _prepare(x, y, stat)
    pset = pair_set("moments", [xa], [ya], names_x=["x"], names_y=["y"], min_n=stat.min_n, what=stat.what)
    value = float(evaluate(stat.bound, pset)[0, 0])
    if debiased:
        mu0 = 0.0  # the U-statistic HSIC is unbiased under every pairing: its permutation mean is 0
    else:
        # E_π⟨K, L_π⟩ = tr K · tr L / (n − 1) for centred Grams (their rows sum to zero).
        s = pset.pair(0, 0).sums(False)
        mu0 = s["tx"] * s["ty"] / ((s["n"] - 1.0) * math.sqrt(s["sxx"]) * math.sqrt(s["syy"]))
    if b > 0 and not on_device:
        _, null = _compiled_null(xa, ya, stat.bound, b, rng, jobs, progress)
    elif b > 0:
        null = _looped_null(stat, xa, ya, b, rng, jobs, progress)
    else:
        null = np.empty(0)
    if not 1.0 - mu0 > 1e-12:
        raise ValueError(
            f"the chance level of CKA is {mu0!r} for these inputs (x and y each span every centred direction "
            f"of their {xa.shape[0]} samples isotropically), so every pairing scores CKA = 1 and calibration is "
            "undefined; use more samples than features"
        )
    if b > 0 and not np.all(np.isfinite(null)):
        raise FloatingPointError("the permutation null of CKA has non-finite values; please report this input")
    return CalibratedCKAResult(
        calibrated=(value - mu0) / (1.0 - mu0),
        cka=value,
        null_mean=mu0,
        debiased=debiased,
        pvalue=_pvalue(null, value, "greater") if b > 0 else None,
        null_std=float(np.std(null, ddof=1)) if b > 1 else None,
        null_distribution=_readonly(null),
    )


# ---------------------------------------------------------------------------------------------
# Bootstrap


def _ndtr(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _ndtri(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def _bca_levels(
    distribution: np.ndarray, observed: float, jackknife: np.ndarray, alpha: float
) -> tuple[float, float]:
    """Quantile levels (α₁, α₂) of the BCa interval (Efron & Tibshirani 1993, §14.3).

    z₀ = Φ⁻¹(share of the bootstrap distribution below the observed value, ties counted half);
    a = Σ(θ̄ − θ₍ᵢ₎)³ / (6 (Σ(θ̄ − θ₍ᵢ₎)²)^{3/2}) from the jackknife values θ₍ᵢ₎;
    αₖ = Φ(z₀ + (z₀ + z)/(1 − a(z₀ + z))) with z = Φ⁻¹(α) and Φ⁻¹(1 − α).
    """
    b = distribution.size
    share = (np.count_nonzero(distribution < observed) + np.count_nonzero(distribution <= observed)) / (2.0 * b)
    if share <= 0.0 or share >= 1.0:
        side = "above" if share <= 0.0 else "below"
        raise ValueError(
            f"the BCa interval is undefined: every bootstrap value lies {side} the observed statistic "
            f"{observed!r}, so the bias correction is infinite; use method='percentile' or more resamples"
        )
    z0 = _ndtri(share)
    dev = jackknife.mean() - jackknife
    den = float(np.sum(dev**2))
    # Identical jackknife values carry no skewness: no acceleration.
    a = float(np.sum(dev**3)) / (6.0 * den**1.5) if den > 0.0 else 0.0
    levels = []
    for z in (_ndtri(alpha), -_ndtri(alpha)):
        num = z0 + z
        levels.append(_ndtr(z0 + num / (1.0 - a * num)))
    return levels[0], levels[1]


def bootstrap(
    x: ArrayLike,
    y: ArrayLike,
    metric: str = "cka",
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    method: str = "BCa",
    seed: Seed = None,
    n_jobs: int | None = 1,
    progress: bool = False,
    on_degenerate: str = "skip",
    **options: Any,
) -> BootstrapResult:
    """Bootstrap confidence interval of a similarity (or distance) between two representations.

    Rows are resampled with replacement, the same indices for x and y, and the statistic (as in
    :func:`permutation_test`: the similarity, or the distance for the Procrustes metrics) is
    recomputed on each resample. The interval is the percentile, basic or BCa interval exactly as
    ``scipy.stats.bootstrap`` defines it (linear-interpolated quantiles of the bootstrap
    distribution; BCa: bias correction from the share of bootstrap values below the observed
    statistic, acceleration from the leave-one-row-out jackknife, Efron & Tibshirani 1993).

    Cost: ``n_resamples`` evaluations of the metric, plus n jackknife evaluations for BCa.

    Degenerate resamples. Duplicated rows can make a resample on which the metric is undefined
    (e.g. a constant column set, or a CCA rank reaching n − 1). With ``on_degenerate="skip"``
    (default) those resamples are left out of the distribution, counted in ``n_degenerate``, and a
    RuntimeWarning says how many; if more than half are degenerate a ValueError is raised, since
    the interval would describe a different population. ``on_degenerate="raise"`` raises on the
    first one. Note that resampling duplicates rows: CCA-family values on a resample behave like
    values on fewer distinct samples, so use the bootstrap for CCA only with n well above
    p1 + p2.

    Duplicated rows bias the resampled values of every metric here. A row drawn twice pairs with
    its copy, and that pair is as similar as a pair can be (‖xᵢ‖²·‖yᵢ‖² in the CKA numerator,
    where distinct rows contribute ⟨xᵢ, xⱼ⟩⟨yᵢ, yⱼ⟩, of order √p smaller); the debiased estimator
    only drops i = j, not copies. So for CKA the bootstrap distribution sits above the observed
    value by an amount that grows with the widths relative to n (in one synthetic example, 1 % of
    the bootstrap values fell below the observed CKA at n = 500, p = 32, and none at p = 256),
    while on low-dimensional inputs (p = 2, n = 80) the intervals cover the population CKA at about
    the nominal rate. The CCA family sees fewer distinct rows than n. A RuntimeWarning says when
    fewer than 2.5 % of the bootstrap values lie on one side of the observed statistic, and BCa
    refuses when none do; read such intervals as describing the resampling, not the population.
    :func:`permutation_test` has no such problem (a permutation keeps every row once).

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y.
    metric : str, default "cka"
        A name in ``reprsim.METRICS``.
    n_resamples : int, default 1000
        Number of bootstrap resamples.
    confidence : float, default 0.95
        Confidence level of the two-sided interval, in (0, 1).
    method : {"BCa", "percentile", "basic"}, default "BCa"
        Case-insensitive; "BCa" is scipy's default too.
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator
        Resample b uses the b-th call of ``numpy.random.default_rng(seed).integers(0, n, size=n)``,
        whatever ``n_jobs`` is.
    n_jobs : int or None, default 1
        Threads over resamples and jackknife samples (-1 or None: all CPUs); the compiled metrics release
        the GIL. With n_jobs > 1, consider ``reprsim.set_num_threads(1)`` to avoid oversubscribing
        the cores with BLAS threads.
    progress : bool, default False
        Show a tqdm progress bar (needs the optional tqdm package).
    on_degenerate : {"skip", "raise"}, default "skip"
        What a resample on which the metric is undefined does (see above).
    **options
        Passed to the metric function.

    Returns
    -------
    BootstrapResult
        The interval, the standard error, the bootstrap distribution and counts of resamples.

    Raises
    ------
    ValueError, TypeError
        Bad arguments, bad inputs of the metric, too many degenerate resamples, or an undefined BCa
        interval (every bootstrap value on one side of the observed statistic).
    """
    stat = _statistic_for(metric, options)
    b = _positive_int(n_resamples, "n_resamples")
    if b < 2:
        raise ValueError(f"n_resamples must be at least 2 for an interval, got {b}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be a number in (0, 1), e.g. 0.95; got {confidence!r}")
    if not isinstance(method, str) or method.lower() not in _BOOTSTRAP_METHODS:
        raise ValueError(f"method must be one of 'BCa', 'percentile', 'basic'; got {method!r}")
    method = _BOOTSTRAP_METHODS[method.lower()]
    if on_degenerate not in ("skip", "raise"):
        raise ValueError(f"on_degenerate must be 'skip' or 'raise', got {on_degenerate!r}")
    jobs = _n_jobs(n_jobs)
    rng = _generator(seed)
    xa, ya, _ = _prepare(x, y, stat)
    n = int(xa.shape[0])
    observed = stat.fn(xa, ya)

    def on_resample(idx: np.ndarray) -> float:
        try:
            return stat.fn(permute_rows(xa, idx), permute_rows(ya, idx))
        except ValueError as exc:
            if on_degenerate == "raise":
                raise ValueError(
                    f"a bootstrap resample is degenerate for {metric}: {exc} "
                    "(pass on_degenerate='skip' to leave such resamples out)"
                ) from None
            return math.nan

    values = np.empty(b)
    bar = _Progress(progress, b + (n if method == "BCa" else 0), "bootstrap")
    pool = ThreadPoolExecutor(max_workers=jobs) if jobs > 1 else None
    try:
        done = 0
        for k in _chunks(b, max(4 * jobs, 16)):
            idxs = [rng.integers(0, n, size=n) for _ in range(k)]
            values[done : done + k] = _map_threads(on_resample, idxs, jobs, pool)
            done += k
            bar.update(k)
        degenerate = int(np.count_nonzero(np.isnan(values)))
        if degenerate > b // 2:
            raise ValueError(
                f"{degenerate} of {b} bootstrap resamples are degenerate for {metric} (the metric is undefined on "
                "them); the bootstrap does not describe this statistic at this sample size; use more samples "
                "or fewer features"
            )
        if degenerate:
            warnings.warn(f"{degenerate} of {b} bootstrap resamples were degenerate for {metric} and left out",
                          RuntimeWarning, stacklevel=2)
        dist = values[~np.isnan(values)]
        if dist.size < 2:
            raise ValueError(f"only {dist.size} valid bootstrap resample(s); use more resamples")
        below = (np.count_nonzero(dist < observed) + np.count_nonzero(dist <= observed)) / (2.0 * dist.size)
        if not _SHIFT_TAIL <= below <= 1.0 - _SHIFT_TAIL:
            warnings.warn(
                f"the observed {metric} ({observed:.6g}) lies in the {100 * min(below, 1 - below):.1f}% tail of its "
                f"bootstrap distribution (median {np.median(dist):.6g}): the resamples are biased, most likely by "
                "their duplicated rows (see Notes in reprsim.bootstrap), and the interval may not cover the "
                "population value",
                RuntimeWarning, stacklevel=2,
            )
        alpha = (1.0 - float(confidence)) / 2.0
        if method == "BCa":
            def leave_one_out(i: int) -> float:
                sel = np.delete(np.arange(n), i)
                try:
                    return stat.fn(permute_rows(xa, sel), permute_rows(ya, sel))
                except ValueError as exc:
                    raise ValueError(
                        f"the BCa interval needs {metric} on every leave-one-out sample, but leaving out row {i} "
                        f"fails: {exc}; use method='percentile'"
                    ) from None

            jack = np.asarray(_map_threads(leave_one_out, list(range(n)), jobs, pool), dtype=np.float64)
            bar.update(n)
            levels = _bca_levels(dist, observed, jack, alpha)
        else:
            levels = (alpha, 1.0 - alpha)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()
    low, high = (float(v) for v in np.quantile(dist, levels))
    if method == "basic":
        low, high = 2.0 * observed - high, 2.0 * observed - low
    return BootstrapResult(
        confidence_interval=ConfidenceInterval(low, high),
        standard_error=float(np.std(dist, ddof=1)),
        bootstrap_distribution=_readonly(dist),
        statistic=float(observed),
        metric=metric,
        method=method,
        confidence_level=float(confidence),
        n_resamples=b,
        n_degenerate=degenerate,
    )
