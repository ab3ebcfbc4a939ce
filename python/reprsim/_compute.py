"""Evaluating a bound measure over a pair set: the one loop every path runs."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._backend import pair_set
from ._fork import busy
from ._memory import explain_out_of_memory
from ._progress import Progress
from ._registry import Bound, bind, describe
from ._stats import PairSet, rounding_slack


class SampleSizeWarning(UserWarning):
    """Few samples against the widths: a biased estimator's value then mostly reflects the shapes.

    Issued (once per call) by the in-memory functions, :func:`reprsim.pairwise` and the inference functions
    for measures whose registered estimator is ``"biased"`` (linear and RBF CKA unless debiased, ENSD), when
    the chance level of biased linear CKA for the shapes exceeds 0.8 (see :func:`chance_level`).
    """


# Chance level above which the warning is issued: 0.8 is p > 4n for two inputs of one width p.
CHANCE_WARNING = 0.8


def chance_level(n: int, p1: int, p2: int) -> float:
    """Biased linear CKA of independent isotropic Gaussian inputs of shapes (n, p1) and (n, p2), to first order.

    ‖XcᵀYc‖²_F ≈ n·p1·p2 (each of the p1·p2 entries is a sum of n independent products) and ‖XcᵀXc‖²_F ≈
    p1·n² + p1²·n (diagonal and off-diagonal entries), so CKA ≈ √(p1·p2 / ((n + p1)(n + p2))): p/(n + p) for
    equal widths, 0.94 for n = 64 and p = 1000, whatever the data mean.
    """
    return math.sqrt(p1 * p2 / ((n + p1) * (n + p2)))


def warn_if_few_samples(bound: Bound, n: int, widths_x: Sequence[int], widths_y: Sequence[int],
                        stacklevel: int = 3) -> None:
    """A SampleSizeWarning when ``bound`` is a biased estimator and n is small against the widths (see
    :class:`SampleSizeWarning`); nothing for the debiased and exact measures, which are fine there."""
    if bound.measure.estimator != "biased" or bound.options.get("debiased") is True:
        return
    p1, p2 = max(widths_x), max(widths_y)
    chance = chance_level(n, p1, p2)
    if chance <= CHANCE_WARNING:
        return
    warnings.warn(
        f"n = {n} samples against widths {p1} and {p2}: {describe(bound)} (a biased estimator) of unrelated "
        f"representations of these shapes is about {chance:.2f}, so its value says little about the data. If the "
        "rows are not the samples (e.g. google/svcca's (neurons, samples) layout), pass the transposes; otherwise "
        "use the debiased estimator (debiased=True, or metric='debiased_cka'), reprsim.calibrated_cka, or more "
        "samples",
        SampleSizeWarning, stacklevel=stacklevel + 1,
    )


def check_range(values: np.ndarray, lo: float, hi: float, eps: float, what: str) -> np.ndarray:
    """Values within the rounding slack of a bound are the bound; values beyond it are an error.

    The slack is relative to the size of the range (absolute for an infinite one): 1e-10 for statistics
    formed with float64 products, 1e-4 for float32 products. This is not clamping an error away: a value
    outside the slack raises FloatingPointError.
    """
    if not np.all(np.isfinite(values)):
        raise FloatingPointError(f"{what} came out non-finite; please report this input")
    span = (hi - lo) if math.isfinite(hi - lo) else 1.0
    slack = rounding_slack(eps) * max(span, 1.0)
    if math.isfinite(lo):
        if np.any(values < lo - slack):
            raise FloatingPointError(f"{what} came out as {values.min()!r}, below its lower bound {lo} beyond rounding; "
                                     "please report this input")
        values = np.where(values < lo, lo, values)
    if math.isfinite(hi):
        if np.any(values > hi + slack):
            raise FloatingPointError(f"{what} came out as {values.max()!r}, above its upper bound {hi} beyond rounding; "
                                     "please report this input")
        values = np.where(values > hi, hi, values)
    return values


def evaluate(bound: Bound, pset: PairSet, want: str = "value", progress: bool | None = False) -> np.ndarray:
    """The k1 × k2 matrix of the measure's value (``want="value"``) or dissimilarity (``"distance"``).

    With ``pset.same`` (a list against itself) each representation's entry with itself is the measure's
    identity value (0 for a dissimilarity) once it has been computed without error, and a symmetric
    measure's lower triangle mirrors the upper one. Python runs between pairs, so Ctrl-C stops the loop there
    (and inside the compiled bulk computations, which check for it).
    """
    m = bound.measure
    fin = bound.value if want == "value" else bound.distance
    out = np.empty((pset.k1, pset.k2))
    mirrored = pset.same and bound.symmetric
    total = pset.k1 * (pset.k1 + 1) // 2 if mirrored else pset.k1 * pset.k2
    with Progress(progress if total > 1 else False, total, f"pairwise {m.name}") as bar:
        for i in range(pset.k1):
            for j in range(pset.k2):
                if mirrored and j < i:
                    out[i, j] = out[j, i]
                else:
                    with busy(), explain_out_of_memory(describe(bound)):  # a fork waits for the pair (reprsim._fork)
                        out[i, j] = fin(pset.pair(i, j))
                    bar.update(1)
    if pset.same:
        identity = m.identity if want == "value" else (0.0 if m.zero_diagonal else None)
        if identity is not None:
            np.fill_diagonal(out, identity)
    lo, hi = bound.value_range if want == "value" else bound.distance_range
    what = m.name if want == "value" else f"the {m.name} dissimilarity"
    return check_range(out, lo, hi, pset.eps, what)


def pair_value(metric: str, x: Any, y: Any, options: dict[str, Any], want: str = "value", stacklevel: int = 3) -> float:
    """One pair's value (or dissimilarity) of a registered measure: its statistics, then its finaliser.
    Every public function of a measure is this call."""
    bound = bind(metric, options)
    pset = pair_set(bound.measure.statistics, [x], [y], names_x=["x"], names_y=["y"], min_n=bound.min_n,
                    what=describe(bound))
    widths = set_widths(pset)
    if widths is not None:
        warn_if_few_samples(bound, pset.n, *widths, stacklevel=stacklevel)
    return float(evaluate(bound, pset, want)[0, 0])


def set_widths(pset: PairSet) -> tuple[list[int], list[int]] | None:
    """The widths of a pair set's representations, where it holds them."""
    xs, ys = getattr(pset, "xs", None), getattr(pset, "ys", None)
    if xs is None or ys is None:
        return None
    return [int(a.shape[1]) for a in xs], [int(a.shape[1]) for a in ys]

