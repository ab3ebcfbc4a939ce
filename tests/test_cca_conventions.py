"""CCA conventions: the padded (reference-weighted, basis-free) convention and PWCCA's uniqueness warning.

The padded convention's reference values come from an independent numpy implementation (thin SVDs for
the bases, a full SVD of QxᵀQy for the complement) and from a Monte Carlo average of the published
rule over random orthonormal bases of the uncorrelated subspace.
"""

import warnings

import numpy as np
import pytest
from scipy.special import gammaln

import reprsim
from reprsim import _core

TIED = 1e-8


def mean_abs_coordinate(d):
    """E|u₁| for u uniform on the unit sphere of R^d."""
    return float(np.exp(gammaln(d / 2) - gammaln((d + 1) / 2)) / np.sqrt(np.pi))


def bases(x, y):
    """Orthonormal bases (SVD, numpy's rank rule) and x's coordinates in its basis."""
    out = []
    for a in (x, y):
        ac = a - a.mean(axis=0)
        u, s, _ = np.linalg.svd(ac, full_matrices=False)
        rank = int(np.sum(s > s[0] * max(ac.shape) * np.finfo(np.float64).eps))
        out.append((u[:, :rank], ac))
    (qx, xc), (qy, _) = out
    return qx, qy, qx.T @ xc


def numpy_padded(x, y):
    """(mean_padded, mean_sq_padded, pwcca_padded) from the definitions."""
    qx, qy, rx = bases(x, y)
    u, rho, _ = np.linalg.svd(qx.T @ qy, full_matrices=True)
    m = min(qx.shape[1], qy.shape[1])
    rho = rho[:m]
    proj = u[:, :m].T @ rx
    num = den = 0.0
    i = 0
    while i < m:
        j = i + 1
        while j < m and rho[j - 1] - rho[j] <= TIED:
            j += 1
        d = j - i
        w = np.abs(proj[i]).sum() if d == 1 else d * mean_abs_coordinate(d) * np.linalg.norm(proj[i:j], axis=0).sum()
        num += w * rho[i:j].mean()
        den += w
        i = j
    rest = qx.shape[1] - m
    if rest > 0:
        den += rest * mean_abs_coordinate(rest) * np.linalg.norm(u[:, m:].T @ rx, axis=0).sum()
    return rho.sum() / qx.shape[1], (rho**2).sum() / qx.shape[1], num / den


def published_pwcca(x, y, rotation=None):
    """The published rule (reference x first): weights over all rank-x canonical directions of x from a full
    SVD, normalised over all of them, the correlated ones summed; `rotation` (d×d orthogonal) turns the
    basis of the uncorrelated directions."""
    qx, qy, rx = bases(x, y)
    u, rho, _ = np.linalg.svd(qx.T @ qy, full_matrices=True)
    m = min(qx.shape[1], qy.shape[1])
    if rotation is not None:
        u = u.copy()
        u[:, m:] = u[:, m:] @ rotation
    alpha = np.abs(u.T @ rx).sum(axis=1)
    return float(alpha[:m] @ rho[:m] / alpha.sum())


def haar(d, rng):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def pc_scores(x, k):
    """The top-k principal-component scores of x as k columns (a PC-deleted representation)."""
    xc = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    return u[:, :k] * s[:k]


def other_seed(x, k, rng):
    """A k-column representation related to x but not inside its span."""
    return x @ rng.standard_normal((x.shape[1], k)) + 0.8 * rng.standard_normal((x.shape[0], k))


def cases(rng):
    x = rng.standard_normal((300, 12)) @ rng.standard_normal((12, 12)) + 1.0
    return {
        "scores_inside_span": (x, pc_scores(x, 5)),
        "other_seed_narrower": (x, other_seed(x, 7, rng)),
        "one_uncorrelated_direction": (x, other_seed(x, 11, rng)),
        "reference_narrower": (x[:, :6], other_seed(x, 9, rng)),
    }


@pytest.mark.parametrize("case", ["scores_inside_span", "other_seed_narrower", "one_uncorrelated_direction",
                                  "reference_narrower"])
def test_padded_convention_matches_an_independent_numpy_implementation(case, rng):
    x, y = cases(rng)[case]
    mean_p, mean_sq_p, pw_p = numpy_padded(x, y)
    np.testing.assert_allclose(_core.cca_statistic(x, y, "mean_padded"), mean_p, rtol=1e-10)
    np.testing.assert_allclose(_core.cca_statistic(x, y, "mean_sq_padded"), mean_sq_p, rtol=1e-10)
    np.testing.assert_allclose(_core.cca_statistic(x, y, "pwcca_padded"), pw_p, rtol=1e-10)
    np.testing.assert_allclose(reprsim.pwcca(x, y, convention="padded"), pw_p, rtol=1e-10)


def test_padded_equals_the_unpadded_statistics_without_uncorrelated_directions_or_ties(rng):
    x, y = cases(rng)["reference_narrower"]
    for padded, plain in (("mean_padded", "mean"), ("mean_sq_padded", "mean_sq"), ("pwcca_padded", "pwcca_x")):
        np.testing.assert_allclose(_core.cca_statistic(x, y, padded), _core.cca_statistic(x, y, plain), rtol=1e-12)


def test_expected_weight_is_the_mean_of_the_published_weight_over_random_bases(rng):
    x, y = cases(rng)["other_seed_narrower"]
    qx, qy, rx = bases(x, y)
    u, _, _ = np.linalg.svd(qx.T @ qy, full_matrices=True)
    rest = u[:, qy.shape[1]:]
    d = rest.shape[1]
    samples = np.array([np.abs((rest @ haar(d, rng)).T @ rx).sum() for _ in range(3000)])
    expected = d * mean_abs_coordinate(d) * np.linalg.norm(rest.T @ rx, axis=0).sum()
    assert abs(samples.mean() - expected) <= 4 * samples.std() / np.sqrt(samples.size)
    assert samples.min() >= np.linalg.norm(rest.T @ rx, axis=0).sum() - 1e-9  # the bounds of any basis
    assert samples.max() <= np.sqrt(d) * np.linalg.norm(rest.T @ rx, axis=0).sum() + 1e-9


def test_published_rule_depends_on_the_basis_and_the_padded_rule_does_not(rng):
    x, y = cases(rng)["scores_inside_span"]
    d = x.shape[1] - y.shape[1]
    published = [published_pwcca(x, y, haar(d, rng)) for _ in range(50)]
    assert max(published) - min(published) > 1e-3
    padded = [_core.cca_statistic(x, y @ haar(y.shape[1], rng), "pwcca_padded") for _ in range(5)]
    assert max(padded) - min(padded) <= 1e-12
    assert min(published) - 1e-12 <= np.mean(padded) <= max(published) + 0.05


def test_one_uncorrelated_direction_gets_morcos_weight(rng):
    x, y = cases(rng)["one_uncorrelated_direction"]
    np.testing.assert_allclose(_core.cca_statistic(x, y, "pwcca_padded"), published_pwcca(x, y), rtol=1e-10)
    np.testing.assert_allclose(_core.cca_statistic(x, y, "pwcca_padded"), published_pwcca(x, y, -np.eye(1)),
                               rtol=1e-10)


def test_padded_convention_is_reachable_from_every_numpy_path(rng):
    x, y = cases(rng)["other_seed_narrower"]
    value = _core.cca_statistic(x, y, "pwcca_padded")
    np.testing.assert_allclose(reprsim.distance(x, y, metric="pwcca", convention="padded"), 1 - value, rtol=1e-12)
    np.testing.assert_allclose(reprsim.pairwise_distances([x], [y], metric="pwcca", convention="padded")[0, 0],
                               1 - value, rtol=1e-12)
    np.testing.assert_allclose(reprsim.pairwise([x], [y], metric="pwcca", convention="padded")[0, 0], value,
                               rtol=1e-12)
    np.testing.assert_allclose(reprsim.mean_cca(x, y, convention="padded"), numpy_padded(x, y)[0], rtol=1e-10)
    np.testing.assert_allclose(reprsim.cca_summary(x, y, convention="padded").pwcca, value, rtol=1e-12)
    np.testing.assert_allclose(_core.cca_matrix([x], [y], "mean_padded")[0, 0], numpy_padded(x, y)[0], rtol=1e-10)
    for route in ("moments", "rows"):
        acc = reprsim.StreamingSimilarity(route=route)
        acc.update(x[:120], y[:120]).update(x[120:], y[120:])
        np.testing.assert_allclose(acc.pwcca(convention="padded"), value, rtol=1e-9)
        np.testing.assert_allclose(acc.measure("mean_cca", convention="padded"), numpy_padded(x, y)[0], rtol=1e-9)


# -- PWCCA's uniqueness -----------------------------------------------------------------------------------


def test_pwcca_warns_when_the_ranks_force_shared_directions(rng):
    n = 30
    x, y = rng.standard_normal((n, 18)), rng.standard_normal((n, 15))  # 18 + 15 > n − 1 = 29
    with pytest.warns(UserWarning, match=r"ranks of x \(18\) and y \(15\).*n - 1 = 29"):
        reprsim.pwcca(x, y)
    with pytest.warns(UserWarning, match="not unique"):
        reprsim.cca_summary(x, y)
    value, rank_x, rank_y = _core.cca_statistic(x, y, "pwcca_x", with_ranks=True)
    assert (rank_x, rank_y) == (18, 15)
    assert _core.cca_summary(x, y, "pwcca_x", with_ranks=True)[4:] == (18, 15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reprsim.pwcca(x[:, :10], y[:, :10])  # 20 ≤ 29: unique, no warning
        reprsim.mean_cca(x, y)  # the mean does not depend on the directions


def test_the_warning_is_about_a_real_ambiguity(rng):
    """With rank_x + rank_y > n − 1 the shared directions are exactly-1 correlations whose basis is arbitrary:
    rotating it (here: inputs rotated, which changes the basis LAPACK returns) moves PWCCA."""
    n = 30
    x, y = rng.standard_normal((n, 18)), rng.standard_normal((n, 15))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = [reprsim.pwcca(x @ haar(18, rng), y @ haar(15, rng)) for _ in range(10)]
    assert max(values) - min(values) > 1e-6
