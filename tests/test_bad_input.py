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


@pytest.mark.filterwarnings("ignore::reprsim.SampleSizeWarning")
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


# -- booleans: every bool parameter takes True/False (numpy's too) and nothing else ---------------------

_NOT_BOOLS = ["False", "no", 0, 1, None, 1.0, np.array([True])]


def _bool_calls(x, y):
    """One call per bool parameter of the public API, taking the value to pass."""
    from reprsim.benchmark.suite import quick_or_full

    return {
        "cka(debiased)": lambda v: reprsim.cka(x, y, debiased=v),
        "rbf cka(debiased)": lambda v: reprsim.cka(x, y, kernel="rbf", debiased=v),
        "procrustes_distance(angular)": lambda v: reprsim.procrustes_distance(x, y, angular=v),
        "minibatch_cka(debiased)": lambda v: reprsim.minibatch_cka(x, y, batch_size=10, debiased=v),
        "measure(debiased)": lambda v: reprsim.measure(x, y, "cka", debiased=v),
        "distance(angular)": lambda v: reprsim.distance(x, y, "procrustes", angular=v),
        "pairwise(debiased)": lambda v: reprsim.pairwise([x, y], metric="cka", debiased=v),
        "pairwise(progress)": lambda v: reprsim.pairwise([x, y], metric="cka", progress=v),
        "mutual_knn(center)": lambda v: reprsim.mutual_knn(x, y, k=3, center=v),
        "jaccard_knn(center)": lambda v: reprsim.jaccard_knn(x, y, k=3, center=v),
        "cycle_knn(center)": lambda v: reprsim.cycle_knn(x, y, k=3, center=v),
        "cknna(center)": lambda v: reprsim.cknna(x, y, k=3, center=v),
        "StreamingSimilarity.cka(debiased)": lambda v: reprsim.StreamingSimilarity().update(x, y).cka(debiased=v),
        "StreamingSimilarity.procrustes_distance(angular)":
            lambda v: reprsim.StreamingSimilarity().update(x, y).procrustes_distance(angular=v),
        "StreamingMinibatchCKA(debiased)": lambda v: reprsim.StreamingMinibatchCKA(debiased=v),
        "calibrated_cka(debiased)": lambda v: reprsim.calibrated_cka(x, y, debiased=v, n_permutations=3),
        "permutation_test(progress)": lambda v: reprsim.permutation_test(x, y, n_resamples=3, progress=v),
        "bootstrap(progress)": lambda v: reprsim.bootstrap(x, y, n_resamples=3, method="percentile", progress=v),
        "benchmark quick_or_full(quick)": lambda v: quick_or_full(v),
    }


@pytest.mark.parametrize("name", list(_bool_calls(None, None)))
@pytest.mark.parametrize("value", _NOT_BOOLS, ids=repr)
def test_every_bool_parameter_refuses_other_types(good, name, value):
    call = _bool_calls(*good)[name]
    if value is None and name.endswith("(progress)"):
        call(value)  # progress=None is the automatic setting
        return
    with pytest.raises(TypeError, match=r"must be True or False, got"):
        call(value)


@pytest.mark.parametrize("name", list(_bool_calls(None, None)))
def test_every_bool_parameter_takes_python_and_numpy_bools(good, name):
    call = _bool_calls(*good)[name]
    for value in (False, np.bool_(False)):
        call(value)


def test_debiased_string_is_not_read_as_true(good):
    # "False" is truthy: before, cka(debiased="False") silently computed the debiased estimator.
    with pytest.raises(TypeError, match=r"debiased must be True or False, got 'False'"):
        reprsim.cka(*good, debiased="False")
    with pytest.raises(TypeError, match=r"angular must be True or False, got 'no'"):
        reprsim.procrustes_distance(*good, angular="no")


# -- pandas and object arrays, as scikit-learn reads them ----------------------------------------------


def test_pandas_nullable_and_mixed_dtypes_are_read_as_float64(rng):
    pd = pytest.importorskip("pandas")
    a = rng.standard_normal(30)
    k = rng.integers(-5, 5, size=30)
    flag = rng.random(30) > 0.5
    frame = pd.DataFrame({"a": pd.array(a, dtype="Float64"), "k": pd.array(k, dtype="Int64"),
                          "flag": pd.array(flag, dtype="boolean")})
    mixed = pd.DataFrame({"a": a, "flag": flag})  # a float and a bool column: numpy reads it as object
    plain = np.column_stack([a, k, flag]).astype(np.float64)
    y = rng.standard_normal((30, 4))
    assert reprsim.cka(frame, y) == reprsim.cka(plain, y)
    assert reprsim.cka(mixed, y) == reprsim.cka(plain[:, [0, 2]], y)
    assert reprsim.pwcca(y, frame) == reprsim.pwcca(y, plain)
    np.testing.assert_array_equal(reprsim.pairwise([frame, y]), reprsim.pairwise([plain, y]))
    acc = reprsim.StreamingSimilarity().update(frame, y)
    assert acc.cka() == pytest.approx(reprsim.cka(plain, y), rel=1e-12)
    # float32 frames stay float32, as numpy reads them
    f32 = pd.DataFrame(rng.standard_normal((30, 3)).astype(np.float32))
    assert reprsim.cka(f32, y) == reprsim.cka(f32.to_numpy(), y)


def test_pandas_missing_values_are_nan_and_refused_as_such(rng):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": pd.array(rng.standard_normal(30), dtype="Float64"),
                          "b": pd.array(rng.integers(0, 9, 30), dtype="Int64")})
    frame.iloc[4, 1] = pd.NA
    with pytest.raises(ValueError, match=r"x contains NaN or Inf \(column 1\)"):
        reprsim.cka(frame, rng.standard_normal((30, 2)))


def test_object_arrays_of_numbers_are_read_as_float64(rng):
    x = rng.standard_normal((30, 3))
    y = rng.standard_normal((30, 2))
    as_objects = x.astype(object)
    as_objects[0, 0] = int(3)
    x[0, 0] = 3.0
    assert reprsim.cka(as_objects, y) == reprsim.cka(x, y)
    with_none = x.astype(object)
    with_none[2, 1] = None
    with pytest.raises(ValueError, match=r"x contains NaN"):
        reprsim.cka(with_none, y)
    words = x.astype(object)
    words[5, 2] = "1.5"
    with pytest.raises(TypeError, match=r"x must hold numbers, got dtype object with an element of type str .* "
                                        r"at index \(5, 2\)"):
        reprsim.cka(words, y)


# -- tensors that hold no values, or live where the numpy API cannot read them ---------------------------


def test_meta_tensors_are_type_errors_on_every_path():
    torch = pytest.importorskip("torch")
    meta = torch.empty((10, 3), device="meta")
    ok = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(TypeError, match=r"meta device"):
        reprsim.cka(meta, ok)
    with pytest.raises(TypeError, match=r"meta device"):
        reprsim.StreamingSimilarity().update(meta, meta)
    with pytest.raises(TypeError, match=r"meta device"):
        reprsim.StreamingMinibatchCKA().update(meta, meta)
    from reprsim._validation import as_representation

    with pytest.raises(TypeError, match=r"x is a tensor on the meta device"):
        as_representation(meta, "x")
    with pytest.raises(TypeError, match=r"x is a torch.sparse_coo tensor; pass a dense tensor"):
        as_representation(torch.eye(4).to_sparse(), "x")


def test_run_suite_names_its_config_type():
    from reprsim import benchmark

    with pytest.raises(TypeError, match=r"config must be a reprsim.benchmark.SuiteConfig .* got 'quick' .*"
                                        r"reprsim.benchmark.QUICK"):
        benchmark.run_suite("quick")
    with pytest.raises(TypeError, match=r"log must be a callable"):
        benchmark.run_suite(benchmark.QUICK, log="stderr")
