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


def kernel_cka(k, l, debiased=False):
    """CKA of two kernel matrices: HSIC₀ of the H-centred kernels, or the U-statistic HSIC₁."""
    f = hsic_unbiased if debiased else hsic_biased
    return f(k, l) / np.sqrt(f(k, k) * f(l, l))


def cka(x, y, debiased=False):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    # Both estimators are translation invariant (H, or the U-statistic); centring first only keeps the
    # float64 Grams free of cancellation when the inputs carry a large offset.
    x, y = center(x), center(y)
    return kernel_cka(x @ x.T, y @ y.T, debiased)


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


def sq_distances(x):
    x = np.asarray(x, dtype=np.float64)
    diff = x[:, None, :] - x[None, :, :]
    return np.sum(diff**2, axis=-1)


def rbf_kernel(x, threshold=1.0, rule="median", sigma=None):
    """exp(−‖x_i − x_j‖²/(2σ²)) with σ² = threshold² · (median/mean squared distance of distinct pairs, or the
    median over all n² entries), or a fixed σ."""
    d = sq_distances(x)
    if sigma is not None:
        sigma2 = sigma**2
    else:
        iu = np.triu_indices(x.shape[0], k=1)
        scale = {"median": np.median(d[iu]), "mean": np.mean(d[iu]), "median_full": np.median(d)}[rule]
        sigma2 = threshold**2 * scale
    return np.exp(-d / (2.0 * sigma2))


def rbf_cka(x, y, debiased=False, threshold=1.0, rule="median"):
    return kernel_cka(rbf_kernel(x, threshold, rule), rbf_kernel(y, threshold, rule), debiased)


def minibatch_cka(x, y, batch_size=256, debiased=True):
    """Nguyen, Raghu & Kornblith (2021) from the formula: sums of per-batch HSIC over Gram matrices."""
    hsic = hsic_unbiased if debiased else hsic_biased
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xy = xx = yy = 0.0
    for s in range(0, x.shape[0], batch_size):
        # Both HSIC estimators are invariant to centring the batch (H, or the U-statistic); centring first
        # keeps the float64 Grams free of cancellation when the inputs carry a large offset.
        xb, yb = center(x[s : s + batch_size]), center(y[s : s + batch_size])
        k, l = xb @ xb.T, yb @ yb.T
        xy += hsic(k, l)
        xx += hsic(k, k)
        yy += hsic(l, l)
    return xy / np.sqrt(xx * yy)


def ensd(x, y):
    """Giaffar, Buxó & Aoi (2023): PRx·PRy·tr(KxKy)/(tr Kx·tr Ky), PR = (tr K)²/tr(K²), centred Grams."""
    k = center(x) @ center(x).T
    l = center(y) @ center(y).T
    pr = lambda g: np.trace(g) ** 2 / np.trace(g @ g)  # noqa: E731
    return float(pr(k) * pr(l) * np.trace(k @ l) / (np.trace(k) * np.trace(l)))


def value(x, y, metric):
    """The measure's own value (what its public function returns)."""
    return {
        "cka": lambda: cka(x, y),
        "debiased_cka": lambda: cka(x, y, debiased=True),
        "ensd": lambda: ensd(x, y),
        "mean_cca": lambda: np.mean(canonical_correlations(x, y)),
        "mean_sq_cca": lambda: np.mean(canonical_correlations(x, y) ** 2),
        "svcca": lambda: svcca(x, y),
        "pwcca": lambda: pwcca(x, y),
        "procrustes": lambda: procrustes(x, y),
        "angular_procrustes": lambda: procrustes(x, y, angular=True),
        "rbf_cka": lambda: rbf_cka(x, y),
        "minibatch_cka": lambda: minibatch_cka(x, y),
    }[metric]()


def distance(x, y, metric):
    if metric == "ensd":
        # (2/π)·arccos(ENSD/√(PRx·PRy)): the angle between the centred Gram matrices.
        k = center(x) @ center(x).T
        l = center(y) @ center(y).T
        cos = np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))
        return float(2 / np.pi * np.arccos(min(cos, 1.0)))
    if metric in ("procrustes", "angular_procrustes"):
        return value(x, y, metric)
    return 1.0 - value(x, y, metric)


def random_pair(rng, n, p1, p2, dtype=np.float64, coupling=0.7):
    """Two representations sharing a latent signal, with unequal column scales and an offset."""
    z = rng.standard_normal((n, max(p1, p2)))
    x = z[:, :p1] @ rng.standard_normal((p1, p1)) + 0.3 * rng.standard_normal((n, p1))
    y = coupling * z[:, :p2] @ rng.standard_normal((p2, p2)) + rng.standard_normal((n, p2))
    x = x * rng.uniform(0.5, 2.0, size=p1) + rng.uniform(-3, 3, size=p1)
    return x.astype(dtype), y.astype(dtype)
