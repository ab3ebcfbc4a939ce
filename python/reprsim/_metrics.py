"""Similarity and distance functions over two representations (numpy in, Python float out)."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from ._registry import check_metric
from ._validation import as_lists, as_pair, is_gpu_tensor

ArrayLike = Any

_SVCCA_CONVENTIONS = {"variance": True, "singular_values": False}
_PWCCA_CONVENTIONS = {"x": "pwcca_x", "y": "pwcca_y", "smaller": "pwcca_smaller", "padded": "pwcca_padded"}
# The nuclear norm of x̂ᵀŷ is at most 1; rounding can push it just past 1 (a relative error of a few
# units of the products' precision). Beyond this slack something is wrong and we say so.
_NUCLEAR_SLACK = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


def svcca_mode(variance: Any, convention: str) -> tuple[float, bool]:
    """Checked SVCCA options as the kernels take them: (share to keep, measured on Σσ² or not)."""
    if convention not in _SVCCA_CONVENTIONS:
        raise ValueError(f"convention must be one of {sorted(_SVCCA_CONVENTIONS)}, got {convention!r}")
    if not (isinstance(variance, (int, float)) and 0.0 < variance <= 1.0):
        raise ValueError(f"variance must be a number in (0, 1], got {variance!r}")
    return float(variance), _SVCCA_CONVENTIONS[convention]


def pwcca_stat(convention: str) -> str:
    """The kernels' name of the PWCCA statistic for a checked weighting convention."""
    if convention not in _PWCCA_CONVENTIONS:
        raise ValueError(f"convention must be one of {sorted(_PWCCA_CONVENTIONS)}, got {convention!r}")
    return _PWCCA_CONVENTIONS[convention]


def _warn_pwcca_not_unique(rank_x: int, rank_y: int, n: int) -> None:
    """PWCCA is not unique once the column spaces must share directions (rank_x + rank_y > n − 1)."""
    if rank_x + rank_y > n - 1:
        shared = rank_x + rank_y - (n - 1)
        warnings.warn(
            f"PWCCA is not unique here: the ranks of x ({rank_x}) and y ({rank_y}) add up to more than n - 1 = "
            f"{n - 1}, so at least {shared} canonical correlation{'s are' if shared > 1 else ' is'} exactly 1 with "
            "arbitrary directions, and the projection weights (so the value) depend on that arbitrary choice; use "
            "more samples or fewer features (e.g. reprsim.svcca)",
            UserWarning,
            stacklevel=3,
        )


# Within this distance of 1 the Procrustes nuclear norm gives way to the residual of the optimal rotation
# (the chord ‖x̂ − ŷQ*‖_F = 2 sin(θ/2)): arccos and 2 − 2‖·‖_* of a number within rounding of 1 turn ε into √ε.
_CHORD_BAND = 1e-3


def _on_gpu(x: Any, y: Any) -> bool:
    """Whether x or y is a torch tensor on a GPU (then the torch device path runs, not the C++ kernels)."""
    return is_gpu_tensor(x) or is_gpu_tensor(y)


def _gpu_accumulator(x: Any, y: Any, min_n: int, what: str, float64_products: bool = False) -> Any:
    """The device accumulator when x or y is a torch tensor on a GPU, else None (the C++ path)."""
    if not _on_gpu(x, y):
        return None
    from .torch._gpu import device_accumulator

    return device_accumulator(x, y, min_n, what, float64_products)


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise FloatingPointError(f"{what} came out as {value}; please report this input")
    return float(value)


_BANDWIDTH_RULES = ("median", "mean", "median_full")


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux: MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def _require_memory(need: float, what: str, fix: str, detail: str = "") -> None:
    """Raise ValueError, before anything is allocated, when ``need`` bytes exceed the memory available now.

    Every O(n²) or O(p²) allocation of the public API is checked here first, with the same error type as
    any other request that cannot be carried out for these inputs (ValueError); the message gives the
    figure needed, the figure available, and the fix.
    """
    available = _available_memory()
    if available is not None and need > available:
        detail = f" ({detail})" if detail else ""
        raise ValueError(
            f"{what} needs about {_gib(need)}{detail}, but only {_gib(available)} of memory is available; {fix}"
        )


def _rbf_memory_bytes(n: int, p1: int, p2: int) -> int:
    # Two n×n float64 kernel matrices, the off-diagonal distances copied once for the median, and a
    # float64 centred copy of the wider input.
    return 8 * (2 * n * n + n * (n - 1) // 2 + n * max(p1, p2))


def _linear_cka_memory_bytes(n: int, widths: list[int], itemsize: int, space: str) -> int:
    """Peak scratch memory of one linear CKA comparison (both inputs' widths) in the given space."""
    p = sum(widths)
    if space == "feature":
        # x and y centred side by side, and the (p1+p2)² cross-product matrix of one syrk.
        return itemsize * (n * p + p * p) + 16 * n
    # Two n×n Gram matrices and the centred copies they are formed from.
    return itemsize * (2 * n * n + n * p) + 16 * n


def _pairwise_cka_memory_bytes(n: int, xw: list[int], yw: list[int] | None, itemsize: int, space: str) -> int:
    """Peak memory of reprsim.pairwise's linear CKA: every factor is held at once."""
    right = xw if yw is None else yw
    every = xw + ([] if yw is None else yw)
    if space == "feature":
        # Centred features of every representation, one p×p syrk at a time, the y side stacked once,
        # and one (p_x × Σp_y) product at a time.
        return itemsize * (n * sum(every) + max(every) ** 2 + n * sum(right) + max(xw) * sum(right))
    # A packed n(n+1)/2 triangle per representation, plus one n×n Gram and one centred copy as scratch.
    return itemsize * (len(every) * (n * (n + 1) // 2) + n * n + n * max(every))


_CKA_FIX = (
    "use fewer samples (Gram space holds n×n matrices) or fewer features (feature space holds a "
    "(p1+p2)×(p1+p2) matrix), or reprsim.minibatch_cka, whose memory grows with the batch size only"
)


def _linear_cka_space(n: int, widths: list[int], itemsize: int) -> str:
    """The space the kernel chooses for one comparison, or the other one when only that one fits in
    memory; ValueError (before allocating) when neither does."""
    space = _core.choose_space(n, widths[0], widths[1], itemsize)
    need = _linear_cka_memory_bytes(n, widths, itemsize, space)
    available = _available_memory()
    if available is None or need <= available:
        return space
    other = "gram" if space == "feature" else "feature"
    need_other = _linear_cka_memory_bytes(n, widths, itemsize, other)
    if need_other <= available:
        return other
    _require_memory(
        min(need, need_other),
        f"linear CKA with n = {n} samples and widths {widths[0]} and {widths[1]}", _CKA_FIX,
        "in the cheaper of Gram and feature space",
    )
    return space  # pragma: no cover (available memory grew meanwhile)


def cka(
    x: ArrayLike,
    y: ArrayLike,
    *,
    debiased: bool = False,
    kernel: str = "linear",
    threshold: float = 1.0,
    bandwidth: str | float = "median",
) -> float:
    """Centred kernel alignment (CKA) between two representations, with a linear or RBF kernel.

    Similarity in [0, 1] (the debiased estimator can fall slightly outside), symmetric, invariant to
    orthogonal transforms and translation of either input; linear CKA (and RBF CKA with a bandwidth
    rule) is also invariant to isotropic scaling.

    Linear: ``CKA = ‖XcᵀYc‖²_F / (‖XcᵀXc‖_F · ‖YcᵀYc‖_F)`` with Xc, Yc column-centred (Kornblith et
    al. 2019). With ``debiased=True`` each HSIC is the unbiased U-statistic of Song et al. (2012), as
    in Kornblith et al.'s reference code; it needs n ≥ 4.

    RBF (``kernel="rbf"``): ``K_ij = exp(−‖x_i − x_j‖² / (2σ²))`` with ``σ² = threshold² · s`` and s
    the median squared distance between distinct samples (Kornblith et al.'s rule; ``bandwidth="mean"``
    uses the mean, ``bandwidth="median_full"`` the median over all n² entries including the zero
    diagonal, as Kornblith et al.'s published notebook computes it), or a fixed kernel width
    ``bandwidth=σ``. Biased: CKA of the double-centred kernel matrices; debiased: the U-statistic HSIC
    of the raw ones. The two n×n float64 matrices are built in C++ in row blocks; when they would not
    fit in the available memory (about 20·n² bytes in all), ValueError says how much is needed.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y. float32 stays float32 for the linear products; other
        dtypes are promoted to float64; reductions (and every RBF computation) run in float64. CUDA
        torch tensors are reduced on their device (linear kernel only).
    debiased : bool, default False
        Use the U-statistic HSIC estimator (Song et al. 2012) instead of the biased V-statistic.
    kernel : {"linear", "rbf"}, default "linear"
        The kernel both Gram matrices are formed with.
    threshold : float, default 1.0
        RBF only, > 0: σ is ``threshold`` times the root of the bandwidth rule's summary.
    bandwidth : {"median", "mean", "median_full"} or float, default "median"
        RBF only: the rule for σ², or σ itself (> 0; then ``threshold`` must stay 1.0).

    Returns
    -------
    float
        The CKA similarity: 1 for representations equal up to the invariances above, near 0 for
        unrelated ones. In [0, 1] for the biased estimator; the debiased one can fall slightly outside
        (below 0 for unrelated inputs).

    Raises
    ------
    ValueError
        Mismatched n, n < 2 (n < 4 debiased), NaN/Inf, empty input, a constant representation, an
        unknown kernel or bandwidth rule, a non-positive threshold or bandwidth, or a computation (RBF
        matrices, linear CKA's Gram or feature-space matrices) too large for the available memory.
    TypeError
        An input that is not a real-valued 2-D array (or CUDA tensor), or a bandwidth of another type.
    FloatingPointError
        A non-finite result that no input check foresaw (a bug; please report the input).

    See Also
    --------
    distance : The dissimilarity 1 − CKA by name, with the other metrics of ``reprsim.METRICS``.
    StreamingSimilarity.cka : The same value over data streamed in batches.
    minibatch_cka : The minibatch estimator, for data too large for one Gram matrix.

    References
    ----------
    .. [1] S. Kornblith, M. Norouzi, H. Lee, G. Hinton. "Similarity of Neural Network
       Representations Revisited." ICML 2019.
    .. [2] L. Song, A. Smola, A. Gretton, J. Bedo, K. Borgwardt. "Feature Selection via Dependence
       Maximization." JMLR 13, 2012.
    """
    if kernel not in ("linear", "rbf"):
        raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}")
    what = "debiased CKA" if debiased else "CKA"
    if kernel == "linear":
        if threshold != 1.0 or not (isinstance(bandwidth, str) and bandwidth == "median"):
            raise ValueError("threshold and bandwidth apply to kernel='rbf' only; drop them for linear CKA")
        min_n = 4 if debiased else 2
        if _on_gpu(x, y):
            from .torch._gpu import device_cka

            return _finite(device_cka(x, y, bool(debiased)), "CKA")
        xa, ya = as_pair(x, y, min_n=min_n, what=what)
        space = _linear_cka_space(xa.shape[0], [xa.shape[1], ya.shape[1]], xa.itemsize)
        return _finite(_core.linear_cka(xa, ya, bool(debiased), space), "CKA")

    if isinstance(bandwidth, str):
        if bandwidth not in _BANDWIDTH_RULES:
            raise ValueError(
                f"bandwidth must be one of {', '.join(_BANDWIDTH_RULES)} or a positive number (the kernel "
                f"width sigma), got {bandwidth!r}"
            )
        sigma = 0.0
    elif isinstance(bandwidth, (int, float, np.floating, np.integer)) and not isinstance(bandwidth, bool):
        sigma = float(bandwidth)
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"bandwidth must be a positive kernel width sigma, got {bandwidth!r}")
        if threshold != 1.0:
            raise ValueError("threshold scales a bandwidth rule; with a fixed bandwidth (sigma) leave threshold at 1.0")
    else:
        raise TypeError(f"bandwidth must be a rule name or a number, got {type(bandwidth).__name__}")
    if not (isinstance(threshold, (int, float, np.floating, np.integer)) and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    xa, ya = as_pair(x, y, min_n=4 if debiased else 2, what=f"RBF {what}")
    n = xa.shape[0]
    _require_memory(
        _rbf_memory_bytes(n, xa.shape[1], ya.shape[1]),
        f"RBF kernel CKA with n = {n} samples",
        "use fewer samples, linear CKA (reprsim.cka or reprsim.StreamingSimilarity), or reprsim.minibatch_cka",
        f"two {n}x{n} float64 kernel matrices and scratch",
    )
    bw_rule = bandwidth if isinstance(bandwidth, str) else "median"
    return _finite(_core.rbf_cka(xa, ya, bool(debiased), bw_rule, float(threshold), sigma), "RBF CKA")


def canonical_correlations(x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """Canonical correlations between two representations, descending.

    Computed from a column-pivoted QR factorisation of each centred input and an SVD of QxᵀQy, in
    float64 (never through an inverse covariance). One correlation per dimension of the smaller column
    space: min(rank x, rank y), where the numerical rank counts the pivots |R_ii| > tol·|R_11| with
    tol = max(n, p)·ε₆₄ (numpy.linalg.matrix_rank's rule for the float64 arithmetic) plus, for float32
    inputs, √p·ε₃₂ (the rounding already in the data; it does not grow with n).

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y; n ≥ 3. Computed in float64 whatever the dtype.

    Returns
    -------
    numpy.ndarray, shape (min(rank x, rank y),)
        The canonical correlations ρ₁ ≥ ρ₂ ≥ … in [0, 1], float64.

    Raises
    ------
    ValueError
        A rank reaches n − 1 (every correlation would be trivially 1), or the bad inputs listed under
        :func:`cka` (mismatched n, NaN/Inf, empty or constant input).
    TypeError
        An input that is not a real-valued 2-D array.

    References
    ----------
    .. [1] H. Hotelling. "Relations Between Two Sets of Variates." Biometrika 28, 1936.
    """
    gpu = _gpu_accumulator(x, y, 3, "CCA", float64_products=True)
    if gpu is not None:
        return np.asarray(gpu.canonical_correlations())
    xa, ya = as_pair(x, y, min_n=3, what="CCA")
    rho = _core.canonical_correlations(xa, ya)
    if not np.all(np.isfinite(rho)):
        raise FloatingPointError("canonical correlations came out non-finite; please report this input")
    return rho


def mean_cca(x: ArrayLike, y: ArrayLike) -> float:
    """Mean canonical correlation ρ̄ between two representations.

    Similarity in [0, 1], symmetric, invariant to invertible linear maps and translation of either
    input. An exact statistic (no estimator choice): the mean of :func:`canonical_correlations`, which
    describes the computation and the rank rule.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y; n ≥ 3. Computed in float64 whatever the dtype.

    Returns
    -------
    float
        The mean canonical correlation, in [0, 1]: 1 when one input's column space contains the other's.

    Raises
    ------
    ValueError
        A rank reaches n − 1, or the bad inputs listed under :func:`cka`.
    TypeError
        An input that is not a real-valued 2-D array.

    See Also
    --------
    distance : The dissimilarity ``distance(x, y, "mean_cca")``, 1 − ρ̄.

    References
    ----------
    .. [1] F. Ding, J.-S. Denain, J. Steinhardt. "Grounding Representation Similarity Through
       Statistical Testing." NeurIPS 2021.
    """
    gpu = _gpu_accumulator(x, y, 3, "CCA", float64_products=True)
    if gpu is not None:
        return _finite(gpu.mean_cca(), "mean CCA")
    xa, ya = as_pair(x, y, min_n=3, what="CCA")
    return _finite(_core.cca_statistic(xa, ya, "mean"), "mean CCA")


def mean_sq_cca(x: ArrayLike, y: ArrayLike) -> float:
    """Mean squared canonical correlation R²_CCA between two representations.

    Similarity in [0, 1], symmetric, invariant to invertible linear maps and translation of either
    input; exact (no estimator choice). The mean of the squares of :func:`canonical_correlations`.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y; n ≥ 3. Computed in float64 whatever the dtype.

    Returns
    -------
    float
        R²_CCA in [0, 1].

    Raises
    ------
    ValueError
        A rank reaches n − 1, or the bad inputs listed under :func:`cka`.
    TypeError
        An input that is not a real-valued 2-D array.

    References
    ----------
    .. [1] F. Ding, J.-S. Denain, J. Steinhardt. "Grounding Representation Similarity Through
       Statistical Testing." NeurIPS 2021.
    """
    gpu = _gpu_accumulator(x, y, 3, "CCA", float64_products=True)
    if gpu is not None:
        return _finite(gpu.mean_sq_cca(), "mean squared CCA")
    xa, ya = as_pair(x, y, min_n=3, what="CCA")
    return _finite(_core.cca_statistic(xa, ya, "mean_sq"), "mean squared CCA")


def svcca(x: ArrayLike, y: ArrayLike, *, variance: float = 0.99, convention: str = "variance") -> float:
    """SVCCA (Raghu et al. 2017): mean canonical correlation of the top principal components.

    Each centred input keeps its top k principal components, k the smallest number whose share of the
    total reaches ``variance``; then the mean canonical correlation of the kept components. Similarity
    in [0, 1]; invariant to orthogonal transforms, isotropic scaling and translation.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y; n ≥ 3. Computed in float64 whatever the dtype.
    variance : float, default 0.99
        Share to keep, in (0, 1].
    convention : {"variance", "singular_values"}, default "variance"
        "variance" measures the share by Σσ² (explained variance); "singular_values" by Σσ, as in
        google/svcca's tutorials.

    Returns
    -------
    float
        SVCCA in [0, 1]; exact (no estimator choice) once k is fixed.

    Raises
    ------
    ValueError
        ``variance`` outside (0, 1], an unknown ``convention``, a rank reaching n − 1, or the bad inputs
        listed under :func:`cka`.
    TypeError
        An input that is not a real-valued 2-D array.

    References
    ----------
    .. [1] M. Raghu, J. Gilmer, J. Yosinski, J. Sohl-Dickstein. "SVCCA: Singular Vector Canonical
       Correlation Analysis for Deep Learning Dynamics and Interpretability." NeurIPS 2017.
    """
    keep, on_variance = svcca_mode(variance, convention)
    gpu = _gpu_accumulator(x, y, 3, "SVCCA", float64_products=True)
    if gpu is not None:
        return _finite(gpu.svcca(variance=variance, convention=convention), "SVCCA")
    xa, ya = as_pair(x, y, min_n=3, what="SVCCA")
    return _finite(
        _core.cca_statistic(xa, ya, "mean", keep, on_variance), "SVCCA"
    )


def pwcca(x: ArrayLike, y: ArrayLike, *, convention: str = "x") -> float:
    """Projection-weighted CCA (Morcos et al. 2018): Σ αᵢρᵢ / Σ αᵢ.

    αᵢ = Σⱼ |⟨hᵢ, x̃ⱼ⟩|: how much of the centred neurons x̃ⱼ the i-th canonical variate hᵢ accounts
    for. Similarity in [0, 1]; not symmetric.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y; n ≥ 3. Computed in float64 whatever the dtype.
    convention : {"x", "y", "smaller", "padded"}, default "x"
        Whose canonical variates and neurons give the weights: "x" (the reference input, as in Ding et
        al.'s protocol), "y", or "smaller", the input with fewer features (ties: x), as google/svcca's
        ``compute_pwcca`` chooses. "padded": weights from x (the reference), and the part of x's column
        space that has no canonical correlation with y (rank x − rank y directions, when x has the larger
        rank) counts with correlation 0 and the expected projection weight of a random orthonormal basis
        of it; see ``reprsim.benchmark.PaddedCCA``.

    Returns
    -------
    float
        PWCCA in [0, 1]; exact (no estimator choice).

    Raises
    ------
    ValueError
        An unknown ``convention``, a rank reaching n − 1, or the bad inputs listed under :func:`cka`.
    TypeError
        An input that is not a real-valued 2-D array.

    References
    ----------
    .. [1] A. Morcos, M. Raghu, S. Bengio. "Insights on Representational Similarity in Neural
       Networks with Canonical Correlation." NeurIPS 2018.
    .. [2] F. Ding, J.-S. Denain, J. Steinhardt. "Grounding Representation Similarity Through
       Statistical Testing." NeurIPS 2021.
    """
    stat = pwcca_stat(convention)
    gpu = _gpu_accumulator(x, y, 3, "PWCCA", float64_products=True)
    if gpu is not None:
        return _finite(gpu.pwcca(convention=convention), "PWCCA")
    xa, ya = as_pair(x, y, min_n=3, what="PWCCA")
    value, rank_x, rank_y = _core.cca_statistic(xa, ya, stat, with_ranks=True)
    _warn_pwcca_not_unique(rank_x, rank_y, xa.shape[0])
    return _finite(value, "PWCCA")


@dataclass(frozen=True)
class CCASummary:
    """Every summary of the canonical correlations of one pair (see :func:`cca_summary`).

    Attributes
    ----------
    correlations : numpy.ndarray
        The canonical correlations, descending (:func:`canonical_correlations`).
    mean_cca : float
        Their mean (:func:`mean_cca`).
    mean_sq_cca : float
        Their mean square (:func:`mean_sq_cca`).
    pwcca : float
        Projection-weighted CCA with the requested convention (:func:`pwcca`).
    """

    correlations: np.ndarray
    mean_cca: float
    mean_sq_cca: float
    pwcca: float


def cca_summary(x: ArrayLike, y: ArrayLike, *, convention: str = "x") -> CCASummary:
    """The canonical correlations and every CCA summary of them from one factorisation.

    Equal to calling :func:`canonical_correlations`, :func:`mean_cca`, :func:`mean_sq_cca` and
    :func:`pwcca` one after the other, at the cost of one call: each input is factored once and M = QxᵀQy
    has one SVD, whose singular vectors serve PWCCA's projection weights.

    Parameters
    ----------
    x, y : array_like, shape (n_samples, p1) and (n_samples, p2)
        Representations of the same samples, rows aligned (numpy arrays, CPU or GPU torch tensors).
    convention : {"x", "y", "smaller", "padded"}
        PWCCA's weighting side, as in :func:`pwcca`.

    Returns
    -------
    CCASummary
        ``correlations`` (descending, min(rank x, rank y) of them), ``mean_cca``, ``mean_sq_cca`` and
        ``pwcca``; all similarities in [0, 1].

    Raises
    ------
    ValueError
        A rank reaching n − 1 (every correlation trivially 1), an unknown convention, or the bad inputs
        listed under :func:`cka`.

    References
    ----------
    .. [1] A. Morcos, M. Raghu, S. Bengio. "Insights on representational similarity in neural networks
       with canonical correlation." NeurIPS 2018.
    """
    stat = pwcca_stat(convention)
    gpu = _gpu_accumulator(x, y, 3, "CCA", float64_products=True)
    if gpu is not None:
        rho = np.asarray(gpu.canonical_correlations())
        return CCASummary(rho, _finite(rho.mean(), "mean CCA"), _finite(np.mean(rho**2), "mean squared CCA"),
                          _finite(gpu.pwcca(convention=convention), "PWCCA"))
    xa, ya = as_pair(x, y, min_n=3, what="CCA")
    rho, mean, mean_sq, pw, rank_x, rank_y = _core.cca_summary(xa, ya, stat, with_ranks=True)
    _warn_pwcca_not_unique(rank_x, rank_y, xa.shape[0])
    if not np.all(np.isfinite(rho)):
        raise FloatingPointError("canonical correlations came out non-finite; please report this input")
    return CCASummary(rho, _finite(mean, "mean CCA"), _finite(mean_sq, "mean squared CCA"), _finite(pw, "PWCCA"))


def _nuclear_to_distance(nuc: np.ndarray | float, dtype: np.dtype, angular: bool) -> Any:
    nuc = np.asarray(nuc, dtype=np.float64)
    if not np.all(np.isfinite(nuc)):
        raise FloatingPointError("Procrustes nuclear norm came out non-finite; please report this input")
    if not angular:
        return 2.0 - 2.0 * nuc
    slack = _NUCLEAR_SLACK[np.dtype(dtype)]
    if np.any(nuc > 1.0 + slack):
        raise FloatingPointError(f"Procrustes nuclear norm {nuc.max()} exceeds 1 beyond rounding; please report")
    # Within rounding of 1 the angle is 0.
    return np.arccos(np.minimum(nuc, 1.0))


def procrustes_distance(x: ArrayLike, y: ArrayLike, *, angular: bool = False) -> float:
    """Orthogonal Procrustes distance (Ding et al. 2021).

    Both inputs are centred and scaled to unit Frobenius norm; the distance is
    ``2 − 2‖xᵀy‖_*`` in [0, 2] (the squared Procrustes distance, as Ding et al. use it), or with
    ``angular=True`` ``arccos ‖xᵀy‖_*`` in [0, π/2] (Williams et al. 2021), which is a metric.
    Symmetric; invariant to orthogonal transforms, isotropic scaling and translation; exact (no
    estimator choice). Where ‖xᵀy‖_* lies within 1e-3 of 1 the distance is computed from the residual of
    the optimal rotation Q*, ‖x − yQ*‖_F = 2 sin(θ/2) (so θ = 2 arcsin(‖x − yQ*‖/2) and 2 − 2‖xᵀy‖_* =
    ‖x − yQ*‖²), which keeps full relative precision near 0: the distance of x to x·Q (Q orthogonal) is
    of the order of rounding (≤ 1e-12 in float64), and the angular form satisfies the triangle
    inequality to rounding.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y; n ≥ 2. float32 stays float32 for the products.
    angular : bool, default False
        Return the angular form (a metric) instead of the squared distance.

    Returns
    -------
    float
        A distance: 0 for representations equal up to the invariances above; at most 2 (π/2 angular).

    Raises
    ------
    ValueError
        The bad inputs listed under :func:`cka` (mismatched n, NaN/Inf, empty or constant input).
    TypeError
        An input that is not a real-valued 2-D array.

    References
    ----------
    .. [1] F. Ding, J.-S. Denain, J. Steinhardt. "Grounding Representation Similarity Through
       Statistical Testing." NeurIPS 2021.
    .. [2] A. Williams, E. Kunz, S. Kornblith, S. Linderman. "Generalized Shape Metrics on Neural
       Representations." NeurIPS 2021.
    """
    gpu = _gpu_accumulator(x, y, 2, "the Procrustes distance")
    if gpu is not None:
        return _finite(gpu.procrustes_distance(angular=bool(angular)), "Procrustes distance")
    xa, ya = as_pair(x, y, min_n=2, what="the Procrustes distance")
    nuc = _core.procrustes_nuclear(xa, ya)
    if math.isfinite(nuc) and 1.0 - _CHORD_BAND <= nuc <= 1.0 + _NUCLEAR_SLACK[np.dtype(xa.dtype)]:
        # Near 0 the distance comes from the residual of the optimal rotation (full relative precision).
        chord = _finite(_core.procrustes_chord(xa, ya), "Procrustes residual")
        return 2.0 * math.asin(min(1.0, 0.5 * chord)) if angular else chord * chord
    return float(_nuclear_to_distance(nuc, xa.dtype, bool(angular)))


def distance(x: ArrayLike, y: ArrayLike, metric: str = "cka", **options: Any) -> float:
    """Dissimilarity between two representations, by metric name (see ``reprsim.METRICS``).

    "cka" → 1 − CKA, "debiased_cka" → 1 − debiased CKA, "mean_cca" → 1 − ρ̄, "mean_sq_cca" →
    1 − R²_CCA, "svcca" → 1 − SVCCA, "pwcca" → 1 − PWCCA, "procrustes" → 2 − 2‖xᵀy‖_*,
    "angular_procrustes" → arccos ‖xᵀy‖_* (Ding et al. 2021's definitions). Each entry of
    ``reprsim.METRICS`` states its range, symmetry, invariances, estimator and reference.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y.
    metric : str, default "cka"
        A name from ``reprsim.METRICS``.
    **options
        Passed to the underlying function (e.g. ``convention=`` for "pwcca", ``variance=`` for
        "svcca").

    Returns
    -------
    float
        The dissimilarity: 0 for representations equal up to the metric's invariances.

    Raises
    ------
    ValueError
        An unknown metric name, or what the underlying function raises for its inputs.
    TypeError
        A metric that is not a string, an option the metric does not take, or a bad input type.
    """
    info = check_metric(metric)
    if metric == "cka":
        return 1.0 - cka(x, y, **options)
    if metric == "debiased_cka":
        return 1.0 - cka(x, y, debiased=True, **options)
    if metric == "procrustes":
        return procrustes_distance(x, y, **options)
    if metric == "angular_procrustes":
        return procrustes_distance(x, y, angular=True, **options)
    assert info.similarity is not None  # only the Procrustes metrics, handled above, have none
    similarity = globals()[info.similarity]
    return 1.0 - similarity(x, y, **options)


def pairwise(xs: Any, ys: Any = None, *, metric: str = "cka", **options: Any) -> np.ndarray:
    """Matrix of ``distance(xs[i], ys[j], metric)``; with ys omitted, xs against itself.

    Every representation must have the same n; widths may differ. Each representation's factor
    (centred features or Gram matrix, QR factor, normalised features) is computed once and reused for
    every pair, so k representations cost k factorisations plus k² cheap combinations.

    Parameters
    ----------
    xs : sequence of array_like
        The k1 representations of shapes (n, p_i).
    ys : sequence of array_like, optional
        The k2 representations of shapes (n, q_j); default: ``xs``.
    metric : str, default "cka"
        A name from ``reprsim.METRICS``.
    **options
        Options of the metric (``variance=`` and ``convention=`` for "svcca", ``convention=`` for
        "pwcca"); the other metrics take none.

    Returns
    -------
    numpy.ndarray, shape (k1, k2)
        The float64 dissimilarities, entry (i, j) equal to ``distance(xs[i], ys[j], metric, **options)``.

    Raises
    ------
    ValueError
        An unknown metric, an empty list, representations of different n, or the bad inputs listed
        under :func:`cka`.
    TypeError
        xs or ys not a list of arrays, a metric that is not a string, or an option the metric does not
        take.
    """
    check_metric(metric)
    return _exact_diagonal(_pairwise(xs, ys, metric, options), ys)


def _pairwise(xs: Any, ys: Any, metric: str, options: dict[str, Any]) -> np.ndarray:
    if metric in ("cka", "debiased_cka"):
        debiased = metric == "debiased_cka"
        _no_options(metric, options)
        xl, yl = as_lists(xs, ys, min_n=4 if debiased else 2, what=metric)
        space = _pairwise_cka_space(xl, yl)
        return 1.0 - _finite_matrix(_core.linear_cka_matrix(xl, yl, debiased, space), metric)
    if metric in ("procrustes", "angular_procrustes"):
        _no_options(metric, options)
        xl, yl = as_lists(xs, ys, min_n=2, what="the Procrustes distance")
        nuc = _core.procrustes_nuclear_matrix(xl, yl)
        dist = _nuclear_to_distance(nuc, xl[0].dtype, metric == "angular_procrustes")
        # Near-identical pairs: from the residual of the optimal rotation, as procrustes_distance.
        for i, j in zip(*np.nonzero(nuc >= 1.0 - _CHORD_BAND)):
            if yl is None and i == j:
                continue
            chord = _finite(_core.procrustes_chord(xl[i], (xl if yl is None else yl)[j]), "Procrustes residual")
            dist[i, j] = 2.0 * math.asin(min(1.0, 0.5 * chord)) if metric == "angular_procrustes" else chord * chord
        return dist
    xl, yl = as_lists(xs, ys, min_n=3, what=metric)
    if metric == "svcca":
        variance = options.pop("variance", 0.99)
        convention = options.pop("convention", "variance")
        _no_options(metric, options)
        return 1.0 - _finite_matrix(_core.cca_matrix(xl, yl, "mean", *svcca_mode(variance, convention)), metric)
    if metric == "pwcca":
        convention = options.pop("convention", "x")
        _no_options(metric, options)
        return 1.0 - _finite_matrix(_core.cca_matrix(xl, yl, pwcca_stat(convention)), metric)
    _no_options(metric, options)
    return 1.0 - _finite_matrix(_core.cca_matrix(xl, yl, "mean" if metric == "mean_cca" else "mean_sq"), metric)


def _finite_matrix(values: np.ndarray, metric: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise FloatingPointError(f"pairwise {metric} came out non-finite; please report this input")
    return values


def _exact_diagonal(matrix: Any, ys: Any) -> Any:
    """xs against itself: every metric's distance of a representation to itself is exactly 0 (the kernels'
    diagonal can differ by rounding, which the debiased estimator amplifies: fuzzing found −1.4e-5)."""
    if ys is None:
        np.fill_diagonal(matrix, 0.0)
    return matrix


def _pairwise_cka_space(xl: list[np.ndarray], yl: list[np.ndarray] | None) -> str:
    """The space for pairwise linear CKA (the kernel's choice, or the other one when only that one
    fits in memory); ValueError before allocating when neither fits."""
    n, itemsize = xl[0].shape[0], xl[0].itemsize
    xw = [a.shape[1] for a in xl]
    yw = None if yl is None else [a.shape[1] for a in yl]
    k1, k2 = len(xw), len(xw if yw is None else yw)
    space = _core.choose_space(n, max(xw), max(xw if yw is None else yw), itemsize, k1, k2)
    available = _available_memory()
    need = _pairwise_cka_memory_bytes(n, xw, yw, itemsize, space)
    if available is None or need <= available:
        return space
    other = "gram" if space == "feature" else "feature"
    need_other = _pairwise_cka_memory_bytes(n, xw, yw, itemsize, other)
    if need_other <= available:
        return other
    count = k1 + (0 if yw is None else k2)
    _require_memory(
        min(need, need_other),
        f"pairwise linear CKA of {count} representations with n = {n} samples",
        "pass fewer representations per call (e.g. blocks of the matrix), or " + _CKA_FIX,
        "every representation's factor is held at once",
    )
    return space  # pragma: no cover


def _no_options(metric: str, options: dict[str, Any]) -> None:
    if options:
        raise TypeError(f"metric {metric!r} takes no options, got {sorted(options)}")
