"""Properties every metric must have: identity, invariances, symmetry and ranges."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reprsim
import reference as ref

SEEDS = st.integers(0, 2**32 - 1)


def orthogonal(rng, p):
    q, r = np.linalg.qr(rng.standard_normal((p, p)))
    return q * np.sign(np.diag(r))


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, n=st.integers(10, 80), p=st.integers(1, 40), debiased=st.booleans())
def test_cka_of_representation_with_itself_is_one(seed, n, p, debiased):
    x = np.random.default_rng(seed).standard_normal((n, p))
    assert reprsim.cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, n=st.integers(8, 60), p1=st.integers(1, 30), p2=st.integers(1, 30),
       scale=st.floats(1e-3, 1e3), debiased=st.booleans())
def test_cka_invariant_to_orthogonal_transform_and_isotropic_scaling(seed, n, p1, p2, scale, debiased):
    rng = np.random.default_rng(seed)
    x, y = ref.random_pair(rng, n, p1, p2)
    base = reprsim.cka(x, y, debiased=debiased)
    moved = reprsim.cka(scale * x @ orthogonal(rng, p1), y @ orthogonal(rng, p2) + 5.0, debiased=debiased)
    assert moved == pytest.approx(base, rel=1e-9, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, n=st.integers(6, 60), p1=st.integers(1, 30), p2=st.integers(1, 30),
       scale=st.floats(1e-3, 1e3), angular=st.booleans())
def test_procrustes_invariant_to_orthogonal_transform_and_isotropic_scaling(seed, n, p1, p2, scale, angular):
    rng = np.random.default_rng(seed)
    x, y = ref.random_pair(rng, n, p1, p2)
    base = reprsim.procrustes_distance(x, y, angular=angular)
    moved = reprsim.procrustes_distance(scale * x @ orthogonal(rng, p1) - 3.0, y @ orthogonal(rng, p2),
                                        angular=angular)
    assert moved == pytest.approx(base, rel=1e-8, abs=1e-10)


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, n=st.integers(5, 60), p=st.integers(1, 30))
def test_procrustes_of_rotated_copy_is_zero(seed, n, p):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p))
    assert reprsim.procrustes_distance(x, 2.0 * x @ orthogonal(rng, p)) == pytest.approx(0.0, abs=1e-12)
    assert reprsim.procrustes_distance(x, x @ orthogonal(rng, p), angular=True) == pytest.approx(0.0, abs=2e-7)


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, n=st.integers(30, 90), p1=st.integers(1, 12), p2=st.integers(1, 12))
def test_cca_metrics_invariant_to_invertible_linear_maps(seed, n, p1, p2):
    rng = np.random.default_rng(seed)
    x, y = ref.random_pair(rng, n, p1, p2)
    # Well-conditioned random maps (cond below ~1e2) so the comparison tests invariance, not conditioning.
    a = orthogonal(rng, p1) @ np.diag(rng.uniform(0.2, 5, p1)) @ orthogonal(rng, p1)
    b = orthogonal(rng, p2) @ np.diag(rng.uniform(0.2, 5, p2)) @ orthogonal(rng, p2)
    for f in (reprsim.mean_cca, reprsim.mean_sq_cca):
        assert f(x @ a + 1.0, y @ b) == pytest.approx(f(x, y), rel=1e-8, abs=1e-10)
    np.testing.assert_allclose(reprsim.canonical_correlations(x @ a, y @ b), reprsim.canonical_correlations(x, y),
                               rtol=1e-8, atol=1e-10)


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, n=st.integers(30, 90), p1=st.integers(1, 12), p2=st.integers(1, 12), scale=st.floats(1e-2, 1e2))
def test_svcca_and_pwcca_invariant_to_isotropic_scaling(seed, n, p1, p2, scale):
    rng = np.random.default_rng(seed)
    x, y = ref.random_pair(rng, n, p1, p2)
    assert reprsim.svcca(scale * x, y) == pytest.approx(reprsim.svcca(x, y), rel=1e-9)
    assert reprsim.pwcca(scale * x, y / scale) == pytest.approx(reprsim.pwcca(x, y), rel=1e-9)
    q = orthogonal(rng, p1)
    assert reprsim.svcca(x @ q, y) == pytest.approx(reprsim.svcca(x, y), rel=1e-8)


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, n=st.integers(20, 80), p1=st.integers(1, 15), p2=st.integers(1, 15))
def test_symmetric_metrics_are_symmetric_and_in_range(seed, n, p1, p2):
    x, y = ref.random_pair(np.random.default_rng(seed), n, p1, p2)
    for name, info in reprsim.METRICS.items():
        if info.statistics == "rdm" and min(p1, p2) < 2:
            continue  # the correlation between rows of one feature is undefined (reprsim.rdm says so)
        d_xy = reprsim.distance(x, y, metric=name)
        lo, hi = info.range
        assert lo - 1e-9 <= d_xy <= hi + 1e-9, (name, d_xy)
        if info.symmetric:
            assert reprsim.distance(y, x, metric=name) == pytest.approx(d_xy, rel=1e-9, abs=1e-11), name


def test_pwcca_is_not_symmetric_in_general(rng):
    x, y = ref.random_pair(rng, 100, 4, 12)
    assert abs(reprsim.pwcca(x, y) - reprsim.pwcca(y, x)) > 1e-3
    assert not reprsim.METRICS["pwcca"].symmetric


def test_identical_inputs_have_zero_distance_for_every_metric(rng):
    x, _ = ref.random_pair(rng, 80, 10, 10)
    # Distances in the data's units (Bures, Euclidean forms) are 0 up to rounding relative to the data's scale.
    rms = np.linalg.norm(ref.center(x)) / np.sqrt(len(x))
    for name, info in reprsim.METRICS.items():
        if info.zero_diagonal:
            tol = 2e-7 * (1.0 if "isotropic_scaling" in info.invariances else rms)
            assert reprsim.distance(x, x, metric=name) == pytest.approx(0.0, abs=tol), name


def test_unrelated_inputs_are_far(rng):
    x, y = rng.standard_normal((500, 5)), rng.standard_normal((500, 5))
    assert reprsim.cka(x, y) < 0.05
    assert reprsim.procrustes_distance(x, y) > 1.5
    assert reprsim.mean_cca(x, y) < 0.15


def test_angular_procrustes_satisfies_triangle_inequality(rng):
    reps = [rng.standard_normal((60, 8)) @ rng.standard_normal((8, 8)) for _ in range(6)]
    d = reprsim.pairwise(reps, metric="angular_procrustes")
    for i in range(6):
        for j in range(6):
            for k in range(6):
                assert d[i, k] <= d[i, j] + d[j, k] + 1e-9
