"""Evaluating a bound measure over a pair set: the one loop every path runs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._backend import pair_set
from ._registry import Bound, bind, describe
from ._stats import PairSet, rounding_slack


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


def evaluate(bound: Bound, pset: PairSet, want: str = "value") -> np.ndarray:
    """The k1 × k2 matrix of the measure's value (``want="value"``) or dissimilarity (``"distance"``).

    With ``pset.same`` (a list against itself) each representation's entry with itself is the measure's
    identity value (0 for a dissimilarity) once it has been computed without error, and a symmetric
    measure's lower triangle mirrors the upper one.
    """
    m = bound.measure
    fin = bound.value if want == "value" else bound.distance
    out = np.empty((pset.k1, pset.k2))
    for i in range(pset.k1):
        for j in range(pset.k2):
            if pset.same and bound.symmetric and j < i:
                out[i, j] = out[j, i]
            else:
                out[i, j] = fin(pset.pair(i, j))
    if pset.same:
        identity = m.identity if want == "value" else (0.0 if m.zero_diagonal else None)
        if identity is not None:
            np.fill_diagonal(out, identity)
    lo, hi = bound.value_range if want == "value" else bound.distance_range
    what = m.name if want == "value" else f"the {m.name} dissimilarity"
    return check_range(out, lo, hi, pset.eps, what)


def pair_value(metric: str, x: Any, y: Any, options: dict[str, Any], want: str = "value") -> float:
    """One pair's value (or dissimilarity) of a registered measure: its statistics, then its finaliser.
    Every public function of a measure is this call."""
    bound = bind(metric, options)
    pset = pair_set(bound.measure.statistics, [x], [y], names_x=["x"], names_y=["y"], min_n=bound.min_n,
                    what=describe(bound))
    return float(evaluate(bound, pset, want)[0, 0])

