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
//   PWCCAX/Y/Smaller      Σαᵢρᵢ / Σαᵢ with projection weights from x, y or the narrower input;
//   the "padded" convention, x being the reference: x's rank_x − m canonical directions that have no
//   correlation (x's column space beyond the m canonical variates) count as 0 in the numerator and
//   carry weight in the normaliser:
//     MeanPadded          Σρᵢ / rank_x,
//     MeanSqPadded        Σρᵢ² / rank_x,
//     PWCCAPadded         Σᵢ αᵢρᵢ / (Σᵢ αᵢ + α_⊥), i ≤ m, with α_⊥ the expected projection weight of an
//                         orthonormal basis of the uncorrelated subspace S (dimension d = rank_x − m)
//                         drawn uniformly at random: α_⊥ = d·E|u₁|·Σⱼ ‖P_S x̃ⱼ‖, u uniform on the unit
//                         sphere of R^d (E|u₁| = Γ(d/2) / (√π·Γ((d+1)/2)); d·E|u₁| = 1 for d = 1, where
//                         the direction is unique and α_⊥ is Morcos's weight, and ≈ √(2d/π) for large d).
//   With rank_x ≤ rank_y nothing is padded and the padded values equal Mean, MeanSq and PWCCAX.
//   Why an expectation: the published code takes S's basis from a full SVD, an arbitrary orthonormal
//   basis, and its weights Σⱼ |⟨hᵢ, x̃ⱼ⟩| depend on that choice; only the numerator is basis-free. Each
//   vector of a uniformly random orthonormal basis of S is uniform on S's unit sphere, so the expected
//   total weight is the expression above: rotation-invariant, continuous in the data, and the centre
//   of the published rule's spread (any basis gives Σⱼ‖P_S x̃ⱼ‖ ≤ weight ≤ √d·Σⱼ‖P_S x̃ⱼ‖).
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

}  // namespace reprsim
