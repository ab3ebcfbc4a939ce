// Linear CKA (Kornblith et al. 2019), biased and debiased (U-statistic HSIC, Song et al. 2012).
//
// Every representation is reduced once to a factor holding what any comparison needs; a pair then
// costs one cross term. Two equivalent forms:
//   feature space: the centred features Xc (n×p); cross term ‖XcᵀYc‖²_F costs 2·n·p1·p2.
//   Gram space:    the centred Gram K = XcXcᵀ (n×n); cross term ⟨K, L⟩ costs n².
// Feature space is cheaper when the widths are below n, Gram space when they are above.
#pragma once

#include "reprsim/common.hpp"

namespace reprsim {

enum class Space { Feature, Gram };

template <class T>
struct LinearFactor {
    Space space = Space::Feature;
    Index n = 0;
    Index p = 0;
    MatR<T> xc;    // centred features (feature space only)
    MatR<T> gram;  // centred Gram, upper triangle valid (Gram space only)
    VecD d;        // squared norms of the centred rows = diagonal of the centred Gram
    double sum_d = 0.0;
    double self_biased = 0.0;    // ‖XcᵀXc‖²_F = ⟨K, K⟩
    double self_debiased = 0.0;  // n(n−3)·HSIC₁(K, K)
};

// The cheaper form for comparing representations of widths p1, p2 over n samples, and of
// `pairs_per_factor` pair evaluations per factor (1 for a single comparison).
Space choose_space(Index n, Index p1, Index p2, std::size_t itemsize, double pairs_per_factor = 1.0);

template <class T>
LinearFactor<T> linear_factor(const View<T>& x, Space space, bool need_debiased, const char* name);

// ‖XcᵀYc‖²_F = ⟨K, L⟩ (n²·HSIC₀ up to the (n−1)² normalisation).
template <class T>
double linear_cross(const LinearFactor<T>& fx, const LinearFactor<T>& fy);

// n(n−3)·HSIC₁ from the biased cross term and the row norms (centred features; Kornblith et al.).
double debiased_from_cross(double cross, const VecD& d, const VecD& e, double sum_d, double sum_e, Index n);

// The same from sums alone: cross = ‖XcᵀYc‖²_F, sum_de = Σ d_i e_i, sum_d = Σ d_i, sum_e = Σ e_i, with
// d_i, e_i the squared norms of the centred rows.
double debiased_from_sums(double cross, double sum_de, double sum_d, double sum_e, double n);

template <class T>
double linear_cka_pair(const LinearFactor<T>& fx, const LinearFactor<T>& fy, bool debiased);

// n(n−3)·HSIC₁(K, L) of two general (uncentred, symmetric, full) kernel matrices.
double hsic_unbiased_gram(const MatD& k, const MatD& l);

}  // namespace reprsim
