"""Every public metric against the independent float64 references in reference.py.

Tolerances: 1e-10 relative for float64 inputs, 1e-4 for float32 (the products run in float32).
"""

import numpy as np
import pytest

import reprsim
import reference as ref

# (n, p1, p2): n > p, n ≈ p, p1 ≠ p2, and widths above n (Gram-space routes).
SHAPES = [(60, 5, 9), (200, 30, 30), (120, 100, 110), (80, 70, 20), (40, 60, 75), (25, 200, 3)]
CCA_SHAPES = [(60, 5, 9), (200, 30, 30), (120, 100, 110), (80, 70, 20), (50, 47, 3)]
DTYPES = [(np.float64, 1e-10), (np.float32, 1e-4)]


def close(actual, expected, rtol, atol_scale=1.0):
    assert np.allclose(actual, expected, rtol=rtol, atol=rtol * atol_scale), (actual, expected)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,rtol", DTYPES)
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_matches_reference(shape, dtype, rtol, debiased):
    x, y = ref.random_pair(np.random.default_rng(sum(shape)), *shape, dtype=dtype)
    close(reprsim.cka(x, y, debiased=debiased), ref.cka(x, y, debiased=debiased), rtol)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,rtol", DTYPES)
@pytest.mark.parametrize("angular", [False, True])
def test_procrustes_matches_reference(shape, dtype, rtol, angular):
    x, y = ref.random_pair(np.random.default_rng(sum(shape) + 1), *shape, dtype=dtype)
    # arccos near 0 amplifies float32 rounding of the nuclear norm; compare angles loosely there.
    tol = rtol if not angular else (1e-7 if dtype == np.float64 else 1e-3)
    close(reprsim.procrustes_distance(x, y, angular=angular), ref.procrustes(x, y, angular=angular), tol)


@pytest.mark.parametrize("shape", CCA_SHAPES)
@pytest.mark.parametrize("dtype,rtol", DTYPES)
def test_canonical_correlations_match_reference(shape, dtype, rtol):
    x, y = ref.random_pair(np.random.default_rng(sum(shape) + 2), *shape, dtype=dtype)
    rho = reprsim.canonical_correlations(x, y)
    expected = ref.canonical_correlations(x, y)
    assert rho.dtype == np.float64 and rho.ndim == 1
    assert rho.shape == (min(shape[1], shape[2]),)
    assert np.all(np.diff(rho) <= 1e-12)
    # CCA runs in float64 whatever the input dtype.
    close(rho, expected, 1e-9)


@pytest.mark.parametrize("shape", CCA_SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cca_summaries_match_reference(shape, dtype):
    x, y = ref.random_pair(np.random.default_rng(sum(shape) + 3), *shape, dtype=dtype)
    rho = ref.canonical_correlations(x, y)
    close(reprsim.mean_cca(x, y), rho.mean(), 1e-9)
    close(reprsim.mean_sq_cca(x, y), np.mean(rho**2), 1e-9)
    if shape[1] + shape[2] >= shape[0] - 1:
        # Some correlations are then trivially 1 and their canonical variates are not unique, so
        # projection weights depend on an arbitrary basis: PWCCA is compared only where it is defined.
        return
    close(reprsim.pwcca(x, y), ref.pwcca(x, y), 1e-8)
    close(reprsim.pwcca(x, y, convention="y"), ref.pwcca(y, x), 1e-8)
    smaller = ref.pwcca(x, y) if shape[1] <= shape[2] else ref.pwcca(y, x)
    close(reprsim.pwcca(x, y, convention="smaller"), smaller, 1e-8)


@pytest.mark.parametrize("shape", CCA_SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cca_summary_matches_reference_in_one_call(shape, dtype):
    x, y = ref.random_pair(np.random.default_rng(sum(shape) + 3), *shape, dtype=dtype)
    rho = ref.canonical_correlations(x, y)
    for convention in ("x", "y", "smaller"):
        s = reprsim.cca_summary(x, y, convention=convention)
        close(s.correlations, rho, 1e-9)
        close(s.mean_cca, rho.mean(), 1e-9)
        close(s.mean_sq_cca, np.mean(rho**2), 1e-9)
        if shape[1] + shape[2] < shape[0] - 1:  # PWCCA is unique there (see above)
            want = {"x": ref.pwcca(x, y), "y": ref.pwcca(y, x),
                    "smaller": ref.pwcca(x, y) if shape[1] <= shape[2] else ref.pwcca(y, x)}[convention]
            close(s.pwcca, want, 1e-8)


@pytest.mark.parametrize("shape", CCA_SHAPES + [(30, 60, 80)])
@pytest.mark.parametrize("variance", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("convention", ["variance", "singular_values"])
def test_svcca_matches_reference(shape, variance, convention):
    x, y = ref.random_pair(np.random.default_rng(sum(shape) + 4), *shape)
    on_variance = convention == "variance"
    kept = [ref.svcca_components(a, variance, on_variance) for a in (x, y)]
    if max(kept) >= shape[0] - 1:
        # Keeping n - 1 components makes every correlation trivially 1: reprsim says so.
        with pytest.raises(ValueError, match="trivially 1"):
            reprsim.svcca(x, y, variance=variance, convention=convention)
        return
    expected = ref.svcca(x, y, keep=variance, on_variance=on_variance)
    close(reprsim.svcca(x, y, variance=variance, convention=convention), expected, 1e-9)


@pytest.mark.parametrize("metric", sorted(reprsim.METRICS))
def test_distance_matches_reference_definition(metric):
    x, y = ref.random_pair(np.random.default_rng(7), 90, 12, 17)
    close(reprsim.distance(x, y, metric=metric), ref.distance(x, y, metric), 1e-9)


def test_rank_deficient_input_uses_numerical_rank(rng):
    # Dead units (constant columns) and duplicated units are common in trained networks.
    x, y = ref.random_pair(rng, 150, 10, 12)
    x = np.hstack([x, x[:, :3], np.full((150, 2), 4.0), 2.5 * x[:, 5:6]])
    y = np.hstack([y, np.zeros((150, 1)), y[:, :4] - y[:, 4:8]])
    rho = reprsim.canonical_correlations(x, y)
    assert rho.shape == (10,)  # rank x = 10, rank y = 12
    close(rho, ref.canonical_correlations(x, y), 1e-9)
    close(reprsim.pwcca(x, y), ref.pwcca(x, y), 1e-8)
    close(reprsim.svcca(x, y), ref.svcca(x, y), 1e-9)
    close(reprsim.cka(x, y), ref.cka(x, y), 1e-10)
    close(reprsim.procrustes_distance(x, y), ref.procrustes(x, y), 1e-10)


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-4), (np.float64, 1e-9)])
@pytest.mark.parametrize("metric", sorted(m for m, info in reprsim.METRICS.items() if "translation" in info.invariances))
def test_large_offset_does_not_change_result(dtype, rtol, metric):
    rng = np.random.default_rng(11)
    x, y = ref.random_pair(rng, 120, 8, 10, dtype=dtype)
    shifted = (x.astype(np.float64) + 1e6).astype(dtype)
    # The reference sees exactly the values reprsim sees (float32 rounding of the shifted input included).
    expected = ref.distance(shifted.astype(np.float64), y.astype(np.float64), metric)
    close(reprsim.distance(shifted, y, metric=metric), expected, rtol)
    if dtype == np.float64:  # and in float64 the offset itself changes nothing
        close(reprsim.distance(shifted, y, metric=metric), ref.distance(x, y, metric), 1e-7)


def test_integer_and_bool_inputs_are_promoted_to_float64(rng):
    x = rng.integers(-5, 5, size=(50, 6))
    y = rng.integers(0, 2, size=(50, 4)).astype(bool)
    close(reprsim.cka(x, y), ref.cka(x, y.astype(float)), 1e-10)
    close(reprsim.mean_cca(x, y), ref.canonical_correlations(x, y.astype(float)).mean(), 1e-9)


def test_mixed_float32_float64_computes_in_float64(rng):
    x, y = ref.random_pair(rng, 70, 6, 6)
    close(reprsim.cka(x.astype(np.float32), y), ref.cka(x.astype(np.float32).astype(float), y), 1e-10)


def test_non_contiguous_inputs_read_in_place_match_contiguous(rng):
    x, y = ref.random_pair(rng, 90, 14, 20)
    xf = np.asfortranarray(x)
    ys = y[::2][:, ::2]
    xs = x[::2]
    neg = x[::-1]
    close(reprsim.cka(xf, y), ref.cka(x, y), 1e-10)
    close(reprsim.cka(xs, ys), ref.cka(xs, ys), 1e-10)
    close(reprsim.procrustes_distance(neg, y[::-1]), ref.procrustes(x, y), 1e-10)
    close(reprsim.mean_cca(xs, ys), ref.canonical_correlations(xs, ys).mean(), 1e-9)
    close(reprsim.pwcca(xf, y), ref.pwcca(x, y), 1e-8)


def test_lists_are_accepted_as_array_likes():
    x = [[0.0, 1.0], [1.0, 0.5], [2.0, 2.0], [3.0, 1.0], [1.5, 0.0]]
    y = [[1.0], [2.0], [2.5], [4.0], [0.0]]
    close(reprsim.cka(x, y), ref.cka(np.array(x), np.array(y)), 1e-12)
