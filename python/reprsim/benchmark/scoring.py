"""Score a dissimilarity metric by how well it tracks functional differences (Ding et al. 2021).

For many pairs of representations, a good metric's dissimilarity should rise with the functional
difference between the two (|Δ probe accuracy|, |Δ out-of-distribution accuracy|). :func:`score` measures
that with rank correlations; :func:`protocol` runs the paper's reference-representation protocol over a
set of representations; :func:`replay` recomputes the per-metric table from a table of pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "PADDED_CCA",
    "PaddedCCA",
    "ProtocolResult",
    "Score",
    "dissimilarities_to_reference",
    "pairwise_dissimilarities",
    "percentile_ranks",
    "protocol",
    "replay",
    "score",
]

Metric = str | Callable[[np.ndarray, np.ndarray], float]

# Kendall's p-value is exact (permutation distribution) up to this many untied pairs.
_KENDALL_EXACT_MAX_N = 33

#: Convention options passed to ``reprsim.distance``/``pairwise`` by :func:`protocol` unless overridden.
#: Ding et al. put the reference representation first and take PWCCA's weights from it.
PAPER_CONVENTIONS: Mapping[str, Mapping[str, Any]] = {"pwcca": {"convention": "x"}}


def _scipy_stats() -> Any:
    try:
        from scipy import stats
    except ImportError as exc:  # pragma: no cover - scipy comes with scikit-learn
        raise ImportError(
            'scoring needs scipy; install it with pip install ".[benchmark]" in the reprsim source folder '
            '(or pip install scipy)'
        ) from exc
    return stats


def _as_vector(values: Any, name: str) -> np.ndarray:
    if isinstance(values, (str, bytes)) or values is None:
        raise TypeError(f"{name} must be a 1-D sequence of numbers, got {type(values).__name__}")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 1-D sequence of numbers (one per pair of representations)") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per pair), got shape {arr.shape}; flatten it first")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name} holds a non-finite value ({arr[bad]}) at index {bad}; drop or fix that pair")
    return arr


def percentile_ranks(values: Any) -> np.ndarray:
    """Percentile rank of each value in (0, 1]: its rank divided by the number of values.

    Ranks run from 1 (smallest) to n (largest); tied values all get the mean of the ranks they span
    (``scipy.stats.rankdata(method="average")``). This equals ``scipy.stats.percentileofscore(values, v,
    kind="rank") / 100`` for every value v, the rule of Ding et al.'s released code.

    Parameters
    ----------
    values : array_like, 1-D
        Finite numbers.

    Returns
    -------
    numpy.ndarray
        The percentile rank of each value, in (0, 1], in the input's order.

    Raises
    ------
    ValueError
        Empty input, a non-finite value, or an input that is not 1-D.
    TypeError
        An input that is not a sequence of numbers.
    """
    arr = _as_vector(values, "values")
    if arr.size == 0:
        raise ValueError("values is empty; pass at least one value")
    return _scipy_stats().rankdata(arr, method="average") / arr.size


@dataclass(frozen=True)
class Score:
    """How well one metric's dissimilarities track one functional difference.

    Attributes
    ----------
    spearman, kendall : float
        Rank correlations (Spearman ρ; Kendall τ-b, which corrects for ties), in [−1, 1].
    spearman_p, kendall_p : float
        One-sided p-values of the null "no association" against the alternative of a positive
        correlation. Spearman: t-distribution approximation with n − 2 degrees of freedom. Kendall: the
        exact permutation distribution when n ≤ 33 and neither input has ties, otherwise the normal
        approximation of Kendall's S with the tie-corrected variance.
    bad_frac : float
        Fraction of pairs in the bottom ``quantile`` of dissimilarity and the top ``quantile`` of
        functional difference (percentile ranks, see :func:`percentile_ranks`; strict inequalities).
    n_pairs : int
        Number of pairs scored.
    """

    spearman: float
    spearman_p: float
    kendall: float
    kendall_p: float
    bad_frac: float
    n_pairs: int

    @property
    def p_value(self) -> float:
        """The Spearman one-sided p-value (the ``p_value`` field of the benchmark's records)."""
        return self.spearman_p

    def as_dict(self) -> dict[str, float | int]:
        """The fields as a JSON-ready dict, with the Spearman p-value under ``p_value``.

        Returns
        -------
        dict of str to float or int
            ``spearman``, ``kendall``, ``p_value``, ``kendall_p``, ``bad_frac`` and ``n_pairs``.
        """
        out: dict[str, float | int] = asdict(self)
        out["p_value"] = self.spearman_p
        return out


def score(dissimilarity: Any, functional_difference: Any, *, quantile: float = 0.2) -> Score:
    """Score a metric: rank correlation between its dissimilarities and functional differences.

    Ding, Denain & Steinhardt (2021), "Grounding Representation Similarity with Statistical Testing":
    a metric that tracks function should give larger dissimilarities to pairs whose behaviour differs
    more. Higher ρ and τ are better; a lower ``bad_frac`` is better.

    Parameters
    ----------
    dissimilarity : 1-D array-like
        The metric's dissimilarity for each pair of representations.
    functional_difference : 1-D array-like, same length
        The functional difference of the same pairs, e.g. |Δ probe accuracy|.
    quantile : float in (0, 0.5]
        A pair is "bad" when its dissimilarity's percentile rank is below ``quantile`` and its
        functional difference's is above ``1 − quantile`` (0.2: the paper's 20 %).

    Returns
    -------
    Score
        ``spearman``, ``kendall`` (τ-b), their one-sided p-values (alternative: positive correlation),
        ``bad_frac`` and ``n_pairs``.

    Raises
    ------
    ValueError
        Lengths differ, fewer than 3 pairs, a non-finite value, either input constant (a rank
        correlation is then undefined), or ``quantile`` outside (0, 0.5].
    TypeError
        An input that is not a 1-D sequence of numbers.
    ImportError
        scipy is not installed (it computes the rank correlations and their p-values).

    References
    ----------
    .. [1] F. Ding, J.-S. Denain, J. Steinhardt. "Grounding Representation Similarity Through
       Statistical Testing." NeurIPS 2021.
    """
    d = _as_vector(dissimilarity, "dissimilarity")
    f = _as_vector(functional_difference, "functional_difference")
    if d.size != f.size:
        raise ValueError(
            f"dissimilarity has {d.size} values but functional_difference has {f.size}; pass one of each per pair"
        )
    if d.size < 3:
        raise ValueError(f"score needs at least 3 pairs for a rank correlation, got {d.size}")
    for arr, name in ((d, "dissimilarity"), (f, "functional_difference")):
        if np.all(arr == arr[0]):
            raise ValueError(
                f"{name} is constant ({arr[0]!r} for all {arr.size} pairs), so its rank correlation is "
                "undefined; pairs must differ in it"
            )
    if not (isinstance(quantile, (int, float)) and 0.0 < quantile <= 0.5):
        raise ValueError(f"quantile must be a number in (0, 0.5], got {quantile!r}")
    stats = _scipy_stats()
    rho = stats.spearmanr(d, f, alternative="greater")
    untied = np.unique(d).size == d.size and np.unique(f).size == f.size
    # The method is chosen here, not by scipy's "auto", so the documented rule holds for every scipy version.
    method = "exact" if untied and d.size <= _KENDALL_EXACT_MAX_N else "asymptotic"
    tau = stats.kendalltau(d, f, alternative="greater", method=method)
    qd = stats.rankdata(d, method="average") / d.size
    qf = stats.rankdata(f, method="average") / f.size
    bad = float(np.mean((qd < quantile) & (qf > 1.0 - quantile)))
    # Indexing works for the result types of every scipy version (named fields changed over time).
    values = (float(rho[0]), float(rho[1]), float(tau[0]), float(tau[1]))
    if not all(math.isfinite(v) for v in values):
        raise FloatingPointError(f"rank correlation came out non-finite {values}; please report this input")
    return Score(*values, bad, int(d.size))


# --------------------------------------------------------------------------------------------------
# The paper's protocol


def _metric_name(metric: Metric) -> str:
    if isinstance(metric, str):
        return metric
    if callable(metric):
        return getattr(metric, "__name__", type(metric).__name__)
    raise TypeError(f"a metric must be a name from reprsim.METRICS or a callable (x, y) -> float, got {metric!r}")


def _check_metrics(metrics: Any) -> list[Metric]:
    from .._registry import METRICS, check_metric

    if metrics is None:
        return list(METRICS)
    if isinstance(metrics, str) or callable(metrics):
        metrics = [metrics]
    out = []
    for m in metrics:
        if isinstance(m, str):
            check_metric(m)
        else:
            _metric_name(m)
        out.append(m)
    if not out:
        raise ValueError("metrics is empty; pass metric names from reprsim.METRICS or callables")
    names = [_metric_name(m) for m in out]
    if len(set(names)) != len(names):
        raise ValueError(f"metric names must be unique, got {names}")
    return out


def _options_for(metric: Metric, conventions: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    if not isinstance(metric, str):
        return {}
    table = PAPER_CONVENTIONS if conventions is None else conventions
    return dict(table.get(metric, {}))


class PaddedCCA:
    """A CCA-family dissimilarity in the padded convention, usable as a metric callable.

    reprsim's ``mean_cca``, ``mean_sq_cca`` and ``pwcca`` summarise the min(rank x, rank y) canonical
    correlations, so a representation with principal components deleted (its top-k component scores, a
    k-dimensional subspace of the other's column space) has distance 0 to the full one. In the padded
    convention the first argument is the reference, and the rank(x) − min(rank x, rank y) directions of
    its column space without a canonical correlation count as correlation 0 in the numerator and carry
    weight in the normaliser: ``"mean"`` → 1 − Σρᵢ / rank(x), ``"mean_sq"`` → 1 − Σρᵢ² / rank(x),
    ``"pwcca"`` → 1 − Σ_G ρ̄_G w_G / (Σ_G w_G + w_S), where w_S, the weight of the uncorrelated subspace S
    (dimension d), is the *expected* projection weight of a uniformly random orthonormal basis of S,
    d·E|u₁|·Σⱼ ‖P_S x̃ⱼ‖ (u uniform on the unit sphere of R^d; Morcos et al.'s weight when d = 1), and
    groups G of tied correlations (all 1 when one column space contains the other) are weighted the same
    way; untied directions have Morcos et al.'s weights. The expectation makes the value independent of
    the arbitrary basis a full SVD returns for S, on which the weights of Ding et al.'s released code
    depend (see the README's benchmark section for the measured spread). Distance in [0, 1]; not
    symmetric. Computed by the C++ core (``reprsim._core.cca_statistic`` with ``"mean_padded"``,
    ``"mean_sq_padded"``, ``"pwcca_padded"``): column-pivoted QR bases and the in-memory rank rule.

    Parameters
    ----------
    statistic : {"mean", "mean_sq", "pwcca"}
        The CCA-family statistic; the callable's ``__name__`` is its metric name plus ``"_padded"``.

    Raises
    ------
    ValueError
        An unknown statistic; when called: a constant input, a rank reaching n − 1, or inputs of
        different n.

    References
    ----------
    .. [1] F. Ding, J.-S. Denain, J. Steinhardt. "Grounding Representation Similarity Through
       Statistical Testing." NeurIPS 2021.
    .. [2] A. Morcos, M. Raghu, S. Bengio. "Insights on Representational Similarity in Neural Networks
       with Canonical Correlation." NeurIPS 2018.
    """

    _STATS = ("mean", "mean_sq", "pwcca")

    def __init__(self, statistic: str) -> None:
        if statistic not in self._STATS:
            raise ValueError(f"statistic must be one of {self._STATS}, got {statistic!r}")
        self.statistic = statistic
        self.__name__ = {"mean": "mean_cca", "mean_sq": "mean_sq_cca", "pwcca": "pwcca"}[statistic] + "_padded"
        self._core_stat = statistic + "_padded"

    def __call__(self, x: Any, y: Any) -> float:
        from .. import _core
        from .._validation import as_pair

        xa, ya = as_pair(x, y, min_n=3, what="CCA")
        return float(1.0 - _core.cca_statistic(xa, ya, self._core_stat))

    def pairwise(self, xs: Sequence[Any], ys: Sequence[Any]) -> np.ndarray:
        """The dissimilarity of every pair, each input factored once.

        Parameters
        ----------
        xs, ys : sequence of array_like
            Representations of shapes (n, p_i), all with the same n; xs are the first arguments.

        Returns
        -------
        numpy.ndarray, shape (len(xs), len(ys))
            Entry (i, j) is ``self(xs[i], ys[j])``.
        """
        from .. import _core
        from .._validation import as_lists

        xl, yl = as_lists(list(xs), list(ys), min_n=3, what="CCA")
        return 1.0 - np.asarray(_core.cca_matrix(xl, yl, self._core_stat), dtype=np.float64)


#: The padded CCA-family conventions, as metric callables (see :class:`PaddedCCA`).
PADDED_CCA: Mapping[str, PaddedCCA] = {
    m.__name__: m for m in (PaddedCCA("mean"), PaddedCCA("mean_sq"), PaddedCCA("pwcca"))
}


def pairwise_dissimilarities(
    xs: Sequence[Any], ys: Sequence[Any], metric: Metric, *, options: Mapping[str, Any] | None = None
) -> np.ndarray:
    """Matrix of the dissimilarities ``d(xs[i], ys[j])``.

    A metric name goes through ``reprsim.pairwise_distances``, a callable through its ``pairwise`` method when it
    has one, else through a loop of calls.

    Parameters
    ----------
    xs, ys : sequence of array_like
        Representations of shapes (n, p_i), all with the same n.
    metric : str or callable
        A name from ``reprsim.METRICS`` or a callable ``(x, y) -> float``.
    options : mapping, optional
        Options for ``reprsim.pairwise_distances`` (names only).

    Returns
    -------
    numpy.ndarray, shape (len(xs), len(ys))
        The float64 dissimilarities.

    Raises
    ------
    TypeError
        A metric that is neither a name nor a callable.
    FloatingPointError
        The metric returned a non-finite value.
    """
    if isinstance(metric, str):
        from .._metrics import pairwise_distances

        return np.asarray(pairwise_distances(list(xs), list(ys), metric=metric, **dict(options or {})), dtype=float)
    if hasattr(metric, "pairwise"):
        out = np.asarray(metric.pairwise(list(xs), list(ys)), dtype=float)
    else:
        out = np.array([[float(metric(a, b)) for b in ys] for a in xs])
    if not np.all(np.isfinite(out)):
        raise FloatingPointError(f"metric {_metric_name(metric)} returned a non-finite dissimilarity")
    return out


def dissimilarities_to_reference(
    reference: np.ndarray,
    others: Sequence[np.ndarray],
    metric: Metric,
    *,
    options: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Dissimilarity of the reference (first argument) to each representation in ``others``.

    A metric name goes through ``reprsim.pairwise_distances([reference], others)``, which factors each
    representation once; a callable is called as ``metric(reference, other)`` (or through its
    ``pairwise`` method when it has one).

    Parameters
    ----------
    reference : array_like, shape (n, p)
        The reference representation.
    others : sequence of array_like
        Representations of shapes (n, p_i).
    metric : str or callable
        A name from ``reprsim.METRICS`` or a callable ``(x, y) -> float``.
    options : mapping, optional
        Options for ``reprsim.pairwise_distances`` (names only).

    Returns
    -------
    numpy.ndarray, shape (len(others),)
        The float64 dissimilarity of the reference to each of ``others``.

    Raises
    ------
    TypeError
        A metric that is neither a name nor a callable.
    FloatingPointError
        The metric returned a non-finite value.
    """
    return pairwise_dissimilarities([reference], others, metric, options=options)[0]


@dataclass(frozen=True)
class ProtocolResult:
    """Per-metric scores of :func:`protocol`, averaged over reference groups.

    Attributes
    ----------
    scores : dict of str to Score
        Metric name → :class:`Score` whose fields are means over the groups (``n_pairs`` is the total
        number of pairs).
    per_group : dict of str to dict
        Metric name → {group → Score}.
    references : dict
        Group → key of the reference representation chosen for it.
    dissimilarities : dict of str to dict
        Metric name → {group → array of the dissimilarities, in ``comparable[group]`` order}.
    functional_differences : dict
        Group → array of |Δ performance|, in the same order.
    """

    scores: dict[str, Score]
    per_group: dict[str, dict[Hashable, Score]]
    references: dict[Hashable, Hashable]
    dissimilarities: dict[str, dict[Hashable, np.ndarray]] = field(repr=False)
    functional_differences: dict[Hashable, np.ndarray] = field(repr=False)


def _mean_score(scores: Iterable[Score]) -> Score:
    s = list(scores)
    return Score(
        float(np.mean([x.spearman for x in s])),
        float(np.mean([x.spearman_p for x in s])),
        float(np.mean([x.kendall for x in s])),
        float(np.mean([x.kendall_p for x in s])),
        float(np.mean([x.bad_frac for x in s])),
        int(sum(x.n_pairs for x in s)),
    )


_Key = TypeVar("_Key", bound=Hashable)
_Group = TypeVar("_Group", bound=Hashable)


def protocol(
    representations: Mapping[_Key, Any],
    performance: Mapping[_Key, float],
    reference_candidates: Mapping[_Group, Sequence[_Key]],
    comparable: Mapping[_Group, Sequence[_Key]] | None = None,
    *,
    metrics: Any = None,
    conventions: Mapping[str, Mapping[str, Any]] | None = None,
    quantile: float = 0.2,
) -> ProtocolResult:
    """Ding et al.'s protocol: score metrics against |Δ performance| to a best-performing reference.

    For each group g (typically a reference layer): the reference is the key in
    ``reference_candidates[g]`` with the highest ``performance`` (ties: the first listed); it is paired
    with every key in ``comparable[g]`` (itself included, as in the paper); each metric's
    dissimilarities ``d(reference, other)`` are scored against ``|performance[reference] −
    performance[other]|`` with :func:`score`; the scores are averaged over the groups.

    Parameters
    ----------
    representations : mapping
        Key → array (n, p); all share n (aligned samples).
    performance : mapping
        Key → functional quantity (higher is better), e.g. probe or OOD accuracy.
    reference_candidates : mapping
        Group → keys among which the reference is chosen.
    comparable : mapping, optional
        Group → keys paired with the reference; default: every key of ``representations``.
    metrics : sequence of str or callable, optional
        Names from ``reprsim.METRICS`` and/or callables ``(reference, other) -> float``; default: every
        registered metric.
    conventions : mapping, optional
        Metric name → options for ``reprsim.distance`` (e.g. ``{"pwcca": {"convention": "smaller"}}``);
        default ``PAPER_CONVENTIONS``: PWCCA weights from the reference (first argument).
    quantile : float, default 0.2
        Passed to :func:`score`.

    Returns
    -------
    ProtocolResult
        Per-metric scores averaged over the groups, with the per-group scores, the chosen references
        and the scored values.

    Raises
    ------
    ValueError
        A key without performance, an empty or unknown reference candidate or comparable key, bad
        metrics, or what :func:`score` raises.
    TypeError
        ``representations`` or ``reference_candidates`` not a non-empty mapping, or a metric that is
        neither a name nor a callable.

    References
    ----------
    .. [1] F. Ding, J.-S. Denain, J. Steinhardt. "Grounding Representation Similarity Through
       Statistical Testing." NeurIPS 2021.
    """
    mlist = _check_metrics(metrics)
    if not isinstance(representations, Mapping) or not representations:
        raise TypeError("representations must be a non-empty mapping key -> array of shape (n, p)")
    if not isinstance(reference_candidates, Mapping) or not reference_candidates:
        raise TypeError("reference_candidates must be a non-empty mapping group -> keys of representations")
    missing = [k for k in representations if k not in performance]
    if missing:
        raise ValueError(f"performance has no value for {len(missing)} representation(s), e.g. {missing[0]!r}")
    per_group: dict[str, dict[Hashable, Score]] = {_metric_name(m): {} for m in mlist}
    dissims: dict[str, dict[Hashable, np.ndarray]] = {_metric_name(m): {} for m in mlist}
    refs: dict[Hashable, Hashable] = {}
    fdiffs: dict[Hashable, np.ndarray] = {}
    for group, candidates in reference_candidates.items():
        candidates = list(candidates)
        if not candidates:
            raise ValueError(f"reference_candidates[{group!r}] is empty")
        for k in candidates:
            if k not in representations:
                raise ValueError(f"reference candidate {k!r} of group {group!r} is not a key of representations")
        ref = max(candidates, key=lambda k: (float(performance[k]), -candidates.index(k)))
        if comparable is not None and group not in comparable:
            raise ValueError(f"comparable has no entry for group {group!r}; give one list of keys per group")
        keys = list(representations) if comparable is None else list(comparable[group])
        for k in keys:
            if k not in representations:
                raise ValueError(f"comparable key {k!r} of group {group!r} is not a key of representations")
        refs[group] = ref
        f = np.abs(np.asarray([performance[k] for k in keys], dtype=float) - float(performance[ref]))
        fdiffs[group] = f
        others = [representations[k] for k in keys]
        for m in mlist:
            name = _metric_name(m)
            d = dissimilarities_to_reference(representations[ref], others, m, options=_options_for(m, conventions))
            dissims[name][group] = d
            per_group[name][group] = score(d, f, quantile=quantile)
    scores = {name: _mean_score(groups.values()) for name, groups in per_group.items()}
    return ProtocolResult(scores, per_group, refs, dissims, fdiffs)


# --------------------------------------------------------------------------------------------------
# Replay of a table of pairs


def _columns(table: Any) -> dict[str, np.ndarray]:
    if hasattr(table, "to_dict") and hasattr(table, "columns"):  # a pandas DataFrame
        return {str(c): np.asarray(table[c]) for c in table.columns}
    if isinstance(table, Mapping):
        return {str(k): np.asarray(v) for k, v in table.items()}
    if isinstance(table, Sequence) and table and isinstance(table[0], Mapping):
        keys = list(table[0])
        return {str(k): np.asarray([row[k] for row in table]) for k in keys}
    raise TypeError(
        "table must be a pandas DataFrame, a mapping column -> values, or a list of row dicts; "
        f"got {type(table).__name__}"
    )


def replay(
    table: Any,
    metrics: Sequence[str],
    tasks: Sequence[str],
    *,
    groups: Sequence[str] | None = None,
    reference: Callable[[dict[str, Any]], bool] | None = None,
    similarity_columns: Sequence[str] = (),
    quantile: float = 0.2,
) -> dict[str, dict[str, Score]]:
    """Recompute the per-metric rank-correlation table from a table of representation pairs.

    The table has one row per pair, as Ding et al. release their scores: columns naming the two
    representations (e.g. ``seed1``, ``layer1``, ``seed2``, ``layer2``), one column of dissimilarity per
    metric, and one ``<task>_diff`` column of functional difference per task.

    Parameters
    ----------
    table : pandas.DataFrame, mapping or list of dict
        A DataFrame, a mapping column → values, or a list of row dicts.
    metrics : sequence of str
        The metric columns to score.
    tasks : sequence of str
        Task names; the functional difference of task t is column ``f"{t}_diff"``.
    groups : sequence of str, optional
        Columns whose distinct value combinations are scored separately and averaged (e.g.
        ``["layer1"]`` for one score per reference layer); default: the whole table is one group.
    reference : callable, optional
        Row filter ``row -> bool`` applied first (e.g. keep the rows containing the reference
        representation).
    similarity_columns : sequence of str, default ()
        Metric columns that hold similarities; they are turned into dissimilarities with 1 − value
        before scoring.
    quantile : float, default 0.2
        Passed to :func:`score`.

    Returns
    -------
    dict of str to dict of str to Score
        Task → metric → :class:`Score`, averaged over groups as in :func:`protocol`.

    Raises
    ------
    ValueError
        A missing column, columns of different lengths, a similarity column that is not a metric, a
        filter that keeps no row, or what :func:`score` raises.
    TypeError
        A table of another type.

    References
    ----------
    .. [1] F. Ding, J.-S. Denain, J. Steinhardt. "Grounding Representation Similarity Through
       Statistical Testing." NeurIPS 2021.
    """
    cols = _columns(table)
    lengths = {len(v) for v in cols.values()}
    if len(lengths) != 1:
        raise ValueError(f"table columns have different lengths {sorted(lengths)}")
    n = lengths.pop()
    for name in [*metrics, *[f"{t}_diff" for t in tasks], *(groups or [])]:
        if name not in cols:
            raise ValueError(f"table has no column {name!r}; its columns are {sorted(cols)}")
    for name in similarity_columns:
        if name not in metrics:
            raise ValueError(f"similarity column {name!r} is not among metrics {list(metrics)}")
    keep = np.ones(n, dtype=bool)
    if reference is not None:
        keep = np.array([bool(reference({k: v[i] for k, v in cols.items()})) for i in range(n)])
        if not keep.any():
            raise ValueError("the reference filter kept no row of the table")
    idx = np.flatnonzero(keep)
    if groups:
        labels = [tuple(cols[g][i] for g in groups) for i in idx]
        group_rows: dict[tuple, list[int]] = {}
        for i, lab in zip(idx, labels):
            group_rows.setdefault(lab, []).append(int(i))
    else:
        group_rows = {(): [int(i) for i in idx]}
    out: dict[str, dict[str, Score]] = {}
    for task in tasks:
        f_all = _as_vector(cols[f"{task}_diff"], f"column {task}_diff")
        out[task] = {}
        for m in metrics:
            d_all = _as_vector(cols[m], f"column {m}")
            if m in similarity_columns:
                d_all = 1.0 - d_all
            out[task][m] = _mean_score(
                score(d_all[rows], f_all[rows], quantile=quantile) for rows in group_rows.values()
            )
    return out
