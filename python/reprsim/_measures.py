"""The measures: one finaliser per measure over its statistics, registered once.

Each entry below is the whole definition of a measure for every path (in memory, pairwise, streaming,
inference, the benchmark, ``reprsim.torch.compare``, CUDA tensors): the statistics kind it reads, its value
and dissimilarity as functions of one pair's statistics (see :mod:`reprsim._stats` for what a pair offers),
its options and its metadata. Adding a measure whose statistics exist is an entry here and its tests.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

from . import _core
from ._neighbours import FINALISERS, check_k, knn_null
from ._nulls import linear_cka_null
from ._rsa import COMPARISONS, RDM_METHODS
from ._stats import rounding_slack
from ._registry import (
    INVERTIBLE_LINEAR,
    ISOTROPIC_SCALING,
    ORTHOGONAL,
    PERMUTATION,
    TRANSLATION,
    Bound,
    Measure,
    Option,
    check_bool,
    check_choice,
    check_int,
    check_real,
    register,
)

_ROT = frozenset({ORTHOGONAL, ISOTROPIC_SCALING, TRANSLATION, PERMUTATION})
_LIN = frozenset({INVERTIBLE_LINEAR, ORTHOGONAL, ISOTROPIC_SCALING, TRANSLATION, PERMUTATION})
_UNIT = (0.0, 1.0)
_HALF_PI = math.pi / 2


def _one_minus(value: Any) -> Any:
    return lambda pair, b: 1.0 - value(pair, b)


# ---------------------------------------------------------------------------------------------
# Linear CKA and ENSD (moments: the scalar sums)


def _cka(pair: Any, b: Bound) -> float:
    s = pair.sums(b["debiased"])
    return float(_core.cka_from_sums(s["n"], s["cross"], s["sxx"], s["syy"], s["tx"], s["ty"], s["sum_d2"],
                                     s["sum_e2"], s["sum_de"], b["debiased"], pair.name_x, pair.name_y, s["eps"]))


def _cka_ranges(b: Bound) -> tuple[tuple[float, float], tuple[float, float]]:
    # The U-statistic HSIC is an inner product of U-centred kernels (Székely & Rizzo 2014), so debiased
    # CKA lies in [-1, 1]; it is negative for representations less related than chance.
    return ((-1.0, 1.0), (0.0, 2.0)) if b["debiased"] else (_UNIT, _UNIT)


_DEBIASED = Option("debiased", False, check_bool("debiased"),
                   "U-statistic HSIC (Song et al. 2012) instead of the biased estimator")


def _cka_min_n(b: Bound) -> int:
    return 4 if b["debiased"] else 2


for _name, _fixed in (("cka", {}), ("debiased_cka", {"debiased": True})):
    register(Measure(
        name=_name, title="debiased CKA" if _fixed else "CKA", function="cka", value_kind="similarity",
        statistics="moments",
        value=_cka, distance=_one_minus(_cka),
        definition="‖XcᵀYc‖²_F / (‖XcᵀXc‖_F ‖YcᵀYc‖_F), Xc column-centred"
        + ("; HSIC replaced by the U-statistic of Song et al. 2012" if _fixed else ""),
        distance_definition="1 − CKA",
        range=(0.0, 2.0) if _fixed else _UNIT, value_range=(-1.0, 1.0) if _fixed else _UNIT,
        symmetric=True, is_metric=False, invariances=_ROT, estimator="debiased" if _fixed else "biased",
        reference="Kornblith et al. 2019" + ("; Song et al. 2012" if _fixed else "; Ding et al. 2021"),
        options=(_DEBIASED,), fixed=_fixed, min_n=_cka_min_n, identity=1.0, ranges=_cka_ranges,
        permutation_null=linear_cka_null,
        option_hints={k: "kernel CKA is the measure 'rbf_cka'" for k in ("kernel", "threshold", "bandwidth")},
    ))


def _ensd(pair: Any, b: Bound) -> float:
    # ENSD = PRx·PRy·tr(KxKy)/(tr Kx·tr Ky) with PR = (tr K)²/tr(K²), K = XcXcᵀ: tr(KxKy) = ‖XcᵀYc‖²_F,
    # tr(Kx²) = ‖XcᵀXc‖²_F, tr Kx = tr XcᵀXc. Scale-invariant, so the inputs' power-of-two scales cancel.
    s = pair.sums(False)
    _require_variance(pair, s)
    # Written as PRx·PRy·(cross/(tx·ty)): no product of two fourth-power sums, which can leave float64.
    return (s["tx"] * s["tx"] / s["sxx"]) * (s["ty"] * s["ty"] / s["syy"]) * (s["cross"] / (s["tx"] * s["ty"]))


def _ensd_distance(pair: Any, b: Bound) -> float:
    # ENSD/√(PRx·PRy) = tr(KxKy)/√(tr Kx² · tr Ky²), the cosine of the angle between the centred Grams.
    s = pair.sums(False)
    _require_variance(pair, s)
    cos = s["cross"] / (math.sqrt(s["sxx"]) * math.sqrt(s["syy"]))
    if cos > 1.0 + rounding_slack(s["eps"]):
        raise FloatingPointError(f"the cosine of two Gram matrices came out as {cos}, above 1 beyond rounding; "
                                 "please report this input")
    return 2.0 / math.pi * math.acos(min(cos, 1.0))


def _require_variance(pair: Any, s: Mapping[str, float]) -> None:
    for name, self_term in ((pair.name_x, s["sxx"]), (pair.name_y, s["syy"])):
        if self_term == 0.0:
            raise ValueError(f"{name} has zero variance (every column is constant over the {int(s['n'])} rows): "
                             "the measure is undefined for a constant representation")


register(Measure(
    name="ensd", title="ENSD", function="ensd", value_kind="similarity", statistics="moments",
    value=_ensd, distance=_ensd_distance,
    definition="PRx·PRy·tr(KxKy)/(tr Kx·tr Ky), PR = (tr K)²/tr(K²), K = XcXcᵀ (effective number of shared "
    "dimensions)",
    distance_definition="(2/π)·arccos(ENSD/√(PRx·PRy)) = (2/π)·arccos(linear CKA)",
    range=_UNIT, value_range=(0.0, math.inf), symmetric=True, is_metric=True, invariances=_ROT,
    estimator="biased", reference="Giaffar, Buxó & Aoi 2023", min_n=2,
))


# ---------------------------------------------------------------------------------------------
# Procrustes (moments: the angle between the normalised, centred inputs)


def _procrustes(pair: Any, b: Bound) -> float:
    theta = pair.angle()
    # 2 − 2·cos θ, written so that a small angle keeps its relative accuracy.
    return theta if b["angular"] else 4.0 * math.sin(theta / 2.0) ** 2


def _procrustes_ranges(b: Bound) -> tuple[tuple[float, float], tuple[float, float]]:
    r = (0.0, _HALF_PI) if b["angular"] else (0.0, 2.0)
    return r, r


_ANGULAR = Option("angular", False, check_bool("angular"), "arccos ‖x̂ᵀŷ‖_* (a metric) instead of 2 − 2‖x̂ᵀŷ‖_*")

for _name, _fixed in (("procrustes", {}), ("angular_procrustes", {"angular": True})):
    _rng = (0.0, _HALF_PI) if _fixed else (0.0, 2.0)
    register(Measure(
        name=_name, title="the Procrustes distance", function="procrustes_distance", value_kind="distance",
        statistics="moments",
        value=_procrustes, distance=_procrustes,
        definition=("arccos ‖x̂ᵀŷ‖_*" if _fixed else "2 − 2‖x̂ᵀŷ‖_*")
        + " on centred, unit-Frobenius-norm inputs x̂, ŷ",
        distance_definition="the value itself",
        range=_rng, value_range=_rng, symmetric=True, is_metric=bool(_fixed), invariances=_ROT, estimator="exact",
        reference="Williams et al. 2021" if _fixed else "Ding et al. 2021",
        options=(_ANGULAR,), fixed=_fixed, min_n=2, identity=0.0, ranges=_procrustes_ranges,
    ))


# ---------------------------------------------------------------------------------------------
# The CCA family (factor: QR factors of the centred inputs)


_SVCCA_CONVENTIONS = ("variance", "singular_values")
_PWCCA_CONVENTIONS = ("x", "y", "smaller", "padded")
_PADDED_DOC = ("'min_rank': the mean over the min(rank x, rank y) canonical correlations; 'padded': over x's rank, "
               "x's directions without a correlation counting 0 (Ding et al.'s benchmark, x the reference)")


def _mean_cca(pair: Any, b: Bound) -> float:
    return pair.cca("mean" if b["convention"] == "min_rank" else "mean_padded")


def _mean_sq_cca(pair: Any, b: Bound) -> float:
    return pair.cca("mean_sq" if b["convention"] == "min_rank" else "mean_sq_padded")


def _svcca(pair: Any, b: Bound) -> float:
    return pair.cca("mean", b["variance"], b["convention"] == "variance")


def warn_if_pwcca_not_unique(pair: Any) -> None:
    """PWCCA is not unique once the column spaces must share directions (rank_x + rank_y > n − 1): the
    trivially-1 correlations come with arbitrary directions, and the projection weights depend on them."""
    ranks = pair.ranks()
    if ranks is None or ranks[0] + ranks[1] <= pair.n - 1:
        return
    rank_x, rank_y = ranks
    shared = rank_x + rank_y - (pair.n - 1)
    warnings.warn(
        f"PWCCA is not unique here: the ranks of {pair.name_x} ({rank_x}) and {pair.name_y} ({rank_y}) add up to more "
        f"than n - 1 = {pair.n - 1}, so at least {shared} canonical correlation{'s are' if shared > 1 else ' is'} "
        "exactly 1 with arbitrary directions, and the projection weights (so the value) depend on that arbitrary "
        "choice; use more samples or fewer features (e.g. reprsim.svcca)",
        UserWarning, stacklevel=4,
    )


def _pwcca(pair: Any, b: Bound) -> float:
    value = pair.cca("pwcca_" + b["convention"])
    warn_if_pwcca_not_unique(pair)
    return value


_CCA_REF = "Ding et al. 2021"
for _name, _fn, _def, _ref in (
    ("mean_cca", _mean_cca, "mean of the canonical correlations ρ (singular values of QxᵀQy)", _CCA_REF),
    ("mean_sq_cca", _mean_sq_cca, "mean of the squared canonical correlations (R²_CCA)", _CCA_REF),
):
    register(Measure(
        name=_name, title="CCA", function=_name, value_kind="similarity", statistics="factor",
        value=_fn, distance=_one_minus(_fn), definition=_def, distance_definition="1 − value",
        range=_UNIT, value_range=_UNIT, symmetric=True, is_metric=False, invariances=_LIN, estimator="exact",
        reference=_ref, min_n=3, identity=1.0,
        options=(Option("convention", "min_rank", check_choice("convention", ("min_rank", "padded")), _PADDED_DOC),),
        symmetric_when=lambda b: b["convention"] != "padded",
    ))

register(Measure(
    name="svcca", title="SVCCA", function="svcca", value_kind="similarity", statistics="factor",
    value=_svcca, distance=_one_minus(_svcca),
    definition="mean canonical correlation of the top principal components explaining `variance` of each input",
    distance_definition="1 − SVCCA", range=_UNIT, value_range=_UNIT, symmetric=True, is_metric=False,
    invariances=_ROT, estimator="exact", reference="Raghu et al. 2017",
    options=(
        Option("variance", 0.99, check_real("variance", low=0.0, high=1.0, low_open=True),
               "share of the total to keep, in (0, 1]"),
        Option("convention", "variance", check_choice("convention", _SVCCA_CONVENTIONS),
               "measure the share by Σσ² ('variance') or Σσ ('singular_values', google/svcca's tutorials)"),
    ),
    min_n=3, identity=1.0,
))

register(Measure(
    name="pwcca", title="PWCCA", function="pwcca", value_kind="similarity", statistics="factor",
    value=_pwcca, distance=_one_minus(_pwcca),
    definition="Σαᵢρᵢ/Σαᵢ, αᵢ = Σⱼ|⟨hᵢ, xⱼ⟩| over the weighting side's canonical variates hᵢ and centred neurons xⱼ",
    distance_definition="1 − PWCCA", range=_UNIT, value_range=_UNIT, symmetric=False, is_metric=False,
    invariances=frozenset({ISOTROPIC_SCALING, TRANSLATION, PERMUTATION}), estimator="exact",
    reference="Morcos et al. 2018; Ding et al. 2021",
    options=(Option("convention", "x", check_choice("convention", _PWCCA_CONVENTIONS),
                    "whose canonical variates and neurons give the weights: 'x', 'y' or 'smaller'; 'padded': x's, "
                    "with x's directions without a correlation counting 0 and carrying the expected weight of a "
                    "random orthonormal basis of them (basis-free)"),),
    min_n=3, identity=1.0,
))


# ---------------------------------------------------------------------------------------------
# Kernel CKA with the RBF kernel (kernel: n×n kernel matrices)


_BANDWIDTH_RULES = ("median", "mean", "median_full")


def _check_bandwidth(value: Any) -> Any:
    if isinstance(value, str):
        if value not in _BANDWIDTH_RULES:
            raise ValueError(f"bandwidth must be one of {', '.join(_BANDWIDTH_RULES)} or a positive number (the "
                             f"kernel width sigma), got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"bandwidth must be a rule name or a number, got {type(value).__name__}")
    sigma = float(value)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"bandwidth must be a positive kernel width sigma, got {value!r}")
    return sigma


def _check_rbf(opts: Mapping[str, Any]) -> None:
    if not isinstance(opts["bandwidth"], str) and opts["threshold"] != 1.0:
        raise ValueError("threshold scales a bandwidth rule; with a fixed bandwidth (sigma) leave threshold at 1.0")


def _rbf_cka(pair: Any, b: Bound) -> float:
    bw = b["bandwidth"]
    rule, sigma = (bw, 0.0) if isinstance(bw, str) else ("median", float(bw))
    return pair.rbf_cka(b["debiased"], rule, b["threshold"], sigma)


register(Measure(
    name="rbf_cka", title="RBF CKA", function="cka", value_kind="similarity", statistics="kernel",
    value=_rbf_cka, distance=_one_minus(_rbf_cka),
    definition="CKA of RBF kernel matrices K_ij = exp(−‖x_i − x_j‖²/(2σ²)), σ² = threshold²·(median squared "
    "distance) by default",
    distance_definition="1 − RBF CKA", range=_UNIT, value_range=_UNIT, symmetric=True, is_metric=False,
    invariances=_ROT, estimator="biased", reference="Kornblith et al. 2019",
    options=(
        _DEBIASED,
        Option("threshold", 1.0, check_real("threshold", low=0.0, low_open=True),
               "σ is threshold × the root of the bandwidth rule's summary"),
        Option("bandwidth", "median", _check_bandwidth,
               "'median', 'mean', 'median_full' (over all n² entries) or a fixed σ"),
    ),
    min_n=_cka_min_n, identity=1.0, ranges=_cka_ranges, validate=_check_rbf,
))


# ---------------------------------------------------------------------------------------------
# Minibatch CKA (minibatch: HSIC terms summed over minibatches)


def _check_minibatch(opts: Mapping[str, Any]) -> None:
    need = 4 if opts["debiased"] else 2
    if opts["batch_size"] is not None and opts["batch_size"] < need:
        raise ValueError(f"batch_size must be an integer of at least {need} (debiased={opts['debiased']}), "
                         f"got {opts['batch_size']!r}")


def _minibatch_cka(pair: Any, b: Bound) -> float:
    xy, xx, yy, batches = pair.hsic(b["batch_size"], b["debiased"])
    for name, h in ((pair.name_x, xx), (pair.name_y, yy)):
        if not h > 0:
            raise ValueError(
                f"the summed HSIC of {name} with itself is {h} (not positive) over {batches} minibatches: minibatch "
                "CKA is undefined (a constant representation, or too few rows for the debiased estimator)")
    # Square roots taken apart: the product of the two sums can leave the float64 range.
    return xy / (math.sqrt(xx) * math.sqrt(yy))


def _minibatch_min_n(b: Bound) -> int:
    return 4 if b["debiased"] else 2


register(Measure(
    name="minibatch_cka", title="minibatch CKA", function="minibatch_cka", value_kind="similarity", statistics="minibatch",
    value=_minibatch_cka, distance=_one_minus(_minibatch_cka),
    definition="Σ_b HSIC(K_b, L_b)/√(Σ_b HSIC(K_b, K_b)·Σ_b HSIC(L_b, L_b)) over minibatches b",
    distance_definition="1 − minibatch CKA", range=(0.0, 2.0), value_range=(-1.0, 1.0), symmetric=True,
    is_metric=False, invariances=_ROT, estimator="minibatch", reference="Nguyen, Raghu & Kornblith 2021",
    options=(
        Option("batch_size", 256, check_int("batch_size", low=2, allow_none=True),
               "rows per minibatch (None: each update of an accumulator is one minibatch)"),
        Option("debiased", True, check_bool("debiased"),
               "U-statistic HSIC per minibatch (as in the paper; minibatches are small, where the biased "
               "estimator's bias is largest)"),
    ),
    min_n=_minibatch_min_n, identity=1.0, validate=_check_minibatch,
    ranges=lambda b: ((-1.0, 1.0), (0.0, 2.0)) if b["debiased"] else (_UNIT, _UNIT),
))


# ---------------------------------------------------------------------------------------------
# Neighbourhood measures (neighbours: each representation's exact k-NN lists)


def _knn_value(name: str) -> Any:
    finaliser = FINALISERS[name]

    def value(pair: Any, b: Bound) -> float:
        a, c = pair.knn(check_k(b["k"], pair.n), b["center"])
        return finaliser(a, c, b["variant"]) if name == "cknna" else finaliser(a, c)

    return value


_K = Option("k", 10, check_int("k", low=1), "neighbours per sample, 1 ≤ k ≤ n − 1")
_CENTER = Option("center", False, check_bool("center"), "centre the columns before normalising the rows")
_KNN_INVARIANCES = frozenset({ORTHOGONAL, ISOTROPIC_SCALING, PERMUTATION})
_KNN_REF = "Huh, Cheung, Wang & Isola 2024"

for _name, _def, _sym in (
    ("mutual_knn", "mean over samples of |N_k^x(i) ∩ N_k^y(i)| / k (cosine neighbours, i excluded, ties to the "
     "smaller index)", True),
    ("jaccard_knn", "mean over samples of |N^x(i) ∩ N^y(i)| / |N^x(i) ∪ N^y(i)|", True),
    ("cycle_knn", "fraction of samples i that are an x-neighbour of at least one of their y-neighbours", False),
):
    _fn = _knn_value(_name)
    register(Measure(
        name=_name, title=_name.replace("_", " "), function=_name, value_kind="similarity", statistics="neighbours",
        value=_fn, distance=_one_minus(_fn), definition=_def, distance_definition="1 − value",
        range=_UNIT, value_range=_UNIT, symmetric=_sym, is_metric=False, invariances=_KNN_INVARIANCES,
        estimator="exact", reference=_KNN_REF, options=(_K, _CENTER), min_n=2, identity=1.0,
        permutation_null=knn_null,
    ))

_cknna = _knn_value("cknna")
register(Measure(
    name="cknna", title="CKNNA", function="cknna", value_kind="similarity", statistics="neighbours",
    value=_cknna, distance=_one_minus(_cknna),
    definition="HSIC₁ of the kernels masked to mutual k-NN pairs over √ of the two self terms (Song's unbiased "
    "formula applied literally, as platonic-rep evaluates it); variant='row_anchored': the paper's form",
    distance_definition="1 − CKNNA", range=(-math.inf, math.inf), value_range=(-math.inf, math.inf),
    symmetric=False, is_metric=False, invariances=_KNN_INVARIANCES, estimator="debiased", reference=_KNN_REF,
    options=(_K, _CENTER, Option("variant", "hsic", check_choice("variant", ("hsic", "row_anchored")),
                                 "'hsic' (platonic-rep's code) or 'row_anchored' (the paper's formula)")),
    min_n=4, identity=1.0, permutation_null=knn_null,
))


# ---------------------------------------------------------------------------------------------
# RSA (rdm: each representation's dissimilarity matrix)


def _rsa_value(pair: Any, b: Bound) -> float:
    return pair.rsa(b["rdm"], b["compare"])


register(Measure(
    name="rsa", title="RSA", function="rsa", value_kind="similarity", statistics="rdm",
    value=_rsa_value, distance=_one_minus(_rsa_value),
    definition="comparison (Spearman by default) of the two representations' RDMs' upper triangles",
    distance_definition="1 − RSA", range=(0.0, 2.0), value_range=(-1.0, 1.0), symmetric=True, is_metric=False,
    invariances=frozenset({PERMUTATION, ISOTROPIC_SCALING}), estimator="exact",
    reference="Kriegeskorte, Mur & Bandettini 2008; Nili et al. 2014 (rsatoolbox)",
    options=(Option("rdm", "correlation", check_choice("rdm", RDM_METHODS), "the RDM's dissimilarity"),
             Option("compare", "spearman", check_choice("compare", COMPARISONS), "how the two RDMs are compared")),
    min_n=3, identity=1.0,
))


# ---------------------------------------------------------------------------------------------
# Shape metrics, NBS/Bures, GULP, neuron matching and linear predictivity (see reprsim._linear_measures)

from . import _linear_measures  # noqa: E402,F401  (registers them)
