// Permutation null of linear CKA (biased and debiased) from factors computed once.
//
// Permuting the rows of y by π (row i of the permuted y is row π(i) of y) does not change its column
// means, so the centred features are permuted the same way and the centred Gram becomes
// L_π[i, j] = L[π(i), π(j)]. Everything CKA needs apart from the cross term is invariant: the self
// terms ⟨K, K⟩ and ⟨L, L⟩ (biased), their debiased counterparts, and the sums of the row norms d, e.
// The debiased cross term additionally needs d·e_π = Σ_i d_i e_π(i), O(n).
//
// Cost model, per permutation (setup as one linear_factor per input):
//   Gram space:    ⟨K, L_π⟩ over the upper triangle of K: n(n+1)/2 multiply-adds with L read by
//                  gathered index, no BLAS call, no centring, no product (once L exceeds 8 MiB, each
//                  row L[π(i), :] is first copied into a buffer, n more reads, so that the gathers hit
//                  cache). Permutations are split over n_threads std::threads.
//   feature space: gather Yc[π] (n·p2 copies) and one product XcᵀYc[π] (2·n·p1·p2 flops in the BLAS,
//                  whose own threads do the parallel work), then its squared Frobenius norm.
// choose_null_space picks the cheaper one for the number of permutations. A gathered multiply-add
// costs far more than a flop inside a BLAS product: kGatherCost flops, measured here (one thread,
// n = 2000: Gram and feature space broke even near p1 = p2 = 180, i.e. 2·n·p² = kGatherCost·n²/2).
// Gram space holds n² + n²/2 entries (L in full, K packed).
#pragma once

#include "reprsim/cka.hpp"

#include <cstdint>
#include <memory>

namespace reprsim {

class LinearCKANull {
  public:
    virtual ~LinearCKANull() = default;
    // out[b] = CKA(x, y[perms[b]]) for the count permutations stored row-major in perms (count×n).
    // Each row must be a permutation of 0..n−1 (checked; std::invalid_argument otherwise).
    virtual void evaluate(const std::int64_t* perms, Index count, double* out, int n_threads) const = 0;
    // The mean of CKA(x, y[π]) over all n! permutations, in closed form. Biased: with K, L centred,
    // E⟨K, L_π⟩ = tr K·tr L/n + (Σ_{i≠j} K_ij)(Σ_{i≠j} L_ij)/(n(n−1)) = tr K·tr L/(n−1), since the
    // rows of a centred Gram sum to zero. Debiased: 0, because every term of the U-statistic pairs
    // an off-diagonal K_ij with an off-diagonal entry of L_π whose expectation is the same mean,
    // and the weights of those terms sum to zero.
    virtual double exact_null_mean() const = 0;
    virtual Space space() const = 0;
    virtual Index n() const = 0;
};

inline constexpr double kGatherCost = 64.0;

Space choose_null_space(Index n, Index p1, Index p2, std::size_t itemsize, double n_permutations);

// Centres x and y and forms their factors once, in the given space.
template <class T>
std::unique_ptr<LinearCKANull> make_linear_cka_null(const View<T>& x, const View<T>& y, Space space, bool debiased);

// Checks that every row of perms (count×n) is a permutation of 0..n−1.
void check_permutations(const std::int64_t* perms, Index count, Index n, const char* name);

}  // namespace reprsim
