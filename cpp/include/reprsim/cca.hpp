// Canonical correlation analysis through QR factorisations (never an inverse covariance).
//
// Each centred input is factorised once, Xc·P = Q·R with column pivoting (LAPACK dgeqp3); its
// numerical rank r is the number of |R_ii| > tol·|R_11|. The canonical correlations of x and y are
// the singular values of Qxᵀ Qy, and the canonical variates of x are Qx·A with A the left singular
// vectors. Everything runs in float64, whatever the input dtype.
#pragma once

#include "reprsim/common.hpp"
#include "reprsim/linalg.hpp"

namespace reprsim {

struct CCAFactor {
    Index n = 0;
    Index p = 0;
    Index rank = 0;
    MatD q;  // n×rank orthonormal basis of the centred column space
    MatD r;  // rank×p, Qᵀ·Xc (columns in the input's order)
};

// rank_rtol: relative tolerance on |R_ii| / |R_11| below which a direction is numerically zero.
template <class T>
CCAFactor cca_factor(const View<T>& x, double rank_rtol, const char* name);

// Throws when the rank reaches n − 1, where every canonical correlation is trivially 1.
void require_nontrivial_rank(const CCAFactor& f, const char* name);

struct CCAResult {
    VecD rho;  // canonical correlations, descending, min(rank_x, rank_y) of them
    MatD a;    // rank_x × m coefficients of x's canonical variates in Qx (when requested)
    MatD b;    // rank_y × m coefficients of y's canonical variates in Qy (when requested)
};

CCAResult cca_pair(const CCAFactor& fx, const CCAFactor& fy, bool vectors);

// Everything below M = Qxᵀ·Qy and the R factors is shared with the streaming path, which gets M and
// R from accumulated cross-products instead of from Q.

// The canonical correlations (singular values of M) and, when asked, the coefficients A and B.
CCAResult cca_from_m(MatD m, bool vectors);

// Projection weights (Morcos et al. 2018): α_i = Σ_j |⟨h_i, x_j⟩|, h_i = Qx·a_i the i-th canonical
// variate and x_j the j-th centred column; since Qxᵀ·Xc = R this is the row sum of |Aᵀ·R|.
VecD projection_weights(const MatD& r, const MatD& a);
VecD projection_weights(const CCAFactor& f, const MatD& a);

// SVCCA's basis: the top-k left singular vectors U_k of R (rank×k), k the smallest number whose share
// of the total (variance: Σσ², or singular values: Σσ) reaches `keep`. The reduced factor has
// Q' = Q·U_k and R' = U_kᵀ·R, so M' = U_kxᵀ·M·U_ky.
MatD svcca_basis(const MatD& r, double keep, bool on_variance);

// SVCCA's reduction: the factor of the top-k principal components of x (see svcca_basis).
CCAFactor svcca_reduce(const CCAFactor& f, double keep, bool on_variance);

}  // namespace reprsim

namespace reprsim {

// Default rank tolerance: max(n, p)·ε of the input's dtype (numpy.linalg.matrix_rank's rule, applied
// to the pivoted-QR diagonal).
template <class T>
double default_rank_rtol(Index n, Index p) {
    return double(std::max(n, p)) * double(std::numeric_limits<T>::epsilon());
}

enum class CCAStat { Mean, MeanSq, PWCCAX, PWCCAY, PWCCASmaller };

// A summary of the canonical correlations of a pair: mean ρ, mean ρ², or PWCCA with projection
// weights from x, from y, or from the narrower input (ties: x).
double cca_statistic(const CCAFactor& fx, const CCAFactor& fy, CCAStat stat);

// The same statistic from M = Qxᵀ·Qy and the R factors of inputs of widths px and py.
double cca_statistic_from_m(MatD m, const MatD& rx, const MatD& ry, Index px, Index py, CCAStat stat);

}  // namespace reprsim
