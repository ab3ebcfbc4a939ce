"""Inference on a similarity value: permutation tests, bootstrap intervals, chance-calibrated CKA.

A similarity score alone does not say how it compares with what unrelated representations of the
same widths and sample count would score. The permutation test answers that by breaking the
correspondence of samples (shuffling the rows of y); the bootstrap gives a confidence interval for
the population value by resampling rows; ``calibrated_cka`` subtracts the chance level of CKA.

Results are shaped like scipy's (``scipy.stats.permutation_test`` and ``scipy.stats.bootstrap``).
"""

from __future__ import annotations

import itertools
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _measures  # noqa: F401  (registers the measures)
from ._backend import device_backend, pair_set, permute_rows
from ._compute import check_range, evaluate, warn_if_few_samples
from ._fork import busy
from ._memory import require_memory
from ._progress import Progress, check_progress
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
        ``(1 + #{null values at least as extreme}) / (n_permutations + 1)`` for random permutations (never 0);
        for an exact test ``#{null values at least as extreme} / n!`` (at least 1/n!: the null holds the
        observed pairing too).
    null_distribution : numpy.ndarray, shape (n_permutations,)
        The statistic for each permutation of y's rows (read-only).
    metric : str
        The metric name (a key of ``reprsim.METRICS``).
    alternative : {"greater", "less", "two-sided"}
        "greater": more similar than chance (similarities); "less": closer than chance (distances).
    n_permutations : int
        Number of permutations in the null: those drawn, or n! for an exact test.
    method : {"gram", "feature", "loop"}
        How the null was computed: the compiled linear-CKA kernel in Gram or feature space, or a
        loop over the public metric function.
    exact : bool
        Whether the null holds every one of the n! permutations (an exact test; see
        :func:`permutation_test`) rather than random ones.
    """

    statistic: float
    pvalue: float
    null_distribution: np.ndarray = field(repr=False)
    metric: str
    alternative: str
    n_permutations: int
    method: str
    exact: bool = False


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
        Permutation p-value for "more similar than chance" (None when ``n_resamples=0``).
    null_std : float or None
        Standard deviation of the sampled null distribution (None when ``n_resamples=0``).
    null_distribution : numpy.ndarray
        CKA for each sampled permutation (empty when ``n_resamples=0``; read-only).
    exact : bool
        Whether the null holds every one of the n! permutations (when n! ≤ n_resamples).
    """

    calibrated: float
    cka: float
    null_mean: float
    debiased: bool
    pvalue: float | None
    null_std: float | None
    null_distribution: np.ndarray = field(repr=False)
    exact: bool = False


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


def _alias(name: str, value: Any, alias: str, alias_value: Any, default: Any) -> Any:
    """One argument under its scipy.stats name and reprsim's older name: either may be given, not both."""
    if value is not None and alias_value is not None:
        raise TypeError(f"got both {name}={value!r} and {alias}={alias_value!r}; they are the same argument "
                        f"({alias} is another name for {name}): pass one")
    if value is not None:
        return value
    return default if alias_value is None else alias_value


def _n_jobs(n_jobs: Any) -> int:
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1 (all CPUs), got {n_jobs!r}")
    if n_jobs == -1:
        return os.cpu_count() or 1
    return int(n_jobs)


def _generator(seed: Seed, name: str = "rng") -> np.random.Generator:
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be None, a non-negative integer, a numpy SeedSequence or a numpy Generator; got {seed!r} "
            f"({exc})"
        ) from None


def _eps(a: Any) -> float:
    """The rounding unit of an input's products (float32 for 4-byte arrays or tensors, else float64)."""
    size = a.itemsize if isinstance(a, np.ndarray) else int(a.element_size())
    return float(np.finfo(np.float32 if size == 4 else np.float64).eps)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


# Chunks of permutations or resamples are sized to take about this long, so that Ctrl-C (which Python
# handles between the compiled calls) stops a long test within a fraction of a second plus one chunk.
_CHUNK_SECONDS = 0.25


def _timed_chunks(total: int, first: int, cap: int) -> Iterator[int]:
    """Sizes of successive chunks of ``total`` items: ``first``, then as many as take about _CHUNK_SECONDS by
    the rate measured so far (at most ``cap``). The time between two yields is the caller's work on a chunk."""
    done, size = 0, max(1, min(first, cap))
    while done < total:
        k = min(size, total - done)
        start = time.perf_counter()
        yield k
        elapsed = time.perf_counter() - start
        done += k
        grow = 2 * size if elapsed <= 0 else int(k * _CHUNK_SECONDS / elapsed)
        size = max(1, min(cap, grow, 4 * size))


def _map_threads(fn: Callable[[Any], float], items: list[Any], n_jobs: int, pool: ThreadPoolExecutor | None) -> list:
    if pool is None or n_jobs == 1:
        return [fn(it) for it in items]
    return list(pool.map(fn, items))


@contextmanager
def _thread_pool(n_jobs: int) -> Iterator[ThreadPoolExecutor | None]:
    """A pool of ``n_jobs`` threads (None for one job). On an exception (a KeyboardInterrupt included) the
    queued work is cancelled and the call returns without waiting for the items already running."""
    if n_jobs <= 1:
        yield None
        return
    pool = ThreadPoolExecutor(max_workers=n_jobs)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _require_draws(count: int, per_draw: int, what: str, fix: str, extra: int = 0) -> None:
    """Memory of ``count`` draws (a float64 value and the comparisons of the p-value each) and their scratch."""
    require_memory(float(count) * per_draw + extra, what, fix, "one float64 value per draw and their scratch")


def _count_permutations(n: int, cap: int) -> int | None:
    """n! when it is at most ``cap``, else None (without forming n! for large n)."""
    total = 1
    for k in range(2, n + 1):
        total *= k
        if total > cap:
            return None
    return total


class _Draws:
    """The permutations of a test: every one of the n! orders when there are at most as many as asked for
    (an exact test, in lexicographic order, the identity first), else ``count`` random ones drawn from rng
    (the b-th is the b-th call of ``rng.permutation(n)``)."""

    def __init__(self, n: int, asked: int, rng: np.random.Generator) -> None:
        self.n = n
        total = _count_permutations(n, asked)
        self.exact = total is not None
        self.count = total if total is not None else asked
        self._rng = rng
        self._orders = itertools.permutations(range(n)) if self.exact else None

    def take(self, k: int) -> np.ndarray:
        """The next k permutations, as a (k, n) int64 array."""
        if self._orders is not None:
            return np.array(list(itertools.islice(self._orders, k)), dtype=np.int64).reshape(k, self.n)
        return np.stack([self._rng.permutation(self.n) for _ in range(k)]).astype(np.int64, copy=False)


def _pvalue(null: np.ndarray, observed: float, alternative: str, exact: bool = False) -> float:
    # scipy.stats.permutation_test's definition, with its tolerance for rounding ties. A random test adds
    # one to both counts (the observed pairing is one of the equally likely ones; Phipson & Smyth 2010);
    # an exact test's null already holds every pairing, the observed one included.
    gamma = abs(_TIE_RTOL * observed)
    b = null.size
    adjust = 0.0 if exact else 1.0
    less = (np.count_nonzero(null <= observed + gamma) + adjust) / (b + adjust)
    greater = (np.count_nonzero(null >= observed - gamma) + adjust) / (b + adjust)
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
    xa: np.ndarray, ya: np.ndarray, bound: Bound, draws: _Draws, n_jobs: int, progress: bool | None,
    space: str = "auto",
) -> tuple[Any, np.ndarray]:
    """The measure's compiled null kernel (see ``Measure.permutation_null``) and its values for the draws."""
    builder = bound.measure.permutation_null
    assert builder is not None
    with busy():
        kernel = builder(xa, ya, bound, draws.count, n_jobs, space)
    n = xa.shape[0]
    null = np.empty(draws.count)
    with Progress(progress, draws.count, "permutations") as bar:
        done = 0
        # At most _CHUNK_ELEMENTS indices and about 50 steps for the bar per call; at least 4 per thread.
        cap = max(4 * n_jobs, min(_CHUNK_ELEMENTS // n, -(-draws.count // 50)))
        for k in _timed_chunks(draws.count, 4 * n_jobs, cap):
            perms = draws.take(k)
            with busy():
                null[done : done + k] = kernel.evaluate(perms, n_jobs)
            done += k
            bar.update(k)
    return kernel, null


def _looped_null(stat: _Statistic, x: Any, y: Any, draws: _Draws, n_jobs: int, progress: bool | None) -> np.ndarray:
    """The measure recomputed on y's rows in each order (threads over permutations)."""
    null = np.empty(draws.count)
    with Progress(progress, draws.count, "permutations") as bar, _thread_pool(n_jobs) as pool:
        done = 0
        for k in _timed_chunks(draws.count, max(n_jobs, 1), max(4 * n_jobs, 16)):
            perms = list(draws.take(k))
            null[done : done + k] = _map_threads(lambda p: stat.fn(x, permute_rows(y, p)), perms, n_jobs, pool)
            done += k
            bar.update(k)
    return null


def _null_memory(xa: Any, ya: Any, count: int, n_jobs: int, on_device: bool, looped: bool) -> None:
    copies = 0 if on_device or not looped else n_jobs * int(getattr(ya, "nbytes", 0))
    _require_draws(
        count, 8 + 2, f"a permutation null of {count} permutations",
        "ask for fewer permutations (n_resamples): 10**4 already resolve p-values near 0.01 to about ±0.002",
        extra=copies + 8 * min(_CHUNK_ELEMENTS, count * int(xa.shape[0])),
    )


def permutation_test(
    x: ArrayLike,
    y: ArrayLike,
    metric: str = "cka",
    *,
    n_resamples: int | None = None,
    rng: Seed = None,
    alternative: str | None = None,
    n_jobs: int | None = 1,
    progress: bool | None = None,
    n_permutations: int | None = None,
    seed: Seed = None,
    **options: Any,
) -> PermutationTestResult:
    """Permutation test of "more similar (or closer) than chance" for two representations.

    The null hypothesis is that the pairing of the rows of x and y carries no information: the
    rows of y are shuffled, the statistic recomputed for each shuffle, and the p-value is the share
    of shuffles at least as extreme as the observed pairing, with the +1 correction that makes it
    valid for a finite number of shuffles (Phipson & Smyth 2010):
    ``pvalue = (1 + #{null at least as extreme}) / (n_permutations + 1)``. Values within
    ``100·ε·|statistic|`` of the statistic count as ties, as in ``scipy.stats.permutation_test``.

    Exact test. When there are no more orderings of the rows than permutations asked for (n! ≤
    ``n_resamples``, e.g. n ≤ 6 for the default 1000), the null holds every one of the n! permutations
    instead of random draws, the identity included, and the p-value is the share of them at least as extreme
    as the observed pairing, without the +1 (as scipy does for its exact tests): the result says
    ``exact=True`` and ``n_permutations = n!``.

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
    n_resamples : int, default 1000
        Number of random permutations B (the smallest attainable p-value is 1/(B+1)); scipy's name.
        ``n_permutations`` is the same argument under reprsim's earlier name (pass one of the two).
    rng : None, int, numpy.random.SeedSequence or numpy.random.Generator
        Permutation b is the b-th call of ``numpy.random.default_rng(rng).permutation(n)``, whatever
        ``n_jobs`` is, so results are reproducible; scipy's name. ``seed`` is the same argument under
        reprsim's earlier name (pass one of the two).
    alternative : {"greater", "less", "two-sided"}, optional
        Default: "greater" for similarities, "less" for distances. "two-sided" doubles the smaller
        one-sided p-value (capped at 1), as scipy does.
    n_jobs : int or None, default 1
        Threads over permutations (-1 or None: all CPUs). The compiled kernels release the GIL. In feature
        space the BLAS's own threads (``reprsim.set_num_threads``) do the parallel work instead. For
        the other metrics each thread also runs BLAS calls: with n_jobs > 1, consider
        ``reprsim.set_num_threads(1)`` to avoid oversubscribing the cores.
    progress : bool or None, default None
        A tqdm progress bar (tqdm is optional): None shows one when stderr is a terminal and the test is
        still running after 2 s; True always (a warning says when tqdm is missing); False never.
    n_permutations : int, optional
        Another name for ``n_resamples``.
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator, optional
        Another name for ``rng``.
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
        Unknown metric or option, bad ``n_resamples``/``alternative``/``n_jobs``/``rng``, an argument given
        under both its names, a null too large for the available memory, or the bad inputs of the metric itself
        (mismatched n, NaN/Inf, constant representation, ...).

    Examples
    --------
    >>> import numpy as np, reprsim
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((200, 30)); y = x @ rng.standard_normal((30, 20))
    >>> res = reprsim.permutation_test(x, y, metric="cka", n_resamples=99, rng=1)
    >>> res.pvalue  # no shuffle comes close: the smallest attainable p-value
    0.01
    """
    stat = _statistic_for(metric, options)
    count_name = "n_resamples" if n_permutations is None else "n_permutations"
    b = _positive_int(_alias("n_resamples", n_resamples, "n_permutations", n_permutations, 1000), count_name)
    seed_name = "seed" if seed is not None else "rng"
    generator = _generator(_alias("rng", rng, "seed", seed, None), seed_name)
    if alternative is None:
        alternative = stat.direction
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {list(_ALTERNATIVES)} or None, got {alternative!r}")
    jobs = _n_jobs(n_jobs)
    progress = check_progress(progress)
    xa, ya, on_device = _prepare(x, y, stat)
    observed = stat.fn(xa, ya)  # the public value, and its input checks
    warn_if_few_samples(stat.bound, int(xa.shape[0]), [int(xa.shape[1])], [int(ya.shape[1])], stacklevel=2)
    draws = _Draws(int(xa.shape[0]), b, generator)
    compiled = stat.bound.measure.permutation_null is not None and not on_device
    _null_memory(xa, ya, draws.count, jobs, on_device, not compiled)
    if compiled:
        kernel, null = _compiled_null(xa, ya, stat.bound, draws, jobs, progress)
        method = str(kernel.space)
    else:
        null = _looped_null(stat, xa, ya, draws, jobs, progress)
        method = "loop"
    if not np.all(np.isfinite(null)):
        raise FloatingPointError(f"the permutation null of {metric} has non-finite values; please report this input")
    lo, hi = stat.bound.value_range
    null = check_range(null, lo, hi, _eps(xa), f"the permutation null of {metric}")
    return PermutationTestResult(
        statistic=float(observed),
        pvalue=_pvalue(null, float(observed), alternative, draws.exact),
        null_distribution=_readonly(null),
        metric=metric,
        alternative=alternative,
        n_permutations=draws.count,
        method=method,
        exact=draws.exact,
    )


# ---------------------------------------------------------------------------------------------
# Calibrated CKA


def calibrated_cka(
    x: ArrayLike,
    y: ArrayLike,
    *,
    debiased: bool = False,
    n_resamples: int | None = None,
    rng: Seed = None,
    n_jobs: int | None = 1,
    progress: bool | None = None,
    n_permutations: int | None = None,
    seed: Seed = None,
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
    (``n_resamples``) adds a p-value and the null's spread.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y.
    debiased : bool, default False
        Calibrate debiased CKA (needs n ≥ 4) instead of biased CKA.
    n_resamples : int, default 1000
        Sampled permutations for ``pvalue`` and ``null_std``; 0 skips them (μ₀ needs none). When n! is
        not larger, every permutation is used instead (``exact=True``, as in :func:`permutation_test`).
    rng : None, int, numpy.random.SeedSequence or numpy.random.Generator
        As in :func:`permutation_test` (the same permutations for the same seed).
    n_jobs : int or None, default 1
        As in :func:`permutation_test`.
    progress : bool or None, default None
        As in :func:`permutation_test`.
    n_permutations : int, optional
        Another name for ``n_resamples`` (pass one of the two).
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator, optional
        Another name for ``rng`` (pass one of the two).

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
    count_name = "n_resamples" if n_permutations is None else "n_permutations"
    b = _positive_int(_alias("n_resamples", n_resamples, "n_permutations", n_permutations, 1000), count_name,
                      allow_zero=True)
    jobs = _n_jobs(n_jobs)
    generator = _generator(_alias("rng", rng, "seed", seed, None), "seed" if seed is not None else "rng")
    progress = check_progress(progress)
    stat = _statistic_for("cka", {"debiased": debiased})
    debiased = bool(stat.bound["debiased"])
    xa, ya, on_device = _prepare(x, y, stat)
    pset = pair_set("moments", [xa], [ya], names_x=["x"], names_y=["y"], min_n=stat.min_n, what=stat.what)
    value = float(evaluate(stat.bound, pset)[0, 0])
    draws = _Draws(int(xa.shape[0]), max(b, 1), generator)
    if b > 0:
        _null_memory(xa, ya, draws.count, jobs, on_device, False)
    if debiased:
        mu0 = 0.0  # the U-statistic HSIC is unbiased under every pairing: its permutation mean is 0
    else:
        # E_π⟨K, L_π⟩ = tr K · tr L / (n − 1) for centred Grams (their rows sum to zero).
        s = pset.pair(0, 0).sums(False)
        mu0 = s["tx"] * s["ty"] / ((s["n"] - 1.0) * math.sqrt(s["sxx"]) * math.sqrt(s["syy"]))
    if b > 0 and not on_device:
        _, null = _compiled_null(xa, ya, stat.bound, draws, jobs, progress)
    elif b > 0:
        null = _looped_null(stat, xa, ya, draws, jobs, progress)
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
        pvalue=_pvalue(null, value, "greater", draws.exact) if b > 0 else None,
        null_std=float(np.std(null, ddof=1)) if null.size > 1 else None,
        null_distribution=_readonly(null),
        exact=b > 0 and draws.exact,
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
    confidence_level: float | None = None,
    method: str = "BCa",
    rng: Seed = None,
    n_jobs: int | None = 1,
    progress: bool | None = None,
    on_degenerate: str = "skip",
    confidence: float | None = None,
    seed: Seed = None,
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
    confidence_level : float, default 0.95
        Confidence level of the two-sided interval, in (0, 1); scipy's name. ``confidence`` is the same
        argument under reprsim's earlier name (pass one of the two).
    method : {"BCa", "percentile", "basic"}, default "BCa"
        Case-insensitive; "BCa" is scipy's default too.
    rng : None, int, numpy.random.SeedSequence or numpy.random.Generator
        Resample b uses the b-th call of ``numpy.random.default_rng(rng).integers(0, n, size=n)``,
        whatever ``n_jobs`` is; scipy's name. ``seed`` is the same argument under reprsim's earlier name.
    n_jobs : int or None, default 1
        Threads over resamples and jackknife samples (-1 or None: all CPUs); the compiled metrics release
        the GIL. With n_jobs > 1, consider ``reprsim.set_num_threads(1)`` to avoid oversubscribing
        the cores with BLAS threads.
    progress : bool or None, default None
        A tqdm progress bar (tqdm is optional): None shows one when stderr is a terminal and the bootstrap is
        still running after 2 s; True always (a warning says when tqdm is missing); False never.
    on_degenerate : {"skip", "raise"}, default "skip"
        What a resample on which the metric is undefined does (see above).
    confidence : float, optional
        Another name for ``confidence_level``.
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator, optional
        Another name for ``rng``.
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
    level_name = "confidence" if confidence is not None else "confidence_level"
    level = _alias("confidence_level", confidence_level, "confidence", confidence, 0.95)
    if isinstance(level, bool) or not isinstance(level, (int, float, np.integer, np.floating)) or not 0.0 < level < 1.0:
        raise ValueError(f"{level_name} must be a number in (0, 1), e.g. 0.95; got {level!r}")
    if not isinstance(method, str) or method.lower() not in _BOOTSTRAP_METHODS:
        raise ValueError(f"method must be one of 'BCa', 'percentile', 'basic'; got {method!r}")
    method = _BOOTSTRAP_METHODS[method.lower()]
    if on_degenerate not in ("skip", "raise"):
        raise ValueError(f"on_degenerate must be 'skip' or 'raise', got {on_degenerate!r}")
    jobs = _n_jobs(n_jobs)
    generator = _generator(_alias("rng", rng, "seed", seed, None), "seed" if seed is not None else "rng")
    progress = check_progress(progress)
    xa, ya, on_device = _prepare(x, y, stat)
    n = int(xa.shape[0])
    observed = stat.fn(xa, ya)
    warn_if_few_samples(stat.bound, n, [int(xa.shape[1])], [int(ya.shape[1])], stacklevel=2)
    # Each thread holds one resample of x and y (host arrays only; a device holds its own copies).
    copies = 0 if on_device else jobs * (int(xa.nbytes) + int(ya.nbytes))
    _require_draws(b + (n if method == "BCa" else 0), 8 + 2 + 8, f"a bootstrap of {b} resamples",
                   "ask for fewer resamples (n_resamples), or use fewer samples or features",
                   extra=copies + 8 * n * max(4 * jobs, 16))

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
    with Progress(progress, b + (n if method == "BCa" else 0), "bootstrap") as bar, _thread_pool(jobs) as pool:
        done = 0
        for k in _timed_chunks(b, jobs, max(4 * jobs, 16)):
            idxs = [generator.integers(0, n, size=n) for _ in range(k)]
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
        alpha = (1.0 - float(level)) / 2.0
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

            jack_parts = []
            start = 0
            for k in _timed_chunks(n, jobs, max(4 * jobs, 16)):
                jack_parts += _map_threads(leave_one_out, list(range(start, start + k)), jobs, pool)
                start += k
                bar.update(k)
            jack = np.asarray(jack_parts, dtype=np.float64)
            levels = _bca_levels(dist, observed, jack, alpha)
        else:
            levels = (alpha, 1.0 - alpha)
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
        confidence_level=float(level),
        n_resamples=b,
        n_degenerate=degenerate,
    )
