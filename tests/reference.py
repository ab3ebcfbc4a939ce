"""Independent float64 numpy implementations, written from the published formulas.

They deliberately take other routes than the library (SVDs instead of pivoted QR, Gram-space
U-statistics instead of feature-space shortcuts), so agreement is evidence, not tautology.
"""

from __future__ import annotations

import numpy as np


def center(a):
    a = np.asarray(a, dtype=np.float64)
    return a - a.mean(axis=0, keepdims=True)


def hsic_biased(k, l):
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l @ h) / (n - 1) ** 2


def hsic_unbiased(k, l):
    """Song et al. (2012), eq. (5), on kernel matrices with the diagonal set to zero."""
    n = k.shape[0]
    kt = k - np.diag(np.diag(k))
    lt = l - np.diag(np.diag(l))
    one = np.ones(n)
    term1 = np.trace(kt @ lt)
    term2 = (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (one @ kt @ lt @ one)
    return (term1 + term2 - term3) / (n * (n - 3))


def cka(x, y, debiased=False):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    # Both estimators are translation invariant (H, or the U-statistic); centring first only keeps the
    # float64 Grams free of cancellation when the inputs carry a large offset.
    x, y = center(x), center(y)
    k, l = x @ x.T, y @ y.T
    f = hsic_unbiased if debiased else hsic_biased
    return f(k, l) / np.sqrt(f(k, k) * f(l, l))


def orth_basis(a):
    """Orthonormal basis of the centred column space by SVD, with numpy.matrix_rank's tolerance."""
    a = np.asarray(a)
    eps = np.finfo(a.dtype if a.dtype in (np.float32, np.float64) else np.float64).eps
    u, s, _ = np.linalg.svd(center(a), full_matrices=False)
    rank = int(np.sum(s > s.max() * max(a.shape) * eps))
    return u[:, :rank], s[:rank]


def canonical_correlations(x, y):
    ux, _ = orth_basis(x)
    uy, _ = orth_basis(y)
    return np.linalg.svd(ux.T @ uy, compute_uv=False)


def pwcca(x, y):
    """Morcos et al. (2018): weights α_i = Σ_j |<h_i, x_j>| over x's canonical variates h_i."""
    ux, _ = orth_basis(x)
    uy, _ = orth_basis(y)
    a, rho, _ = np.linalg.svd(ux.T @ uy, full_matrices=False)
    h = ux @ a  # canonical variates of x, unit norm
    alpha = np.abs(h.T @ center(x)).sum(axis=1)
    return float(alpha @ rho / alpha.sum())


def svcca_components(a, keep, on_variance=True):
    """Number of top principal components whose share (of Σσ² or Σσ) first reaches `keep`."""
    s = np.linalg.svd(center(a), compute_uv=False)
    w = s**2 if on_variance else s
    frac = np.cumsum(w) / w.sum()
    return int(np.searchsorted(frac, keep - 1e-15) + 1)


def svcca(x, y, keep=0.99, on_variance=True):
    def top(a):
        u, s, _ = np.linalg.svd(center(a), full_matrices=False)
        k = svcca_components(a, keep, on_variance)
        return u[:, :k] * s[:k]

    return float(np.mean(canonical_correlations(top(x), top(y))))


def procrustes(x, y, angular=False):
    xc, yc = center(x), center(y)
    xc /= np.linalg.norm(xc)
    yc /= np.linalg.norm(yc)
    nuc = np.linalg.svd(xc.T @ yc, compute_uv=False).sum()
    return float(np.arccos(min(nuc, 1.0))) if angular else float(2 - 2 * nuc)


def distance(x, y, metric):
    return {
        "cka": lambda: 1 - cka(x, y),
        "debiased_cka": lambda: 1 - cka(x, y, debiased=True),
        "mean_cca": lambda: 1 - np.mean(canonical_correlations(x, y)),
        "mean_sq_cca": lambda: 1 - np.mean(canonical_correlations(x, y) ** 2),
        "svcca": lambda: 1 - svcca(x, y),
        "pwcca": lambda: 1 - pwcca(x, y),
        "procrustes": lambda: procrustes(x, y),
        "angular_procrustes": lambda: procrustes(x, y, angular=True),
    }[metric]()


def random_pair(rng, n, p1, p2, dtype=np.float64, coupling=0.7):
    """Two representations sharing a latent signal, with unequal column scales and an offset."""
    z = rng.standard_normal((n, max(p1, p2)))
    x = z[:, :p1] @ rng.standard_normal((p1, p1)) + 0.3 * rng.standard_normal((n, p1))
    y = coupling * z[:, :p2] @ rng.standard_normal((p2, p2)) + rng.standard_normal((n, p2))
    x = x * rng.uniform(0.5, 2.0, size=p1) + rng.uniform(-3, 3, size=p1)
    return x.astype(dtype), y.astype(dtype)
