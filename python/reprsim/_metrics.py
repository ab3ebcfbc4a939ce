"""Similarity and distance functions over two representations (numpy in, Python float out)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _measures  # noqa: F401  (registers the measures)
from ._backend import pair_set
from ._compute import check_range, evaluate, set_widths, warn_if_few_samples
from ._compute import pair_value as _value
from ._measures import warn_if_pwcca_not_unique
from ._progress import check_progress
from ._registry import bind, describe
from ._result import Comparison

ArrayLike = Any


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
    if kernel == "linear":
        if threshold != 1.0 or not (isinstance(bandwidth, str) and bandwidth == "median"):
            raise ValueError("threshold and bandwidth apply to kernel='rbf' only; drop them for linear CKA")
        return _value("cka", x, y, {"debiased": debiased})
    return _value("rbf_cka", x, y, {"debiased": debiased, "threshold": threshold, "bandwidth": bandwidth})


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
    pset = pair_set("factor", [x], [y], names_x=["x"], names_y=["y"], min_n=3, what="CCA")
    rho = np.asarray(pset.pair(0, 0).correlations(), dtype=np.float64)
    return check_range(rho, 0.0, 1.0, pset.eps, "a canonical correlation")


def mean_cca(x: ArrayLike, y: ArrayLike, *, convention: str = "min_rank") -> float:
    """Mean canonical correlation ρ̄ between two representations.

    Similarity in [0, 1], symmetric, invariant to invertible linear maps and translation of either
    input. An exact statistic (no estimator choice): the mean of :func:`canonical_correlations`, which
    describes the computation and the rank rule.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y; n ≥ 3. Computed in float64 whatever the dtype.
    convention : {"min_rank", "padded"}, default "min_rank"
        "min_rank": the mean over the min(rank x, rank y) canonical correlations (symmetric). "padded": over
        x's rank, x's directions that have no canonical correlation with y counting 0 — x is the reference,
        as in Ding et al.'s benchmark, where a PC-deleted representation keeps fewer directions (not
        symmetric).

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
    return _value("mean_cca", x, y, {"convention": convention})


def mean_sq_cca(x: ArrayLike, y: ArrayLike, *, convention: str = "min_rank") -> float:
    """Mean squared canonical correlation R²_CCA between two representations.

    Similarity in [0, 1], symmetric, invariant to invertible linear maps and translation of either
    input; exact (no estimator choice). The mean of the squares of :func:`canonical_correlations`.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y; n ≥ 3. Computed in float64 whatever the dtype.
    convention : {"min_rank", "padded"}, default "min_rank"
        "min_rank": the mean over the min(rank x, rank y) canonical correlations (symmetric). "padded": over
        x's rank, x's directions that have no canonical correlation with y counting 0 — x is the reference,
        as in Ding et al.'s benchmark, where a PC-deleted representation keeps fewer directions (not
        symmetric).

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
    return _value("mean_sq_cca", x, y, {"convention": convention})


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
    return _value("svcca", x, y, {"variance": variance, "convention": convention})


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
        ``compute_pwcca`` chooses.
        "padded": weights from x (the reference), and the part of x's column space that has no canonical
        correlation with y counts with correlation 0 and the expected projection weight of a uniformly random
        orthonormal basis of it — a basis-free form of the padding in Ding et al.'s released code, whose
        weights depend on an arbitrary basis of that part (see the README's benchmark section).

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
    return _value("pwcca", x, y, {"convention": convention})


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
        PWCCA's convention, as in :func:`pwcca`.

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
    bound = bind("pwcca", {"convention": convention})
    pset = pair_set("factor", [x], [y], names_x=["x"], names_y=["y"], min_n=3, what="CCA")
    rho, mean, mean_sq, pw = pset.summary(0, 0, "pwcca_" + convention)
    warn_if_pwcca_not_unique(pset.pair(0, 0))
    rho = check_range(np.asarray(rho, dtype=np.float64), 0.0, 1.0, pset.eps, "a canonical correlation")
    unit = bound.value_range
    mean, mean_sq, pw = (float(check_range(np.array([v]), *unit, pset.eps, what)[0])
                         for v, what in ((mean, "mean CCA"), (mean_sq, "mean squared CCA"), (pw, "PWCCA")))
    return CCASummary(rho, mean, mean_sq, pw)


def procrustes_distance(x: ArrayLike, y: ArrayLike, *, angular: bool = False) -> float:
    """Orthogonal Procrustes distance (Ding et al. 2021).

    Both inputs are centred and scaled to unit Frobenius norm; the distance is
    ``2 − 2‖xᵀy‖_*`` in [0, 2] (the squared Procrustes distance, as Ding et al. use it), or with
    ``angular=True`` ``arccos ‖xᵀy‖_*`` in [0, π/2] (Williams et al. 2021), which is a metric.
    Symmetric; invariant to orthogonal transforms, isotropic scaling and translation; exact (no
    estimator choice).

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
    return _value("procrustes", x, y, {"angular": angular})


def ensd(x: ArrayLike, y: ArrayLike) -> float:
    """Effective number of shared dimensions (ENSD; Giaffar, Buxó & Aoi 2023).

    ``ENSD = PRx · PRy · tr(KxKy) / (tr Kx · tr Ky)`` with K = XcXcᵀ the centred linear Gram matrix and
    ``PR = (tr K)² / tr(K²)`` the participation ratio (the effective dimensionality of one
    representation). A similarity: the number of dimensions the two representations share, between 0 and
    √(PRx·PRy); symmetric; invariant to orthogonal maps, isotropic scaling and translation of either
    input; a biased (plug-in) estimator. ENSD/√(PRx·PRy) is linear CKA, so its dissimilarity
    ``distance(x, y, "ensd") = (2/π)·arccos(ENSD/√(PRx·PRy))`` is the angle between the centred Gram
    matrices, a metric in [0, 1].

    Computed from the same sums as linear CKA (tr(KxKy) = ‖XcᵀYc‖²_F, tr(Kx²) = ‖XcᵀXc‖²_F,
    tr Kx = ‖Xc‖²_F), in feature or Gram space, streamed, pairwise and on CUDA tensors alike.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y; n ≥ 2. float32 stays float32 for the products.

    Returns
    -------
    float
        ENSD, in [0, √(PRx·PRy)]; for x = y it equals PRx.

    Raises
    ------
    ValueError
        The bad inputs listed under :func:`cka` (mismatched n, NaN/Inf, empty or constant input).
    TypeError
        An input that is not a real-valued 2-D array.

    References
    ----------
    .. [1] T. Giaffar, C. Buxó, R. Aoi. "The effective number of shared dimensions: A simple method
       for revealing shared structure between datasets." bioRxiv 2023.
    """
    return _value("ensd", x, y, {})


def minibatch_cka(x: ArrayLike, y: ArrayLike, *, batch_size: int = 256, debiased: bool = True) -> float:
    """Minibatch CKA (Nguyen, Raghu & Kornblith 2021) over consecutive minibatches of the rows.

    ``Σ_b HSIC(K_b, L_b) / √(Σ_b HSIC(K_b, K_b) · Σ_b HSIC(L_b, L_b))`` over the minibatches
    ``x[0:batch_size], x[batch_size:2·batch_size], …`` (no shuffling: shuffle first if the rows are
    ordered). A similarity, usually in [0, 1]; an estimator with its own value, not the CKA of the
    whole data (see :func:`reprsim.cka` and :class:`StreamingSimilarity` for that).

    Debiased by default, unlike :func:`cka`: minibatches are small, and the biased HSIC's upward bias
    grows as the widths outgrow the rows per batch, so the paper uses the U-statistic HSIC₁.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y.
    batch_size : int, default 256
        Rows per minibatch. A trailing minibatch shorter than ``batch_size`` is used as it is when it
        has enough rows for the estimator (4 debiased, 2 biased); otherwise ValueError, naming the
        fixes (trim the rows, or a batch size that leaves a longer remainder).
    debiased : bool, default True
        The U-statistic HSIC₁ (Song et al. 2012), as in the paper; False: the biased
        HSIC₀ = tr(K H L H)/(b − 1)².

    Returns
    -------
    float
        The minibatch CKA, a similarity usually in [0, 1].

    Raises
    ------
    ValueError
        A ``batch_size`` below the estimator's minimum, a last minibatch too short for it, or the bad
        inputs listed under :func:`reprsim.cka`.
    TypeError
        ``debiased`` is not a bool, or an input that is not a real-valued 2-D array.

    References
    ----------
    .. [1] T. Nguyen, M. Raghu, S. Kornblith. "Do Wide and Deep Networks Learn the Same Things?
       Uncovering How Neural Network Representations Vary with Width and Depth." ICLR 2021.
    """
    return _value("minibatch_cka", x, y, {"batch_size": batch_size, "debiased": debiased})


def measure(x: ArrayLike, y: ArrayLike, metric: str = "cka", **options: Any) -> float:
    """The value of any registered measure between two representations, by name.

    What the measure's own function returns: a similarity for "cka", the CCA family, "ensd", ...,
    a distance for "procrustes" and "angular_procrustes" (``reprsim.METRICS[metric].value_kind`` says
    which). For the dissimilarity of any measure use :func:`distance`.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y (numpy arrays, CPU or CUDA torch tensors).
    metric : str, default "cka"
        A name from ``reprsim.METRICS``.
    **options
        The measure's options (``reprsim.METRICS[metric].defaults`` lists them), e.g. ``variance=`` for
        "svcca", ``convention=`` for "pwcca", ``debiased=`` for "cka".

    Returns
    -------
    float
        The measure's value.

    Raises
    ------
    ValueError
        An unknown metric name, a bad option value, or what the measure raises for its inputs.
    TypeError
        A metric that is not a string, an option the measure does not take, or a bad input type.
    """
    return _value(metric, x, y, options)


def distance(x: ArrayLike, y: ArrayLike, metric: str = "cka", **options: Any) -> float:
    """Dissimilarity between two representations, by metric name (see ``reprsim.METRICS``).

    "cka" → 1 − CKA, "debiased_cka" → 1 − debiased CKA, "mean_cca" → 1 − ρ̄, "mean_sq_cca" →
    1 − R²_CCA, "svcca" → 1 − SVCCA, "pwcca" → 1 − PWCCA, "procrustes" → 2 − 2‖x̂ᵀŷ‖_*,
    "angular_procrustes" → arccos ‖x̂ᵀŷ‖_* (Ding et al. 2021's definitions), "ensd" →
    (2/π)·arccos(ENSD/√(PRx·PRy)), and so on: ``reprsim.METRICS[metric].distance_definition`` states it,
    with its range, symmetry, invariances, estimator and reference. 0 for representations equal up to
    the metric's invariances; a value within rounding of a bound of the range is that bound.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y.
    metric : str, default "cka"
        A name from ``reprsim.METRICS``.
    **options
        The measure's options (e.g. ``convention=`` for "pwcca", ``variance=`` for "svcca").

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
    return _value(metric, x, y, options, want="distance")


def _labelled(reps: Any, arg: str) -> tuple[Any, list[Any], list[str] | None]:
    """A dict of named representations as (list, labels, names for messages); a list keeps its positions."""
    if isinstance(reps, Mapping):
        if len(reps) == 0:
            raise ValueError(f"{arg} is empty; pass at least one representation")
        labels = list(reps)
        return [reps[k] for k in labels], labels, [f"{arg}[{k!r}]" for k in labels]
    return reps, list(range(len(reps))) if isinstance(reps, Sequence) else [], None


def _label(match: re.Match[str], labels: dict[str, list[Any] | None]) -> str:
    names, i = labels[match[1]], int(match[2])
    return match[0] if names is None or i >= len(names) else f"{match[1]}[{names[i]!r}]"


def _matrix(xs: Any, ys: Any, metric: str, options: dict[str, Any], want: str,
            progress: bool | None) -> Comparison:
    progress = check_progress(progress)
    bound = bind(metric, options)
    xs, rows, names_x = _labelled(xs, "xs")
    if ys is None:
        ys_list, columns, names_y = None, rows, None
    else:
        ys_list, columns, names_y = _labelled(ys, "ys")
    try:
        pset = pair_set(bound.measure.statistics, xs, ys_list, names_x=names_x, names_y=names_y, min_n=bound.min_n,
                        what=describe(bound))
        widths = set_widths(pset)
        if widths is not None:
            warn_if_few_samples(bound, pset.n, *widths, stacklevel=3)
        values = evaluate(bound, pset, want, progress)
    except (ValueError, TypeError, FloatingPointError) as exc:
        # Messages from the kernels number the representations; a dict's are named by their keys.
        labels = {"xs": rows if names_x else None, "ys": columns if names_y else None}
        if any(labels.values()) and len(exc.args) == 1 and isinstance(exc.args[0], str):
            exc.args = (re.sub(r"\b(xs|ys)\[(\d+)\]", lambda m: _label(m, labels), exc.args[0]),)
        raise
    return Comparison(values, rows, columns, bound.name, bound.measure.value_kind if want == "value" else "distance",
                      int(pset.n), dict(options))


def pairwise(xs: Any, ys: Any = None, *, metric: str = "cka", progress: bool | None = None,
             **options: Any) -> Comparison:
    """Matrix of a measure's values ``measure(xs[i], ys[j], metric)``; with ys omitted, xs against itself.

    The values are what the measure's own function returns: similarities for "cka", the CCA family,
    "ensd", ...; distances for the Procrustes metrics (``reprsim.METRICS[metric].value_kind``, also the
    result's ``value_kind``). For dissimilarities of any measure use :func:`pairwise_distances`.

    Every representation must have the same n; widths may differ. Each representation's statistics
    (centred features or Gram matrix, QR factor, whitening) are computed once and reused for every pair,
    so k representations cost k factorisations plus k² cheap combinations.

    Parameters
    ----------
    xs : sequence or dict of array_like
        The k1 representations of shapes (n, p_i): a list (labelled 0, 1, …) or a dict of named ones
        (labelled by their keys).
    ys : sequence or dict of array_like, optional
        The k2 representations of shapes (n, q_j); default: ``xs``.
    metric : str, default "cka"
        A name from ``reprsim.METRICS``.
    progress : bool or None, default None
        A tqdm bar over the pairs (tqdm is optional): None shows one when stderr is a terminal and the
        matrix is still being computed after 2 s; True always; False never.
    **options
        The measure's options (``variance=`` and ``convention=`` for "svcca", ``convention=`` for
        "pwcca", ...).

    Returns
    -------
    Comparison
        The k1 × k2 float64 matrix with its labels, ``metric`` and ``value_kind``; entry (i, j) equals
        ``measure(xs[i], ys[j], metric, **options)``. It is usable wherever an array is (``res[i, j]``,
        ``np.asarray(res)``, arithmetic); ``res.to_pandas()`` gives a DataFrame indexed by the labels.
        With ys omitted, the diagonal holds the measure's value of a representation with itself exactly
        (1 for CKA) where that is a constant.

    Raises
    ------
    ValueError
        An unknown metric, an empty list, representations of different n, or the bad inputs listed
        under :func:`cka`.
    TypeError
        xs or ys not a list or dict of arrays, a metric that is not a string, or an option the metric
        does not take.

    Examples
    --------
    >>> res = reprsim.pairwise({"x": x, "y": y, "2x": 2 * x})       # doctest: +SKIP
    >>> res.at["x", "2x"], res.value_kind                          # doctest: +SKIP
    (1.0, 'similarity')
    """
    return _matrix(xs, ys, metric, options, "value", progress)


def pairwise_distances(xs: Any, ys: Any = None, *, metric: str = "cka", progress: bool | None = None,
                       **options: Any) -> Comparison:
    """Matrix of dissimilarities ``distance(xs[i], ys[j], metric)``; with ys omitted, xs against itself.

    As :func:`pairwise`, with each measure's dissimilarity (``reprsim.METRICS[metric].distance_definition``)
    instead of its value; with ys omitted the diagonal is exactly 0.

    Parameters
    ----------
    xs : sequence or dict of array_like
        The k1 representations of shapes (n, p_i): a list (labelled 0, 1, …) or a dict of named ones.
    ys : sequence or dict of array_like, optional
        The k2 representations of shapes (n, q_j); default: ``xs``.
    metric : str, default "cka"
        A name from ``reprsim.METRICS``.
    progress : bool or None, default None
        As in :func:`pairwise`.
    **options
        The measure's options.

    Returns
    -------
    Comparison
        The k1 × k2 float64 dissimilarities (``value_kind`` "distance") with their labels; entry (i, j)
        equals ``distance(xs[i], ys[j], metric, **options)``. Usable wherever an array is.

    Raises
    ------
    ValueError
        An unknown metric, an empty list, representations of different n, or the bad inputs listed
        under :func:`cka`.
    TypeError
        xs or ys not a list or dict of arrays, a metric that is not a string, or an option the metric
        does not take.
    """
    return _matrix(xs, ys, metric, options, "distance", progress)


# ---------------------------------------------------------------------------------------------
# Shape metrics, NBS and Bures, GULP, neuron matching, linear predictivity (reprsim._linear_measures)


def shape_distance(x: ArrayLike, y: ArrayLike, *, alpha: float = 1.0, form: str = "angular") -> float:
    """Generalized shape metric (Williams, Kunz, Kornblith & Linderman 2021; netrep's ``LinearMetric``).

    Each input is centred and partially whitened, ``φ_α(X) = Xc·(αI + (1 − α)(XcᵀXc)^{−1/2})`` with
    netrep's normalisation (XcᵀXc without 1/n), then aligned by the best orthogonal map:

    - ``form="angular"`` (default): ``arccos(‖φxᵀφy‖_* / (‖φx‖_F ‖φy‖_F))``, in [0, π/2];
    - ``form="euclidean"``: ``min_Q ‖φx − φy·Q‖_F`` over orthogonal Q, after rescaling each φ to the
      Frobenius norm of its centred input (netrep's ``preserve_variance``), in [0, ∞).

    Both are metrics (symmetric, triangle inequality) on representations up to orthogonal maps and
    translation. ``alpha=1`` is the angular Procrustes distance (``procrustes_distance(x, y,
    angular=True)``); ``alpha=0`` whitens fully, the CCA-like end (the angle is arccos of the mean
    canonical correlation times the rank ratio). The angular form with α = 1 or α = 0 is invariant to
    isotropic scaling; for 0 < α < 1 it is not, since α mixes the data (in its own units) with the
    scale-free whitened data, as in netrep. Unequal widths are compared as if the narrower input were
    zero-padded (padding changes nothing in these formulas). The inverse square root is a pseudo-inverse
    on the numerical rank, the eigenvalues of the float64 moments above λ_max·max(n, p)·ε₆₄ (singular
    values above √(max(n, p)·ε₆₄) of the largest: what cross-products resolve), so p > n and dead or
    duplicated units are fine. An exact statistic (no estimator choice).

    Differences from netrep: netrep raises eigenvalues below 1e-7 to 1e-7 instead of treating them as
    rank-deficient, and counts padded and null directions in its variance rescaling, so its Euclidean
    values differ from these on rank-deficient inputs or unequal widths (its angular values agree up to
    the noise the clipped directions add).

    Computed from the moments (``blocks()``): each representation's eigendecomposition and whitening once
    (``pairwise`` reuses it for every pair; the rows are transformed once in float64, the cross-products
    of float32 inputs formed in float32 from the whitened rows), streamed, or on CUDA tensors.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y; n ≥ 2.
    alpha : float, default 1.0
        Partial whitening, in [0, 1].
    form : {"angular", "euclidean"}, default "angular"
        The ground metric after alignment.

    Returns
    -------
    float
        The distance: 0 for representations equal up to the invariances; at most π/2 (angular).

    Raises
    ------
    ValueError
        ``alpha`` outside [0, 1] or not finite, an unknown ``form``, or the bad inputs listed under
        :func:`cka` (mismatched n, NaN/Inf, empty or constant input).
    TypeError
        A non-numeric ``alpha``, or an input that is not a real-valued 2-D array.

    References
    ----------
    .. [1] A. Williams, E. Kunz, S. Kornblith, S. Linderman. "Generalized Shape Metrics on Neural
       Representations." NeurIPS 2021.
    """
    return _value("shape", x, y, {"alpha": alpha, "form": form})


def nbs(x: ArrayLike, y: ArrayLike) -> float:
    """Normalized Bures similarity (Harvey, Larsen & Williams 2024), with linear kernels.

    ``NBS = ‖XcᵀYc‖_* / √(tr XcᵀXc · tr YcᵀYc)``: the fidelity ``tr (Kx^{1/2} Ky Kx^{1/2})^{1/2}`` of the
    centred linear kernels K = XcXcᵀ normalised to unit trace. A similarity in [0, 1], symmetric,
    invariant to orthogonal maps, isotropic scaling and translation; exact. It equals the nuclear norm
    of Procrustes on unit-norm inputs: NBS = 1 − ``procrustes_distance(x, y)``/2. Its dissimilarity
    ``distance(x, y, "nbs")`` is arccos NBS, the Bures angle (= the angular Procrustes distance), a
    metric in [0, π/2].

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y; n ≥ 2. float32 stays float32 for the products.

    Returns
    -------
    float
        NBS in [0, 1]; 1 for representations equal up to the invariances.

    Raises
    ------
    ValueError
        The bad inputs listed under :func:`cka` (mismatched n, NaN/Inf, empty or constant input).
    TypeError
        An input that is not a real-valued 2-D array.

    References
    ----------
    .. [1] S. Harvey, B. Larsen, A. Williams. "Duality of Bures and Shape Distances with Implications
       for Comparing Neural Representations." UniReps workshop, 2023 (PMLR 243, 2024).
    """
    return _value("nbs", x, y, {})


def bures_distance(x: ArrayLike, y: ArrayLike) -> float:
    """Bures distance between the centred linear kernels (Harvey, Larsen & Williams 2024).

    ``d = √(tr Kx + tr Ky − 2‖Kx^{1/2} Ky^{1/2}‖_*)`` with the kernel scale ``K = XcXcᵀ/n``, which is
    ``√((‖Xc‖²_F + ‖Yc‖²_F − 2‖XcᵀYc‖_*)/n)``: the root-mean-square distance per sample between the
    centred rows after the best orthogonal alignment (the narrower input zero-padded). The 1/n makes the
    value a per-sample quantity that does not grow with the number of samples (it estimates the Bures
    distance between the two covariance operators) and keeps the data's units. A distance in [0, ∞),
    a metric, symmetric, invariant to orthogonal maps and translation (not to scaling: see :func:`nbs`
    for the scale-free similarity); a plug-in (biased) estimator. It is the Euclidean shape distance
    with α = 1 divided by √n. Computed stably near 0 from the Procrustes angle θ:
    ``d² = ((‖Xc‖ − ‖Yc‖)² + 4‖Xc‖‖Yc‖ sin²(θ/2))/n``; from cross-products, identical inputs give 0 up to
    about √ε₆₄ of the data's scale.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y; n ≥ 2. float32 stays float32 for the products.

    Returns
    -------
    float
        The distance, in the data's units; 0 for representations equal up to rotation and translation.

    Raises
    ------
    ValueError
        The bad inputs listed under :func:`cka` (mismatched n, NaN/Inf, empty or constant input).
    TypeError
        An input that is not a real-valued 2-D array.

    References
    ----------
    .. [1] S. Harvey, B. Larsen, A. Williams. "Duality of Bures and Shape Distances with Implications
       for Comparing Neural Representations." UniReps workshop, 2023 (PMLR 243, 2024).
    .. [2] R. Bhatia, T. Jain, Y. Lim. "On the Bures–Wasserstein distance between positive definite
       matrices." Expositiones Mathematicae 37, 2019.
    """
    return _value("bures", x, y, {})


def gulp_distance(x: ArrayLike, y: ArrayLike, *, lam: float = 1e-2) -> float:
    """GULP distance between the best ridge predictors on two representations (Boix-Adserà et al. 2022).

    Each input is centred and scaled to ``‖Xc‖_F = √n`` (GULP's normalisation: tr Σ = 1), with
    ``Σx = XcᵀXc/n``, ``Σxy = XcᵀYc/n`` and ``R = (Σ + λI)^{−1}``:

    ``d² = tr(RxΣxRxΣx) + tr(RyΣyRyΣy) − 2·tr(RxΣxyRyΣyx)``,

    the mean squared difference, over targets of unit norm, between the two representations' ridge
    predictions (= ‖Hx − Hy‖²_F for the ridge hat matrices). This function returns **d** (the square
    root, which is a metric); GULP's code returns d². A distance in [0, ∞) (at most √(rank x + rank y)),
    symmetric, invariant to orthogonal maps, isotropic scaling and translation; a plug-in (biased)
    estimator. ``lam=0`` uses the pseudo-inverse on the numerical rank (eigenvalues of the float64
    moments above λ_max·max(n, p)·ε₆₄), where GULP's code inverts every eigenvalue that rounds above 0
    and so is not reproducible on rank-deficient data; p > n is fine. Large λ: λ·d approaches the
    distance between the unnormalised covariance operators (the CKA-type end); λ → 0: the CCA-type end.
    Computed from the moments: each representation's eigendecomposition once (pairwise reuses it),
    streamed, or on CUDA tensors. Near 0 (nearly equal inputs) the three terms cancel: d is accurate to
    about √ε₆₄ absolute.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y; n ≥ 2.
    lam : float, default 0.01
        Ridge penalty λ ≥ 0, relative to tr Σ = 1.

    Returns
    -------
    float
        The GULP distance d ≥ 0; 0 for representations equal up to the invariances.

    Raises
    ------
    ValueError
        A negative or non-finite ``lam``, or the bad inputs listed under :func:`cka` (mismatched n,
        NaN/Inf, empty or constant input).
    TypeError
        A non-numeric ``lam``, or an input that is not a real-valued 2-D array.

    References
    ----------
    .. [1] E. Boix-Adserà, H. Lawrence, G. Stepaniants, P. Rigollet. "GULP: a prediction-based metric
       between representations." NeurIPS 2022.
    """
    return _value("gulp", x, y, {"lam": lam})


def permutation_distance(x: ArrayLike, y: ArrayLike, *, form: str = "angular") -> float:
    """Permutation shape metric: the best one-to-one matching of neurons (netrep's ``PermutationMetric``).

    ``m = max_π Σᵢ (XcᵀYc)_{i,π(i)}`` over one-to-one matchings of the neurons of the centred inputs,
    solved exactly by the Hungarian method (``scipy.optimize.linear_sum_assignment``, rectangular for
    unequal widths, which is the zero-padded square problem); ``form="angular"``:
    ``arccos(m / (‖Xc‖_F ‖Yc‖_F))`` in [0, π] (π when y = −x), ``form="euclidean"``:
    ``min_P ‖Xc·P − Yc‖_F = √(‖Xc‖² + ‖Yc‖² − 2m)`` in [0, ∞). Both are metrics on representations up to
    a permutation of neurons and translation; the angular form is also invariant to isotropic scaling.
    Unlike the rotation-invariant measures it reads the neuron coordinates (``coordinates()``). Exact.
    Needs scipy.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y; n ≥ 2.
    form : {"angular", "euclidean"}, default "angular"
        The ground metric after matching.

    Returns
    -------
    float
        The distance: 0 for representations equal up to a permutation of neurons and translation.

    Raises
    ------
    ValueError
        An unknown ``form``, a matching too large for the available memory, or the bad inputs listed under
        :func:`cka`.
    TypeError
        An input that is not a real-valued 2-D array.
    ImportError
        scipy is not installed.

    References
    ----------
    .. [1] A. Williams, E. Kunz, S. Kornblith, S. Linderman. "Generalized Shape Metrics on Neural
       Representations." NeurIPS 2021.
    """
    return _value("permutation", x, y, {"form": form})


def soft_matching(x: ArrayLike, y: ArrayLike) -> float:
    """Soft matching similarity: optimal transport between neurons (Khosla & Williams 2023).

    The neurons of x and of y carry uniform mass (1/p1 and 1/p2); moving mass from neuron i of x to
    neuron j of y costs ``C_ij = 1 − r_ij``, with r_ij the Pearson correlation of the two neurons over
    the samples. The optimal plan T* (an exact vertex solution) gives the similarity ``1 − ⟨T*, C⟩ =
    ⟨T*, r⟩`` in [−1, 1] (1: every neuron has a perfectly correlated partner of equal share); the
    dissimilarity ``distance(x, y, "soft_matching") = √(2⟨T*, C⟩)`` in [0, 2] is the 2-Wasserstein
    distance between the z-scored neurons (each scaled to norm √n, distances over √n), a metric.
    Symmetric; invariant to permutations of neurons, translation, and scaling of each neuron; exact.
    For equal widths the optimal plan is a permutation (the uniform transport polytope is a scaled
    Birkhoff polytope): the Hungarian method solves it; otherwise POT's network simplex (``ot.emd``) when
    POT is installed, else scipy's HiGHS dual simplex. The memory the solver needs (up to a few hundred
    bytes per pair of neurons) is checked first.

    A constant neuron (a dead unit: zero variance, or variance below the rounding of its mean) has no
    correlation; it is taken as a unit vector orthogonal to every sample direction, one shared by all
    constant neurons: r = 0 with every varying neuron, r = 1 with a constant neuron of the other side.
    The cost stays a squared distance between unit vectors, so the distance stays a metric, and dead
    units of one layer match dead units of the other at no cost.

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y; n ≥ 2.

    Returns
    -------
    float
        The similarity in [−1, 1].

    Raises
    ------
    ValueError
        A transport problem larger than the available memory, or the bad inputs listed under :func:`cka`
        (a representation whose every column is constant among them).
    TypeError
        An input that is not a real-valued 2-D array.
    ImportError
        scipy is not installed.

    References
    ----------
    .. [1] M. Khosla, A. Williams. "Soft Matching Distance: A metric on neural representations that
       captures single-neuron tuning." UniReps workshop, 2023 (PMLR 243, 2024).
    """
    return _value("soft_matching", x, y, {})


def linear_predictivity(x: ArrayLike, y: ArrayLike, *, alpha: Any = 1.0, folds: int | None = 5,
                        score: str = "pearson", aggregate: str = "median", alpha_per_target: bool = False) -> float:
    """Cross-validated linear predictivity of y from x (ridge regression; Brain-Score's "neural predictivity").

    For each of ``folds`` contiguous, unshuffled folds of the rows (scikit-learn's ``KFold`` sizes: the
    first n mod k folds one row longer), a ridge regression with an unpenalised intercept — scikit-learn's
    ``Ridge(alpha)`` objective ``‖Y − XW − 1bᵀ‖² + α‖W‖²`` — is fitted on the other folds, from all
    columns of x to each column (target) of y; each target is scored on the held-out fold by the Pearson
    correlation between prediction and truth (``score="r2"``: scikit-learn's ``r2_score`` per target);
    the scores are aggregated over targets by their median (``aggregate="mean"``: mean), and the result
    is the mean over folds. ``folds=None`` scores the fit on its own rows (in-sample). A similarity, in
    [−1, 1] for Pearson r (R² is at most 1); **not symmetric**: y from x (``linear_predictivity(y, x)``
    is the other direction). Invariant to translation of either input, to orthogonal maps and
    permutations of x's neurons, to scaling y, and to permuting y's targets; not to scaling x (the
    penalty is in x's units). An estimator of out-of-sample predictivity ("cross-validated").

    ``alpha`` may be a list: one penalty for all targets is then chosen as scikit-learn's
    ``RidgeCV(alphas, cv=KFold(folds))`` chooses it (the best mean held-out aggregate over the same folds;
    ties to the first in the list), and the value is that best score — like RidgeCV's ``best_score_`` it
    carries the small optimism of choosing among the grid. With ``alpha_per_target=True`` each target's
    penalty is chosen inside each training set, by inner cross-validation over the other training folds,
    and scored on the held-out fold (nested: no choice sees the held-out rows). Every penalty of the grid
    comes from one eigendecomposition of the training moments per fold. ``alpha=0`` is least squares,
    with the minimum-norm solution on the numerical rank.

    A target with zero variance on a held-out fold (a constant column, or one constant on those rows)
    has no correlation there: it is left out of that fold's aggregate (never a NaN), a
    ``SkippedTargetsWarning`` says so, and :func:`predictivity_scores` returns every score, the count and
    which targets were left out (``PredictivityResult.skipped``).

    Everything is computed from per-fold moments (the ``folds`` statistics kind): in memory in the
    neuron basis of x when p ≤ n, otherwise in an n-column basis of x's row space (the dual route, exact
    by the invariance above); ``pairwise`` fits each x's folds once for every y; a
    :class:`StreamingSimilarity` declared with ``metrics=["predictivity"]`` and ``n=`` keeps each fold's
    moments; CUDA tensors form them on their device.

    Parameters
    ----------
    x, y : array_like, shapes (n, p) and (n, q)
        Predictors and targets; rows are samples, aligned. n ≥ 2·folds (at least 2 held-out rows per fold).
    alpha : float or list of float, default 1.0
        Ridge penalty ≥ 0 (scikit-learn's ``alpha``), or a list of penalties to choose from.
    folds : int or None, default 5
        Number of contiguous folds (≥ 2), or None for in-sample scores.
    score : {"pearson", "r2"}, default "pearson"
        Per-target held-out score.
    aggregate : {"median", "mean"}, default "median"
        Aggregate over targets.
    alpha_per_target : bool, default False
        With a list of ``alpha``: choose each target's penalty by inner cross-validation (needs folds ≥ 3).

    Returns
    -------
    float
        The predictivity: the mean over folds of the median (or mean) held-out score.

    Raises
    ------
    ValueError
        A negative or non-finite ``alpha``, ``folds`` below 2, above n/2 or not an integer, a grid without
        folds, ``alpha_per_target`` without a grid, a constant x, a y constant on some held-out fold in
        every column, or the bad inputs listed under :func:`cka`.
    TypeError
        An option of the wrong type, or an input that is not a real-valued 2-D array.

    See Also
    --------
    predictivity_scores : The scores per fold and target, the penalties chosen and the targets left out.

    References
    ----------
    .. [1] D. Yamins, H. Hong, C. Cadieu, E. Solomon, D. Seibert, J. DiCarlo. "Performance-optimized
       hierarchical models predict neural responses in higher visual cortex." PNAS 111, 2014.
    .. [2] M. Schrimpf et al. "Brain-Score: Which Artificial Neural Network for Object Recognition is
       most Brain-Like?" bioRxiv 2018.
    """
    return _value("predictivity", x, y, {"alpha": alpha, "folds": folds, "score": score, "aggregate": aggregate,
                                         "alpha_per_target": alpha_per_target})


def predictivity_scores(x: ArrayLike, y: ArrayLike, *, alpha: Any = 1.0, folds: int | None = 5,
                        score: str = "pearson", aggregate: str = "median", alpha_per_target: bool = False) -> Any:
    """Linear predictivity with its parts: every target's held-out score, the penalties, the skipped targets.

    The same computation as :func:`linear_predictivity` (see there for the definition and options).

    Parameters
    ----------
    x, y : array_like, shapes (n, p) and (n, q)
        Predictors and targets; rows are samples, aligned.
    alpha : float or list of float, default 1.0
        Ridge penalty ≥ 0, or a list of penalties to choose from.
    folds : int or None, default 5
        Number of contiguous folds (≥ 2), or None for in-sample scores.
    score : {"pearson", "r2"}, default "pearson"
        Per-target held-out score.
    aggregate : {"median", "mean"}, default "median"
        Aggregate over targets.
    alpha_per_target : bool, default False
        With a list of ``alpha``: choose each target's penalty by inner cross-validation.

    Returns
    -------
    PredictivityResult
        ``value`` (what :func:`linear_predictivity` returns), ``fold_values``, ``scores`` (folds × targets,
        NaN where left out), ``valid``, ``skipped``, ``alpha`` (the penalty used or chosen), ``alphas``,
        ``criterion`` (each penalty's mean held-out aggregate).

    Raises
    ------
    ValueError
        As :func:`linear_predictivity`.
    TypeError
        As :func:`linear_predictivity`.
    """
    from ._linear_measures import predictivity_result

    bound = bind("predictivity", {"alpha": alpha, "folds": folds, "score": score, "aggregate": aggregate,
                                  "alpha_per_target": alpha_per_target})
    pset = pair_set("folds", [x], [y], names_x=["x"], names_y=["y"], min_n=bound.min_n, what=describe(bound))
    res = predictivity_result(pset.pair(0, 0), bound)
    check_range(np.array([res.value]), *bound.value_range, pset.eps, "linear predictivity")
    return res
