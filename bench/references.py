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
