"""Fuzzing the array boundary: every public function, over shapes, dtypes, memory layouts and values
(NaN/Inf, huge and tiny magnitudes, subnormals, zero columns, constant matrices, duplicated rows),
either returns a finite value inside its documented range or raises ValueError/TypeError with a
message that names the argument. A FloatingPointError ("please report this input") counts as a
failure here, as does any other exception type (RuntimeError, IndexError, ZeroDivisionError, ...).

Then regression tests for what this fuzzing found, and equality of results across memory layouts.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import reprsim  # noqa: E402
from reprsim import _core  # noqa: E402
from reprsim._validation import as_representation  # noqa: E402

FUZZ = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    database=None,
)

# A documented error names what is wrong: an argument (x, y, xs[i], ys[j]), the rows seen by an
# accumulator, or the minibatch / resample it refers to.
_NAMES = re.compile(
    r"(?<![\w\[])(x|y|xs\[\d+\]|ys\[\d+\]|xs|ys)(?![\w\]])|the representations|rows seen|the accumulator|"
    r"minibatch|batch_size|resample|leave-one-out|leaving out row|^k must be"
)

# Valid choices are repeated so that most examples reach the kernels (about half of the calls return
# a value); every kind of bad input still comes up many times per run.
DTYPES = ["float64"] * 8 + ["float32"] * 8 + ["float16", "int32", "int64", "bool", ">f8", ">f4", "complex128", "object"]
MAGNITUDES = [1.0] * 6 + [1e-3, 1e3, 1e30, 1e38, 1e-30, 1e-42, 1e100, 1e200, 1e-200, 1e-310]
PATTERNS = ["random"] * 8 + ["zero_column", "constant", "duplicated_rows", "low_rank", "integers", "nan", "inf"]
LAYOUTS = ["C", "F", "rows_step_2", "cols_step_3", "negative", "transposed", "byteswapped"]
SAMPLE_COUNTS = [1, 2, 3] + list(range(4, 25)) * 2


def _layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values as a, laid out in memory as `layout` says."""
    if a.dtype == object:
        return a
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "rows_step_2":
        b = np.zeros((2 * a.shape[0], a.shape[1]), dtype=a.dtype)
        b[::2] = a
        return b[::2]
    if layout == "cols_step_3":
        b = np.zeros((a.shape[0], 3 * a.shape[1]), dtype=a.dtype)
        b[:, ::3] = a
        return b[:, ::3]
    if layout == "negative":
        return np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    if layout == "transposed":
        return np.ascontiguousarray(a.T).T
    if layout == "byteswapped" and a.dtype.kind in "fiuc" and a.dtype.itemsize > 1:
        return a.astype(a.dtype.newbyteorder("S"))
    return np.ascontiguousarray(a)


@st.composite
def representation(draw, n: int, base: np.ndarray | None = None):
    p = draw(st.integers(1, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pattern = draw(st.sampled_from(PATTERNS))
    if base is not None and draw(st.booleans()):
        a = base @ rng.standard_normal((base.shape[1], p))  # related to the other input
    else:
        a = rng.standard_normal((n, p))
    if pattern == "zero_column":
        a[:, rng.integers(p)] = 0.0
    elif pattern == "constant":
        a[:] = rng.choice([0.0, 0.1, -2.5, 1e10 / 3])
    elif pattern == "duplicated_rows" and n > 1:
        a[1:] = a[0] if rng.random() < 0.3 else a[rng.integers(0, n, size=n - 1)]
    elif pattern == "low_rank":
        a = a[:, :1] @ rng.standard_normal((1, p))
    elif pattern == "integers":
        a = np.round(a * 3)
    with np.errstate(all="ignore"):
        a = a * draw(st.sampled_from(MAGNITUDES))
    if pattern in ("nan", "inf"):
        a[rng.integers(n), rng.integers(p)] = np.nan if pattern == "nan" else -np.inf
    dtype = draw(st.sampled_from(DTYPES))
    if dtype == "bool":
        a = a > 0
    with np.errstate(all="ignore"):
        a = a.astype(object) if dtype == "object" else a.astype(np.dtype(dtype).newbyteorder("="))
    if dtype.startswith(">"):
        a = a.astype(dtype)
    return _layout(a, draw(st.sampled_from(LAYOUTS)))


@st.composite
def pair(draw, max_n: int = 24):
    n = draw(st.sampled_from([k for k in SAMPLE_COUNTS if k <= max_n]))
    x = draw(representation(n))
    base = np.asarray(x, dtype=np.float64) if x.dtype != object and x.dtype.kind != "c" else None
    with np.errstate(all="ignore"):
        usable = base is not None and np.all(np.isfinite(base))
    y = draw(representation(n, base if usable else None))
    return x, y


def _outcome(call, low: float, high: float, slack: float = 1e-5):
    """Run call(); check a finite value in [low, high] or a documented, named error. Returns the value
    (or None after an error)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                value = call()
    except (ValueError, TypeError) as exc:
        assert _NAMES.search(str(exc)), f"{type(exc).__name__} without the argument's name: {exc}"
        return None
    values = np.asarray(value, dtype=np.float64)
    assert np.all(np.isfinite(values)), f"non-finite result {value!r}"
    assert np.all(values >= low - slack) and np.all(values <= high + slack), f"{value!r} outside [{low}, {high}]"
    return value


def _similarity_range(metric: str) -> tuple[float, float]:
    return reprsim.METRICS[metric].value_range


def _cca_outcome(call):
    rho = _outcome(call, 0.0, 1.0)
    if rho is not None:
        assert np.all(np.diff(rho) <= 1e-12), f"canonical correlations not descending: {rho}"


@settings(FUZZ, max_examples=1000)
@given(pair())
def test_every_function_on_one_pair(xy):
    x, y = xy
    _outcome(lambda: reprsim.cka(x, y), *_similarity_range("cka"))
    _outcome(lambda: reprsim.cka(x, y, debiased=True), *_similarity_range("debiased_cka"))
    if x.shape[0] <= 8:  # RBF: n×n kernel matrices, small n only
        _outcome(lambda: reprsim.cka(x, y, kernel="rbf"), 0.0, 1.0)
        _outcome(lambda: reprsim.cka(x, y, kernel="rbf", debiased=True, bandwidth="mean"), -1.0, 1.0)
        _outcome(lambda: reprsim.cka(x, y, kernel="rbf", bandwidth=0.5), 0.0, 1.0)
    _cca_outcome(lambda: reprsim.canonical_correlations(x, y))
    _outcome(lambda: reprsim.mean_cca(x, y), *_similarity_range("mean_cca"))
    _outcome(lambda: reprsim.mean_sq_cca(x, y), *_similarity_range("mean_sq_cca"))
    _outcome(lambda: reprsim.svcca(x, y), *_similarity_range("svcca"))
    _outcome(lambda: reprsim.svcca(x, y, variance=0.5, convention="singular_values"), 0.0, 1.0)
    _outcome(lambda: reprsim.pwcca(x, y), *_similarity_range("pwcca"))
    _outcome(lambda: reprsim.pwcca(x, y, convention="smaller"), 0.0, 1.0)
    _outcome(lambda: reprsim.procrustes_distance(x, y), *reprsim.METRICS["procrustes"].range)
    _outcome(lambda: reprsim.procrustes_distance(x, y, angular=True), *reprsim.METRICS["angular_procrustes"].range)
    for name, info in reprsim.METRICS.items():
        _outcome(lambda: reprsim.distance(x, y, metric=name), *info.range)


@settings(FUZZ, max_examples=300)
@given(pair(max_n=10), st.sampled_from(sorted(reprsim.METRICS)), st.booleans())
def test_pairwise(xy, metric, with_ys):
    x, y = xy
    ys = [y, x] if with_ys else None
    m = _outcome(lambda: reprsim.pairwise_distances([x, y, x], ys, metric=metric), *reprsim.METRICS[metric].range)
    if m is not None:
        assert m.shape == (3, 2 if with_ys else 3)
    m = _outcome(lambda: reprsim.pairwise([x, y, x], ys, metric=metric), *reprsim.METRICS[metric].value_range)
    if m is not None:
        assert m.shape == (3, 2 if with_ys else 3)


@settings(FUZZ, max_examples=300)
@given(pair(max_n=10), st.integers(1, 3))
def test_streaming_accumulators(xy, splits):
    x, y = xy
    acc = reprsim.StreamingSimilarity()
    mb = reprsim.StreamingMinibatchCKA(debiased=False)
    cuts = np.linspace(0, x.shape[0], splits + 1).astype(int)
    for a, b in zip(cuts[:-1], cuts[1:]):
        if b > a:
            _outcome(lambda: acc.update(x[a:b], y[a:b]) and 0.0, 0.0, 0.0)
            _outcome(lambda: mb.update(x[a:b], y[a:b]) and 0.0, 0.0, 0.0)
    for name, info in reprsim.METRICS.items():
        _outcome(lambda: acc.distance(name), *info.range)
    _cca_outcome(lambda: acc.canonical_correlations())
    _outcome(mb.result, 0.0, 1.0)
    _outcome(lambda: reprsim.minibatch_cka(x, y, batch_size=4), -1.0, 1.0)
    _outcome(lambda: reprsim.minibatch_cka(x, y, batch_size=2, debiased=False), 0.0, 1.0)


@settings(FUZZ, max_examples=150)
@given(pair(max_n=10), st.sampled_from(sorted(reprsim.METRICS)))
def test_permutation_test_and_bootstrap(xy, metric):
    x, y = xy
    low, high = reprsim.METRICS[metric].value_range

    def perm():
        res = reprsim.permutation_test(x, y, metric, n_permutations=3, seed=0)
        assert 0.0 < res.pvalue <= 1.0
        return np.append(res.null_distribution, res.statistic)

    def boot():
        res = reprsim.bootstrap(x, y, metric, n_resamples=4, seed=0, method="percentile")
        ci = res.confidence_interval
        assert math.isfinite(ci.low) and math.isfinite(ci.high) and math.isfinite(res.standard_error)
        return np.append(res.bootstrap_distribution, res.statistic)

    _outcome(perm, low, high)
    _outcome(boot, low, high)
    if metric in ("cka", "debiased_cka"):
        _outcome(lambda: reprsim.calibrated_cka(x, y, debiased=metric == "debiased_cka", n_permutations=3,
                                                 seed=0).cka, low, high)


def test_non_numeric_dtypes_are_type_errors():
    x = np.random.default_rng(0).standard_normal((6, 2))
    # An object array of numbers is read as float64 (as scikit-learn does); one holding strings is not.
    for bad in (x.astype(complex), x.astype(str).astype(object), x.astype(str), x.astype("datetime64[s]")):
        for f in (reprsim.cka, reprsim.mean_cca, reprsim.procrustes_distance):
            with pytest.raises(TypeError, match=r"^x "):
                f(bad, x)
        with pytest.raises(TypeError, match=r"^y "):
            reprsim.StreamingSimilarity().update(x, bad)


# -- the same values in any memory layout give the same result --------------------------------------

_LAYOUT_FUNCTIONS = {
    "cka": lambda x, y: reprsim.cka(x, y),
    "debiased_cka": lambda x, y: reprsim.cka(x, y, debiased=True),
    "rbf_cka": lambda x, y: reprsim.cka(x, y, kernel="rbf"),
    "canonical_correlations": reprsim.canonical_correlations,
    "pwcca": reprsim.pwcca,
    "svcca": reprsim.svcca,
    "procrustes": reprsim.procrustes_distance,
    "pairwise_cka": lambda x, y: reprsim.pairwise([x, y], metric="cka"),
    "streaming_pwcca": lambda x, y: reprsim.StreamingSimilarity().update(x, y).pwcca(),
    "minibatch_cka": lambda x, y: reprsim.minibatch_cka(x, y, batch_size=8),
}


@settings(FUZZ, max_examples=80)
@given(st.integers(0, 2**32 - 1), st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS),
       st.sampled_from(["float64", "float32"]), st.integers(1, 6), st.integers(1, 12))
def test_layouts_match_a_c_contiguous_float64_copy(seed, layout_x, layout_y, dtype, p1, p2):
    rng = np.random.default_rng(seed)
    n = 24
    x = rng.standard_normal((n, p1))
    y = x[:, :1] @ rng.standard_normal((1, p2)) + rng.standard_normal((n, p2))
    x, y = x.astype(dtype), y.astype(dtype)
    xl, yl = _layout(x, layout_x), _layout(y, layout_y)
    x64, y64 = np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64)
    rtol = 1e-10 if dtype == "float64" else 2e-5
    for name, f in _LAYOUT_FUNCTIONS.items():
        if name in ("canonical_correlations", "pwcca", "streaming_pwcca") and p1 + p2 >= n - 2:
            continue
        # Same dtype: the same arithmetic, up to the order of a few sums.
        np.testing.assert_allclose(f(xl, yl), f(np.ascontiguousarray(x), np.ascontiguousarray(y)),
                                   rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(f(xl, yl), f(x64, y64), rtol=rtol, atol=rtol, err_msg=name)


def test_byteswapped_float32_stays_float32_and_unaligned_input_is_read_right():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 4)).astype(np.float32)
    swapped = x.astype(">f4")
    assert as_representation(swapped, "x").dtype == np.float32
    assert reprsim.cka(swapped, x[:, :2]) == reprsim.cka(x, x[:, :2])
    # A float64 array at an odd byte offset: contiguous, strides multiples of 8, the pointer is not.
    raw = np.zeros(20 * 4 * 8 + 1, dtype=np.uint8)
    raw[1:] = np.frombuffer(x.astype(np.float64).tobytes(), dtype=np.uint8)
    view = np.frombuffer(raw.data, dtype=np.float64, count=80, offset=1).reshape(20, 4)
    assert not view.flags.aligned and view.flags.c_contiguous
    assert as_representation(view, "x").flags.aligned
    assert reprsim.cka(view, x[:, :2]) == pytest.approx(reprsim.cka(x.astype(np.float64), x[:, :2]), rel=1e-12)


# -- regressions found by the fuzzing above ---------------------------------------------------------

_SCALE_FUNCTIONS = {
    "cka": lambda x, y: reprsim.cka(x, y),
    "debiased_cka": lambda x, y: reprsim.cka(x, y, debiased=True),
    "cka_gram_space": lambda x, y: reprsim.cka(np.hstack([x] * 8), y),
    "rbf_cka": lambda x, y: reprsim.cka(x, y, kernel="rbf"),
    "mean_cca": reprsim.mean_cca,
    "pwcca": reprsim.pwcca,
    "svcca": reprsim.svcca,
    "procrustes": reprsim.procrustes_distance,
    "procrustes_wide": lambda x, y: reprsim.procrustes_distance(np.hstack([x] * 8), y),
    "pairwise_cka": lambda x, y: reprsim.pairwise([x, y], metric="debiased_cka"),
    "pairwise_procrustes": lambda x, y: reprsim.pairwise([x, y], metric="angular_procrustes"),
    "permutation_null": lambda x, y: reprsim.permutation_test(x, y, n_permutations=5, seed=1).null_distribution,
}


@pytest.mark.parametrize("name", sorted(_SCALE_FUNCTIONS))
@pytest.mark.parametrize(
    ("dtype", "exponent"),
    [("float32", 100), ("float32", 126), ("float32", -100), ("float32", -140),
     ("float64", 333), ("float64", 1000), ("float64", -333), ("float64", -1060)],
)
def test_huge_and_tiny_magnitudes_give_the_moderate_value(name, dtype, exponent):
    # Before: float32 at 1e30 (or float64 at 1e100) overflowed in the products: CKA came out NaN
    # (FloatingPointError, and NaN entries from pairwise), Procrustes raised RuntimeError from LAPACK;
    # tiny inputs underflowed into "zero variance" errors or a Procrustes distance of 2. Now the centred
    # inputs are rescaled by an exact power of two, so the value is the one at a moderate scale.
    # x·2^exponent is exact (subnormals included), so both calls see the same numbers up to the scale.
    rng = np.random.default_rng(7)
    x = rng.standard_normal((10, 3)).astype(dtype)
    y = (x[:, :2] @ rng.standard_normal((2, 4)).astype(dtype) + rng.standard_normal((10, 4)).astype(dtype))
    if dtype == "float32" and exponent > 0:
        x, y = x / 4, y / 4  # keep 2^126 times the data below float32's maximum
    f = _SCALE_FUNCTIONS[name]

    def times_power_of_two(a, e):  # exact, subnormals included, in up to two steps
        with np.errstate(all="ignore"):
            b = a.astype(np.float64)
            for part in (e // 2, e - e // 2):
                b = b * 2.0**part
            return b.astype(dtype)

    xs, ys = times_power_of_two(x, exponent), times_power_of_two(y, exponent)
    # The moderate-scale reference holds the very numbers of xs, ys (subnormals keep only a few bits).
    x, y = times_power_of_two(xs, -exponent), times_power_of_two(ys, -exponent)
    rtol = 1e-4 if dtype == "float32" else 1e-9
    np.testing.assert_allclose(f(xs, ys), f(x, y), rtol=rtol, atol=rtol)


def test_rbf_with_fixed_bandwidth_is_scaled_with_the_data():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((12, 3)), rng.standard_normal((12, 2))
    expected = reprsim.cka(x, y, kernel="rbf", bandwidth=1.5)
    scaled = reprsim.cka(x * 2.0**700, y * 2.0**700, kernel="rbf", bandwidth=1.5 * 2.0**700)
    assert scaled == pytest.approx(expected, rel=1e-12)
    # A width far below the data's scale: every kernel matrix is the identity, biased CKA is defined.
    assert math.isfinite(reprsim.cka(x * 1e200, y, kernel="rbf", bandwidth=1e-200))


@pytest.mark.parametrize("f", [reprsim.cka, reprsim.mean_cca, reprsim.procrustes_distance,
                               lambda x, y: reprsim.StreamingSimilarity().update(x, y).cka()])
def test_constant_float64_column_with_inexact_mean_is_constant(f):
    # 7 × 0.1 summed in float64 is not exactly 0.7, so the centred column used to hold rounding noise
    # (~1e-17) and x was compared on it (CKA 1e-32, mean CCA 8e-17) instead of being reported as constant.
    x = np.full((7, 3), 0.1)
    y = np.random.default_rng(0).standard_normal((7, 2))
    with pytest.raises(ValueError, match=r"x has zero variance"):
        f(x, y)


def test_streaming_refuses_magnitudes_its_moments_cannot_hold():
    x = np.random.default_rng(0).standard_normal((8, 3))
    for scale, word in ((1e70, "overflow"), (1e-70, "underflow")):
        acc = reprsim.StreamingSimilarity(route="moments")
        with pytest.raises(ValueError, match=rf"x has centred values of magnitude .* {word} .*rescale"):
            acc.update(x * scale, x)
        assert acc.n_seen == 0
        with pytest.raises(ValueError, match=word):
            reprsim.minibatch_cka(x, x * scale, batch_size=4)
    # Batches of one row are centred to zeros; their means differ by 1e199, which merging would square
    # (the accumulator came out NaN): refused when the second row arrives (the column ranges of every row
    # kept are checked), and the accumulator keeps its rows.
    acc = reprsim.StreamingSimilarity(route="moments").update(x[:1] * 1e199, x[:1])
    with pytest.raises(ValueError, match=r"x has centred values of magnitude .* overflow .*rescale"):
        acc.update(x[1:2] * 1e199, x[1:2])
    assert acc.n_seen == 1
    # The merge of two accumulators checks the gap between their means too.
    other = reprsim.StreamingSimilarity(route="moments").update(x[1:2] * 1e199, x[1:2])
    acc.cka  # noqa: B018
    with pytest.raises(ValueError, match=r"the means of x layer 0 differ by up to .* overflow .*rescale"):
        acc.merge(other)
    assert acc.n_seen == 1
    # Within the range, the values are the moderate ones (streaming CKA used to overflow at 1e100 and
    # Procrustes to underflow at 1e-100; minibatch CKA came out 0 at 1e50).
    y = x @ np.random.default_rng(1).standard_normal((3, 2))
    for scale in (1e50, 1e-50):
        acc = reprsim.StreamingSimilarity(route="moments").update(x * scale, y)
        assert acc.cka(debiased=True) == pytest.approx(reprsim.cka(x, y, debiased=True), rel=1e-9)
        assert acc.procrustes_distance() == pytest.approx(reprsim.procrustes_distance(x, y), rel=1e-9)
        assert reprsim.minibatch_cka(x * scale, y, batch_size=4) == pytest.approx(
            reprsim.minibatch_cka(x, y, batch_size=4), rel=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_degenerate_debiased_self_term_is_not_divided_by(dtype):
    # Found by tests/fuzz_atheris.py: at n = 4, x with a single non-zero row has a debiased HSIC with
    # itself of exactly 0, but float32 rounding left ~2e-5 against terms of ~2e6, and debiased CKA came
    # out 2.23 (outside [-1, 1]). A self term within rounding of 0 is now "not positive".
    x = np.zeros((4, 4), dtype)
    x[3] = [-3.8655580e31, -3.8655884e31, 8.7512490e-41, 0.0]
    y = np.zeros((4, 4), dtype)
    y[2, 0] = 3.4051553e-43
    y[3, 1:] = -3.8655884e31
    for f in (lambda a, b: reprsim.cka(a, b, debiased=True),
              lambda a, b: reprsim.StreamingSimilarity().update(a, b).cka(debiased=True),
              lambda a, b: reprsim.pairwise([a, b], metric="debiased_cka")):
        with pytest.raises(ValueError, match=r"debiased HSIC of (x|xs\[0\]) with itself .*not positive beyond rounding"):
            f(x, y)


def test_pairwise_diagonal_is_exactly_zero():
    # Found by tests/fuzz_atheris.py: pairwise debiased CKA of a near-degenerate x with itself (n = 4,
    # entries ~5.85e170 differing in their last digits) came out 1 − 1.0000145 = −1.4e-5, outside [0, 2].
    x = np.array([[0.0] * 4, [0.0] * 4, [5.853637718687906e170, 5.399076274318925e-310, 0.0, 0.0],
                  [5.853637718687906e170] * 4])
    y = np.random.default_rng(0).standard_normal((4, 3))
    for metric in ("cka", "debiased_cka", "procrustes", "angular_procrustes"):
        m = reprsim.pairwise_distances([x, y], metric=metric)
        assert m[0, 0] == m[1, 1] == 0.0 and m[0, 1] == m[1, 0] >= 0.0


def test_lapack_failures_surface_as_floating_point_error():
    # A LAPACK routine that does not converge (or meets a non-finite intermediate) used to raise a bare
    # RuntimeError; it is a FloatingPointError now, like every other "please report" failure.
    assert issubclass(_core.NumericalError, FloatingPointError)


def test_minibatch_of_one_wide_layer_uses_gram_space():
    # The kernel chose minibatch CKA's space from y's width alone (a float rounded to 0 layers of x),
    # so a 6000-wide x against a narrow y formed a 6000×6000 float64 matrix (288 MB) per minibatch.
    code = textwrap.dedent("""
        import resource, numpy as np, reprsim
        rng = np.random.default_rng(0)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        x, y = rng.standard_normal((16, 6000)), rng.standard_normal((16, 2))
        assert np.isfinite(reprsim.minibatch_cka(x, y, batch_size=8))
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """)
    grown_mib = int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert grown_mib < 100
