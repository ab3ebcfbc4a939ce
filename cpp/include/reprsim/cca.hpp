// Canonical correlation analysis through QR factorisations (never an inverse covariance).
//
// Each centred input Xc gets an orthonormal basis Q of its column space and R = Qᵀ·Xc; the canonical
// correlations of x and y are the singular values of Qxᵀ·Qy, and x's canonical variates are Qx·A with
// A the left singular vectors. Everything runs in float64, whatever the input dtype. Two routes to Q:
//   Cholesky-QR (fast): C = XcᵀXc by syrk, C = UᵀU (dpotrf), Q = Xc·U⁻¹, R = U. Q is never formed:
//     a pair needs only XcᵀYc (one gemm) between the small triangular factors. Forming XcᵀXc squares the
//     condition number, so this route is taken only when U's estimated condition number is at most
//     1e4 (relative error of the correlations below ~1e-8) and U is positive definite.
//   Householder (robust): column-pivoted QR (dgeqp3), the numerical rank r counting |R_ii| >
//     tol·|R_11|; Q formed explicitly (dorgqr). Used whenever the fast route is not safe, and for
//     rank-deficient inputs.
// Both are represented alike: the basis is Z·T (T absent: the basis is Z itself), so pairs and
// SVCCA's reduction do not care which route a factor took.
#pragma once

#include "reprsim/common.hpp"
#include "reprsim/linalg.hpp"

#include <cmath>
#include <memory>
#include <string>

namespace reprsim {

struct CCAFactor {
    Index n = 0;
    Index p = 0;
    Index rank = 0;
    std::shared_ptr<const MatD> z;  // n×m: the centred data (Cholesky route) or Q (Householder route)
    MatD t;                         // m×rank mixing of z's columns into the basis; empty means identity
    MatD r;                         // rank×p, basisᵀ·Xc (columns in the input's order)
    bool cholesky = false;          // which route built it (for tests and benchmarks)
};

// Largest estimated condition number of the Cholesky factor for which the fast route is used.
constexpr double kCholeskyMaxCondition = 1e4;

// rank_rtol: relative tolerance on |R_ii| / |R_11| below which a direction is numerically zero.
// allow_cholesky = false forces the Householder route.
template <class T>
CCAFactor cca_factor(const View<T>& x, double rank_rtol, const char* name, bool allow_cholesky = true);

// Throws when the rank reaches n − 1, where every canonical correlation is trivially 1.
void require_nontrivial_rank(const CCAFactor& f, const char* name);

struct CCAResult {
    VecD rho;  // canonical correlations, descending, min(rank_x, rank_y) of them
    MatD a;    // rank_x × m coefficients of x's canonical variates in x's basis (when requested)
    MatD b;    // rank_y × m coefficients of y's canonical variates in y's basis (when requested)
};

CCAResult cca_pair(const CCAFactor& fx, const CCAFactor& fy, bool vectors);

// Everything below M = Qxᵀ·Qy and the R factors is shared with the streaming path, which gets M and
// R from accumulated cross-products instead of from Q.

// The canonical correlations (singular values of M) and, when asked, the coefficients A and B.
CCAResult cca_from_m(MatD m, bool vectors);

// Projection weights (Morcos et al. 2018): α_i = Σ_j |⟨h_i, x_j⟩|, h_i = Qx·a_i the i-th canonical
// variate and x_j the j-th centred column; since Qxᵀ·Xc = R this is the row sum of |Aᵀ·R|.
VecD projection_weights(const MatD& r, const MatD& a);

// SVCCA's basis: the top-k left singular vectors U_k of R (rank×k), k the smallest number whose share
// of the total (variance: Σσ², or singular values: Σσ) reaches `keep`. The reduced factor has
// Q' = Q·U_k and R' = U_kᵀ·R, so M' = U_kxᵀ·M·U_ky.
MatD svcca_basis(const MatD& r, double keep, bool on_variance);

// SVCCA's reduction: the factor of the top-k principal components of x (see svcca_basis).
CCAFactor svcca_reduce(const CCAFactor& f, double keep, bool on_variance);

// Rank tolerance, relative to |R_11|: max(n, p)·ε₆₄ for the float64 arithmetic of the factorisation
// (numpy.linalg.matrix_rank's rule), plus √p·ε of the input dtype when the data are less precise than
// float64 (the rounding already in float32 inputs: ‖E‖ ≲ ε₃₂·‖X‖_F ≤ √p·ε₃₂·‖X‖₂). Unlike a rule of
// max(n, p)·ε₃₂, it does not grow with n, so a million float32 rows keep their small directions.
inline double rank_rtol(Index n, Index p, double input_eps) {
    constexpr double eps64 = std::numeric_limits<double>::epsilon();
    const double data = input_eps > eps64 ? std::sqrt(double(p)) * input_eps : 0.0;
    return double(std::max(n, p)) * eps64 + data;
}

template <class T>
double default_rank_rtol(Index n, Index p) {
    return rank_rtol(n, p, double(std::numeric_limits<T>::epsilon()));
}

// The summaries of a pair's canonical correlations ρ₁ ≥ … ≥ ρ_m, m = min(rank_x, rank_y):
//   Mean, MeanSq          mean ρ, mean ρ² over the m correlations;
//   PWCCAX/Y/Smaller      Σαᵢρᵢ / Σαᵢ with projection weights αᵢ = Σⱼ|⟨hᵢ, x̃ⱼ⟩| (Morcos et al. 2018)
//                         from x, y or the narrower input;
//   the "padded" convention, x being the reference: the rank_x − m directions of x's column space
//   that have no canonical correlation with y (the subspace S beyond the m canonical variates) count
//   as 0 in the numerator and carry weight in the normaliser:
//     MeanPadded          Σρᵢ / rank_x,
//     MeanSqPadded        Σρᵢ² / rank_x,
//     PWCCAPadded         Σ_G ρ̄_G·w_G / (Σ_G w_G + w_S), over the groups G of x's canonical directions
//                         with tied correlations (within kTiedCorrelation; without ties every direction
//                         is its own group), ρ̄_G their mean correlation, and for a subspace V of
//                         dimension d (a group's span, or S)
//                             w_V = d·E|u₁|·Σⱼ ‖P_V x̃ⱼ‖,  E|u₁| = Γ(d/2) / (√π·Γ((d+1)/2)),
//                         the expected projection weight Σᵢ Σⱼ |⟨vᵢ, x̃ⱼ⟩| of an orthonormal basis
//                         v₁…v_d of V drawn uniformly at random (each vᵢ is then uniform on V's unit
//                         sphere, and ⟨vᵢ, x̃ⱼ⟩ = ⟨vᵢ, P_V x̃ⱼ⟩). For d = 1 it is Morcos's weight
//                         (the direction is unique up to sign); for large d, ≈ √(2d/π)·Σⱼ‖P_V x̃ⱼ‖.
//   Why an expectation: PWCCA's weights of directions without a preferred basis — S, or tied
//   correlations such as all ρ = 1 when y's column space lies inside x's — depend on the arbitrary
//   basis a full SVD returns (the published code's), while the rest of the statistic does not. The
//   expected weight is rotation-invariant, continuous in the data, equal to Morcos's weight wherever
//   the direction is unique, and the centre of the published rule's spread (any basis gives
//   Σⱼ‖P_V x̃ⱼ‖ ≤ weight ≤ √d·Σⱼ‖P_V x̃ⱼ‖).
//   With rank_x ≤ rank_y and no ties the padded values equal Mean, MeanSq and PWCCAX.
//
// Canonical correlations closer than this form one group in the padded PWCCA: their directions are
// determined by rounding rather than by the data (a gap g leaves them uncertain by ~ε/g).
constexpr double kTiedCorrelation = 1e-8;

enum class CCAStat { Mean, MeanSq, PWCCAX, PWCCAY, PWCCASmaller, MeanPadded, MeanSqPadded, PWCCAPadded };

// "mean", "mean_sq", "pwcca_x", "pwcca_y", "pwcca_smaller", "mean_padded", "mean_sq_padded" or
// "pwcca_padded".
CCAStat cca_stat_from_name(const std::string& name);

// Whether the statistic uses projection weights (PWCCA, any side or padded).
bool is_pwcca(CCAStat stat);

// E|u₁| for u uniform on the unit sphere of R^d (d ≥ 1).
double sphere_mean_abs_coordinate(Index d);

// A summary of the canonical correlations of a pair: mean ρ, mean ρ², or PWCCA with projection
// weights from x, from y, or from the narrower input (ties: x).
double cca_statistic(const CCAFactor& fx, const CCAFactor& fy, CCAStat stat);

// Every summary of a pair from one factorisation and one SVD: the correlations, their mean and mean
// square, and PWCCA weighted from the side `pwcca_stat` names (one of the PWCCA statistics).
// rank_x and rank_y are the numerical ranks used (PWCCA is not unique once rank_x + rank_y > n − 1: the
// column spaces then share at least that excess of directions, canonical correlations tied at 1 whose
// directions, and so weights, are arbitrary).
struct CCASummary {
    VecD rho;
    double mean = 0, mean_sq = 0, pwcca = 0;
    Index rank_x = 0, rank_y = 0;
};
CCASummary cca_summary(const CCAFactor& fx, const CCAFactor& fy, CCAStat pwcca_stat);

// The same statistic from M = Qxᵀ·Qy and the R factors of inputs of widths px and py.
double cca_statistic_from_m(MatD m, const MatD& rx, const MatD& ry, Index px, Index py, CCAStat stat);

// cca_summary from M = Qxᵀ·Qy and the R factors.
CCASummary cca_summary_from_m(MatD m, const MatD& rx, const MatD& ry, Index px, Index py, CCAStat pwcca_stat);

// One pair without factors kept: M = Qxᵀ·Qy and the R factors of the Cholesky-QR route straight from
// the joint cross-product [Xc Yc]ᵀ[Xc Yc], centred one panel of rows at a time into a reused float64
// buffer (no centred copy of either input), M by two triangular solves. Returns false, leaving `out`
// unspecified, where the Cholesky route is not safe for x or y (see cholesky_factor) or a width reaches
// n − 1; the caller then builds the factors (the Householder route, or its errors). Throws the factor
// route's error for an input with zero variance. With keep > 0, SVCCA's reduction is applied to both.
struct CCAPairM {
    MatD m, rx, ry;
    Index px = 0, py = 0;
};
template <class T>
bool cca_pair_m(const View<T>& x, const View<T>& y, double keep, bool on_variance, CCAPairM& out);

}  // namespace reprsim
