"""Few samples against the widths: a warning for the biased estimators, and values in range on every path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import reprsim
from reprsim import SampleSizeWarning
from reprsim._compute import chance_level


def _unrelated(rng, n, p1, p2):
    return rng.standard_normal((n, p1)), rng.standard_normal((n, p2))


def test_chance_level_is_the_cka_of_unrelated_data(rng):
    # The rule's justification: biased CKA of independent data is about √(p1·p2/((n+p1)(n+p2))); the mean over
    # draws agrees with it to a few percent.
    for n, p1, p2 in [(64, 1000, 1000), (200, 800, 800), (100, 400, 20), (300, 50, 50)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SampleSizeWarning)
            values = [reprsim.cka(*_unrelated(rng, n, p1, p2)) for _ in range(4)]
        assert np.mean(values) == pytest.approx(chance_level(n, p1, p2), rel=0.05)


def test_transposed_data_warns_once_with_the_fix(rng):
    # google/svcca's layout (neurons, samples): 64 "samples" of 1000 "features" score CKA 0.94 for unrelated data.
    x, y = _unrelated(rng, 1000, 64, 64)
    with pytest.warns(SampleSizeWarning, match=r"n = 64 samples against widths 1000 and 1000: CKA \(a biased "
                      r"estimator\) of unrelated representations of these shapes is about 0.94.*pass the transposes.*"
                      r"debiased=True") as record:
        value = reprsim.cka(x.T, y.T)
    assert len(record) == 1 and record[0].filename == __file__
    assert value > 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampleSizeWarning)
        assert reprsim.cka(x, y) < 0.1  # the right orientation
        assert abs(reprsim.cka(x.T, y.T, debiased=True)) < 0.1  # debiased CKA is fine at small n
        reprsim.measure(x.T, y.T, "debiased_cka")
        reprsim.procrustes_distance(x.T, y.T)  # exact measures are not flagged


@pytest.mark.parametrize("call", [
    lambda x, y: reprsim.measure(x, y, "ensd"),
    lambda x, y: reprsim.distance(x, y, "cka"),
    lambda x, y: reprsim.cka(x, y, kernel="rbf"),
    lambda x, y: reprsim.pairwise([x, y, x[:, :5]], metric="cka"),
    lambda x, y: reprsim.pairwise_distances([x], [y, y], metric="ensd"),
    lambda x, y: reprsim.permutation_test(x, y, n_resamples=20, rng=0),
    lambda x, y: reprsim.bootstrap(x, y, n_resamples=5, rng=0, method="percentile"),
])
def test_every_in_memory_path_warns_once_per_call(rng, call):
    x, y = _unrelated(rng, 40, 300, 300)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        call(x, y)
    sample_size = [w for w in record if issubclass(w.category, SampleSizeWarning)]
    assert len(sample_size) == 1, [str(w.message) for w in record]
    assert sample_size[0].filename == __file__  # points at the user's call


def test_no_warning_when_n_is_large_enough_or_the_estimator_is_unbiased(rng):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampleSizeWarning)
        x, y = _unrelated(rng, 100, 300, 300)  # chance level 0.75: below the 0.8 rule
        reprsim.cka(x, y)
        x, y = _unrelated(rng, 40, 300, 300)
        reprsim.pairwise([x, y], metric="debiased_cka")
        reprsim.pairwise([x, y], metric="cka", debiased=True)
        reprsim.minibatch_cka(x, y, batch_size=20)
        reprsim.mutual_knn(x, y, k=5)


# -- values within their range on every path ---------------------------------------------------------


def _paths(x, y, metric, options, forced=None):
    """The measure's value for one pair from every path that computes it."""
    out = {
        "function": reprsim.measure(x, y, metric, **options),
        "pairwise": reprsim.pairwise([x, y], metric=metric, **options)[0, 1],
        "pairwise xs, ys": reprsim.pairwise([x], [y], metric=metric, **options)[0, 0],
    }
    if reprsim.METRICS[metric].streams:
        for route in ("moments", "rows"):
            acc = reprsim.StreamingSimilarity(route=route, metrics=[metric])
            for s in range(0, x.shape[0], 7):
                acc.update(x[s : s + 7], y[s : s + 7])
            out[f"streaming {route}"] = acc.measure(metric, **options)
    if forced is not None:
        out["device"] = reprsim.measure(forced.from_numpy(x), forced.from_numpy(y), metric, **options)
    return out


CASES = [("cka", {}), ("cka", {"debiased": True}), ("ensd", {}), ("procrustes", {}), ("procrustes", {"angular": True}),
         ("mean_cca", {}), ("mean_sq_cca", {}), ("svcca", {}), ("pwcca", {}), ("rbf_cka", {})]


@pytest.mark.parametrize("metric, options", CASES, ids=[f"{m}{o}" for m, o in CASES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_values_at_a_bound_stay_in_range_on_every_path(rng, metric, options, dtype, forced_device):
    # y is x rotated, scaled and shifted: every measure is at a bound of its range (within rounding), where
    # rounding could step outside. Each path returns a value in the registered range, never beyond it.
    x = rng.standard_normal((56, 4))
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    y = 2.5 * x @ q + 1.0
    x, y = x.astype(dtype), y.astype(dtype)
    lo, hi = reprsim._registry.bind(metric, options).value_range
    forced = forced_device if metric != "rbf_cka" or dtype == np.float64 else None
    for path, value in _paths(x, y, metric, options, forced).items():
        assert lo <= value <= hi, (path, value)
        at = hi if reprsim.METRICS[metric].value_kind == "similarity" else lo
        if not np.isfinite(at):  # ENSD is unbounded above: its value at x ~ y is the participation ratio
            continue
        assert value == pytest.approx(at, abs=1e-3 if dtype == np.float32 else 1e-6), (path, value)
