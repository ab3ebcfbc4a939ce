"""The metric registry: what each name in ``reprsim.distance`` computes and what it guarantees."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

ORTHOGONAL = "orthogonal"
ISOTROPIC_SCALING = "isotropic_scaling"
INVERTIBLE_LINEAR = "invertible_linear"
TRANSLATION = "translation"
PERMUTATION = "permutation"


@dataclass(frozen=True)
class MetricInfo:
    """Metadata of one dissimilarity.

    Attributes
    ----------
    name : str
        The name accepted by ``reprsim.distance`` and ``reprsim.pairwise``.
    kind : str
        Always ``"distance"`` for registry entries (the value ``distance`` returns); the similarity
        it derives from, if any, is named in ``similarity``.
    similarity : str or None
        The public function returning the underlying similarity, or None.
    definition : str
        The formula of the returned dissimilarity.
    range : tuple of float
        (low, high) of the dissimilarity.
    symmetric : bool
        d(x, y) == d(y, x).
    is_metric : bool
        Satisfies the triangle inequality (a true metric on equivalence classes).
    invariances : frozenset of str
        Transforms of either input that leave the value unchanged.
    estimator : {"biased", "debiased", "exact"}
        "exact": no sampling estimator involved.
    reference : str
        Where the definition comes from.
    """

    name: str
    kind: str
    similarity: str | None
    definition: str
    range: tuple[float, float]
    symmetric: bool
    is_metric: bool
    invariances: frozenset[str]
    estimator: str
    reference: str


_ROT = frozenset({ORTHOGONAL, ISOTROPIC_SCALING, TRANSLATION, PERMUTATION})
_LIN = frozenset({INVERTIBLE_LINEAR, ORTHOGONAL, ISOTROPIC_SCALING, TRANSLATION, PERMUTATION})

_ENTRIES = [
    MetricInfo("cka", "distance", "cka", "1 - linear CKA", (0.0, 1.0), True, False, _ROT, "biased",
               "Kornblith et al. 2019; Ding et al. 2021"),
    MetricInfo("debiased_cka", "distance", "cka", "1 - linear CKA with U-statistic HSIC (Song et al. 2012)",
               (0.0, 2.0), True, False, _ROT, "debiased", "Song et al. 2012; Kornblith et al. 2019"),
    MetricInfo("mean_cca", "distance", "mean_cca", "1 - mean canonical correlation", (0.0, 1.0), True, False, _LIN,
               "exact", "Ding et al. 2021"),
    MetricInfo("mean_sq_cca", "distance", "mean_sq_cca", "1 - mean squared canonical correlation (R²_CCA)",
               (0.0, 1.0), True, False, _LIN, "exact", "Ding et al. 2021"),
    MetricInfo("svcca", "distance", "svcca", "1 - mean canonical correlation of the top principal components",
               (0.0, 1.0), True, False, _ROT, "exact", "Raghu et al. 2017"),
    MetricInfo("pwcca", "distance", "pwcca", "1 - projection-weighted mean canonical correlation", (0.0, 1.0),
               False, False, frozenset({ISOTROPIC_SCALING, TRANSLATION, PERMUTATION}), "exact",
               "Morcos et al. 2018; Ding et al. 2021"),
    MetricInfo("procrustes", "distance", None, "2 - 2 ||x^T y||_* on centred, unit-Frobenius-norm inputs",
               (0.0, 2.0), True, False, _ROT, "exact", "Ding et al. 2021"),
    MetricInfo("angular_procrustes", "distance", None, "arccos ||x^T y||_* on centred, unit-Frobenius-norm inputs",
               (0.0, 1.5707963267948966), True, True, _ROT, "exact", "Williams et al. 2021"),
]

METRICS: Mapping[str, MetricInfo] = MappingProxyType({m.name: m for m in _ENTRIES})


def check_metric(metric: str) -> MetricInfo:
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a string, one of {sorted(METRICS)}; got {type(metric).__name__}")
    try:
        return METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; known metrics: {', '.join(sorted(METRICS))}") from None
