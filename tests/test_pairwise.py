import numpy as np
import pytest

import reprsim
import reference as ref


def reps(rng, n, widths, dtype=np.float64):
    z = rng.standard_normal((n, 6))
    return [(z @ rng.standard_normal((6, p)) + 0.5 * rng.standard_normal((n, p))).astype(dtype) for p in widths]


# minibatch CKA's default minibatch (256 rows) covers these n; with n ≥ the widths the CCA family is defined.
METRICS = sorted(reprsim.METRICS)


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_distances_equal_distance_of_each_pair(rng, metric):
    xs = reps(rng, 70, [5, 9, 12])
    ys = reps(rng, 70, [4, 11])
    d = reprsim.pairwise_distances(xs, ys, metric=metric)
    assert d.shape == (3, 2)
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            assert d[i, j] == pytest.approx(ref.distance(x, y, metric), rel=1e-9, abs=1e-11)


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_values_are_what_the_measure_returns(rng, metric):
    xs = reps(rng, 70, [5, 9, 12])
    ys = reps(rng, 70, [4, 11])
    v = reprsim.pairwise(xs, ys, metric=metric)
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            assert v[i, j] == pytest.approx(ref.value(x, y, metric), rel=1e-9, abs=1e-11)
            assert v[i, j] == pytest.approx(reprsim.measure(x, y, metric), rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_of_one_list_against_itself(rng, metric):
    xs = reps(rng, 60, [3, 8, 8, 15])
    d = reprsim.pairwise_distances(xs, metric=metric)
    v = reprsim.pairwise(xs, metric=metric)
    info = reprsim.METRICS[metric]
    for i in range(4):
        if info.zero_diagonal:
            assert d[i, i] == 0.0  # exactly
        else:  # e.g. held-out predictivity of a representation from itself is below 1
            assert d[i, i] == pytest.approx(ref.distance(xs[i], xs[i], metric), rel=1e-9, abs=1e-11)
        if info.identity is not None:
            assert v[i, i] == info.identity
        else:
            assert v[i, i] == pytest.approx(ref.value(xs[i], xs[i], metric), rel=1e-10)
        for j in range(4):
            # arccos is steep at 1: a rounding error ε in the nuclear norm moves the angle by √(2ε).
            atol = 1e-7 if metric == "angular_procrustes" else 1e-10
            if i != j:
                assert d[i, j] == pytest.approx(ref.distance(xs[i], xs[j], metric), rel=1e-9, abs=atol)
            if info.symmetric:
                assert d[i, j] == d[j, i]


@pytest.mark.parametrize("metric", ["cka", "debiased_cka", "procrustes", "ensd"])
def test_pairwise_wide_layers_use_gram_space_with_same_values(rng, metric):
    xs = reps(rng, 30, [40, 90, 7], dtype=np.float32)
    d = reprsim.pairwise_distances(xs, metric=metric)
    for i in range(3):
        for j in range(3):
            if i != j:
                assert d[i, j] == pytest.approx(ref.distance(xs[i], xs[j], metric), rel=1e-4, abs=1e-5)


def test_pairwise_passes_options(rng):
    xs = reps(rng, 80, [6, 10])
    d = reprsim.pairwise_distances(xs, metric="svcca", variance=0.9, convention="singular_values")
    assert d[0, 1] == pytest.approx(1 - ref.svcca(xs[0], xs[1], keep=0.9, on_variance=False), rel=1e-9)
    d = reprsim.pairwise_distances(xs, metric="pwcca", convention="y")
    assert d[0, 1] == pytest.approx(1 - ref.pwcca(xs[1], xs[0]), rel=1e-9)
    v = reprsim.pairwise(xs, metric="cka", debiased=True)
    assert v[0, 1] == pytest.approx(ref.cka(xs[0], xs[1], debiased=True), rel=1e-9)


def test_values_and_distances_never_leave_the_documented_range(rng):
    # x against 2x: CKA is 1 up to rounding (it came out 1 + 1e-16, a distance of −8.9e-16, before values
    # within rounding of a bound were returned as the bound).
    for _ in range(20):
        x = rng.standard_normal((rng.integers(5, 40), rng.integers(1, 12)))
        assert reprsim.distance(x, 2 * x, "cka") >= 0.0
        assert reprsim.cka(x, 2 * x) <= 1.0
        d = reprsim.pairwise_distances([x, 2 * x, -3 * x], metric="cka")
        assert np.all(d >= 0.0) and np.all(d <= 1.0)
        assert np.all(reprsim.pairwise([x, 2 * x], metric="cka") <= 1.0)
