// Kernel CKA with the RBF kernel (Kornblith et al. 2019).
//
// k(a, b) = exp(−‖a − b‖² / (2σ²)) with σ² = threshold² · s, s a summary of the squared distances
// between the samples: their median over distinct pairs (the default), their mean, or the median over
// all n² entries including the zero diagonal (the rule of Kornblith et al.'s published notebook). A
// fixed σ is also accepted. The n×n matrices are built in row blocks from the centred rows (distances
// are translation-invariant, and centring keeps ‖a‖² + ‖b‖² − 2aᵀb from cancelling).
#pragma once

#include "reprsim/common.hpp"

#include <string>

namespace reprsim {

enum class BandwidthRule { Median, Mean, MedianFull, Fixed };

BandwidthRule parse_bandwidth_rule(const std::string& rule);

// A symmetric n×n matrix held by its upper triangle (row-major; entries below the diagonal are not
// meaningful), with its float64 row sums.
struct SymmetricMatrix {
    MatR<double> upper;
    VecD row_sums;
    Index n() const { return upper.rows(); }
};

// Squared Euclidean distances between the rows of x (n×n, symmetric, zero diagonal), float64, in full.
template <class T>
MatD squared_distances(const View<T>& x, const char* name);

// The summary s of the squared distances (upper triangle of sqd) named by `rule` (not Fixed): the
// median or mean over distinct pairs, or the median over all n² entries. Medians by selection
// (std::nth_element, O(n²)), numpy's convention for an even count (the mean of the two middle values).
double distance_scale(const MatR<double>& sqd_upper, BandwidthRule rule);

// The RBF Gram matrix of x: σ² = threshold²·s for a rule, or σ² = sigma² for BandwidthRule::Fixed.
template <class T>
SymmetricMatrix rbf_gram(const View<T>& x, BandwidthRule rule, double threshold, double sigma, const char* name);

// CKA of two kernel matrices. Biased: ⟨HKH, HLH⟩ / (‖HKH‖_F ‖HLH‖_F), the double centring applied
// entry by entry in float64 in one pass over the two upper triangles. Debiased: the U-statistic HSIC₁
// of the raw matrices in numerator and denominators (Song et al. 2012).
double kernel_cka(const SymmetricMatrix& k, const SymmetricMatrix& l, bool debiased);

}  // namespace reprsim
