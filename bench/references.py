"""Plain numpy implementations of every benchmarked metric, written from the formulas.

These are the "textbook" versions a researcher would write: centre, then the products, with numpy
doing the arithmetic in the input's dtype — reductions included: with float32 inputs, numpy's dot
over the n² entries of a Gram matrix accumulates in float32 and loses digits at large n, which the
benchmark's correctness gate then reports. They are the baselines the benchmark times reprsim
against, and its correctness gate (every timed implementation's value is compared with reprsim's).

Definitions (see DESIGN.md):

- linear CKA (Kornblith et al. 2019): ``‖XcᵀYc‖²_F / (‖XcᵀXc‖_F ‖YcᵀYc‖_F)``, or equivalently on
  centred Gram matrices ``⟨HKH, HLH⟩ / (‖HKH‖_F ‖HLH‖_F)`` with ``K = XXᵀ`` (HKH = XcXcᵀ).
- debiased linear CKA: the same ratio with every HSIC replaced by the U-statistic of Song et al.
  (2012), ``n(n−3)·HSIC₁ = tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2)·(K̃1)ᵀ(L̃1)``, K̃ = K with
  its diagonal set to zero.
- CCA: canonical correlations are the singular values of ``Σxx^{-1/2} Σxy Σyy^{-1/2}``; the
  ``sim_metric`` style (Ding et al. 2021's code base) whitens with eigendecompositions of the
  covariance matrices. PWCCA (Morcos et al. 2018) weights ρᵢ by ``αᵢ = Σⱼ |⟨hᵢ, x̃ⱼ⟩|``, hᵢ the
  i-th canonical variate of x, x̃ⱼ its j-th centred neuron.
- Procrustes (Ding et al. 2021): centre, scale to unit Frobenius norm, ``2 − 2‖XᵀY‖_*``.
"""

from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------------------------
# Linear CKA


def cka_feature(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA in feature space: centre, then XᵀY, XᵀX, YᵀY (O(n·p²))."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    num = np.linalg.norm(x.T @ y) ** 2
    return float(num / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def cka_gram(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA in sample space: centre, then the Gram matrices XcXcᵀ = HKH, YcYcᵀ (O(n²·p)).

    Centring the features first, not the Gram matrices, keeps float32 inputs accurate: the
    uncentred Gram of data with large column means holds a large constant part that centring the
    Gram would cancel, losing digits.
    """
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    k = x @ x.T
    l = y @ y.T
    return float(np.vdot(k, l) / (np.linalg.norm(k) * np.linalg.norm(l)))


def cka_matrix_loop(xs: list[np.ndarray], ys: list[np.ndarray]) -> np.ndarray:
    """Layer × layer linear-CKA matrix, one full :func:`cka_feature` per pair (no reuse)."""
    return np.array([[cka_feature(x, y) for y in ys] for x in xs])


# ----------------------------------------------------------------------------------------------
# Debiased linear CKA (U-statistic HSIC)


def _hsic1_gram(k: np.ndarray, l: np.ndarray) -> float:
    n = k.shape[0]
    k = k.astype(np.float64, copy=True)
    l = l.astype(np.float64, copy=True)
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    rk, rl = k.sum(axis=0), l.sum(axis=0)
    total = np.vdot(k, l) + rk.sum() * rl.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (rk @ rl)
    return float(total / (n * (n - 3)))


def debiased_cka_gram(x: np.ndarray, y: np.ndarray) -> float:
    """Debiased linear CKA from the Gram matrices (Song et al.'s estimator as written).

    The estimator is unchanged by translating either input; the features are centred first for the
    same accuracy reason as in :func:`cka_gram`.
    """
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    k = x @ x.T
    l = y @ y.T
    return _hsic1_gram(k, l) / np.sqrt(_hsic1_gram(k, k) * _hsic1_gram(l, l))


def debiased_cka_feature(x: np.ndarray, y: np.ndarray) -> float:
    """Debiased linear CKA in feature space.

    With Xc centred, 1ᵀK̃1 = −Σdᵢ and K̃1 = −d (dᵢ = ‖xᵢ‖²), so the U-statistic reduces to
    ``‖XcᵀYc‖² − n/(n−2)·dᵀe + (Σd)(Σe)/((n−1)(n−2))`` — the products are the same as for the biased
    estimator.
    """
    n = x.shape[0]
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    d = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    e = np.einsum("ij,ij->i", y, y, dtype=np.float64)

    def u(cross_sq: float, a: np.ndarray, b: np.ndarray) -> float:
        return cross_sq - n / (n - 2) * (a @ b) + a.sum() * b.sum() / ((n - 1) * (n - 2))

    xy = float(np.linalg.norm(x.T @ y)) ** 2
    xx = float(np.linalg.norm(x.T @ x)) ** 2
    yy = float(np.linalg.norm(y.T @ y)) ** 2
    return u(xy, d, e) / np.sqrt(u(xx, d, d) * u(yy, e, e))


# ----------------------------------------------------------------------------------------------
# CCA family


def _inv_sqrt_eig(c: np.ndarray) -> np.ndarray:
    """Σ^{-1/2} through an eigendecomposition, zeroing the eigenvalues that are not positive."""
    w, v = np.linalg.eigh(c)
    w = np.where(w > 0, w, 0.0)
    inv = np.zeros_like(w)
    inv[w > 0] = 1.0 / np.sqrt(w[w > 0])
    return (v * inv) @ v.T


def _cca_eig(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical correlations, x's canonical variates and x centred, by eigen-whitening."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    wx = _inv_sqrt_eig(x.T @ x)
    wy = _inv_sqrt_eig(y.T @ y)
    u, s, _ = np.linalg.svd(wx @ (x.T @ y) @ wy, full_matrices=False)
    k = min(x.shape[1], y.shape[1])
    h = x @ (wx @ u[:, :k])  # canonical variates of x, unit norm over the samples
    return s[:k], h, x


def mean_cca_eig(x: np.ndarray, y: np.ndarray) -> float:
    """Mean canonical correlation ρ̄, whitening with eigendecompositions (sim_metric style)."""
    s, _, _ = _cca_eig(x, y)
    return float(s.mean())


def pwcca_eig(x: np.ndarray, y: np.ndarray) -> float:
    """PWCCA with x's weights, whitening with eigendecompositions (sim_metric style)."""
    s, h, xc = _cca_eig(x, y)
    alpha = np.abs(h.T @ xc).sum(axis=1)
    return float(alpha @ s / alpha.sum())


def _cca_qr(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    qx, rx = np.linalg.qr(x)
    qy, _ = np.linalg.qr(y)
    u, s, _ = np.linalg.svd(qx.T @ qy, full_matrices=False)
    k = min(x.shape[1], y.shape[1])
    return s[:k], u[:, :k], rx


def canonical_correlations_qr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Canonical correlations from Householder QR of each centred input and an SVD of QxᵀQy."""
    return _cca_qr(x, y)[0]


def mean_cca_qr(x: np.ndarray, y: np.ndarray) -> float:
    """Mean canonical correlation through numpy's Householder QR (the numerically stable route)."""
    return float(_cca_qr(x, y)[0].mean())


def pwcca_qr(x: np.ndarray, y: np.ndarray) -> float:
    """PWCCA with x's weights through Householder QR: hᵢ = Qx·uᵢ, so ⟨hᵢ, x̃ⱼ⟩ = (UᵀR)ᵢⱼ."""
    s, u, rx = _cca_qr(x, y)
    alpha = np.abs(u.T @ rx).sum(axis=1)
    return float(alpha @ s / alpha.sum())


# ----------------------------------------------------------------------------------------------
# Procrustes


def procrustes_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Ding et al.'s Procrustes distance 2 − 2‖XᵀY‖_* (centred, unit-Frobenius-norm inputs)."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    x = x / np.linalg.norm(x)
    y = y / np.linalg.norm(y)
    nuclear = np.linalg.svd(x.T @ y, compute_uv=False).sum()
    return float(2.0 - 2.0 * nuclear)


# ----------------------------------------------------------------------------------------------
# The fastest formulations a user could run instead (written from their published descriptions, in
# the input's dtype as the original code runs them). The benchmark times reprsim against these.


def _sim_metric_preprocess(x: np.ndarray) -> np.ndarray:
    """sim_metric's preprocessing: neurons × samples, centred over the samples, unit Frobenius norm."""
    a = x.T
    a = a - a.mean(axis=1, keepdims=True)
    return a / np.linalg.norm(a)


def cka_sim_metric(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA as sim_metric computes it: ‖BAᵀ‖²_F / (‖AAᵀ‖_F ‖BBᵀ‖_F) on the preprocessed inputs."""
    a, b = _sim_metric_preprocess(x), _sim_metric_preprocess(y)
    return float(np.linalg.norm(b @ a.T) ** 2 / (np.linalg.norm(a @ a.T) * np.linalg.norm(b @ b.T)))


def cka_netrep(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA as netrep's LinearCKA forms it: centre, the sample Grams XXᵀ, YYᵀ, inner products
    in the input's dtype (its score is the arccos of this value)."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    k = x @ x.T
    l = y @ y.T
    return float(np.vdot(k, l) / (np.linalg.norm(k) * np.linalg.norm(l)))


def cka_matrix_cached(xs: list[np.ndarray], ys: list[np.ndarray]) -> np.ndarray:
    """Layer × layer linear CKA the way a careful numpy user writes it: every layer centred once, its
    self term ‖XᵢᵀXᵢ‖_F cached, then one product XᵢᵀYⱼ per pair."""
    cx = [a - a.mean(axis=0) for a in xs]
    cy = [b - b.mean(axis=0) for b in ys]
    sx = [np.linalg.norm(a.T @ a) for a in cx]
    sy = [np.linalg.norm(b.T @ b) for b in cy]
    return np.array([[np.linalg.norm(a.T @ b) ** 2 / (s * t) for b, t in zip(cy, sy)] for a, s in zip(cx, sx)])


def _sim_metric_inv_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    w = (w + np.abs(w)) / 2
    inv = np.array([1.0 / np.sqrt(e) if e > 0 else 0.0 for e in w])
    return v @ np.diag(inv) @ v.T


def cca_sim_metric(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(PWCCA, mean CCA) the way sim_metric computes them: eigen-whitening of the neuron × neuron
    covariances, a full SVD of the whitened cross-covariance, the canonical variates of both inputs,
    x's projection weights from them (one decomposition serves both values)."""
    a = x.T - x.T.mean(axis=1, keepdims=True)
    b = y.T - y.T.mean(axis=1, keepdims=True)
    wa = _sim_metric_inv_sqrt(a @ a.T)
    wb = _sim_metric_inv_sqrt(b @ b.T)
    u, s, vh = np.linalg.svd(wa @ (a @ b.T) @ wb)
    ta = (u.T @ wa @ a).T
    _tb = (vh @ wb @ b).T  # computed by the original as well
    weights = np.abs(ta.T @ a.T).sum(axis=1)
    weights = weights / weights.sum()
    dim = min(len(weights), len(s))
    return float(weights[:dim] @ s[:dim]), float(s.sum() / len(s))


def procrustes_sim_metric(x: np.ndarray, y: np.ndarray) -> float:
    """Procrustes distance as sim_metric computes it: ‖A‖² + ‖B‖² − 2‖ABᵀ‖_* on the preprocessed
    inputs (float32 stays float32, the nuclear norm included)."""
    a, b = _sim_metric_preprocess(x), _sim_metric_preprocess(y)
    return float(np.sum(a**2) + np.sum(b**2) - 2.0 * np.linalg.norm(a @ b.T, ord="nuc"))


def rbf_cka_kornblith(x: np.ndarray, y: np.ndarray, threshold: float = 1.0) -> float:
    """RBF CKA as Kornblith et al.'s notebook writes it: distances from the Gram, σ² = threshold² ·
    the median of all n² squared distances, then the Gram matrices centred and compared."""

    def gram(a: np.ndarray) -> np.ndarray:
        dot = a @ a.T
        sq = np.diag(dot)
        d = -2.0 * dot + sq[:, None] + sq[None, :]
        return np.exp(-d / (2.0 * threshold**2 * np.median(d)))

    def centre(g: np.ndarray) -> np.ndarray:
        means = g.mean(axis=0)
        means -= means.mean() / 2
        return g - means[:, None] - means[None, :]

    k, l = centre(gram(x)), centre(gram(y))
    return float(np.vdot(k, l) / (np.linalg.norm(k) * np.linalg.norm(l)))


# ----------------------------------------------------------------------------------------------
# float64 references: the values every candidate's accuracy is measured against (plain float64
# numpy from the definitions; never timed).


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def ref_cka(x: np.ndarray, y: np.ndarray) -> float:
    return cka_feature(_f64(x), _f64(y))


def ref_debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    return debiased_cka_feature(_f64(x), _f64(y))


def ref_cka_matrix(xs: list[np.ndarray], ys: list[np.ndarray]) -> np.ndarray:
    return cka_matrix_cached([_f64(a) for a in xs], [_f64(b) for b in ys])


def ref_cca(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    return pwcca_qr(_f64(x), _f64(y)), mean_cca_qr(_f64(x), _f64(y))


def ref_procrustes(x: np.ndarray, y: np.ndarray) -> float:
    return procrustes_distance(_f64(x), _f64(y))


def ref_rbf_cka_median_full(x: np.ndarray, y: np.ndarray) -> float:
    """RBF CKA with σ² = the median of all n² squared distances (numpy's median), distances from
    centred rows, everything float64."""

    def gram(a: np.ndarray) -> np.ndarray:
        a = _f64(a) - _f64(a).mean(axis=0)
        sq = np.einsum("ij,ij->i", a, a)
        d = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (a @ a.T), 0.0)
        np.fill_diagonal(d, 0.0)
        return np.exp(-d / (2.0 * np.median(d)))

    n = x.shape[0]
    h = np.eye(n) - 1.0 / n
    k, l = h @ gram(x) @ h, h @ gram(y) @ h
    return float(np.vdot(k, l) / (np.linalg.norm(k) * np.linalg.norm(l)))


def ref_minibatch_cka(x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    """Minibatch CKA (Nguyen et al. 2021): Σ_b HSIC₁(K_b, L_b) / √(Σ_b HSIC₁(K_b, K_b) Σ_b HSIC₁(L_b, L_b))."""
    xy = xx = yy = 0.0
    for s in range(0, x.shape[0], batch_size):
        a = _f64(x[s : s + batch_size])
        b = _f64(y[s : s + batch_size])
        a, b = a - a.mean(axis=0), b - b.mean(axis=0)
        k, l = a @ a.T, b @ b.T
        xy += _hsic1_gram(k, l)
        xx += _hsic1_gram(k, k)
        yy += _hsic1_gram(l, l)
    return xy / np.sqrt(xx * yy)


def minibatch_cka_uncentred_grams(x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    """Minibatch CKA the way pytorch-cka computes each minibatch's HSIC₁: the uncentred Grams in the
    input's dtype (HSIC₁ is unchanged by translating the data), the U-statistic from their sums."""

    def hsic1(k: np.ndarray, l: np.ndarray) -> float:
        n = k.shape[0]
        dk, dl = np.diagonal(k), np.diagonal(l)
        sk, sl = k.sum() - dk.sum(), l.sum() - dl.sum()
        ck, cl = k.sum(axis=0) - dk, l.sum(axis=0) - dl
        trace = np.vdot(k, l) - dk @ dl
        return float((trace + sk * sl / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (ck @ cl)) / (n * (n - 3)))

    xy = xx = yy = 0.0
    for s in range(0, x.shape[0], batch_size):
        a, b = x[s : s + batch_size], y[s : s + batch_size]
        k, l = a @ a.T, b @ b.T
        xy += hsic1(k, l)
        xx += hsic1(k, k)
        yy += hsic1(l, l)
    return xy / np.sqrt(xx * yy)
