"""Every documented bad input raises ValueError/TypeError naming the argument; nothing crashes."""

import numpy as np
import pytest

import reprsim

ALL = [
    lambda x, y: reprsim.cka(x, y),
    lambda x, y: reprsim.cka(x, y, debiased=True),
    reprsim.canonical_correlations,
    reprsim.mean_cca,
    reprsim.mean_sq_cca,
    reprsim.svcca,
    reprsim.pwcca,
    reprsim.procrustes_distance,
    lambda x, y: reprsim.procrustes_distance(x, y, angular=True),
]


@pytest.fixture
def good(rng):
    return rng.standard_normal((30, 4)), rng.standard_normal((30, 5))


@pytest.mark.parametrize("f", ALL)
def test_mismatched_n_names_both_shapes(f, good):
    x, y = good
    with pytest.raises(ValueError, match=r"same number of samples.*\(30, 4\).*\(29, 5\)"):
        f(x, y[:29])


@pytest.mark.parametrize("f", ALL)
@pytest.mark.parametrize("shape,msg", [((30,), "2-D"), ((30, 2, 2), "2-D"), ((0, 3), "empty"), ((30, 0), "empty")])
def test_wrong_dimensionality_or_empty(f, good, shape, msg):
    _, y = good
    with pytest.raises(ValueError, match=rf"x .*{msg}"):
        f(np.ones(shape), y)


@pytest.mark.parametrize("f", ALL)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_or_inf_is_rejected(f, good, bad, dtype):
    x, y = (a.astype(dtype) for a in good)
    y = y.copy()
    y[7, 2] = bad
    with pytest.raises(ValueError, match=r"y contains NaN or Inf \(column 2\)"):
        f(x, y)


@pytest.mark.parametrize("f", ALL)
def test_constant_representation_is_rejected_not_nan(f, good):
    x, _ = good
    with pytest.raises(ValueError, match=r"y has zero variance"):
        f(x, np.full((30, 3), 2.5))


@pytest.mark.parametrize("f", ALL)
def test_too_few_samples(f):
    with pytest.raises(ValueError, match=r"n = 1 samples.*at least"):
        f(np.ones((1, 2)), np.ones((1, 2)))


def test_debiased_needs_four_samples():
    x = np.arange(6.0).reshape(3, 2) ** 2
    with pytest.raises(ValueError, match=r"n = 3 samples; debiased CKA needs at least 4"):
        reprsim.cka(x, x, debiased=True)
    assert np.isfinite(reprsim.cka(x, x[:, ::-1]))


@pytest.mark.parametrize("f", [reprsim.canonical_correlations, reprsim.mean_cca, reprsim.mean_sq_cca, reprsim.pwcca])
@pytest.mark.parametrize("p", [19, 20, 45])
def test_cca_with_rank_reaching_n_minus_1_explains_trivial_correlations(f, rng, p):
    x, y = rng.standard_normal((20, p)), rng.standard_normal((20, 3))
    with pytest.raises(ValueError, match=r"x has numerical rank 19 .*trivially 1.*svcca"):
        f(x, y)


def test_svcca_reduces_before_the_rank_check(rng):
    # 200 features over 50 samples: the raw rank is 49 = n - 1, but a low-rank signal keeps SVCCA defined.
    z = rng.standard_normal((50, 3))
    x = z @ rng.standard_normal((3, 200)) + 1e-3 * rng.standard_normal((50, 200))
    y = z @ rng.standard_normal((3, 7)) + 1e-3 * rng.standard_normal((50, 7))
    assert reprsim.svcca(x, y, variance=0.99) > 0.99


def test_cka_and_procrustes_accept_more_features_than_samples(rng):
    x, y = rng.standard_normal((10, 50)), rng.standard_normal((10, 70))
    assert np.isfinite(reprsim.cka(x, y))
    assert np.isfinite(reprsim.procrustes_distance(x, y))


def test_unknown_metric_lists_known_ones(good):
    with pytest.raises(ValueError, match=r"unknown metric 'cca'.*angular_procrustes.*svcca"):
        reprsim.distance(*good, metric="cca")
    with pytest.raises(ValueError, match=r"unknown metric"):
        reprsim.pairwise([good[0]], metric="nope")
    with pytest.raises(TypeError, match=r"metric must be a string"):
        reprsim.distance(*good, metric=3)


@pytest.mark.parametrize("value", ["abc", None, np.array(["a", "b"]), np.ones((3, 2), dtype=complex)])
def test_non_numeric_input_is_a_type_error(good, value):
    with pytest.raises(TypeError, match=r"x "):
        reprsim.cka(value, good[1])


def test_ragged_list_is_a_value_error(good):
    with pytest.raises(ValueError, match=r"x could not be read as a rectangular array"):
        reprsim.cka([[1.0, 2.0], [3.0]], good[1])


def test_bad_options_are_rejected(good):
    x, y = good
    with pytest.raises(ValueError, match=r"variance must be a number in \(0, 1\]"):
        reprsim.svcca(x, y, variance=1.5)
    with pytest.raises(ValueError, match=r"convention must be one of"):
        reprsim.svcca(x, y, convention="median")
    with pytest.raises(ValueError, match=r"convention must be one of 'x', 'y', 'smaller', 'padded'; got 'google'"):
        reprsim.pwcca(x, y, convention="google")
    with pytest.raises(TypeError, match=r"metric 'procrustes' does not take the option 'debiased'; it takes angular"):
        reprsim.pairwise([x, y[:, :2]], metric="procrustes", debiased=True)
    with pytest.raises(TypeError, match=r"metric 'ensd' takes no options"):
        reprsim.pairwise([x, y[:, :2]], metric="ensd", debiased=True)
    with pytest.raises(TypeError, match=r"metric 'cka' does not take the option 'debaised'; did you mean 'debiased'"):
        reprsim.pairwise([x, y[:, :2]], metric="cka", debaised=True)
    with pytest.raises(TypeError, match=r"'debiased_cka' does not take the option 'debiased' \(debiased=True is fixed"):
        reprsim.distance(x, y, metric="debiased_cka", debiased=False)


def test_pairwise_bad_lists(good):
    x, y = good
    with pytest.raises(TypeError, match=r"xs must be a list"):
        reprsim.pairwise(x)
    with pytest.raises(ValueError, match=r"xs is empty"):
        reprsim.pairwise([])
    with pytest.raises(ValueError, match=r"same number of samples: xs\[0\] has 30 rows, ys\[1\] has shape \(29, 5\)"):
        reprsim.pairwise([x], [y, y[:29]])
    with pytest.raises(ValueError, match=r"xs\[1\] contains NaN"):
        reprsim.pairwise([x, np.full_like(x, np.nan)])


def test_set_num_threads_validates_and_round_trips():
    before = reprsim.get_num_threads()
    try:
        reprsim.set_num_threads(1)
        assert reprsim.get_num_threads() == 1
    finally:
        reprsim.set_num_threads(before)
    assert reprsim.get_num_threads() == before
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"positive integer"):
            reprsim.set_num_threads(bad)


def test_cca_summary_rejects_bad_input():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 4))
    with pytest.raises(ValueError, match="convention must be one of"):
        reprsim.cca_summary(x, x, convention="z")
    with pytest.raises(ValueError, match="same number of samples"):
        reprsim.cca_summary(x, x[:20])
    with pytest.raises(ValueError, match="trivially 1"):
        reprsim.cca_summary(rng.standard_normal((10, 12)), x[:10])
