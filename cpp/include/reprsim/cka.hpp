// Linear CKA (Kornblith et al. 2019), biased and debiased (U-statistic HSIC, Song et al. 2012).
//
// Every representation is reduced once to a factor holding what any comparison needs; a pair then
// costs one cross term. Two equivalent forms:
//   feature space: the centred features Xc (n×p); cross term ‖XcᵀYc‖²_F costs 2·n·p1·p2.
//   Gram space:    the centred Gram K = XcXcᵀ (n×n); cross term ⟨K, L⟩ costs 2·n².
// Feature space is cheaper when the widths are below n, Gram space when they are above.
#pragma once

#include "reprsim/common.hpp"

#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace reprsim {

enum class Space { Feature, Gram };

template <class T>
struct LinearFactor {
    Space space = Space::Feature;
    Index n = 0;
    Index p = 0;
    MatR<T> xc;    // centred features (feature space only)
    // Gram space only: the upper triangle of the centred Gram K, row by row, off-diagonal entries scaled
    // by √2, so that ⟨K, L⟩ is the plain dot product of two packed vectors (n(n+1)/2 entries each).
    Eigen::Matrix<T, Eigen::Dynamic, 1> packed;
    VecD d;        // squared norms of the centred rows = diagonal of the centred Gram
    double sum_d = 0.0;
    double self_biased = 0.0;    // ‖XcᵀXc‖²_F = ⟨K, K⟩
    double self_debiased = 0.0;  // n(n−3)·HSIC₁(K, K)
    double scale = 1.0;          // the power of two the centred entries were multiplied by (safe_scale)
};

// The cheaper form for comparing k1 representations of width up to p1 with k2 of width up to p2
// over n samples (k1 = k2 = 1 for a single comparison). Gram space is avoided when its n×n matrices
// would need more than `gram_budget_bytes` together and the feature form needs less.
Space choose_space(Index n, Index p1, Index p2, std::size_t itemsize, Index k1 = 1, Index k2 = 1,
                   double gram_budget_bytes = 4.0 * double(1ull << 30));

// Scratch space of the Gram-space factors (an n×n Gram, a centred copy), kept across the factors of
// one call so that only the first pays for fresh memory.
template <class T>
struct GramWork {
    std::unique_ptr<Buffer<T>> gram, centred;
    static T* get(std::unique_ptr<Buffer<T>>& b, std::size_t count) {
        if (!b || b->size() < count) b = std::make_unique<Buffer<T>>(count);
        return b->data();
    }
};

// `check`: refuse a representation whose (debiased) self term is zero or noise (CKA undefined); a
// minibatch's terms are summed with others', so minibatch CKA builds its factors without the check.
template <class T>
LinearFactor<T> linear_factor(const View<T>& x, Space space, bool need_debiased, const char* name,
                              GramWork<T>* work = nullptr, bool check = true);

// The scalars every CKA-type statistic of a pair is a function of (Cxx = XcᵀXc, Cxy = XcᵀYc, d_i and
// e_i the squared norms of the centred rows): cross = ‖Cxy‖²_F = ⟨K, L⟩, sxx = ‖Cxx‖²_F = ⟨K, K⟩,
// syy = ‖Cyy‖²_F, tx = tr Cxx = Σd_i, ty = tr Cyy, sum_d2 = Σd_i², sum_e2 = Σe_i², sum_de = Σd_i·e_i
// (the last three only for the debiased estimator). scale_x, scale_y: the exact powers of two the
// inputs were multiplied by before the products (see centering.hpp; 1 when unscaled), for statistics
// that are not scale-invariant. eps: the rounding unit of the products the sums were formed with.
struct CKASums {
    double n = 0, cross = 0, sxx = 0, syy = 0, tx = 0, ty = 0, sum_d2 = 0, sum_e2 = 0, sum_de = 0;
    double scale_x = 1, scale_y = 1;
    double eps = std::numeric_limits<double>::epsilon();
};

// Linear CKA from its sums (biased, or the U-statistic HSIC₁ of Song et al. when debiased). Throws
// std::invalid_argument, naming the representation, for a constant representation, too few rows, or
// a debiased self term that is not positive beyond the rounding of its terms. The one finaliser of
// linear CKA: the in-memory, pairwise, streaming and device paths all reduce to these sums.
double cka_from_sums(const CKASums& m, bool debiased, const std::string& name_x, const std::string& name_y);

// One comparison in feature space: x and y are centred side by side, one panel of rows at a time, into
// a reused (rows × (p1+p2)) buffer whose syrk accumulates XcᵀXc, YcᵀYc and XcᵀYc (4·n·p² flops for
// p1 = p2 = p; no centred copy of the inputs). Biased: tx, ty from the diagonal, no row norms.
template <class T>
CKASums linear_cka_sums_joint(const View<T>& x, const View<T>& y, bool debiased);

// One comparison in Gram space: ⟨K, L⟩, ⟨K, K⟩, ⟨L, L⟩ over the upper triangles of the centred Grams,
// built one tile of rows at a time and summed in float64 while in cache (2·n²·p flops for p1 = p2 = p;
// centred copies of the inputs and two tiles of at most 16 MB, never a whole n×n Gram).
template <class T>
CKASums linear_cka_sums_gram(const View<T>& x, const View<T>& y, bool debiased);

// The sums of pair (fx, fy) from its cross term ‖XcᵀYc‖²_F and the two factors.
template <class T>
CKASums linear_cka_sums_from_cross(double cross, const LinearFactor<T>& fx, const LinearFactor<T>& fy);

// n(n−3)·HSIC₁ from the biased cross term and the row norms (centred features; Kornblith et al.).
double debiased_from_cross(double cross, const VecD& d, const VecD& e, double sum_d, double sum_e, Index n);

// The same from sums alone: cross = ‖XcᵀYc‖²_F, sum_de = Σ d_i e_i, sum_d = Σ d_i, sum_e = Σ e_i, with
// d_i, e_i the squared norms of the centred rows.
double debiased_from_sums(double cross, double sum_de, double sum_d, double sum_e, double n);


// k1×k2 matrix (row-major) of the cross terms ‖XcᵀYc‖²_F of every pair. Feature space: one gemm of
// each x against all y side by side. Gram space: all ⟨K_i, L_j⟩ at once, reading each Gram once in
// blocks (gemm over blocks of the packed triangles, accumulated in float64 across blocks).
template <class T>
MatR<double> linear_cross_matrix(const std::vector<LinearFactor<T>>& fx, const std::vector<LinearFactor<T>>& fy);

// The k1×k2 cross terms ⟨K_i, L_j⟩ of every pair in Gram space without any n×n Gram held whole: each
// input is centred once (a copy), then for every block (r, c ≥ r) of b×b Gram entries each layer's
// tile is one product (syrk on the diagonal blocks), and all layers' tiles together give every pair's
// inner product over that block: one syrk of the stacked tiles for xs against itself, one gemm of the x
// tiles against the y tiles (and a dot per layer for the self terms) for xs against ys; summed in
// float64 across blocks. Cost: n²·p per layer, as for whole Grams, with O(layers·b²) scratch instead of
// O(layers·n²) and no pass over whole Grams. With ys absent the matrix is of xs against itself. fx, fy
// receive each layer's statistics (row norms, self terms; no features, no packed Gram) for
// linear_cka_sums_from_cross.
template <class T>
MatR<double> linear_cross_matrix_gram_blocked(const std::vector<View<T>>& xs, const std::vector<View<T>>* ys,
                                              const std::vector<std::string>& names_x,
                                              const std::vector<std::string>& names_y, bool debiased,
                                              std::vector<LinearFactor<T>>& fx, std::vector<LinearFactor<T>>& fy);

// n(n−3)·HSIC₁(K, L) of two general (uncentred, symmetric, full) kernel matrices.
double hsic_unbiased_gram(const MatD& k, const MatD& l);

// The HSIC terms of one minibatch of every layer pair (minibatch CKA, Nguyen et al. 2021): xy (k1×k2),
// xx (k1), yy (k2); HSIC₀ = ⟨HKH, HLH⟩/(n−1)² or, debiased, HSIC₁. The products run in T (float32 inputs:
// float32 products of data centred in float64, summed in float64), on the cheaper of the feature and
// Gram forms, each layer's factor built once.
struct BatchHSIC {
    MatD xy;
    VecD xx, yy;
};
template <class T>
BatchHSIC minibatch_hsic(const std::vector<View<T>>& xs, const std::vector<View<T>>& ys, bool debiased,
                         const std::vector<std::string>& names_x, const std::vector<std::string>& names_y);

}  // namespace reprsim
