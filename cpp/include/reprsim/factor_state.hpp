// A streaming, mergeable QR factor of the centred rows (TSQR): the CCA family at in-memory accuracy.
//
// The moments of stream.hpp square the condition number: a p×p cross-product resolves directions only
// down to about √ε of the largest, so streamed canonical correlations drift once the inputs are
// ill-conditioned. This state keeps, instead of the moments, the upper-triangular R (diag ≥ 0) of
// the centred rows of every layer stacked side by side,
//
//     Z = [X_1 … X_k1  Y_1 … Y_k2] − column means = Q·R,   R (P×P, P = Σ widths),
//
// one joint factor, so that every pair's CCA and every cross moment come from one backward-stable
// factor (the moments are RᵀR; R itself is never squared). Besides R: n, rank_eps (as StreamState),
// the float64 column means of every layer, and the debiased-CKA sums StreamState keeps (Σd², Σu·d per
// layer; Σde, Σx·e, Σy·d per pair), merged with the same Chan shifts (shift_layer_sums and
// shift_pair_sums in stream.hpp).
//
// Merge (Chan et al.'s update in TSQR form): for parts a and b with n = n_a + n_b,
//
//     R = qr([R_a; R_b; √(n_a·n_b/n)·(mean_a − mean_b)]),  diag(R) ≥ 0,
//
// the exact R of the centred union (its Gram matrix is C_a + C_b + (n_a·n_b/n)·ΔΔᵀ), unique once the
// signs are fixed, so the merge is a pure function of the two states and associative up to rounding
// (a tree of merges over shards gives the same R as a chain). A batch is a part whose rows are its
// own: small batches are buffered (rows shifted by the first buffered batch's mean, a float64
// reference point, so that large offsets cancel exactly as when centring a batch about its own
// mean) and flushed, as one part centred about its own mean, once at least flush_rows() rows wait or
// before any read, merge or export; the flush is one structured Householder QR of [R; centred rows;
// shift row] (recursive panels, or LAPACK's dtpqrt below 384 columns), about 2·m·P² flops for m rows:
// twice the m·P² of the moments' products for one pair of layers, and more for several layers, whose
// x–x′ and y–y′ blocks the joint R holds too.
//
// Values: the layer block B_l = R[:, cols_l] has the Gram matrix of the centred layer, so a
// column-pivoted QR of B_l has the pivots and |R_ii| of the in-memory QR of the centred layer (left
// orthogonal factors do not change column norms), and the in-memory rank rule (cca.hpp's rank_rtol)
// makes the same rank decisions. With B_l·P = W_l·T_l, the layer's orthonormal basis is Q·W_l, its
// coordinates T_l, and for a pair M = W_xᵀ·W_y: the CCA family goes through cca.cpp's finalisers.
#pragma once

#include "reprsim/cca.hpp"
#include "reprsim/common.hpp"
#include "reprsim/stream.hpp"

#include <string>
#include <vector>

namespace reprsim {

// The debiased-CKA sums of stream.hpp, per layer (x layers, then y layers) and per pair (i·k2 + j).
struct DebiasedSums {
    std::vector<double> d2;  // per layer: Σd² (d: squared norms of the layer's centred rows)
    std::vector<VecD> ud;    // per layer: Σu·d
    std::vector<double> de;  // per pair: Σd·e
    std::vector<VecD> xe;    // per pair: Σ(x − x̄)·e
    std::vector<VecD> yd;    // per pair: Σ(y − ȳ)·d
};

struct FactorState {
    Index k1 = 1;
    Index k2 = 1;
    double n = 0.0;         // rows in r (flushed)
    double rank_eps = 0.0;  // machine epsilon of the least precise input dtype seen
    std::vector<Index> widths;   // k1 + k2 layer widths, x layers first; empty until the first batch
    std::vector<Index> offsets;  // first column of each layer in the joint factor, then P
    // Per layer, the column means of the flushed rows as unevaluated sums mean + mean_lo (|mean_lo| ≤
    // ulp(mean)/2). Merges subtract means: a mean stored to float64 alone carries an error of ε·|mean|,
    // which the mean-shift row √(n_a·n_b/n)·(mean_a − mean_b) would pass on, to first order, to a column
    // whose spread is small next to its offset (1e-10 around 5: a relative error of 1e-5 in that
    // column's variance); the low-order part makes the difference exact to rounding of the difference.
    std::vector<VecD> mean, mean_lo;
    MatD r;                      // P×P upper triangular, diag ≥ 0 (zero while n = 0)
    DebiasedSums sums;           // of the flushed rows

    // Rows waiting to be flushed: pending (cap×P, column-major, first pending_rows rows used) holds
    // each row minus `reference` (the mean of the first batch buffered).
    MatD pending;
    Index pending_rows = 0;
    VecD reference;

    Index layers() const { return k1 + k2; }
    Index total_width() const { return offsets.empty() ? 0 : offsets.back(); }
    bool has_widths() const { return !widths.empty(); }
    double rows_seen() const { return n + double(pending_rows); }
    bool empty() const { return rows_seen() == 0.0; }
    // Rows buffered before a flush: at least P (the flush costs ~2·m·P² flops for m rows plus a
    // matrix-vector product with R for the debiased sums), at least 256 (LAPACK's blocked QR needs a
    // few panels), at most 4096 (past that the buffer costs memory for no speed).
    Index flush_rows() const;
};

// An empty state over k1 x-layers and k2 y-layers.
FactorState factor_state(Index k1, Index k2);

// Fixes the widths (x layers, then y layers) of an empty state.
void set_widths(FactorState& s, const std::vector<Index>& widths);

// Throws unless b's layer counts and widths match a's (an empty state matches anything).
void check_compatible(const FactorState& a, const FactorState& b, const char* what);

// Validates a batch (every view with the same rows; NaN/Inf and out-of-range magnitudes throw,
// naming the array) and adds it to s: buffered, or flushed with the buffer when enough rows wait.
// A batch that throws leaves s unchanged.
template <class T>
void factor_update(FactorState& s, const std::vector<View<T>>& xs, const std::vector<View<T>>& ys,
                   const std::vector<std::string>& names_x, const std::vector<std::string>& names_y);

// Folds the buffered rows into r.
void flush(FactorState& s);

// The state of the union of the rows of a and b (both flushed first, on copies). A pure function of
// the two states.
FactorState merge(const FactorState& a, const FactorState& b);

// a becomes merge(a, b).
void merge_into(FactorState& a, FactorState b);

// The column block R[:, cols_l] of a flushed state restricted to its non-zero rows (rows
// [0, offsets[l+1])), layer l counted over x layers then y layers.
MatD layer_block(const FactorState& s, Index l, Index rows);

// Moments of a flushed state: cxx of x layer i, cyy of y layer j, cxy of pair (i, j).
MatD factor_cxx(const FactorState& s, Index i);
MatD factor_cyy(const FactorState& s, Index j);
MatD factor_cxy(const FactorState& s, Index i, Index j);

// tr c and ‖c‖²_F of every layer of a flushed state (x layers, then y layers), computed once for all
// pairs.
struct FactorLayerStats {
    std::vector<double> tr, sq;
};
FactorLayerStats factor_layer_stats(const FactorState& s);

// The scalars linear CKA of pair (i, j) needs (see cka_from_sums in stream.hpp).
CKASums factor_cka_sums(const FactorState& s, const FactorLayerStats& st, Index i, Index j);

// ‖cxy‖_* / √(tr cxx · tr cyy) of pair (i, j); throws for a constant layer, or n < 2.
double factor_procrustes_nuclear(const FactorState& s, const FactorLayerStats& st, Index i, Index j,
                                 const std::string& name_x, const std::string& name_y);

// The Procrustes chord ‖x̂ − ŷQ*‖_F of pair (i, j) from the R blocks: x̂ − ŷQ = Q_J·(R_x − R_y·Q) with Q_J
// orthonormal (see procrustes_chord_rows).
double factor_procrustes_chord(const FactorState& s, Index i, Index j);

// A layer's CCA factor from a flushed state: column-pivoted QR of its block of R, the in-memory rank
// rule, SVCCA's reduction when keep > 0 (see svcca_reduce), and the check that the rank stays below
// n − 1. z holds W (rows [0, offsets[l+1])), t SVCCA's basis when reduced, r the coordinates; n is
// the state's row count.
CCAFactor factor_cca_layer(const FactorState& s, Index l, const std::string& name, double keep, bool on_variance);

// M = Qxᵀ·Qy of two layer factors of the same state (x layer first).
MatD factor_cross_m(const CCAFactor& fx, const CCAFactor& fy);

// Throws std::invalid_argument, naming the field, unless s is a consistent state (see from_dict in
// the bindings): shapes, finite values, n a non-negative integer, rank_eps one of 0, ε₃₂ and ε₆₄, r
// upper triangular with a non-negative diagonal, and the debiased sums within rounding of the bounds
// Cauchy–Schwarz puts on them.
void validate(const FactorState& s);

// Bytes of a state's storage (r, the pending buffer, means and sums).
double factor_state_bytes(const FactorState& s);

// For layers of the given widths (x layers, then y layers): the bytes of a state that has seen a batch
// (R, the row buffer, means and sums), and the most that a flush or a read of the values allocates
// besides (the QR workspace of a flush; for the values, each layer's block of R and its orthonormal
// basis, and one pair's moment matrices).
struct FactorEstimate {
    double state_bytes = 0, workspace_bytes = 0;
};
FactorEstimate factor_state_estimate(Index k1, Index k2, const std::vector<Index>& widths);

}  // namespace reprsim
