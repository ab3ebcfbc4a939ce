import numpy as np
import pytest

import reprsim
import reference as ref


def reps(rng, n, widths, dtype=np.float64):
    z = rng.standard_normal((n, 6))
    return [(z @ rng.standard_normal((6, p)) + 0.5 * rng.standard_normal((n, p))).astype(dtype) for p in widths]


@pytest.mark.parametrize("metric", sorted(reprsim.METRICS))
def test_pairwise_equals_distance_of_each_pair(rng, metric):
    xs = reps(rng, 70, [5, 9, 12])
    ys = reps(rng, 70, [4, 11])
    d = reprsim.pairwise(xs, ys, metric=metric)
    assert d.shape == (3, 2)
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            assert d[i, j] == pytest.approx(ref.distance(x, y, metric), rel=1e-9, abs=1e-11)


@pytest.mark.parametrize("metric", sorted(reprsim.METRICS))
def test_pairwise_of_one_list_against_itself(rng, metric):
    xs = reps(rng, 60, [3, 8, 8, 15])
    d = reprsim.pairwise(xs, metric=metric)
    for i in range(4):
        assert d[i, i] == pytest.approx(0.0, abs=2e-7)
        for j in range(4):
            # arccos is steep at 1: a rounding error ε in the nuclear norm moves the angle by √(2ε).
            atol = 1e-7 if metric == "angular_procrustes" else 1e-10
            assert d[i, j] == pytest.approx(ref.distance(xs[i], xs[j], metric), rel=1e-9, abs=atol)


@pytest.mark.parametrize("metric", ["cka", "debiased_cka", "procrustes"])
def test_pairwise_wide_layers_use_gram_space_with_same_values(rng, metric):
    xs = reps(rng, 30, [40, 90, 7], dtype=np.float32)
    d = reprsim.pairwise(xs, metric=metric)
    for i in range(3):
        for j in range(3):
            assert d[i, j] == pytest.approx(ref.distance(xs[i], xs[j], metric), rel=1e-4, abs=1e-5)


def test_pairwise_passes_options(rng):
    xs = reps(rng, 80, [6, 10])
    d = reprsim.pairwise(xs, metric="svcca", variance=0.9, convention="singular_values")
    assert d[0, 1] == pytest.approx(1 - ref.svcca(xs[0], xs[1], keep=0.9, on_variance=False), rel=1e-9)
    d = reprsim.pairwise(xs, metric="pwcca", convention="y")
    assert d[0, 1] == pytest.approx(1 - ref.pwcca(xs[1], xs[0]), rel=1e-9)
