"""Procrustes distances near 0: computed from the residual of the optimal rotation, exact to rounding."""

import itertools

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes

import reprsim
from reprsim import _core


def orthogonal(p, rng):
    q, r = np.linalg.qr(rng.standard_normal((p, p)))
    return q * np.sign(np.diag(r))


def unit(a):
    a = np.asarray(a, dtype=np.float64)
    a = a - a.mean(axis=0)
    return a / np.linalg.norm(a)


def chord_reference(x, y):
    """‖x̂ − ŷQ*‖_F with scipy's orthogonal Procrustes solver, the narrower input zero-padded."""
    a, b = unit(x), unit(y)
    p = max(a.shape[1], b.shape[1])
    a = np.hstack([a, np.zeros((a.shape[0], p - a.shape[1]))])
    b = np.hstack([b, np.zeros((b.shape[0], p - b.shape[1]))])
    q, _ = orthogonal_procrustes(b, a)
    return np.linalg.norm(a - b @ q)


@pytest.mark.parametrize("n,p", [(200, 10), (40, 90)])
def test_distance_to_a_rotated_copy_is_zero_to_rounding(n, p, rng):
    x = rng.standard_normal((n, p)) + 1.5
    y = 2.5 * (x @ orthogonal(p, rng)) - 4.0
    for angular in (False, True):
        d = reprsim.procrustes_distance(x, y, angular=angular)
        assert 0.0 <= d <= 1e-12, d
        assert 0.0 <= reprsim.distance(x, y, metric="angular_procrustes" if angular else "procrustes") <= 1e-12
    assert 0.0 <= reprsim.pairwise([x, y], metric="angular_procrustes")[0, 1] <= 1e-12


def test_float32_rotated_copy_is_zero_to_float32_rounding(rng):
    x = rng.standard_normal((300, 16)).astype(np.float32)
    y = (x @ orthogonal(16, rng).astype(np.float32)).astype(np.float32)
    d = reprsim.procrustes_distance(x, y, angular=True)
    assert 0.0 <= d <= 50 * np.finfo(np.float32).eps, d
    assert 0.0 <= reprsim.procrustes_distance(x, y) <= (50 * np.finfo(np.float32).eps) ** 2


def test_angular_distance_is_a_metric_on_near_identical_triples(rng):
    x = rng.standard_normal((150, 12))
    for scale in (1e-9, 1e-7, 1e-5, 1e-3):
        reps = [x + scale * rng.standard_normal(x.shape) for _ in range(4)]
        d = {(i, j): reprsim.procrustes_distance(reps[i], reps[j], angular=True)
             for i, j in itertools.permutations(range(4), 2)}
        for i, j, k in itertools.permutations(range(4), 3):
            assert d[i, k] <= d[i, j] + d[j, k] + 4 * np.finfo(np.float64).eps, (scale, i, j, k)
        for i, j in itertools.combinations(range(4), 2):
            assert abs(d[i, j] - d[j, i]) <= 1e-15 + 1e-12 * d[i, j]
            assert d[i, j] > 0.0


def test_chord_matches_scipy_orthogonal_procrustes(rng):
    x = rng.standard_normal((120, 9))
    for y in (x @ orthogonal(9, rng) + 1e-6 * rng.standard_normal((120, 9)),
              np.hstack([x, rng.standard_normal((120, 3))]) @ orthogonal(12, rng),
              rng.standard_normal((120, 5))):
        np.testing.assert_allclose(_core.procrustes_chord(x, y), chord_reference(x, y), rtol=1e-9)
        np.testing.assert_allclose(_core.procrustes_chord(y, x), chord_reference(x, y), rtol=1e-9)


def test_near_zero_form_agrees_with_the_nuclear_norm_formula_where_both_are_accurate(rng):
    x = rng.standard_normal((200, 8))
    for noise in (0.02, 0.05, 0.3, 1.0):  # nuclear norms around and below the 1 − 1e-3 switch
        y = x @ orthogonal(8, rng) + noise * rng.standard_normal((200, 8))
        a, b = unit(x), unit(y)
        nuc = np.linalg.svd(a.T @ b, compute_uv=False).sum()
        np.testing.assert_allclose(reprsim.procrustes_distance(x, y), 2 - 2 * nuc, rtol=1e-8)
        np.testing.assert_allclose(reprsim.procrustes_distance(x, y, angular=True), np.arccos(min(nuc, 1.0)), rtol=1e-8)
        chord = chord_reference(x, y)
        np.testing.assert_allclose(reprsim.procrustes_distance(x, y, angular=True), 2 * np.arcsin(chord / 2), rtol=1e-9)
