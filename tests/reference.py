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


# -- neighbourhood measures (full similarity matrices, stable argsort: ties to the smaller index) ------------


def knn_kernel(x, center=False):
    """Cosine similarities, each a numpy sum over the products of one pair of rows: equal rows get equal
    values wherever they sit (a BLAS product, and numpy's syrk for z @ z.T, need not), so duplicated
    rows tie exactly."""
    z = np.asarray(x, dtype=np.float64)
    if center:
        z = z - z.mean(axis=0)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    out = np.empty((len(z), len(z)))
    for r0 in range(0, len(z), 64):
        out[r0:r0 + 64] = (z[r0:r0 + 64, None, :] * z[None, :, :]).sum(axis=-1)
    return out


def knn_lists(x, k, center=False):
    """Each row's k neighbours (stable argsort: ties to the smaller index), as a 0/1 mask and sorted lists."""
    kern = knn_kernel(x, center)
    masked = kern.copy()
    np.fill_diagonal(masked, -np.inf)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    mask = np.zeros_like(kern)
    np.put_along_axis(mask, order, 1.0, axis=1)
    return np.sort(order, axis=1), mask, kern


def mutual_knn(x, y, k):
    _, mx, _ = knn_lists(x, k)
    _, my, _ = knn_lists(y, k)
    return float(np.mean((mx * my).sum(axis=1) / k))


def jaccard_knn(x, y, k):
    _, mx, _ = knn_lists(x, k)
    _, my, _ = knn_lists(y, k)
    inter = (mx * my).sum(axis=1)
    union = ((mx + my) > 0).sum(axis=1)
    return float(np.mean(inter / union))


def cycle_knn(x, y, k):
    """platonic-rep: knn_x[knn_y] — is i among the x-neighbours of any of its y-neighbours?"""
    lx, _, _ = knn_lists(x, k)
    ly, _, _ = knn_lists(y, k)
    n = len(lx)
    return float(np.mean([(lx[ly[i]] == i).any() for i in range(n)]))


def hsic_unbiased_literal(a, b):
    """platonic-rep's hsic_unbiased, transcribed: Song et al.'s eq. 5 with the transpose in term 1."""
    m = a.shape[0]
    at = a.copy()
    bt = b.copy()
    np.fill_diagonal(at, 0.0)
    np.fill_diagonal(bt, 0.0)
    value = (np.sum(at * bt.T) + np.sum(at) * np.sum(bt) / ((m - 1) * (m - 2))
             - 2.0 * np.sum(at @ bt) / (m - 2))
    return value / (m * (m - 3))


def cknna(x, y, k, center=False):
    """platonic-rep's cknna(unbiased=True), without the +1e-6 in the denominator."""
    _, mx, kx = knn_lists(x, k, center)
    _, my, ky = knn_lists(y, k, center)
    kl = hsic_unbiased_literal(mx * my * kx, mx * my * ky)
    kk = hsic_unbiased_literal(mx * kx, mx * kx)
    ll = hsic_unbiased_literal(my * ky, my * ky)
    return kl / np.sqrt(kk * ll)


def cknna_row_anchored(x, y, k, center=False):
    """The paper's form: Σ_ij α_ij (K_ij − E_l K_il)(L_ij − E_l L_il), over its value for K and L alone."""
    _, mx, kx = knn_lists(x, k, center)
    _, my, ky = knn_lists(y, k, center)

    def align(mask, a, b):
        return np.sum(mask * (a - a.mean(axis=1, keepdims=True)) * (b - b.mean(axis=1, keepdims=True)))

    return align(mx * my, kx, ky) / np.sqrt(align(mx, kx, kx) * align(my, ky, ky))


def rsa(x, y, rdm="correlation", compare="spearman"):
    """RDMs by scipy's pdist (squared Euclidean / p for "euclidean"), compared by scipy.stats."""
    from scipy import stats
    from scipy.spatial.distance import pdist

    def one(a):
        a = np.asarray(a, dtype=np.float64)
        return pdist(a, "sqeuclidean") / a.shape[1] if rdm == "euclidean" else pdist(a, rdm)

    a, b = one(x), one(y)
    if compare == "spearman":
        return float(stats.spearmanr(a, b).statistic)
    if compare == "pearson":
        return float(stats.pearsonr(a, b).statistic)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- shape metrics, Bures, GULP, neuron matching, predictivity (from the papers' formulas) ----------------------


def _svd_rank(s, n, p):
    """Singular values resolved by float64 cross-products: above s_max·√(max(n, p)·ε)."""
    return int(np.sum(s > s[0] * np.sqrt(max(n, p) * np.finfo(np.float64).eps))) if s.size and s[0] > 0 else 0


def partial_whitening(x, alpha):
    """φ_α(X) = Xc(αI + (1 − α)(XcᵀXc)^{+1/2}), formed explicitly from an SVD of Xc = U·S·Vᵀ:
    α·Xc + (1 − α)·U_r·V_rᵀ over the numerical rank r."""
    xc = center(x)
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    r = _svd_rank(s, *xc.shape)
    return alpha * xc + (1.0 - alpha) * u[:, :r] @ vt[:r]


def _pad(a, width):
    return np.hstack([a, np.zeros((a.shape[0], width - a.shape[1]))])


def shape(x, y, alpha=1.0, form="angular"):
    """Williams et al. (2021): explicit φ's, zero-padded, aligned by the orthogonal Procrustes solution."""
    fx, fy = partial_whitening(x, alpha), partial_whitening(y, alpha)
    w = max(fx.shape[1], fy.shape[1])
    fx, fy = _pad(fx, w), _pad(fy, w)
    if form == "euclidean":  # rescaled to the centred inputs' norms
        fx = fx * np.linalg.norm(center(x)) / np.linalg.norm(fx)
        fy = fy * np.linalg.norm(center(y)) / np.linalg.norm(fy)
    u, _, vt = np.linalg.svd(fy.T @ fx)
    q = u @ vt  # argmin_Q ‖fx − fy·Q‖ over orthogonal Q
    aligned = fy @ q
    if form == "euclidean":
        return float(np.linalg.norm(fx - aligned))
    cos = np.sum(fx * aligned) / (np.linalg.norm(fx) * np.linalg.norm(aligned))
    return float(np.arccos(min(cos, 1.0)))


def nbs(x, y):
    """Fidelity of the normalized linear kernels, Gram route: ‖Kx^{1/2}·Ky^{1/2}‖_* with the square roots from
    SVDs of the centred inputs."""
    ux, sx, _ = np.linalg.svd(center(x), full_matrices=False)
    uy, sy, _ = np.linalg.svd(center(y), full_matrices=False)
    fid = np.linalg.svd((ux * sx).T @ (uy * sy), compute_uv=False).sum()
    return float(fid / np.sqrt(np.sum(sx**2) * np.sum(sy**2)))


def bures(x, y):
    """√(tr Kx + tr Ky − 2·fidelity), K = XcXcᵀ/n, square roots of the kernels from SVDs."""
    n = x.shape[0]
    ux, sx, _ = np.linalg.svd(center(x), full_matrices=False)
    uy, sy, _ = np.linalg.svd(center(y), full_matrices=False)
    kx_half = (ux * sx) @ ux.T / np.sqrt(n)
    ky_half = (uy * sy) @ uy.T / np.sqrt(n)
    fid = np.linalg.svd(kx_half @ ky_half, compute_uv=False).sum()
    d2 = np.sum(sx**2) / n + np.sum(sy**2) / n - 2.0 * fid
    return float(np.sqrt(max(d2, 0.0)))


def gulp(x, y, lam=1e-2):
    """Boix-Adserà et al. (2022) as a distance between the n×n ridge hat matrices of the normalised inputs
    (‖Xc‖_F = √n): d² = ‖Hx − Hy‖²_F, H = X̃(X̃ᵀX̃/n + λI)^{-1}X̃ᵀ/n (λ = 0: the projection on the rank)."""

    def hat(a):
        n = a.shape[0]
        xc = center(a)
        xc = xc * np.sqrt(n) / np.linalg.norm(xc)
        u, s, _ = np.linalg.svd(xc, full_matrices=False)
        e = s**2 / n
        if lam > 0:
            h = e / (e + lam)
        else:
            r = _svd_rank(s, *a.shape)
            h = np.concatenate([np.ones(r), np.zeros(len(s) - r)])
        return (u * h) @ u.T

    return float(np.linalg.norm(hat(x) - hat(y)))


def permutation(x, y, form="angular"):
    """netrep's PermutationMetric: zero-pad to equal widths, the assignment maximising ⟨Xc·P, Yc⟩, then the
    distance between the aligned matrices."""
    from scipy.optimize import linear_sum_assignment

    xc, yc = center(x), center(y)
    w = max(xc.shape[1], yc.shape[1])
    xc, yc = _pad(xc, w), _pad(yc, w)
    r, c = linear_sum_assignment(xc.T @ yc, maximize=True)
    aligned = np.zeros_like(xc)
    aligned[:, c] = xc[:, r]
    if form == "euclidean":
        return float(np.linalg.norm(aligned - yc))
    cos = np.sum(aligned * yc) / (np.linalg.norm(xc) * np.linalg.norm(yc))
    return float(np.arccos(np.clip(cos, -1.0, 1.0)))


def soft_matching_cost(x, y):
    """Khosla & Williams (2023): transport between z-scored neurons with uniform marginals, cost
    ‖z_i − z_j‖²/(2n) = 1 − r_ij, solved exactly by replicating each neuron into lcm(p1, p2) unit masses and
    assigning them one to one."""
    from math import lcm

    from scipy.optimize import linear_sum_assignment

    def z(a):
        # Unit-norm centred columns (‖z_i − z_j‖² = 2 − 2r_ij); a constant column becomes the unit vector of an
        # extra coordinate orthogonal to every sample, shared by all constant columns.
        c = center(a)
        norms = np.linalg.norm(c, axis=0)
        dead = norms == 0
        out = np.vstack([c / np.where(dead, 1.0, norms), dead.astype(float)[None, :]])
        return out

    zx, zy = z(x), z(y)
    cost = np.sum((zx[:, :, None] - zy[:, None, :]) ** 2, axis=0) / 2.0
    p1, p2 = cost.shape
    big = lcm(p1, p2)
    rep = np.repeat(np.repeat(cost, big // p1, axis=0), big // p2, axis=1)
    r, c = linear_sum_assignment(rep)
    return float(rep[r, c].mean())


def kfold_bounds(n, k):
    """scikit-learn's KFold(k) without shuffling: numpy.array_split's chunks (the first n mod k one longer)."""
    idx = np.array_split(np.arange(n), k)
    return [(int(a[0]), int(a[-1]) + 1) for a in idx]


def ridge_fit_predict(xtr, ytr, xte, alpha):
    """Ridge with an unpenalised intercept: centre on the training means, solve (XᵀX + αI)W = XᵀY (α = 0: the
    minimum-norm least squares solution on the numerical rank), predict."""
    mx, my = xtr.mean(axis=0), ytr.mean(axis=0)
    a, b = xtr - mx, ytr - my
    if alpha > 0:
        w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ b)
    else:
        u, s, vt = np.linalg.svd(a, full_matrices=False)
        r = _svd_rank(s, *a.shape)
        w = vt[:r].T @ ((u[:, :r].T @ b) / s[:r, None])
    return (xte - mx) @ w + my


def _target_scores(pred, yte, score):
    out = []
    for t in range(yte.shape[1]):
        a, b = pred[:, t] - pred[:, t].mean(), yte[:, t] - yte[:, t].mean()
        if np.sum(b * b) == 0:
            out.append(np.nan)
        elif score == "pearson":
            den = np.sqrt(np.sum(a * a) * np.sum(b * b))
            out.append(np.sum(a * b) / den if den > 0 else 0.0)
        else:
            out.append(1.0 - np.sum((yte[:, t] - pred[:, t]) ** 2) / np.sum(b * b))
    return np.array(out)


def predictivity(x, y, alpha=1.0, folds=5, score="pearson", aggregate="median"):
    """Held-out scores per target of ridge fits on the other folds, aggregated over targets, mean over folds;
    a list of alphas: the one whose mean held-out aggregate is best (as RidgeCV(cv=folds) chooses)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    alphas = list(alpha) if isinstance(alpha, (list, tuple)) else [alpha]
    agg = np.nanmedian if aggregate == "median" else np.nanmean
    crit = []
    for a in alphas:
        vals = []
        bounds = kfold_bounds(len(x), folds) if folds is not None else [None]
        for bd in bounds:
            if bd is None:
                pred, yte = ridge_fit_predict(x, y, x, a), y
            else:
                tr = np.r_[0:bd[0], bd[1]:len(x)]
                pred, yte = ridge_fit_predict(x[tr], y[tr], x[bd[0]:bd[1]], a), y[bd[0]:bd[1]]
            vals.append(agg(_target_scores(pred, yte, score)))
        crit.append(np.mean(vals))
    return float(max(crit))


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
        "mutual_knn": lambda: mutual_knn(x, y, 10),
        "jaccard_knn": lambda: jaccard_knn(x, y, 10),
        "cycle_knn": lambda: cycle_knn(x, y, 10),
        "cknna": lambda: cknna(x, y, 10),
        "rsa": lambda: rsa(x, y),
        "shape": lambda: shape(x, y),
        "nbs": lambda: nbs(x, y),
        "bures": lambda: bures(x, y),
        "gulp": lambda: gulp(x, y),
        "permutation": lambda: permutation(x, y),
        "soft_matching": lambda: 1.0 - soft_matching_cost(x, y),
        "predictivity": lambda: predictivity(x, y),
    }[metric]()


def distance(x, y, metric):
    if metric == "ensd":
        # (2/π)·arccos(ENSD/√(PRx·PRy)): the angle between the centred Gram matrices.
        k = center(x) @ center(x).T
        l = center(y) @ center(y).T
        cos = np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))
        return float(2 / np.pi * np.arccos(min(cos, 1.0)))
    if metric in ("procrustes", "angular_procrustes", "shape", "bures", "gulp", "permutation"):
        return value(x, y, metric)
    if metric == "nbs":
        return float(np.arccos(min(nbs(x, y), 1.0)))
    if metric == "soft_matching":
        return float(np.sqrt(2.0 * soft_matching_cost(x, y)))
    return 1.0 - value(x, y, metric)


def random_pair(rng, n, p1, p2, dtype=np.float64, coupling=0.7):
    """Two representations sharing a latent signal, with unequal column scales and an offset."""
    z = rng.standard_normal((n, max(p1, p2)))
    x = z[:, :p1] @ rng.standard_normal((p1, p1)) + 0.3 * rng.standard_normal((n, p1))
    y = coupling * z[:, :p2] @ rng.standard_normal((p2, p2)) + rng.standard_normal((n, p2))
    x = x * rng.uniform(0.5, 2.0, size=p1) + rng.uniform(-3, 3, size=p1)
    return x.astype(dtype), y.astype(dtype)
