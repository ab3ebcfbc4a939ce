"""The benchmark's numpy references agree with each other and with other formulations.

They are the baselines the benchmark times and its correctness gate, so each is checked here
against a second, differently computed form of the same definition (float64, small shapes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import references as ref  # noqa: E402


def _pair(rng, n=60, p1=7, p2=5):
    z = rng.standard_normal((n, 3))
    x = z @ rng.standard_normal((3, p1)) + rng.standard_normal((n, p1)) + 3.0
    y = z @ rng.standard_normal((3, p2)) + rng.standard_normal((n, p2)) - 1.0
    return x, y


def _hsic_biased_explicit(k, l):
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l @ h)


def test_reference_cka_feature_equals_gram_and_explicit_centering_matrix(rng):
    x, y = _pair(rng)
    k, l = x @ x.T, y @ y.T
    explicit = _hsic_biased_explicit(k, l) / np.sqrt(_hsic_biased_explicit(k, k) * _hsic_biased_explicit(l, l))
    assert ref.cka_feature(x, y) == pytest.approx(explicit, rel=1e-12)
    assert ref.cka_gram(x, y) == pytest.approx(explicit, rel=1e-12)


def test_reference_debiased_cka_feature_equals_u_statistic_by_quadruple_sum(rng):
    # HSIC₁ as the average over distinct (i, j, q, r) of the kernel h-function of Song et al. 2012,
    # computed by brute force on a tiny input.
    n = 8
    x, y = _pair(rng, n=n, p1=3, p2=2)
    k, l = x @ x.T, y @ y.T

    def hsic_u(k, l):
        import itertools

        total, count = 0.0, 0
        for i, j, q, r in itertools.permutations(range(n), 4):
            total += k[i, j] * (l[i, j] + l[q, r] - 2.0 * l[i, q])
            count += 1
        return total / count

    expected = hsic_u(k, l) / np.sqrt(hsic_u(k, k) * hsic_u(l, l))
    assert ref.debiased_cka_gram(x, y) == pytest.approx(expected, rel=1e-10)
    assert ref.debiased_cka_feature(x, y) == pytest.approx(expected, rel=1e-10)


def test_reference_cca_eigen_whitening_equals_qr_route(rng):
    x, y = _pair(rng, n=200, p1=9, p2=6)
    assert ref.mean_cca_eig(x, y) == pytest.approx(ref.mean_cca_qr(x, y), abs=1e-10)
    assert ref.pwcca_eig(x, y) == pytest.approx(ref.pwcca_qr(x, y), abs=1e-10)
    rho = ref.canonical_correlations_qr(x, y)
    assert rho.shape == (6,) and np.all((rho >= 0) & (rho <= 1 + 1e-12))


def test_reference_canonical_correlations_match_scipy_generalized_eigenproblem(rng):
    scipy_linalg = pytest.importorskip("scipy.linalg")
    x, y = _pair(rng, n=200, p1=5, p2=4)
    xc, yc = x - x.mean(0), y - y.mean(0)
    sxx, syy, sxy = xc.T @ xc, yc.T @ yc, xc.T @ yc
    # ρ² are the eigenvalues of Σxx⁻¹ Σxy Σyy⁻¹ Σyx, i.e. of the pencil (Σxy Σyy⁻¹ Σyx, Σxx).
    w = scipy_linalg.eigh(sxy @ np.linalg.solve(syy, sxy.T), sxx, eigvals_only=True)
    expected = np.sqrt(np.clip(np.sort(w)[::-1][:4], 0, None))
    assert np.allclose(ref.canonical_correlations_qr(x, y), expected, atol=1e-10)


def test_reference_procrustes_matches_scipy_disparity(rng):
    spatial = pytest.importorskip("scipy.spatial")
    x, y = _pair(rng, n=50, p1=6, p2=6)
    _, _, disparity = spatial.procrustes(x, y)
    assert ref.procrustes_distance(x, y) == pytest.approx(2.0 - 2.0 * np.sqrt(1.0 - disparity), abs=1e-12)


def test_reference_cka_matrix_loop_is_the_pairwise_cka(rng):
    xs = [_pair(rng, n=40, p1=4 + i, p2=3)[0] for i in range(3)]
    ys = [_pair(rng, n=40, p1=3, p2=5 + i)[1] for i in range(2)]
    m = ref.cka_matrix_loop(xs, ys)
    assert m.shape == (3, 2)
    assert m[2, 1] == pytest.approx(ref.cka_gram(xs[2], ys[1]), rel=1e-12)


def test_fast_formulations_equal_the_textbook_references(rng):
    x, y = _pair(rng, n=80, p1=7, p2=5)
    assert ref.cka_sim_metric(x, y) == pytest.approx(ref.cka_feature(x, y), rel=1e-12)
    assert ref.cka_netrep(x, y) == pytest.approx(ref.cka_feature(x, y), rel=1e-12)
    # Equal widths: sim_metric normalises the weights over all of x's directions before truncating to
    # min(p1, p2), which differs from the definition when p1 > p2.
    xe, ye = _pair(rng, n=80, p1=6, p2=6)
    pw, mean = ref.cca_sim_metric(xe, ye)
    assert pw == pytest.approx(ref.pwcca_qr(xe, ye), abs=1e-10)
    assert mean == pytest.approx(ref.mean_cca_qr(xe, ye), abs=1e-10)
    assert ref.procrustes_sim_metric(x, y) == pytest.approx(ref.procrustes_distance(x, y), abs=1e-12)
    xs = [_pair(rng, n=40, p1=4 + i, p2=3)[0] for i in range(3)]
    ys = [_pair(rng, n=40, p1=3, p2=5 + i)[1] for i in range(2)]
    np.testing.assert_allclose(ref.cka_matrix_cached(xs, ys), ref.cka_matrix_loop(xs, ys), rtol=1e-12)


def test_rbf_references_agree_and_minibatch_reference_is_the_hsic_ratio(rng):
    x, y = _pair(rng, n=31, p1=4, p2=3)
    assert ref.rbf_cka_kornblith(x, y) == pytest.approx(ref.ref_rbf_cka_median_full(x, y), rel=1e-9)
    # One minibatch: minibatch CKA is the debiased CKA of that batch.
    assert ref.ref_minibatch_cka(x, y, 31) == pytest.approx(ref.debiased_cka_gram(x, y), rel=1e-10)


def test_uncentred_gram_minibatch_formula_equals_the_reference_in_float64(rng):
    x, y = _pair(rng, n=60, p1=4, p2=3)
    assert ref.minibatch_cka_uncentred_grams(x, y, 20) == pytest.approx(ref.ref_minibatch_cka(x, y, 20), rel=1e-9)
