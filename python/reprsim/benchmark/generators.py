"""Perturbations and tests of Ding et al. (2021): PC deletion, seed × depth groups, layer identification,
detection thresholds."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .._validation import as_representation
from .scoring import Metric, _check_metrics, _metric_name, dissimilarities_to_reference, pairwise_dissimilarities

__all__ = [
    "DetectionResult",
    "LayerIdentification",
    "delete_principal_components",
    "detection_threshold",
    "first_drop",
    "layer_groups",
    "layer_identification",
    "metric_names",
]


def delete_principal_components(x: Any, deleted: Sequence[int], *, form: str = "scores") -> dict[int, np.ndarray]:
    """Delete the lowest-variance principal components of a representation, for each count given.

    For each d in ``deleted`` the centred representation Xc = U S Vᵀ keeps its top k = p − d principal
    components. As in Ding et al.'s pipeline, the result is their scores as k columns, ``U_k S_k`` (n, k)
    (``form="scores"``); ``form="projection"`` returns the same subspace in the original feature space,
    ``U_k S_k V_kᵀ`` (n, p) of rank k. Every metric of reprsim that is invariant to orthogonal transforms
    (CKA, Procrustes, the CCA family by rank) gives the two forms the same value; conventions that count
    correlations by the number of columns (as Ding et al.'s released code averages over min(p_x, p_y))
    do not. One SVD serves the whole grid.

    Parameters
    ----------
    x : array_like, shape (n, p)
        The representation.
    deleted : sequence of int
        Numbers of components to delete, each in [0, p − 1].
    form : {"scores", "projection"}, default "scores"
        k score columns, or the rank-k projection in the original p features.

    Returns
    -------
    dict of int to numpy.ndarray
        Each d → a float64 array, (n, p − d) scores or (n, p) projection. ``d = 0`` gives the centred
        input (rotated to its principal axes for "scores").

    Raises
    ------
    ValueError
        A count outside [0, p − 1], an unknown ``form``, or the bad inputs of :func:`reprsim.cka`.

    References
    ----------
    .. [1] F. Ding, J.-S. Denain, J. Steinhardt. "Grounding Representation Similarity Through
       Statistical Testing." NeurIPS 2021.
    """
    if form not in ("scores", "projection"):
        raise ValueError(f"form must be 'scores' or 'projection', got {form!r}")
    xa = as_representation(x, "x").astype(np.float64)
    p = xa.shape[1]
    grid = list(deleted)
    for d in grid:
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or not 0 <= d < p:
            raise ValueError(f"deleted must hold integers in [0, {p - 1}] for a representation with p = {p}, got {d!r}")
    xc = xa - xa.mean(axis=0)
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    if form == "scores":
        return {int(d): u[:, : p - d] * s[: p - d] for d in grid}
    return {int(d): (u[:, : p - d] * s[: p - d]) @ vt[: p - d] for d in grid}


def layer_groups(keys: Sequence[Hashable], layer_of: Callable[[Any], Hashable] = lambda k: k[1]) -> dict:
    """Group representation keys by layer: {layer → [keys of that layer]}, in first-seen order.

    With keys ``(seed, layer)`` this gives :func:`reprsim.benchmark.protocol` its reference candidates
    (the best seed of each layer becomes that layer's reference).

    Parameters
    ----------
    keys : sequence of hashable
        Representation keys.
    layer_of : callable, optional
        Key → its layer; default: the second item of the key.

    Returns
    -------
    dict
        Layer → list of the keys of that layer.
    """
    out: dict[Hashable, list] = {}
    for k in keys:
        out.setdefault(layer_of(k), []).append(k)
    return out


@dataclass(frozen=True)
class LayerIdentification:
    """Result of :func:`layer_identification` for one metric.

    Attributes
    ----------
    accuracy : float
        Fraction of (query seed, other seed, layer) triples whose nearest layer of the other seed is the
        same depth.
    confusion : numpy.ndarray, shape (L, L)
        Counts; row = query layer, column = layer chosen as nearest.
    n_queries : int
        Number of triples.
    """

    accuracy: float
    confusion: np.ndarray
    n_queries: int


_Seed = TypeVar("_Seed", bound=Hashable)


def layer_identification(
    layers_by_seed: Mapping[_Seed, Sequence[Any]],
    metric: Metric,
    *,
    options: Mapping[str, Any] | None = None,
) -> LayerIdentification:
    """Test specificity: is the nearest layer of another seed the same depth.

    For every ordered pair of distinct seeds (s, t) and every layer i of s, the dissimilarity from
    layer i of s (first argument, the query) to each layer j of t is computed; the query is correct when
    the smallest is at j = i (ties go to the shallowest layer). A metric that is specific to what a
    layer computes identifies depth; Ding et al. find PWCCA the weakest at this.

    Parameters
    ----------
    layers_by_seed : mapping
        Seed → list of L representations (n, p_l), ordered by depth; all seeds share L.
    metric : str or callable
        A name from ``reprsim.METRICS`` or a callable ``(x, y) -> float``.
    options : mapping, optional
        Options for ``reprsim.distance`` (e.g. a PWCCA convention).

    Returns
    -------
    LayerIdentification
        The accuracy, the confusion matrix and the number of queries.

    Raises
    ------
    ValueError
        Fewer than 2 seeds, or seeds with different numbers of layers.

    References
    ----------
    .. [1] F. Ding, J.-S. Denain, J. Steinhardt. "Grounding Representation Similarity Through
       Statistical Testing." NeurIPS 2021.
    """
    seeds = list(layers_by_seed)
    if len(seeds) < 2:
        raise ValueError(f"layer identification needs at least 2 seeds, got {len(seeds)}")
    depth = {len(v) for v in layers_by_seed.values()}
    if len(depth) != 1 or depth == {0}:
        raise ValueError(f"every seed needs the same, non-zero number of layers; got {sorted(depth)}")
    n_layers = depth.pop()
    flat = [rep for seed in seeds for rep in layers_by_seed[seed]]
    # One matrix for every (seed, layer) pair: each representation is factored once.
    dist = pairwise_dissimilarities(flat, flat, metric, options=options)
    confusion = np.zeros((n_layers, n_layers), dtype=np.int64)
    for a in range(len(seeds)):
        for b in range(len(seeds)):
            if a == b:
                continue
            for i in range(n_layers):
                row = dist[a * n_layers + i, b * n_layers : (b + 1) * n_layers]
                confusion[i, int(np.argmin(row))] += 1
    total = int(confusion.sum())
    return LayerIdentification(float(np.trace(confusion) / total), confusion, total)


@dataclass(frozen=True)
class DetectionResult:
    """Result of :func:`detection_threshold` for one metric and layer.

    Attributes
    ----------
    flags_at : int or None
        Smallest number of deleted components at which the metric's dissimilarity to the reference
        exceeds ``noise_floor``; None when it never does on the grid.
    noise_floor : float
        The mean dissimilarity from the reference to the same layer of the other seeds.
    dissimilarities : dict of int to float
        Number of deleted components → dissimilarity to the reference.
    """

    flags_at: int | None
    noise_floor: float
    dissimilarities: dict[int, float]


def detection_threshold(
    reference: Any,
    deleted: Mapping[int, Any],
    other_seeds: Sequence[Any],
    metric: Metric,
    *,
    options: Mapping[str, Any] | None = None,
) -> DetectionResult:
    """Find how many principal components must be deleted before the metric notices.

    The noise floor is the mean dissimilarity between the reference and the same layer of the other
    seeds (changes that should not matter); ``flags_at`` is the smallest number of deleted components
    whose copy of the reference lies farther from it than that floor.

    Parameters
    ----------
    reference : array_like, shape (n, p)
        The full representation.
    deleted : mapping of int to array_like
        Number of deleted components → the reference with them deleted (see
        :func:`delete_principal_components`).
    other_seeds : sequence of array_like
        The same layer of other seeds, each (n, p').
    metric : str or callable
        A name from ``reprsim.METRICS`` or a callable ``(x, y) -> float``.
    options : mapping, optional
        Options for ``reprsim.distance`` (e.g. a PWCCA convention).

    Returns
    -------
    DetectionResult
        ``flags_at``, the noise floor and the dissimilarity at each number of deleted components.

    Raises
    ------
    ValueError
        ``other_seeds`` is empty, or what the metric raises.

    References
    ----------
    .. [1] F. Ding, J.-S. Denain, J. Steinhardt. "Grounding Representation Similarity Through
       Statistical Testing." NeurIPS 2021.
    """
    if not other_seeds:
        raise ValueError("other_seeds is empty; the noise floor needs at least one other seed")
    floor = float(np.mean(dissimilarities_to_reference(reference, list(other_seeds), metric, options=options)))
    grid = sorted(deleted)
    d = dissimilarities_to_reference(reference, [deleted[k] for k in grid], metric, options=options)
    values = {int(k): float(v) for k, v in zip(grid, d)}
    flags = next((int(k) for k in grid if values[k] > floor), None)
    return DetectionResult(flags, floor, values)


def first_drop(values: Mapping[int, float], baseline: float, tolerance: float) -> int | None:
    """Smallest key whose value falls below ``baseline − tolerance`` (None if none does).

    Parameters
    ----------
    values : mapping of int to float
        E.g. number of deleted components → probe accuracy.
    baseline : float
        The reference value.
    tolerance : float
        How far below ``baseline`` a value must fall.

    Returns
    -------
    int or None
        The smallest such key, or None.
    """
    return next((int(k) for k in sorted(values) if values[k] < baseline - tolerance), None)


def metric_names(metrics: Any) -> list[str]:
    """Names of the given metrics (default: every metric of ``reprsim.METRICS``)."""
    return [_metric_name(m) for m in _check_metrics(metrics)]

