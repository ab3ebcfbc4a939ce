"""Every route the dispatcher can choose gives the reference value: feature vs Gram space for CKA,
Cholesky-QR vs Householder QR for CCA, feature vs Gram factor for Procrustes, float32 and float64."""

import numpy as np
import pytest

import reprsim
from reprsim import _core
import reference as ref

SHAPES = [(3, 1, 1), (5, 2, 9), (40, 7, 3), (25, 60, 80), (300, 12, 40)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("space", ["feature", "gram"])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_feature_and_gram_space_agree_with_reference(shape, space, dtype, rtol, debiased):
    if debiased and shape[0] < 4:
        pytest.skip("debiased needs n >= 4")
    x, y = ref.random_pair(np.random.default_rng(sum(shape)), *shape, dtype=dtype)
    expected = ref.cka(x, y, debiased=debiased)

    def cka_of(s):
        return _core.cka_from_sums(s["n"], s["cross"], s["sxx"], s["syy"], s["tx"], s["ty"], s["sum_d2"], s["sum_e2"],
                                   s["sum_de"], debiased, "x", "y", s["eps"])

    assert cka_of(_core.linear_cka_sums(x, y, debiased, space)) == pytest.approx(expected, rel=rtol, abs=rtol)
    m = _core.linear_cka_sums_matrix([x, y], [y, x], debiased, space)
    got = [[cka_of({"n": m["n"], "eps": m["eps"], "cross": m["cross"][i, j], "sum_de": m["sum_de"][i, j],
                    "sxx": m["sxx"][i], "tx": m["tx"][i], "sum_d2": m["sum_d2"][i],
                    "syy": m["syy"][j], "ty": m["ty"][j], "sum_e2": m["sum_e2"][j]}) for j in range(2)] for i in range(2)]
    np.testing.assert_allclose(got, [[expected, 1.0], [1.0, expected]], rtol=rtol, atol=rtol)


def test_space_choice_follows_the_cost_model():
    assert _core.choose_space(10000, 1024, 1024, 4) == "feature"
    assert _core.choose_space(2000, 4096, 4096, 4) == "gram"
    # 12 × 12 layers of width 768 over 5000 samples: Grams once each beat 144 feature-space products.
    assert _core.choose_space(5000, 768, 768, 4, 12, 12) == "gram"
    # ... but not when the Grams would not fit the memory budget.
    assert _core.choose_space(60000, 768, 768, 4, 12, 12) == "feature"


@pytest.mark.parametrize("allow_cholesky", [True, False])
@pytest.mark.parametrize("shape", [(60, 5, 9), (200, 30, 30), (80, 70, 20)])
def test_both_cca_routes_agree_with_reference(allow_cholesky, shape):
    x, y = ref.random_pair(np.random.default_rng(sum(shape)), *shape)
    expected = ref.canonical_correlations(x, y)
    np.testing.assert_allclose(_core.canonical_correlations(x, y, allow_cholesky), expected, rtol=1e-9, atol=1e-11)
    # PWCCA only where its canonical variates are unique (no trivially-1 correlations).
    stats = ("mean", "mean_sq", "pwcca_x") if shape[1] + shape[2] < shape[0] - 1 else ("mean", "mean_sq")
    for stat in stats:
        a = _core.cca_statistic(x, y, stat, 0.0, True, allow_cholesky)
        b = _core.cca_statistic(x, y, stat, 0.0, True, not allow_cholesky)
        assert a == pytest.approx(b, rel=1e-9)
    a = _core.cca_statistic(x, y, "mean", 0.9, True, allow_cholesky)
    assert a == pytest.approx(ref.svcca(x, y, keep=0.9), rel=1e-9)


def test_well_conditioned_input_takes_cholesky_route(rng):
    assert _core.cca_route(rng.standard_normal((500, 40))) == "cholesky"


@pytest.mark.parametrize("cond", [1e6, 1e9])
def test_ill_conditioned_input_falls_back_to_householder_and_stays_accurate(rng, cond):
    n, p = 400, 20
    u = np.linalg.qr(rng.standard_normal((n, p)))[0]
    v = np.linalg.qr(rng.standard_normal((p, p)))[0]
    x = (u * np.logspace(0, -np.log10(cond), p)) @ v.T
    y = x[:, :10] @ rng.standard_normal((10, 10)) + 0.1 * rng.standard_normal((n, 10))
    assert _core.cca_route(x) == "householder"
    rho = reprsim.canonical_correlations(x, y)
    # A small singular direction of x still correlates exactly: ρ from the SVD-based reference.
    np.testing.assert_allclose(rho, ref.canonical_correlations(x, y), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("shape", [(30, 5, 80), (20, 100, 100), (50, 10, 10)])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_procrustes_feature_and_gram_factors_agree_with_reference(shape, dtype, rtol):
    x, y = ref.random_pair(np.random.default_rng(sum(shape)), *shape, dtype=dtype)
    assert reprsim.procrustes_distance(x, y) == pytest.approx(ref.procrustes(x, y), rel=rtol, abs=rtol)


def test_thread_setting_does_not_change_results(rng):
    x, y = ref.random_pair(rng, 400, 50, 60)
    before = reprsim.get_num_threads()
    values = []
    try:
        for k in (1, 2):
            reprsim.set_num_threads(k)
            values.append([reprsim.distance(x, y, metric=m) for m in sorted(reprsim.METRICS)])
    finally:
        reprsim.set_num_threads(before)
    np.testing.assert_allclose(values[0], values[1], rtol=1e-12, atol=1e-13)


def test_concurrent_calls_match_serial_and_restore_thread_count(rng):
    from concurrent.futures import ThreadPoolExecutor

    pairs = [ref.random_pair(np.random.default_rng(s), n, p, q) for s, (n, p, q) in
             enumerate([(30, 4, 5), (400, 60, 50), (50, 8, 3), (300, 20, 200)] * 3)]
    metrics = sorted(reprsim.METRICS)
    serial = [[reprsim.distance(x, y, metric=m) for m in metrics] for x, y in pairs]
    before = reprsim.get_num_threads()
    with ThreadPoolExecutor(max_workers=6) as pool:
        parallel = list(pool.map(lambda xy: [reprsim.distance(*xy, metric=m) for m in metrics], pairs))
    np.testing.assert_allclose(parallel, serial, rtol=1e-12, atol=1e-13)
    assert reprsim.get_num_threads() == before
