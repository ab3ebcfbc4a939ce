"""The blocked and panelled kernel paths against plain float64 numpy, at shapes that take them.

Feature-space CKA centres the inputs one panel of rows at a time, Gram-space CKA sums its Grams one
tile of rows at a time, RBF distances are built in tiles, float32 minibatch CKA and Procrustes run
their products in float32: each is checked here at a shape with several panels/tiles, against a
float64 reference written from the definition, with a tolerance at the level of the input dtype.
"""

from __future__ import annotations

import numpy as np
import pytest

import reprsim
from reprsim import _core


def _pair(rng, n, p1, p2, dtype, offset=3.0):
    z = rng.standard_normal((n, 8))
    x = z @ rng.standard_normal((8, p1)) + rng.standard_normal((n, p1)) + offset
    y = z @ rng.standard_normal((8, p2)) + rng.standard_normal((n, p2)) - offset
    return x.astype(dtype), y.astype(dtype)


def _cka64(x, y, debiased=False):
    x = x.astype(np.float64) - x.mean(0, dtype=np.float64)
    y = y.astype(np.float64) - y.mean(0, dtype=np.float64)
    n = x.shape[0]
    if not debiased:
        return np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))
    d, e = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)

    def u(c, a, b):
        return c - n / (n - 2) * (a @ b) + a.sum() * b.sum() / ((n - 1) * (n - 2))

    return u(np.linalg.norm(x.T @ y) ** 2, d, e) / np.sqrt(
        u(np.linalg.norm(x.T @ x) ** 2, d, d) * u(np.linalg.norm(y.T @ y) ** 2, e, e)
    )


TOL = {np.float32: 2e-5, np.float64: 1e-11}


def _core_cka(x, y, debiased, space):
    """One pair through the compiled sums and their finaliser, in the given space."""
    s = _core.linear_cka_sums(x, y, debiased, space)
    return _core.cka_from_sums(s["n"], s["cross"], s["sxx"], s["syy"], s["tx"], s["ty"], s["sum_d2"], s["sum_e2"],
                               s["sum_de"], debiased, eps=s["eps"])


def _core_cka_matrix(xs, ys, debiased, space):
    """Every pair's sums at once (the pairwise kernel), finalised per pair."""
    s = _core.linear_cka_sums_matrix(xs, ys, debiased, space)
    k1, k2 = s["cross"].shape
    return np.array([[_core.cka_from_sums(s["n"], s["cross"][i, j], s["sxx"][i], s["syy"][j], s["tx"][i], s["ty"][j],
                                          s["sum_d2"][i], s["sum_e2"][j], s["sum_de"][i, j], debiased, eps=s["eps"])
                      for j in range(k2)] for i in range(k1)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("debiased", [False, True])
def test_feature_space_cka_over_several_row_panels_matches_float64(rng, dtype, debiased):
    # p1 + p2 = 2000 columns: panels of 1048 (float32) or 524 (float64) rows, so 3 or 5 panels.
    x, y = _pair(rng, 2500, 1100, 900, dtype)
    got = _core_cka(x, y, debiased, "feature")
    assert got == pytest.approx(_cka64(x, y, debiased), abs=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("debiased", [False, True])
def test_gram_space_cka_over_several_row_tiles_matches_float64(rng, dtype, debiased):
    # Tiles of 16 MB of Gram rows: n = 2100 float32 (1997 rows a tile) or n = 1500 float64 (1398) give two.
    n = 2100 if dtype == np.float32 else 1500
    x, y = _pair(rng, n, n + 40, n + 10, dtype)
    got = _core_cka(x, y, debiased, "gram")
    assert got == pytest.approx(_cka64(x, y, debiased), abs=TOL[dtype])


def test_squared_distances_over_several_tiles_match_numpy(rng):
    x = rng.standard_normal((1100, 7)) + 5.0  # tiles of 476 rows
    diff = x[:, None, :] - x[None, :, :]
    np.testing.assert_allclose(_core.squared_distances(x), np.sum(diff**2, axis=-1), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("rule", ["median", "median_full"])
def test_rbf_bandwidth_medians_by_selection_match_numpy_medians_for_odd_and_even_counts(rng, rule):
    for n in (9, 10, 33):  # n² odd and even; distinct pairs odd and even
        x, y = _pair(rng, n, 3, 2, np.float64)
        got = reprsim.cka(x, y, kernel="rbf", bandwidth=rule)

        def gram(a):
            d = np.sum((a[:, None, :] - a[None, :, :]) ** 2, axis=-1)
            s = np.median(d[np.triu_indices(n, 1)]) if rule == "median" else np.median(d)
            return np.exp(-d / (2.0 * s))

        h = np.eye(n) - 1.0 / n
        k, l = h @ gram(x) @ h, h @ gram(y) @ h
        assert got == pytest.approx(np.vdot(k, l) / (np.linalg.norm(k) * np.linalg.norm(l)), rel=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_float32_minibatch_cka_is_within_float32_rounding_of_the_float64_value(rng, debiased):
    x, y = _pair(rng, 600, 40, 300, np.float32, offset=20.0)  # feature and Gram forms across the layers
    expected = reprsim.minibatch_cka(x.astype(np.float64), y.astype(np.float64), batch_size=200, debiased=debiased)
    got = reprsim.minibatch_cka(x, y, batch_size=200, debiased=debiased)
    assert got == pytest.approx(expected, abs=2e-6)


def test_float32_procrustes_is_within_float32_rounding_of_the_float64_value(rng):
    x, y = _pair(rng, 800, 120, 90, np.float32, offset=10.0)
    expected = reprsim.procrustes_distance(x.astype(np.float64), y.astype(np.float64))
    assert reprsim.procrustes_distance(x, y) == pytest.approx(expected, abs=2e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("debiased", [False, True])
def test_blocked_gram_cka_matrix_over_several_blocks_matches_per_pair_float64(rng, dtype, debiased):
    # n = 1100: Gram blocks of 1024 rows, so 2 × 2 blocks (3 above or on the diagonal).
    xs = [(rng.standard_normal((1100, 150)) + 2.0).astype(dtype) for _ in range(2)]
    ys = [(rng.standard_normal((1100, 170)) - 1.0).astype(dtype) for _ in range(3)]
    got = _core_cka_matrix(xs, ys, debiased, "gram")
    own = _core_cka_matrix(xs, None, debiased, "gram")
    expected = np.array([[_cka64(a, b, debiased) for b in ys] for a in xs])
    expected_own = np.array([[_cka64(a, b, debiased) for b in xs] for a in xs])
    np.testing.assert_allclose(got, expected, atol=TOL[dtype])
    np.testing.assert_allclose(own, expected_own, atol=TOL[dtype])
