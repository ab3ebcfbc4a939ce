"""Permutation tests, bootstrap intervals and calibrated CKA.

Reference values come from the definitions written out here in plain float64 numpy (centred Grams,
the closed-form permutation mean, the population CKA of a Gaussian model), from exhaustive
enumeration of all permutations of a small sample, and from scipy.stats.bootstrap.
"""

from __future__ import annotations

import itertools
import math
import sys
import warnings

import numpy as np
import pytest
from scipy import stats

import reprsim
from reprsim import _core


def _centred_gram(a: np.ndarray) -> np.ndarray:
    ac = a - a.mean(axis=0)
    return ac @ ac.T


def _related(rng, n=60, p1=8, p2=6, noise=0.1):
    x = rng.standard_normal((n, p1))
    y = x @ rng.standard_normal((p1, p2)) + noise * rng.standard_normal((n, p2))
    return x, y


# ---------------------------------------------------------------------------------------------
# The compiled permutation null against the naive recomputation


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("space", ["gram", "feature"])
def test_fast_null_equals_naive_recomputation_for_same_permutations(rng, debiased, space):
    x = rng.standard_normal((40, 7))
    y = rng.standard_normal((40, 5)) + 0.5 * x[:, :5]
    perms = np.stack([rng.permutation(40) for _ in range(30)]).astype(np.int64)
    kernel = _core.LinearCKANull(x, y, debiased, space, 30.0)
    assert kernel.space == space
    fast = kernel.evaluate(perms, 1)
    naive = np.array([reprsim.cka(x, y[p], debiased=debiased) for p in perms])
    np.testing.assert_allclose(fast, naive, rtol=0, atol=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_fast_null_equals_naive_when_gram_rows_are_copied_before_gathering(rng, debiased):
    # Above 8 MiB per Gram (n > 1024 in float64) the kernel copies each row of L before gathering.
    n = 1100
    x = rng.standard_normal((n, 4))
    y = rng.standard_normal((n, 3)) + x[:, :3]
    perms = np.stack([rng.permutation(n) for _ in range(3)]).astype(np.int64)
    fast = _core.LinearCKANull(x, y, debiased, "gram", 3.0).evaluate(perms, 2)
    naive = np.array([reprsim.cka(x, y[p], debiased=debiased) for p in perms])
    np.testing.assert_allclose(fast, naive, rtol=0, atol=1e-12)


@pytest.mark.parametrize("metric", ["cka", "debiased_cka"])
@pytest.mark.parametrize("width, space", [(3, "feature"), (40, "gram")])
def test_permutation_test_null_is_metric_on_seeded_permutations(rng, metric, width, space):
    # The documented contract: permutation b is the b-th default_rng(seed).permutation(n).
    x, y = _related(rng, n=50, p1=width, p2=width)
    res = reprsim.permutation_test(x, y, metric, n_permutations=25, seed=123)
    gen = np.random.default_rng(123)
    naive = [reprsim.cka(x, y[gen.permutation(50)], debiased=metric == "debiased_cka") for _ in range(25)]
    np.testing.assert_allclose(res.null_distribution, naive, rtol=0, atol=1e-12)
    assert res.method == space  # the cheaper space for these widths
    assert res.statistic == pytest.approx(reprsim.cka(x, y, debiased=metric == "debiased_cka"), abs=1e-15)


def test_loop_null_is_metric_on_seeded_permutations(rng):
    x, y = _related(rng, n=40)
    res = reprsim.permutation_test(x, y, "pwcca", n_permutations=10, seed=5, convention="y")
    gen = np.random.default_rng(5)
    naive = [reprsim.pwcca(x, y[gen.permutation(40)], convention="y") for _ in range(10)]
    np.testing.assert_array_equal(res.null_distribution, naive)
    assert res.method == "loop"


@pytest.mark.parametrize("space", ["gram", "feature"])
def test_fast_null_float32_close_to_float64(rng, space):
    x = rng.standard_normal((30, 6))
    y = rng.standard_normal((30, 4))
    perms = np.stack([rng.permutation(30) for _ in range(5)]).astype(np.int64)
    v64 = _core.LinearCKANull(x, y, False, space, 5.0).evaluate(perms, 1)
    v32 = _core.LinearCKANull(x.astype(np.float32), y.astype(np.float32), False, space, 5.0).evaluate(perms, 1)
    np.testing.assert_allclose(v32, v64, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("debiased", [False, True])
def test_exact_null_mean_equals_mean_over_all_permutations(rng, debiased):
    n = 6
    x = rng.standard_normal((n, 3))
    y = rng.standard_normal((n, 4))
    all_perms = np.array(list(itertools.permutations(range(n))), dtype=np.int64)
    kernel = _core.LinearCKANull(x, y, debiased, "gram", float(len(all_perms)))
    enumerated = kernel.evaluate(all_perms, 2).mean()
    if debiased:
        expected = 0.0
    else:
        k, l = _centred_gram(x), _centred_gram(y)
        expected = np.trace(k) * np.trace(l) / ((n - 1) * np.linalg.norm(k) * np.linalg.norm(l))
    assert enumerated == pytest.approx(expected, abs=1e-12)
    assert kernel.exact_null_mean == pytest.approx(expected, abs=1e-12)


def test_null_is_identical_for_any_thread_count(rng):
    x, y = _related(rng, n=80)
    r1 = reprsim.permutation_test(x, y, n_permutations=37, seed=9, n_jobs=1)
    r2 = reprsim.permutation_test(x, y, n_permutations=37, seed=9, n_jobs=3)
    np.testing.assert_array_equal(r1.null_distribution, r2.null_distribution)
    r3 = reprsim.permutation_test(x, y, "mean_cca", n_permutations=20, seed=9, n_jobs=1)
    r4 = reprsim.permutation_test(x, y, "mean_cca", n_permutations=20, seed=9, n_jobs=2)
    np.testing.assert_array_equal(r3.null_distribution, r4.null_distribution)


# ---------------------------------------------------------------------------------------------
# p-values


@pytest.mark.parametrize("metric", ["cka", "debiased_cka", "mean_sq_cca", "procrustes"])
def test_pvalues_uniform_under_null(metric):
    # Independent x and y: every pairing is equally likely, so P(p ≤ k/(B+1)) = k/(B+1).
    rng = np.random.default_rng(2024)
    cases = 200 if metric in ("cka", "debiased_cka") else 120
    pvalues = []
    for i in range(cases):
        x = rng.standard_normal((12, 3))
        y = rng.standard_normal((12, 2))
        pvalues.append(reprsim.permutation_test(x, y, metric, n_permutations=49, seed=i).pvalue)
    assert stats.kstest(pvalues, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("metric", ["cka", "debiased_cka", "mean_cca", "svcca", "procrustes", "angular_procrustes"])
def test_pvalue_is_one_over_b_plus_one_for_strongly_related_inputs(rng, metric):
    x, y = _related(rng, n=60, noise=0.05)
    res = reprsim.permutation_test(x, y, metric, n_permutations=99, seed=0)
    assert res.pvalue == pytest.approx(1.0 / 100.0, rel=1e-15)
    assert res.alternative == ("less" if "procrustes" in metric else "greater")


def test_pvalue_counts_with_plus_one_correction_and_alternatives(rng):
    x = rng.standard_normal((15, 3))
    y = rng.standard_normal((15, 3))
    g = reprsim.permutation_test(x, y, n_permutations=59, seed=1, alternative="greater")
    l = reprsim.permutation_test(x, y, n_permutations=59, seed=1, alternative="less")
    t = reprsim.permutation_test(x, y, n_permutations=59, seed=1, alternative="two-sided")
    null, obs = g.null_distribution, g.statistic
    assert g.pvalue == (1 + np.sum(null >= obs)) / 60
    assert l.pvalue == (1 + np.sum(null <= obs)) / 60
    assert t.pvalue == min(1.0, 2 * min(g.pvalue, l.pvalue))


def test_procrustes_distance_statistic_and_direction(rng):
    x, y = _related(rng, n=40)
    res = reprsim.permutation_test(x, y, "procrustes", n_permutations=19, seed=3)
    assert res.statistic == reprsim.procrustes_distance(x, y)
    assert res.alternative == "less"
    assert np.all(res.null_distribution > res.statistic)


# ---------------------------------------------------------------------------------------------
# Calibrated CKA


def test_calibrated_cka_uses_closed_form_chance_level(rng):
    x = rng.standard_normal((30, 20))
    y = rng.standard_normal((30, 25))
    res = reprsim.calibrated_cka(x, y, n_permutations=400, seed=0)
    k, l = _centred_gram(x), _centred_gram(y)
    mu0 = np.trace(k) * np.trace(l) / (29 * np.linalg.norm(k) * np.linalg.norm(l))
    value = np.sum(k * l) / (np.linalg.norm(k) * np.linalg.norm(l))
    assert res.null_mean == pytest.approx(mu0, rel=1e-12)
    assert res.cka == pytest.approx(value, rel=1e-12)
    assert res.calibrated == pytest.approx((value - mu0) / (1 - mu0), rel=1e-10, abs=1e-12)
    # Wide unrelated inputs: raw CKA is inflated far above 0, the sampled null sits at μ₀.
    assert mu0 > 0.3
    se = res.null_std / math.sqrt(400)
    assert abs(res.null_distribution.mean() - mu0) < 5 * se


def test_calibrated_debiased_cka_equals_debiased_cka(rng):
    x, y = _related(rng, n=30)
    res = reprsim.calibrated_cka(x, y, debiased=True, n_permutations=0)
    assert res.null_mean == 0.0
    assert res.calibrated == pytest.approx(reprsim.cka(x, y, debiased=True), abs=1e-15)
    assert res.pvalue is None and res.null_std is None and res.null_distribution.size == 0


def test_calibrated_cka_is_one_for_identical_and_zero_mean_under_null(rng):
    x = rng.standard_normal((25, 4))
    assert reprsim.calibrated_cka(x, x @ np.linalg.qr(rng.standard_normal((4, 4)))[0],
                                  n_permutations=0).calibrated == pytest.approx(1.0, abs=1e-12)
    values = [reprsim.calibrated_cka(rng.standard_normal((25, 10)), rng.standard_normal((25, 10)),
                                     n_permutations=0).calibrated for _ in range(200)]
    # Mean over independent pairs is centred at 0 (the raw CKA here is ≈ 0.3).
    assert abs(np.mean(values)) < 4 * np.std(values) / math.sqrt(200)


def test_calibrated_cka_rejects_whitened_full_rank_inputs():
    n = 6
    h = np.eye(n) - 1.0 / n
    q = np.linalg.svd(h)[0][:, : n - 1]  # orthonormal basis of the centred directions
    with pytest.raises(ValueError, match="chance level"):
        reprsim.calibrated_cka(q, q[:, ::-1], n_permutations=0)


# ---------------------------------------------------------------------------------------------
# Bootstrap


class _Given:
    """Stands in for a scipy BootstrapResult, to hand scipy a given bootstrap distribution."""

    def __init__(self, dist: np.ndarray) -> None:
        self.bootstrap_distribution = np.asarray(dist)


@pytest.mark.parametrize("method", ["BCa", "percentile", "basic"])
@pytest.mark.parametrize("metric", ["cka", "mean_cca"])
def test_bootstrap_interval_matches_scipy_for_same_distribution(rng, method, metric):
    x, y = _related(rng, n=25, p1=3, p2=2, noise=1.0)
    res = reprsim.bootstrap(x, y, metric, n_resamples=300, method=method, confidence=0.9, seed=4)
    fn = reprsim.cka if metric == "cka" else reprsim.mean_cca
    ref = stats.bootstrap(
        (np.arange(25),),
        lambda i: fn(x[i.astype(int)], y[i.astype(int)]),
        vectorized=False,
        n_resamples=0,
        bootstrap_result=_Given(res.bootstrap_distribution),
        confidence_level=0.9,
        method=method,
    )
    assert res.confidence_interval.low == pytest.approx(ref.confidence_interval.low, abs=1e-12)
    assert res.confidence_interval.high == pytest.approx(ref.confidence_interval.high, abs=1e-12)
    assert res.standard_error == pytest.approx(ref.standard_error, rel=1e-12)


def test_bootstrap_distribution_is_metric_on_seeded_resamples(rng):
    x, y = _related(rng, n=20)
    res = reprsim.bootstrap(x, y, "procrustes", n_resamples=15, method="percentile", seed=8)
    gen = np.random.default_rng(8)
    expected = []
    for _ in range(15):
        idx = gen.integers(0, 20, size=20)
        expected.append(reprsim.procrustes_distance(x[idx], y[idx]))
    np.testing.assert_array_equal(res.bootstrap_distribution, expected)
    again = reprsim.bootstrap(x, y, "procrustes", n_resamples=15, method="percentile", seed=8, n_jobs=2)
    np.testing.assert_array_equal(again.bootstrap_distribution, expected)


@pytest.mark.parametrize("method", ["percentile", "BCa"])
def test_bootstrap_interval_covers_population_cka_near_nominal_rate(method):
    # x ~ N(0, I₂), y = xA + ε, ε ~ N(0, I₂): Σxx = I, Σxy = A, Σyy = AᵀA + I, and the population
    # linear CKA is ‖Σxy‖²_F / (‖Σxx‖_F ‖Σyy‖_F).
    a = np.array([[1.0, 0.5], [0.0, 0.3]])
    pop = np.sum(a**2) / (math.sqrt(2.0) * np.linalg.norm(a.T @ a + np.eye(2)))
    rng = np.random.default_rng(99)
    big = rng.standard_normal((200_000, 2))
    assert reprsim.cka(big, big @ a + rng.standard_normal((200_000, 2))) == pytest.approx(pop, abs=5e-3)
    reps, hits = 150, 0
    for r in range(reps):
        x = rng.standard_normal((80, 2))
        y = x @ a + rng.standard_normal((80, 2))
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # low dimension: no duplicated-row shift
            ci = reprsim.bootstrap(x, y, n_resamples=200, confidence=0.9, method=method, seed=r).confidence_interval
        hits += ci.low <= pop <= ci.high
    # Nominal 0.90; binomial sd over 150 replicates ≈ 0.025.
    assert 0.78 <= hits / reps <= 0.97


def test_bootstrap_warns_when_duplicated_rows_shift_wide_cka_above_observed(rng):
    # Wide inputs: a duplicated row pairs with its copy, the most similar pair possible, so every
    # resample's CKA exceeds the observed one.
    x = rng.standard_normal((60, 40))
    y = x[:, :10] @ rng.standard_normal((10, 30)) + 2.0 * rng.standard_normal((60, 30))
    with pytest.warns(RuntimeWarning, match="tail of its bootstrap distribution"):
        res = reprsim.bootstrap(x, y, n_resamples=100, method="percentile", seed=0)
    assert np.mean(res.bootstrap_distribution > res.statistic) > 0.975
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="BCa interval is undefined"):
        reprsim.bootstrap(x, y, n_resamples=100, method="BCa", seed=0)


def test_bootstrap_skips_and_counts_degenerate_resamples():
    # Only row 0 differs from the others in x: resamples that miss it make x constant.
    x = np.zeros((10, 1))
    x[0] = 1.0
    y = np.arange(10.0).reshape(-1, 1)
    with pytest.warns(RuntimeWarning, match="degenerate"):
        res = reprsim.bootstrap(x, y, n_resamples=200, method="percentile", seed=0)
    gen = np.random.default_rng(0)
    missed = sum(0 not in gen.integers(0, 10, size=10) for _ in range(200))
    assert res.n_degenerate == missed > 0
    assert res.bootstrap_distribution.size == 200 - missed
    assert np.all(np.isfinite(res.bootstrap_distribution))
    with pytest.raises(ValueError, match="degenerate"):
        reprsim.bootstrap(x, y, n_resamples=200, method="percentile", seed=0, on_degenerate="raise")


def test_bootstrap_raises_when_most_resamples_are_degenerate():
    x = np.array([[0.0], [0.0], [1.0]])
    y = np.array([[0.0], [1.0], [0.0]])
    with pytest.raises(ValueError, match="of 100 bootstrap resamples are degenerate"):
        reprsim.bootstrap(x, y, n_resamples=100, method="percentile", seed=0)


def test_bca_levels_raise_when_observed_outside_bootstrap_distribution():
    from reprsim._inference import _bca_levels

    dist = np.linspace(0.5, 0.6, 50)
    jack = np.linspace(0.4, 0.45, 10)
    with pytest.raises(ValueError, match="every bootstrap value lies above"):
        _bca_levels(dist, 0.4, jack, 0.05)
    with pytest.raises(ValueError, match="every bootstrap value lies below"):
        _bca_levels(dist, 0.7, jack, 0.05)


def test_bca_levels_without_skew_reduce_to_percentile_levels():
    from reprsim._inference import _bca_levels

    # Observed value at the bootstrap median (z₀ = 0) and a symmetric jackknife (a = 0).
    dist = np.arange(1.0, 100.0)
    jack = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    low, high = _bca_levels(dist, 50.0, jack, 0.05)
    assert (low, high) == pytest.approx((0.05, 0.95), abs=1e-12)


def test_bca_raises_when_a_jackknife_sample_is_degenerate(rng):
    # Only row 29 differs in x: leaving it out makes x constant, so the acceleration is undefined.
    const_x = np.concatenate([np.ones((29, 1)), [[2.0]]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="leaving out row 29"):
            reprsim.bootstrap(const_x, rng.standard_normal((30, 1)), n_resamples=50, seed=0)


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"metric": "nope"}, ValueError, "unknown metric"),
        ({"metric": 3}, TypeError, "metric must be a string"),
        ({"metric": "cka", "convention": "x"}, TypeError, "does not take the option 'convention'"),
        ({"metric": "ensd", "convention": "x"}, TypeError, "takes no options"),
        ({"n_permutations": 0}, ValueError, "n_permutations"),
        ({"n_permutations": 2.5}, ValueError, "n_permutations"),
        ({"n_permutations": True}, ValueError, "n_permutations"),
        ({"alternative": "bigger"}, ValueError, "alternative"),
        ({"n_jobs": 0}, ValueError, "n_jobs"),
        ({"n_jobs": -3}, ValueError, "n_jobs"),
        ({"seed": "abc"}, TypeError, "seed"),
    ],
)
def test_permutation_test_rejects_bad_arguments(rng, kwargs, exc, match):
    x, y = _related(rng, n=10)
    with pytest.raises(exc, match=match):
        reprsim.permutation_test(x, y, **kwargs)


def test_inference_rejects_bad_representations(rng):
    x = rng.standard_normal((10, 3))
    with pytest.raises(ValueError, match="same number of samples"):
        reprsim.permutation_test(x, rng.standard_normal((9, 3)))
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        reprsim.permutation_test(bad, x)
    with pytest.raises(ValueError, match="NaN"):
        reprsim.bootstrap(x, bad)
    with pytest.raises(ValueError, match="zero variance"):
        reprsim.calibrated_cka(np.ones((10, 2)), x)
    with pytest.raises(ValueError, match="at least 4"):
        reprsim.permutation_test(x[:3], x[:3], "debiased_cka")
    with pytest.raises(ValueError, match="2-D"):
        reprsim.bootstrap(x[:, 0], x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_resamples": 1}, "n_resamples"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0}, "confidence"),
        ({"method": "studentized"}, "method"),
        ({"on_degenerate": "ignore"}, "on_degenerate"),
        ({"metric": "svcca", "variance": 1.5}, "variance"),
    ],
)
def test_bootstrap_rejects_bad_arguments(rng, kwargs, match):
    x, y = _related(rng, n=10, p1=2, p2=2)
    with pytest.raises(ValueError, match=match):
        reprsim.bootstrap(x, y, n_resamples=kwargs.pop("n_resamples", 5), **kwargs)


def test_calibrated_cka_rejects_bad_arguments(rng):
    x, y = _related(rng, n=10)
    with pytest.raises(ValueError, match="n_permutations"):
        reprsim.calibrated_cka(x, y, n_permutations=-1)
    with pytest.raises(ValueError, match="n_jobs"):
        reprsim.calibrated_cka(x, y, n_jobs=0)


def test_compiled_null_rejects_invalid_permutations(rng):
    x, y = _related(rng, n=6)
    kernel = _core.LinearCKANull(x, y, False, "gram", 1.0)
    with pytest.raises(ValueError, match="repeated"):
        kernel.evaluate(np.array([[0, 1, 2, 3, 4, 4]], dtype=np.int64), 1)
    with pytest.raises(ValueError, match="out of range"):
        kernel.evaluate(np.array([[0, 1, 2, 3, 4, 6]], dtype=np.int64), 1)
    with pytest.raises(ValueError, match="shape"):
        kernel.evaluate(np.zeros((2, 5), dtype=np.int64), 1)
    with pytest.raises(TypeError, match="int64"):
        kernel.evaluate(np.zeros((2, 6), dtype=np.float64), 1)
    with pytest.raises(ValueError, match="space"):
        _core.LinearCKANull(x, y, False, "diagonal", 1.0)


def test_progress_bar_runs_and_leaves_results_unchanged(rng, capsys):
    pytest.importorskip("tqdm")
    x, y = _related(rng, n=20)
    a = reprsim.permutation_test(x, y, n_permutations=30, seed=2, progress=True)
    b = reprsim.permutation_test(x, y, n_permutations=30, seed=2)
    np.testing.assert_array_equal(a.null_distribution, b.null_distribution)
    assert "30/30" in capsys.readouterr().err


def test_progress_without_tqdm_warns_and_still_computes(rng, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # makes `from tqdm.auto import ...` fail
    x, y = _related(rng, n=20)
    with pytest.warns(UserWarning, match="tqdm"):
        res = reprsim.permutation_test(x, y, n_permutations=10, seed=2, progress=True)
    assert res.null_distribution.size == 10


def test_results_are_read_only(rng):
    x, y = _related(rng, n=20)
    res = reprsim.permutation_test(x, y, n_permutations=5, seed=0)
    with pytest.raises(ValueError):
        res.null_distribution[0] = 0.0
    assert "null_distribution" not in repr(res)


def test_permutation_bench_quick_run_passes_its_gate_and_writes_results(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "permutation.py"
    spec = importlib.util.spec_from_file_location("bench_permutation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads_before = reprsim.get_num_threads()  # the bench sets the BLAS threads
    try:
        assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    finally:
        reprsim.set_num_threads(threads_before)
    (result,) = tmp_path.glob("quick-permutation-*.json")
    data = json.loads(result.read_text())
    assert all(g["ok"] for g in data["meta"]["gate"].values())
    assert {r["implementation"] for r in data["rows"]} >= {"kernel gram", "naive reprsim.cka loop"}


# ---------------------------------------------------------------------------------------------
# scipy.stats' names and the exact test


def test_scipy_names_are_the_same_arguments_as_the_older_ones(rng):
    x, y = _related(rng, n=20)
    a = reprsim.permutation_test(x, y, n_resamples=40, rng=3)
    b = reprsim.permutation_test(x, y, n_permutations=40, seed=3)
    np.testing.assert_array_equal(a.null_distribution, b.null_distribution)
    assert a.n_permutations == b.n_permutations == 40 and not a.exact
    u, v = _related(rng, n=40, p1=2, p2=2)
    c = reprsim.bootstrap(u, v, n_resamples=30, confidence_level=0.8, rng=5, method="percentile")
    d = reprsim.bootstrap(u, v, n_resamples=30, confidence=0.8, seed=5, method="percentile")
    assert c.confidence_interval == d.confidence_interval and c.confidence_level == 0.8
    e = reprsim.calibrated_cka(x, y, n_resamples=20, rng=7)
    f = reprsim.calibrated_cka(x, y, n_permutations=20, seed=7)
    np.testing.assert_array_equal(e.null_distribution, f.null_distribution)


@pytest.mark.parametrize("call, message", [
    (lambda x, y: reprsim.permutation_test(x, y, n_resamples=10, n_permutations=10), "n_resamples=10 and n_permutations"),
    (lambda x, y: reprsim.permutation_test(x, y, rng=1, seed=1), "rng=1 and seed=1"),
    (lambda x, y: reprsim.bootstrap(x, y, confidence_level=0.9, confidence=0.9), "confidence_level=0.9 and confidence"),
    (lambda x, y: reprsim.bootstrap(x, y, rng=0, seed=0), "rng=0 and seed=0"),
    (lambda x, y: reprsim.calibrated_cka(x, y, rng=0, seed=0), "rng=0 and seed=0"),
    (lambda x, y: reprsim.calibrated_cka(x, y, n_resamples=0, n_permutations=0), "n_resamples=0 and n_permutations"),
])
def test_an_argument_under_both_names_is_refused(rng, call, message):
    x, y = _related(rng, n=10)
    with pytest.raises(TypeError, match=rf"got both {message}.*pass one"):
        call(x, y)


@pytest.mark.parametrize("metric", ["cka", "debiased_cka", "mean_cca", "procrustes"])
@pytest.mark.parametrize("alternative", [None, "two-sided"])
def test_exact_test_enumerates_every_permutation_as_scipy_does(rng, metric, alternative):
    # n = 5: 120 orders, fewer than the 1000 asked for, so all of them are used and p is scipy's exact p-value.
    x = rng.standard_normal((5, 1))
    y = x + 0.3 * rng.standard_normal((5, 1))
    res = reprsim.permutation_test(x, y, metric, n_resamples=1000, rng=0, alternative=alternative)
    assert res.exact and res.n_permutations == 120 and res.null_distribution.size == 120
    # the null holds the measure on every ordering of y's rows, the identity first
    orders = list(itertools.permutations(range(5)))
    naive = [reprsim.measure(x, y[list(o)], metric) for o in orders]
    np.testing.assert_allclose(res.null_distribution, naive, rtol=1e-10, atol=1e-12)
    ref = stats.permutation_test(
        (np.arange(5),), lambda i: reprsim.measure(x, y[i], metric), permutation_type="pairings",
        vectorized=False, n_resamples=1000, alternative=res.alternative,
    )
    assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-12)


def test_three_samples_give_the_exact_p_value_not_a_sampled_one(rng):
    # Before: 50 random draws over 6 orderings gave p = 0.31 for the best-aligned pairing; exactly it is 1/6.
    x = np.array([[0.0], [1.0], [3.0]])
    y = 2.0 * x + 1.0
    res = reprsim.permutation_test(x, y, n_resamples=50, rng=0)
    assert res.exact and res.n_permutations == 6
    values = [reprsim.cka(x, y[list(o)]) for o in itertools.permutations(range(3))]
    assert res.pvalue == pytest.approx(np.mean(np.array(values) >= values[0] - 1e-12))
    assert res.pvalue == pytest.approx(1 / 6)
    cal = reprsim.calibrated_cka(x, y, n_permutations=50)
    assert cal.exact and cal.pvalue == pytest.approx(1 / 6)


def test_random_test_when_the_orderings_outnumber_the_permutations(rng):
    x, y = _related(rng, n=12)  # 479 001 600 orders
    res = reprsim.permutation_test(x, y, n_resamples=1000, rng=0)
    assert not res.exact and res.n_permutations == 1000
    assert res.pvalue == pytest.approx(1 / 1001)


# ---------------------------------------------------------------------------------------------
# Progress bars: automatic on a terminal, optional tqdm


def test_automatic_progress_is_silent_off_a_terminal(rng, capsys):
    x, y = _related(rng, n=20)
    reprsim.permutation_test(x, y, n_resamples=30, rng=2)
    reprsim.bootstrap(x, y, n_resamples=10, rng=2, method="percentile")
    reprsim.pairwise([x, y, x], metric="mean_cca")
    assert capsys.readouterr().err == ""


def test_automatic_progress_shows_a_bar_on_a_terminal_for_long_calls(rng, capsys, monkeypatch):
    pytest.importorskip("tqdm")
    from reprsim import _progress

    monkeypatch.setattr(_progress, "_stderr_is_terminal", lambda: True)
    monkeypatch.setattr(_progress, "AUTO_DELAY", 0.0)  # every call counts as long here
    x, y = _related(rng, n=20)
    reprsim.permutation_test(x, y, n_resamples=30, rng=2)
    assert "30/30" in capsys.readouterr().err
    reprsim.pairwise([x, y, x], metric="mean_cca")
    assert "6/6" in capsys.readouterr().err  # the pairs of the upper triangle


def test_automatic_progress_without_tqdm_says_nothing(rng, monkeypatch):
    from reprsim import _progress

    monkeypatch.setattr(_progress, "_stderr_is_terminal", lambda: True)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    x, y = _related(rng, n=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = reprsim.permutation_test(x, y, n_resamples=10, rng=2)
    assert res.null_distribution.size == 10


def test_null_values_are_in_the_measures_range(rng):
    # x and y related by a rotation and a scale: CKA is 1 at the identity, within rounding; every null value
    # and the statistic lie in [0, 1] exactly (values within the rounding slack of a bound are the bound).
    x = rng.standard_normal((12, 3))
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    y = 3.0 * x @ q
    for metric in ("cka", "debiased_cka", "procrustes", "mean_cca"):
        res = reprsim.permutation_test(x, y, metric, n_resamples=200, rng=1)
        lo, hi = reprsim.METRICS[metric].value_range
        assert np.all(res.null_distribution >= lo) and np.all(res.null_distribution <= hi)
        assert lo <= res.statistic <= hi
