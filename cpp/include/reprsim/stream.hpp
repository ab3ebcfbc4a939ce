// Exact streaming accumulators for the linear metrics: sufficient statistics, merged pairwise.
//
// For representations x (width p1) and y (width p2) over n rows, every linear metric (biased and
// debiased linear CKA, the CCA family, Procrustes) is a function of a few moments about the mean:
//
//   per layer (x shown; y alike with e_i = ‖y_i − ȳ‖²):
//     mean  x̄                        (p1)
//     c     Σ (x_i − x̄)(x_i − x̄)ᵀ    (p1×p1)        Σ d_i = tr c, d_i = ‖x_i − x̄‖²
//     sum_d2  Σ d_i²                  (scalar)       debiased CKA only
//     sum_ud  Σ (x_i − x̄) d_i         (p1)           needed to merge sum_d2 and the pair terms
//   per pair:
//     cxy   Σ (x_i − x̄)(y_i − ȳ)ᵀ    (p1×p2)
//     sum_de  Σ d_i e_i               (scalar)       debiased CKA only
//     sum_xe  Σ (x_i − x̄) e_i         (p1)           needed to merge sum_de
//     sum_yd  Σ (y_i − ȳ) d_i         (p2)
//
// A batch's moments are taken about the batch mean (centre first, then the products), and two sets
// of moments merge by shifting both to the combined mean (Chan, Golub & LeVeque 1979): with
// u_i = x_i − x̄_a and δ = x̄_a − x̄ the shift of a part's mean, x_i − x̄ = u_i + δ and Σ u_i = 0, so
//   c      → c + n·δδᵀ
//   d_i    → d_i + 2u_iᵀδ + ‖δ‖², which expands the higher moments into the listed statistics.
// Nothing subtracts a running mean from already-summed raw products, so no cancellation is built in.
// Everything is float64, whatever the input dtype (the batch products included: the cross-products
// square the conditioning, and float32 products would limit the CCA rank resolution to √ε₃₂).
#pragma once

#include "reprsim/cka.hpp"
#include "reprsim/common.hpp"

#include <string>
#include <vector>

namespace reprsim {

struct LayerMoments {
    VecD mean;           // p
    MatD c;              // p×p, full symmetric
    double sum_d2 = 0.0;
    VecD sum_ud;         // p
};

struct PairMoments {
    MatD cxy;            // p1×p2
    double sum_de = 0.0;
    VecD sum_xe;         // p1
    VecD sum_yd;         // p2
};

// The moments of k1 x-layers and k2 y-layers over the same rows. An empty state (n = 0) has no
// layers' moments yet (widths are fixed by the first batch).
struct StreamState {
    Index k1 = 1;
    Index k2 = 1;
    double n = 0.0;         // rows seen (a float64 count, exact up to 2**53)
    double rank_eps = 0.0;  // machine epsilon of the least precise input dtype seen (CCA's rank rule)
    std::vector<LayerMoments> x, y;
    std::vector<PairMoments> xy;  // pair (i, j) at i·k2 + j

    bool empty() const { return n == 0.0; }
    Index width_x(Index i) const { return x[i].mean.size(); }
    Index width_y(Index j) const { return y[j].mean.size(); }
    const PairMoments& pair(Index i, Index j) const { return xy[i * k2 + j]; }
};

// Moments of one batch about its own mean; every view has the same number of rows. Throws
// std::invalid_argument (naming the array) on NaN/Inf.
template <class T>
StreamState batch_moments(const std::vector<View<T>>& xs, const std::vector<View<T>>& ys,
                          const std::vector<std::string>& names_x, const std::vector<std::string>& names_y);

// Shared by the streaming states (moments here, the QR factor in factor_state.hpp).
//
// Largest magnitude (a power of two) of the centred entries, and of the gap between two parts' means,
// that the streamed debiased-CKA sums can hold: they keep float64 sums of up to fourth powers of the
// data, so beyond about 1e60 they would overflow (below about 1e-60, underflow).
constexpr int kStreamExponent = 200;

// Throws (naming the array) when a batch's centred entries reach magnitude `spread` outside the range
// above.
void check_stream_spread(double spread, const std::string& name);

// Throws when the means of a layer differ by `gap` beyond the range above between two parts being
// merged (`what`: "update" or "merge"; side "x"/"y", i the layer).
void check_stream_mean_gap(double gap, const char* what, const char* side, Index i);

// Chan's shift of one part's debiased-CKA sums (see the table above) to a mean that differs from the
// part's own by `delta`: d_i → d_i + 2u_iᵀδ + ‖δ‖² with Σu_i = 0. `c_delta` = c·δ and `tr` = tr c are
// taken before the shift, n is the part's rows. Only the sums move; the caller shifts c (or its factor).
void shift_layer_sums(double& sum_d2, VecD& sum_ud, const VecD& delta, const VecD& c_delta, double tr, double n);

// The same for a pair's sums: dx, dy the shifts of the x and y layers, c_dy = cxy·dy and ct_dx =
// cxyᵀ·dx, tr_x and tr_y the traces of the layers' c, all before the shift.
void shift_pair_sums(double& sum_de, VecD& sum_xe, VecD& sum_yd, const VecD& dx, const VecD& dy, const VecD& c_dy,
                     const VecD& ct_dx, double tr_x, double tr_y, double n);

// Throws unless b's widths (and layer counts) match a's; an empty state matches anything.
void check_compatible(const StreamState& a, const StreamState& b, const char* what);

// The moments of the union of the rows of a and b. A pure function of the two states.
StreamState merge(const StreamState& a, const StreamState& b);

// The same, in place: a becomes merge(a, b). After the compatibility check nothing in it throws
// (short of running out of memory), so a validated batch is absorbed whole or not at all.
void merge_into(StreamState& a, StreamState b);

// Statistics of pair (i, j); they throw std::invalid_argument when the value is undefined (constant
// representation, n too small for the estimator).
double stream_cka(const StreamState& s, Index i, Index j, bool debiased, const std::string& name_x,
                  const std::string& name_y);
double stream_procrustes_nuclear(const StreamState& s, Index i, Index j, const std::string& name_x,
                                 const std::string& name_y);

// The R factor of one layer from a pivoted Cholesky factorisation of its c: Pᵀ·c·P = UᵀU, which is
// the R of Xc·P = Q·R up to the signs of its rows (Q = Xc·P₁·U₁₁⁻¹). Only used through M below.
struct CholFactor {
    Index n = 0;
    Index p = 0;
    Index rank = 0;
    std::vector<int> piv;  // pivot order, 0-based
    MatD u11;              // rank×rank upper triangle (pivot order)
    MatD r;                // rank×p, Qᵀ·Xc in the input's column order
    MatD basis;            // SVCCA's basis (rank×k) when reduced, else empty
};

// Rank rule: |R_ii| > tol·|R_11| with tol = max(max(n, p)·rank_eps, √(max(n, p)·ε₆₄)). The first term
// is the in-memory QR's rule; the second is the resolution of float64 cross-products (rounding in c
// is about ε·‖c‖, so R_ii below √ε·R_11 cannot be told from zero).
CholFactor chol_factor(const MatD& c, double n, double rank_eps, const std::string& name);

// Applies SVCCA's reduction (see svcca_basis in cca.hpp).
void chol_svcca_reduce(CholFactor& f, double keep, bool on_variance);

// M = Qxᵀ·Qy = U₁₁ₓ⁻ᵀ·(P₁ₓᵀ·cxy·P₁ᵧ)·U₁₁ᵧ⁻¹ by triangular solves, then SVCCA's bases when reduced.
MatD stream_cross_q(const CholFactor& fx, const CholFactor& fy, const MatD& cxy);

// Minibatch CKA terms of one batch (Nguyen, Raghu & Kornblith 2021): HSIC(K_b, L_b) for every pair and
// HSIC(K_b, K_b), HSIC(L_b, L_b) per layer; the U-statistic HSIC₁ when debiased, else
// HSIC₀ = tr(K H L H)/(n − 1)². Constant batches contribute 0.
struct HSICTerms {
    MatD xy;  // k1×k2
    VecD xx;  // k1
    VecD yy;  // k2
};

template <class T>
HSICTerms batch_hsic(const std::vector<View<T>>& xs, const std::vector<View<T>>& ys, bool debiased,
                     const std::vector<std::string>& names_x, const std::vector<std::string>& names_y);

}  // namespace reprsim
