"""RBF kernel CKA against an independent numpy implementation, its invariances and its bad input."""

import numpy as np
import pytest

import reprsim

import reference as ref
from reprsim import _core, _memory, _stats


np_sq_distances = ref.sq_distances


def np_rbf(x, threshold=1.0, rule="median", sigma=None):
    return ref.rbf_kernel(x, threshold, rule, sigma)


def pair(rng, n=50, p1=6, p2=4):
    z = rng.standard_normal((n, 2))
    x = np.tanh(z @ rng.standard_normal((2, p1))) + 0.3 * rng.standard_normal((n, p1))
    y = (z @ rng.standard_normal((2, p2))) ** 2 + 0.3 * rng.standard_normal((n, p2))
    return x, y


def test_squared_distances_match_numpy(rng):
    x = rng.standard_normal((700, 5)) + 10.0  # more rows than one block, and an offset
    np.testing.assert_allclose(_core.squared_distances(x), np_sq_distances(x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("rule", ["median", "mean", "median_full"])
@pytest.mark.parametrize("threshold", [0.5, 1.0, 2.0])
def test_rbf_cka_matches_numpy_reference(rng, debiased, rule, threshold):
    x, y = pair(rng, n=41)
    expected = ref.kernel_cka(np_rbf(x, threshold, rule), np_rbf(y, threshold, rule), debiased)
    got = reprsim.cka(x, y, kernel="rbf", threshold=threshold, bandwidth=rule, debiased=debiased)
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_rbf_cka_with_fixed_bandwidth_matches_numpy_reference(rng):
    x, y = pair(rng)
    expected = ref.kernel_cka(np_rbf(x, sigma=1.7), np_rbf(y, sigma=1.7), False)
    np.testing.assert_allclose(reprsim.cka(x, y, kernel="rbf", bandwidth=1.7), expected, rtol=1e-9)


def test_median_over_distinct_pairs_differs_from_median_with_diagonal(rng):
    x, y = pair(rng, n=9)
    a = reprsim.cka(x, y, kernel="rbf", bandwidth="median")
    b = reprsim.cka(x, y, kernel="rbf", bandwidth="median_full")
    assert a != b


def test_rbf_cka_is_invariant_to_rotation_translation_and_isotropic_scaling(rng):
    x, y = pair(rng)
    q = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    base = reprsim.cka(x, y, kernel="rbf")
    np.testing.assert_allclose(reprsim.cka(x @ q + 5.0, y, kernel="rbf"), base, rtol=1e-9)
    np.testing.assert_allclose(reprsim.cka(3.0 * x, 0.1 * y, kernel="rbf"), base, rtol=1e-9)
    np.testing.assert_allclose(reprsim.cka(x, x, kernel="rbf"), 1.0, rtol=1e-12)
    np.testing.assert_allclose(reprsim.cka(y, x, kernel="rbf"), base, rtol=1e-12)


def test_rbf_cka_approaches_linear_cka_for_wide_kernels(rng):
    # exp(−D/2σ²) ≈ 1 − D/2σ², and the double-centred −D/2 is the linear Gram (Kornblith et al. 2019).
    x, y = pair(rng)
    np.testing.assert_allclose(reprsim.cka(x, y, kernel="rbf", threshold=1e4), reprsim.cka(x, y), rtol=1e-5)


def test_float32_input_gives_the_float64_value_to_float32_precision(rng):
    x, y = pair(rng)
    got = reprsim.cka(x.astype(np.float32), y.astype(np.float32), kernel="rbf")
    np.testing.assert_allclose(got, reprsim.cka(x, y, kernel="rbf"), rtol=1e-5)


def test_distance_passes_kernel_options(rng):
    x, y = pair(rng)
    np.testing.assert_allclose(
        reprsim.distance(x, y, "rbf_cka", threshold=0.8), 1.0 - reprsim.cka(x, y, kernel="rbf", threshold=0.8)
    )
    with pytest.raises(TypeError, match="does not take the option 'kernel'.*'rbf_cka'"):
        reprsim.distance(x, y, "cka", kernel="rbf")


def test_too_large_n_raises_with_the_memory_figure(rng, monkeypatch):
    x, y = pair(rng)
    monkeypatch.setattr(_memory, "available_memory", lambda: 10_000)
    with pytest.raises(ValueError, match=r"needs about .* GiB .* only .* GiB of memory is available"):
        reprsim.cka(x, y, kernel="rbf")
    # linear CKA needs no n×n matrix
    reprsim.cka(x, y)


def test_memory_estimate_counts_two_kernel_matrices():
    assert _stats.rbf_memory_bytes(1000, 10, 20) >= 2 * 8 * 1000 * 1000


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"kernel": "poly"}, ValueError, "kernel must be"),
        ({"kernel": "rbf", "bandwidth": "silverman"}, ValueError, "bandwidth must be one of"),
        ({"kernel": "rbf", "bandwidth": -1.0}, ValueError, "positive kernel width"),
        ({"kernel": "rbf", "bandwidth": 2.0, "threshold": 0.5}, ValueError, "leave threshold at 1.0"),
        ({"kernel": "rbf", "threshold": 0.0}, ValueError, r"threshold must be a number in \(0, inf\)"),
        ({"kernel": "rbf", "bandwidth": [1.0]}, TypeError, "rule name or a number"),
        ({"threshold": 2.0}, ValueError, "apply to kernel='rbf' only"),
    ],
)
def test_bad_kernel_options_raise(rng, kwargs, error, message):
    x, y = pair(rng, n=10)
    with pytest.raises(error, match=message):
        reprsim.cka(x, y, **kwargs)


def test_identical_samples_or_duplicate_majority_raise(rng):
    y = rng.standard_normal((8, 2))
    with pytest.raises(ValueError, match="zero variance"):
        reprsim.cka(np.ones((8, 3)), y, kernel="rbf")
    x = np.zeros((8, 3))
    x[0] = 1.0  # 21 of the 28 pairs coincide: the median distance is 0
    with pytest.raises(ValueError, match="bandwidth is 0"):
        reprsim.cka(x, y, kernel="rbf")
    assert np.isfinite(reprsim.cka(x, y, kernel="rbf", bandwidth="mean"))


def test_rbf_cka_rejects_nan_and_small_n(rng):
    x, y = pair(rng, n=10)
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        reprsim.cka(x, y, kernel="rbf")
    with pytest.raises(ValueError, match="needs at least 4"):
        reprsim.cka(y[:3], y[:3], kernel="rbf", debiased=True)
