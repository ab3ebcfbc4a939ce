#include "reprsim/factor_state.hpp"

#include "reprsim/blas.hpp"
#include "reprsim/centering.hpp"
#include "reprsim/linalg.hpp"
#include "reprsim/procrustes.hpp"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>

namespace reprsim {

namespace {

constexpr double kEps64 = std::numeric_limits<double>::epsilon();
constexpr double kEps32 = double(std::numeric_limits<float>::epsilon());

Index pair_count(const FactorState& s) { return s.k1 * s.k2; }

DebiasedSums zero_sums(const FactorState& s) {
    DebiasedSums z;
    const Index L = s.layers();
    z.d2.assign(L, 0.0);
    z.ud.resize(L);
    for (Index l = 0; l < L; ++l) z.ud[l] = VecD::Zero(s.widths[l]);
    z.de.assign(pair_count(s), 0.0);
    z.xe.resize(pair_count(s));
    z.yd.resize(pair_count(s));
    for (Index i = 0; i < s.k1; ++i) {
        for (Index j = 0; j < s.k2; ++j) {
            z.xe[i * s.k2 + j] = VecD::Zero(s.widths[i]);
            z.yd[i * s.k2 + j] = VecD::Zero(s.widths[s.k1 + j]);
        }
    }
    return z;
}

void add_sums(DebiasedSums& a, const DebiasedSums& b) {
    for (std::size_t l = 0; l < a.d2.size(); ++l) {
        a.d2[l] += b.d2[l];
        a.ud[l] += b.ud[l];
    }
    for (std::size_t k = 0; k < a.de.size(); ++k) {
        a.de[k] += b.de[k];
        a.xe[k] += b.xe[k];
        a.yd[k] += b.yd[k];
    }
}

// The debiased sums of m centred rows (column-major, leading dimension ld) about their own mean.
DebiasedSums part_sums(const FactorState& s, const double* rows, Index m, Index ld) {
    DebiasedSums out = zero_sums(s);
    const Index L = s.layers(), P = s.total_width();
    if (m == 0) return out;
    MatD d = MatD::Zero(m, L);  // squared norms of each row's layer block
    for (Index l = 0; l < L; ++l) {
        for (Index c = s.offsets[l]; c < s.offsets[l + 1]; ++c) {
            const double* col = rows + c * ld;
            for (Index i = 0; i < m; ++i) d(i, l) += col[i] * col[i];
        }
    }
    MatD w(P, L);  // Σ_i u_i·d_il for every column and layer
    blas::dgemm_col(true, false, P, L, m, rows, ld, d.data(), m, w.data(), P);
    for (Index l = 0; l < L; ++l) {
        out.d2[l] = d.col(l).squaredNorm();
        out.ud[l] = w.block(s.offsets[l], l, s.widths[l], 1);
    }
    for (Index i = 0; i < s.k1; ++i) {
        for (Index j = 0; j < s.k2; ++j) {
            const Index k = i * s.k2 + j, ly = s.k1 + j;
            out.de[k] = d.col(i).dot(d.col(ly));
            out.xe[k] = w.block(s.offsets[i], ly, s.widths[i], 1);
            out.yd[k] = w.block(s.offsets[ly], i, s.widths[ly], 1);
        }
    }
    return out;
}

// Shifts the debiased sums of a part whose centred Gram matrix is rowsᵀ·rows (m rows, column-major,
// leading dimension ld) and whose row count is n_part to means moved by delta (one vector per layer).
// The products c·δ and cxy·δ come from T = [rows_l·δ_l]_l and G = rowsᵀ·T (one product for all).
void shift_part_sums(DebiasedSums& sums, const FactorState& s, const double* rows, Index m, Index ld,
                     const std::vector<VecD>& delta, double n_part) {
    const Index L = s.layers(), P = s.total_width();
    MatD t = MatD::Zero(m, L);
    std::vector<double> tr(L, 0.0);
    for (Index l = 0; l < L; ++l) {
        for (Index c = 0; c < s.widths[l]; ++c) {
            const double* col = rows + (s.offsets[l] + c) * ld;
            const double dl = delta[l][c];
            double sq = 0.0;
            for (Index i = 0; i < m; ++i) {
                t(i, l) += col[i] * dl;
                sq += col[i] * col[i];
            }
            tr[l] += sq;
        }
    }
    MatD g(P, L);
    blas::dgemm_col(true, false, P, L, m, rows, ld, t.data(), m, g.data(), P);
    for (Index i = 0; i < s.k1; ++i) {
        for (Index j = 0; j < s.k2; ++j) {
            const Index k = i * s.k2 + j, ly = s.k1 + j;
            const VecD c_dy = g.block(s.offsets[i], ly, s.widths[i], 1);
            const VecD ct_dx = g.block(s.offsets[ly], i, s.widths[ly], 1);
            shift_pair_sums(sums.de[k], sums.xe[k], sums.yd[k], delta[i], delta[ly], c_dy, ct_dx, tr[i], tr[ly],
                            n_part);
        }
    }
    for (Index l = 0; l < L; ++l) {
        const VecD c_d = g.block(s.offsets[l], l, s.widths[l], 1);
        shift_layer_sums(sums.d2[l], sums.ud[l], delta[l], c_d, tr[l], n_part);
    }
}

// QR of a triangle on a dense block, [R; B] = Q·[R'; 0] with R (n×n upper triangular, leading dimension
// ldr) and B (m×n, ldb), recursively (Elmroth & Gustavson 2000): the left half of the columns is
// factored, its reflectors applied to the right half as two matrix products through the compact WY form
// Q₁ = I − V₁T₁V₁ᵀ (V₁ = [I; B's reflectors]), then the right half is factored. Level-2 work is left
// only in the leaves (LAPACK's dtpqrt2 on at most kQRLeaf columns), so the products run with inner
// dimensions of up to n/2 instead of LAPACK's dtpqrt panel width (16-64). R receives R' (diagonal of
// either sign), B the reflectors, t (ldt ≥ n) the T of Q when need_t. work: ⌈n/2⌉·n doubles.
constexpr Index kQRLeaf = 16;

void qr_triangle_on_block(Index m, Index n, double* r, Index ldr, double* b, Index ldb, double* t, Index ldt,
                          bool need_t, double* work) {
    if (n <= kQRLeaf) {
        blas::tpqrt2(m, n, 0, r, ldr, b, ldb, t, ldt);
        return;
    }
    const Index n1 = n / 2, n2 = n - n1;
    qr_triangle_on_block(m, n1, r, ldr, b, ldb, t, ldt, true, work);
    // [R12; B2] ← Q₁ᵀ·[R12; B2] = [R12; B2] − V₁·W, W = T₁ᵀ·(R12 + B_v1ᵀ·B2).
    double* r12 = r + n1 * ldr;
    double* b2 = b + n1 * ldb;
    for (Index c = 0; c < n2; ++c) std::copy(r12 + c * ldr, r12 + c * ldr + n1, work + c * n1);
    blas::dgemm_col_acc(true, false, n1, n2, m, 1.0, b, ldb, b2, ldb, 1.0, work, n1);
    blas::trmm_upper(true, true, n1, n2, 1.0, t, ldt, work, n1);
    for (Index c = 0; c < n2; ++c)
        for (Index i = 0; i < n1; ++i) r12[i + c * ldr] -= work[i + c * n1];
    blas::dgemm_col_acc(false, false, m, n2, n1, -1.0, b, ldb, work, n1, 1.0, b2, ldb);
    qr_triangle_on_block(m, n2, r + n1 + n1 * ldr, ldr, b2, ldb, t + n1 + n1 * ldt, ldt, need_t, work);
    if (need_t) {
        // T₁₂ = −T₁·(V₁ᵀV₂)·T₂; the reflectors' unit parts sit in disjoint rows of R, so V₁ᵀV₂ = B_v1ᵀ·B_v2.
        double* t12 = t + n1 * ldt;
        blas::dgemm_col_acc(true, false, n1, n2, m, 1.0, b, ldb, b2, ldb, 0.0, t12, ldt);
        blas::trmm_upper(true, false, n1, n2, -1.0, t, ldt, t12, ldt);
        blas::trmm_upper(false, false, n1, n2, 1.0, t + n1 + n1 * ldt, ldt, t12, ldt);
    }
}

// [R; B] = Q·[R'; 0] for R (n×n, ld n) and m dense rows B (ld ldb); R' replaces R. Panels of up to
// kQRPanel columns are factored recursively, each followed by the update of the columns right of it
// (matrix products with inner dimensions m and the panel width): the extra flops of the T blocks stay
// within the panels, and the workspace is O(kQRPanel·n) whatever n.
// Below kQRRecursiveFrom columns LAPACK's blocked dtpqrt is as fast (measured with one OpenBLAS thread
// on x86-64: n = 128, m = 256: 28 vs 25 GFLOP/s; n = 512: 35 vs 34; n = 1024: 41 vs 45; n = 2048,
// m = 2048-4096: 40-43 vs 54-57, where a syrk of the same rows runs at 61-69).
constexpr Index kQRPanel = 256;
constexpr Index kQRRecursiveFrom = 384;

void qr_triangle_on_rows(Index m, Index n, double* r, double* b, Index ldb) {
    if (m == 0 || n == 0) return;
    if (n < kQRRecursiveFrom) {
        blas::tpqrt(m, n, 0, r, n, b, ldb);
        return;
    }
    const Index w = std::min(n, kQRPanel);
    std::vector<double> t(std::size_t(w) * std::size_t(w)), work(std::size_t(w) * std::size_t(n));
    for (Index j0 = 0; j0 < n; j0 += w) {
        const Index jw = std::min(w, n - j0), rest = n - j0 - jw;
        double* rp = r + j0 + j0 * n;
        double* bp = b + j0 * ldb;
        qr_triangle_on_block(m, jw, rp, n, bp, ldb, t.data(), w, rest > 0, work.data());
        if (rest == 0) break;
        // [R_right; B_right] ← Qᵀ·[R_right; B_right], R_right the panel's rows right of it.
        double* rr = rp + jw * n;
        double* br = bp + jw * ldb;
        for (Index c = 0; c < rest; ++c) std::copy(rr + c * n, rr + c * n + jw, work.data() + c * jw);
        blas::dgemm_col_acc(true, false, jw, rest, m, 1.0, bp, ldb, br, ldb, 1.0, work.data(), jw);
        blas::trmm_upper(true, true, jw, rest, 1.0, t.data(), w, work.data(), jw);
        for (Index c = 0; c < rest; ++c)
            for (Index i = 0; i < jw; ++i) rr[i + c * n] -= work[i + c * jw];
        blas::dgemm_col_acc(false, false, m, rest, jw, -1.0, bp, ldb, work.data(), jw, 1.0, br, ldb);
    }
}

// diag(R) ≥ 0 (R unique): rows with a negative diagonal change sign.
void fix_signs(MatD& r) {
    const Index P = r.rows();
    for (Index i = 0; i < P; ++i) {
        if (r(i, i) < 0.0) r.row(i).tail(P - i) *= -1.0;
    }
}

// s + e = a + b exactly (Knuth's TwoSum).
inline void two_sum(double a, double b, double& s, double& e) {
    s = a + b;
    const double bb = s - a;
    e = (a - (s - bb)) + (b - bb);
}

// A mean as an unevaluated sum hi + lo (see FactorState::mean_lo).
struct Means {
    std::vector<VecD> hi, lo;
};

// hi + lo = a + b for a vector a and a vector b of small corrections, normalised.
void add_to_means(const VecD& a_hi, const VecD& a_lo, const VecD& t, VecD& hi, VecD& lo) {
    hi.resize(a_hi.size());
    lo.resize(a_hi.size());
    for (Index c = 0; c < a_hi.size(); ++c) {
        double h, e;
        two_sum(a_hi[c], t[c], h, e);
        two_sum(h, e + a_lo[c], hi[c], lo[c]);
    }
}

// (a_hi + a_lo) − (b_hi + b_lo), to the rounding of the difference.
VecD mean_difference(const VecD& a_hi, const VecD& a_lo, const VecD& b_hi, const VecD& b_lo) {
    return (a_hi - b_hi) + (a_lo - b_lo);
}

// Merges a part (n_b rows, means mean_b, sums sums_b, and a factor given by `rows`: m×P column-major
// with leading dimension ld, whose Gram matrix is the part's centred Gram) into s, which has rows.
// When `rows_is_triangle` the part's rows are an upper-triangular P×P R (merge of two states), else
// m dense rows (a flush); the QR exploits either structure. Dense rows must have room for one more
// row at index m (ld > m): the mean-shift row goes there, at the bottom of the stack; a triangle gets
// it on top (which absorb_part copies into a fresh (P+1)×P matrix).
void absorb_part(FactorState& s, double* rows, Index m, Index ld, bool rows_is_triangle, double n_b, Means mean_b,
                 DebiasedSums sums_b) {
    const Index L = s.layers(), P = s.total_width();
    if (s.n == 0.0) {
        // The first part: its own R (the zero R_a adds nothing; the structured QR still applies).
        s.r.setZero(P, P);
        if (rows_is_triangle) {
            blas::tpqrt(m, P, std::min(m, P), s.r.data(), P, rows, ld);
        } else {
            qr_triangle_on_rows(m, P, s.r.data(), rows, ld);
        }
        s.r.triangularView<Eigen::StrictlyLower>().setZero();
        fix_signs(s.r);
        s.n = n_b;
        s.mean = std::move(mean_b.hi);
        s.mean_lo = std::move(mean_b.lo);
        s.sums = std::move(sums_b);
        return;
    }
    const double na = s.n, n = na + n_b, wa = na / n, wb = n_b / n;
    std::vector<VecD> da(L), db(L), diff(L);
    VecD shift(P);
    const double root = std::sqrt(na * n_b / n);
    for (Index l = 0; l < L; ++l) {
        diff[l] = mean_difference(s.mean[l], s.mean_lo[l], mean_b.hi[l], mean_b.lo[l]);
        da[l] = wb * diff[l];
        db[l] = -wa * diff[l];
        shift.segment(s.offsets[l], s.widths[l]) = root * diff[l];
    }
    // Both parts' sums move to the combined mean, each shifted with its own Gram matrix.
    shift_part_sums(s.sums, s, s.r.data(), P, P, da, na);
    shift_part_sums(sums_b, s, rows, m, ld, db, n_b);
    add_sums(s.sums, sums_b);
    if (rows_is_triangle) {
        // B = [shift; R_b]: its first row dense, the P rows below it upper triangular (l = P).
        MatD b(m + 1, P);
        b.row(0) = shift.transpose();
        for (Index c = 0; c < P; ++c)
            for (Index i = 0; i < m; ++i) b(i + 1, c) = rows[i + c * ld];
        blas::tpqrt(m + 1, P, std::min(m, P), s.r.data(), P, b.data(), m + 1);
    } else {
        for (Index c = 0; c < P; ++c) rows[m + c * ld] = shift[c];
        qr_triangle_on_rows(m + 1, P, s.r.data(), rows, ld);
    }
    s.r.triangularView<Eigen::StrictlyLower>().setZero();
    fix_signs(s.r);
    s.n = n;
    // The combined mean mean_a − w_b·Δ, kept as a sum of two parts.
    for (Index l = 0; l < L; ++l) {
        const VecD hi = s.mean[l], lo = s.mean_lo[l];
        add_to_means(hi, lo, -da[l], s.mean[l], s.mean_lo[l]);
    }
}

}  // namespace

Index FactorState::flush_rows() const {
    return std::clamp<Index>(total_width(), 256, 4096);
}

FactorState factor_state(Index k1, Index k2) {
    if (k1 < 1 || k2 < 1) fail("layer counts must be positive, got ", k1, " and ", k2);
    FactorState s;
    s.k1 = k1;
    s.k2 = k2;
    return s;
}

void set_widths(FactorState& s, const std::vector<Index>& widths) {
    if (Index(widths.size()) != s.layers()) throw std::logic_error("set_widths: wrong number of layers");
    s.widths = widths;
    s.offsets.assign(1, 0);
    for (Index w : widths) {
        if (w < 1) fail("every layer needs at least one feature, got width ", w);
        s.offsets.push_back(s.offsets.back() + w);
    }
    check_blas_dims("the joint factor", s.total_width(), s.total_width());
    s.mean.resize(s.layers());
    s.mean_lo.resize(s.layers());
    for (Index l = 0; l < s.layers(); ++l) s.mean[l] = s.mean_lo[l] = VecD::Zero(widths[l]);
    s.r = MatD::Zero(s.total_width(), s.total_width());
    s.sums = zero_sums(s);
    s.pending.resize(0, 0);
    s.pending_rows = 0;
    s.reference.resize(0);
}

void check_compatible(const FactorState& a, const FactorState& b, const char* what) {
    if (a.k1 != b.k1 || a.k2 != b.k2) {
        fail(what, ": the accumulators hold different numbers of layers (", a.k1, " x ", a.k2, " and ", b.k1, " x ",
             b.k2, "); only accumulators over the same layers combine");
    }
    if (!a.has_widths() || !b.has_widths()) return;
    for (Index l = 0; l < a.layers(); ++l) {
        if (a.widths[l] != b.widths[l]) {
            const bool x = l < a.k1;
            fail(what, ": ", x ? "x" : "y", " layer ", x ? l : l - a.k1, " has width ", b.widths[l],
                 " but the accumulator has seen width ", a.widths[l],
                 "; every batch of a layer must have the same number of features");
        }
    }
    if (a.n == 0.0 || b.n == 0.0) return;
    for (Index l = 0; l < a.layers(); ++l) {
        const bool x = l < a.k1;
        check_stream_mean_gap((a.mean[l] - b.mean[l]).cwiseAbs().maxCoeff(), what, x ? "x" : "y", x ? l : l - a.k1);
    }
}

void flush(FactorState& s) {
    const Index m = s.pending_rows;
    if (m == 0) return;
    const Index L = s.layers(), ld = s.pending.rows();
    double* rows = s.pending.data();
    // Centre the buffered rows about their own mean (a constant column is exactly constant: its mean is
    // its value, so that it centres to exact zeros).
    Means mean_b;
    mean_b.hi.resize(L);
    mean_b.lo.resize(L);
    for (Index l = 0; l < L; ++l) {
        mean_b.hi[l].resize(s.widths[l]);
        mean_b.lo[l].resize(s.widths[l]);
        for (Index c = 0; c < s.widths[l]; ++c) {
            const Index col = s.offsets[l] + c;
            double* v = rows + col * ld;
            double sum = 0.0, lo = v[0], hi = v[0];
            for (Index i = 0; i < m; ++i) {
                sum += v[i];
                lo = std::min(lo, v[i]);
                hi = std::max(hi, v[i]);
            }
            const double mu = lo == hi ? lo : sum / double(m);
            for (Index i = 0; i < m; ++i) v[i] = lo == hi ? 0.0 : v[i] - mu;
            two_sum(s.reference[col], mu, mean_b.hi[l][c], mean_b.lo[l][c]);
        }
    }
    DebiasedSums sums_b = part_sums(s, rows, m, ld);
    s.pending_rows = 0;
    absorb_part(s, rows, m, ld, false, double(m), std::move(mean_b), std::move(sums_b));
}

template <class T>
void factor_update(FactorState& s, const std::vector<View<T>>& xs, const std::vector<View<T>>& ys,
                   const std::vector<std::string>& names_x, const std::vector<std::string>& names_y) {
    const Index k1 = Index(xs.size()), k2 = Index(ys.size());
    if (k1 != s.k1 || k2 != s.k2) throw std::logic_error("factor_update: wrong number of layers");
    std::vector<const View<T>*> views;
    std::vector<const std::string*> names;
    for (Index i = 0; i < k1; ++i) views.push_back(&xs[i]), names.push_back(&names_x[i]);
    for (Index j = 0; j < k2; ++j) views.push_back(&ys[j]), names.push_back(&names_y[j]);
    const Index L = s.layers(), nb = views[0]->n;
    // Everything that can throw on this batch happens before s changes.
    std::vector<Index> widths(L);
    std::vector<VecD> mean(L);
    for (Index l = 0; l < L; ++l) {
        const View<T>& v = *views[l];
        check_blas_dims(names[l]->c_str(), v.n, v.p);
        widths[l] = v.p;
        double spread = 0.0;
        mean[l] = column_means(v, names[l]->c_str(), &spread);
        check_stream_spread(spread, *names[l]);
    }
    if (!s.has_widths()) {
        FactorState fresh = factor_state(s.k1, s.k2);
        set_widths(fresh, widths);
        fresh.rank_eps = s.rank_eps;
        s = std::move(fresh);
    } else {
        for (Index l = 0; l < L; ++l) {
            if (widths[l] != s.widths[l]) {
                const bool x = l < k1;
                fail(*names[l], " has width ", widths[l], " but the accumulator has seen width ", s.widths[l],
                     " for this ", x ? "x" : "y", " layer; every batch of a layer must have the same number of features");
            }
        }
        for (Index l = 0; l < L; ++l) {
            const bool x = l < k1;
            if (s.n > 0.0)
                check_stream_mean_gap((s.mean[l] - mean[l]).cwiseAbs().maxCoeff(), "update", x ? "x" : "y",
                                      x ? l : l - k1);
            if (s.pending_rows > 0)
                check_stream_mean_gap((s.reference.segment(s.offsets[l], s.widths[l]) - mean[l]).cwiseAbs().maxCoeff(),
                                      "update", x ? "x" : "y", x ? l : l - k1);
        }
    }
    const Index P = s.total_width(), cap = s.flush_rows();
    if (s.pending.rows() != cap + 1 || s.pending.cols() != P) {
        MatD fresh(cap + 1, P);  // one spare row for the mean shift of the flush
        if (s.pending_rows > 0) fresh.topRows(s.pending_rows) = s.pending.topRows(s.pending_rows);
        s.pending = std::move(fresh);
    }
    s.rank_eps = std::max(s.rank_eps, double(std::numeric_limits<T>::epsilon()));
    const Index ld = cap + 1;
    Index start = 0;
    while (start < nb) {
        if (s.pending_rows == 0) {
            s.reference.resize(P);
            for (Index l = 0; l < L; ++l) s.reference.segment(s.offsets[l], s.widths[l]) = mean[l];
        }
        const Index take = std::min(nb - start, cap - s.pending_rows);
        // Rows minus the reference, in tiles of rows so that strided reads of row-major input stay in cache.
        constexpr Index kTile = 32;
        for (Index t0 = 0; t0 < take; t0 += kTile) {
            const Index t1 = std::min(take, t0 + kTile);
            for (Index l = 0; l < L; ++l) {
                const View<T>& v = *views[l];
                for (Index c = 0; c < v.p; ++c) {
                    const Index col = s.offsets[l] + c;
                    const double ref = s.reference[col];
                    double* dst = s.pending.data() + col * ld + s.pending_rows;
                    const T* src = v.data + (start + t0) * v.row_stride + c * v.col_stride;
                    for (Index i = t0; i < t1; ++i, src += v.row_stride) dst[i] = static_cast<double>(*src) - ref;
                }
            }
        }
        s.pending_rows += take;
        start += take;
        if (s.pending_rows == cap) flush(s);
    }
}

FactorState merge(const FactorState& a, const FactorState& b) {
    FactorState out = a;
    merge_into(out, b);
    return out;
}

void merge_into(FactorState& a, FactorState b) {
    check_compatible(a, b, "merge");
    if (b.empty()) {
        a.rank_eps = std::max(a.rank_eps, b.rank_eps);
        return;
    }
    if (a.empty()) {
        const double eps = std::max(a.rank_eps, b.rank_eps);
        a = std::move(b);
        a.rank_eps = eps;
        return;
    }
    flush(a);
    flush(b);
    check_compatible(a, b, "merge");  // the means now include the flushed rows
    a.rank_eps = std::max(a.rank_eps, b.rank_eps);
    const Index P = a.total_width();
    absorb_part(a, b.r.data(), P, P, true, b.n, Means{std::move(b.mean), std::move(b.mean_lo)}, std::move(b.sums));
}

MatD layer_block(const FactorState& s, Index l, Index rows) {
    return s.r.block(0, s.offsets[l], rows, s.widths[l]);
}

namespace {

// BᵀB of a column-major block.
MatD gram_of_block(const MatD& b) {
    MatD c(b.cols(), b.cols());
    blas::dgemm_col(true, false, b.cols(), b.cols(), b.rows(), b.data(), b.rows(), b.data(), b.rows(), c.data(),
                    b.cols());
    return c;
}

MatD cross_of_blocks(const FactorState& s, Index lx, Index ly) {
    // Both blocks are zero below row max(end_x, end_y)… and the product only needs rows where both
    // can be non-zero: [0, min(end_x, end_y)).
    const Index rows = std::min(s.offsets[lx + 1], s.offsets[ly + 1]);
    const Index px = s.widths[lx], py = s.widths[ly];
    MatD c(px, py);
    blas::dgemm_col(true, false, px, py, rows, s.r.data() + s.offsets[lx] * s.r.rows(), s.r.rows(),
                    s.r.data() + s.offsets[ly] * s.r.rows(), s.r.rows(), c.data(), px);
    return c;
}

void require_flushed(const FactorState& s) {
    if (s.pending_rows != 0) throw std::logic_error("factor state read before a flush");
    if (!s.has_widths()) throw std::logic_error("factor state read before any batch");
}

[[noreturn]] void zero_variance(const std::string& name, double n, const char* consequence) {
    fail(name, " has zero variance (every column is constant over the ", n, " rows seen): ", consequence);
}

}  // namespace

MatD factor_cxx(const FactorState& s, Index i) {
    require_flushed(s);
    return gram_of_block(layer_block(s, i, s.offsets[i + 1]));
}

MatD factor_cyy(const FactorState& s, Index j) {
    require_flushed(s);
    const Index l = s.k1 + j;
    return gram_of_block(layer_block(s, l, s.offsets[l + 1]));
}

MatD factor_cxy(const FactorState& s, Index i, Index j) {
    require_flushed(s);
    return cross_of_blocks(s, i, s.k1 + j);
}

FactorLayerStats factor_layer_stats(const FactorState& s) {
    require_flushed(s);
    FactorLayerStats st;
    for (Index l = 0; l < s.layers(); ++l) {
        const MatD b = layer_block(s, l, s.offsets[l + 1]);
        st.tr.push_back(b.squaredNorm());
        st.sq.push_back(gram_of_block(b).squaredNorm());
    }
    return st;
}

CKASums factor_cka_sums(const FactorState& s, const FactorLayerStats& st, Index i, Index j) {
    require_flushed(s);
    const Index ly = s.k1 + j, k = i * s.k2 + j;
    CKASums m;
    m.n = s.n;
    m.cross = cross_of_blocks(s, i, ly).squaredNorm();
    m.sxx = st.sq[i];
    m.syy = st.sq[ly];
    m.tx = st.tr[i];
    m.ty = st.tr[ly];
    m.sum_d2 = s.sums.d2[i];
    m.sum_e2 = s.sums.d2[ly];
    m.sum_de = s.sums.de[k];
    return m;
}

double factor_procrustes_nuclear(const FactorState& s, const FactorLayerStats& st, Index i, Index j,
                                 const std::string& name_x, const std::string& name_y) {
    require_flushed(s);
    if (s.n < 2.0) fail("the accumulator has seen n = ", s.n, " rows; the Procrustes distance needs at least 2");
    const Index ly = s.k1 + j;
    const char* why = "it cannot be scaled to unit norm, so the Procrustes distance is undefined";
    if (st.tr[i] == 0.0) zero_variance(name_x, s.n, why);
    if (st.tr[ly] == 0.0) zero_variance(name_y, s.n, why);
    const VecD sv = svd(cross_of_blocks(s, i, ly), false).s;
    return sv.sum() / (std::sqrt(st.tr[i]) * std::sqrt(st.tr[ly]));
}

double factor_procrustes_chord(const FactorState& s, Index i, Index j) {
    require_flushed(s);
    const Index ly = s.k1 + j;
    const Index rows = std::max(s.offsets[i + 1], s.offsets[ly + 1]);
    return procrustes_chord_rows(layer_block(s, i, rows), layer_block(s, ly, rows));
}

CCAFactor factor_cca_layer(const FactorState& s, Index l, const std::string& name, double keep, bool on_variance) {
    require_flushed(s);
    const Index rows = s.offsets[l + 1], p = s.widths[l];
    MatD a = layer_block(s, l, rows);
    if (a.squaredNorm() == 0.0) {
        zero_variance(name, s.n, "canonical correlations are undefined for a constant representation");
    }
    CCAFactor f;
    f.n = Index(s.n);
    f.p = p;
    const Index k = std::min(rows, p);
    std::vector<int> jpvt(p);
    VecD tau(k);
    blas::geqp3(rows, p, a.data(), rows, jpvt.data(), tau.data());
    // The in-memory rule (cca_factor): |R_ii| > tol·|R_11| with tol = rank_rtol(n, p, input ε).
    const double tol = rank_rtol(Index(s.n), p, s.rank_eps);
    const double r00 = std::abs(a(0, 0));
    Index rank = 0;
    while (rank < k && std::abs(a(rank, rank)) > tol * r00) ++rank;
    f.rank = rank;
    f.r = MatD::Zero(rank, p);
    for (Index c = 0; c < p; ++c) {
        const Index col = jpvt[c];
        for (Index i = 0; i < std::min<Index>(rank, c + 1); ++i) f.r(i, col) = a(i, c);
    }
    blas::orgqr(rows, rank, a.data(), rows, tau.data());
    f.z = std::make_shared<const MatD>(a.leftCols(rank));
    if (keep > 0) f = svcca_reduce(f, keep, on_variance);
    require_nontrivial_rank(f, name.c_str());
    return f;
}

MatD factor_cross_m(const CCAFactor& fx, const CCAFactor& fy) {
    // W_x and W_y are zero below their own layers' last rows; the product needs the common rows only.
    const Index rows = std::min(fx.z->rows(), fy.z->rows());
    const Index kx = fx.z->cols(), ky = fy.z->cols();
    MatD m(kx, ky);
    blas::dgemm_col(true, false, kx, ky, rows, fx.z->data(), fx.z->rows(), fy.z->data(), fy.z->rows(), m.data(), kx);
    if (fx.t.size() > 0) m = fx.t.transpose() * m;
    if (fy.t.size() > 0) m = m * fy.t;
    return m;
}

namespace {

// Rounding slack of the Cauchy–Schwarz checks on imported sums (relative): far above the rounding of
// float64 sums and shifts, far below any real inconsistency.
constexpr double kSumsSlack = 1e-8;

void check_finite_vec(const VecD& v, const std::string& field) {
    if (!v.allFinite()) fail("state field '", field, "' holds NaN or Inf");
}

}  // namespace

void validate(const FactorState& s) {
    if (s.k1 < 1 || s.k2 < 1) fail("state field 'k1'/'k2': layer counts must be positive, got ", s.k1, " and ", s.k2);
    if (!std::isfinite(s.n) || s.n < 0.0 || s.n != std::floor(s.n) || s.n > 9007199254740992.0) {
        fail("state field 'n' must be a non-negative integer count of rows (at most 2**53), got ", s.n);
    }
    if (!(s.rank_eps == 0.0 || s.rank_eps == kEps32 || s.rank_eps == kEps64)) {
        fail("state field 'rank_eps' must be 0, the float32 epsilon or the float64 epsilon, got ", s.rank_eps);
    }
    if (s.n > 0.0 && s.rank_eps == 0.0) {
        fail("state field 'rank_eps' is 0 but n = ", s.n, " rows were seen; it must be the epsilon of their dtype");
    }
    if (s.pending_rows != 0) throw std::logic_error("validate: a state with buffered rows");
    if (!s.has_widths()) {
        if (s.n != 0.0) fail("state field 'widths_x'/'widths_y' is missing but n = ", s.n);
        return;
    }
    const Index L = s.layers(), P = s.total_width();
    if (s.r.rows() != P || s.r.cols() != P) {
        fail("state field 'r' has shape ", shape_str(s.r.rows(), s.r.cols()), "; the widths sum to ", P,
             " so it must be ", shape_str(P, P));
    }
    if (!s.r.allFinite()) fail("state field 'r' holds NaN or Inf");
    for (Index c = 0; c < P; ++c) {
        for (Index i = c + 1; i < P; ++i) {
            if (s.r(i, c) != 0.0) fail("state field 'r' is not upper triangular (entry (", i, ", ", c, ") is ", s.r(i, c), ")");
        }
        if (s.r(c, c) < 0.0) fail("state field 'r' has a negative diagonal entry at ", c, "; R's diagonal is non-negative");
    }
    if (s.n <= 1.0 && s.r.squaredNorm() != 0.0) fail("state field 'r' is not zero but n = ", s.n, " (no spread)");
    const char* mean_field[2] = {"mean_x", "mean_y"};
    for (Index l = 0; l < L; ++l) {
        const bool x = l < s.k1;
        if (Index(s.mean.size()) != L || s.mean[l].size() != s.widths[l]) {
            fail("state field '", mean_field[x ? 0 : 1], "' does not match the widths");
        }
        check_finite_vec(s.mean[l], mean_field[x ? 0 : 1]);
        const char* lo_field = x ? "mean_x_lo" : "mean_y_lo";
        if (Index(s.mean_lo.size()) != L || s.mean_lo[l].size() != s.widths[l]) {
            fail("state field '", lo_field, "' does not match the widths");
        }
        check_finite_vec(s.mean_lo[l], lo_field);
        for (Index c = 0; c < s.widths[l]; ++c) {
            if (std::abs(s.mean_lo[l][c]) > kEps64 * std::abs(s.mean[l][c])) {
                fail("state field '", lo_field, "' entry ", c, " is ", s.mean_lo[l][c],
                     ", beyond the rounding of the mean's float64 part (", s.mean[l][c], ")");
            }
        }
    }
    const DebiasedSums& z = s.sums;
    if (Index(z.d2.size()) != L || Index(z.ud.size()) != L || Index(z.de.size()) != pair_count(s) ||
        Index(z.xe.size()) != pair_count(s) || Index(z.yd.size()) != pair_count(s)) {
        fail("state fields of the debiased sums do not match the layer counts ", s.k1, " x ", s.k2);
    }
    // Column Gram diagonals and traces from r.
    std::vector<VecD> cdiag(L);
    std::vector<double> tr(L);
    for (Index l = 0; l < L; ++l) {
        cdiag[l] = layer_block(s, l, P).colwise().squaredNorm().transpose();
        tr[l] = cdiag[l].sum();
    }
    const char* d2_field[2] = {"sum_d2", "sum_e2"};
    const char* ud_field[2] = {"sum_xd", "sum_ye"};
    for (Index l = 0; l < L; ++l) {
        const int side = l < s.k1 ? 0 : 1;
        if (z.ud[l].size() != s.widths[l]) fail("state field '", ud_field[side], "' does not match the widths");
        if (!std::isfinite(z.d2[l])) fail("state field '", d2_field[side], "' holds NaN or Inf");
        check_finite_vec(z.ud[l], ud_field[side]);
        // Σd² ≥ (Σd)²/n (Cauchy–Schwarz), Σd = tr c.
        const double lower = s.n > 0.0 ? tr[l] * tr[l] / s.n : 0.0;
        if (z.d2[l] < lower * (1.0 - kSumsSlack)) {
            fail("state field '", d2_field[side], "' is ", z.d2[l], ", below (tr c)²/n = ", lower,
                 " (Cauchy–Schwarz): the sums do not belong to this factor");
        }
        // |Σ u_j d| ≤ √(c_jj·Σd²).
        const double floor = kSumsSlack * std::sqrt(tr[l] * z.d2[l]);
        for (Index c = 0; c < s.widths[l]; ++c) {
            const double bound = std::sqrt(cdiag[l][c] * z.d2[l]);
            if (std::abs(z.ud[l][c]) > bound * (1.0 + kSumsSlack) + floor) {
                fail("state field '", ud_field[side], "' entry ", c, " is ", z.ud[l][c], ", beyond √(c_jj·Σd²) = ", bound,
                     " (Cauchy–Schwarz): the sums do not belong to this factor");
            }
        }
    }
    for (Index i = 0; i < s.k1; ++i) {
        for (Index j = 0; j < s.k2; ++j) {
            const Index k = i * s.k2 + j, ly = s.k1 + j;
            if (z.xe[k].size() != s.widths[i]) fail("state field 'sum_xe' does not match the widths");
            if (z.yd[k].size() != s.widths[ly]) fail("state field 'sum_yd' does not match the widths");
            if (!std::isfinite(z.de[k])) fail("state field 'sum_de' holds NaN or Inf");
            check_finite_vec(z.xe[k], "sum_xe");
            check_finite_vec(z.yd[k], "sum_yd");
            const double bound = std::sqrt(z.d2[i] * z.d2[ly]);
            if (z.de[k] < -kSumsSlack * bound || z.de[k] > bound * (1.0 + kSumsSlack)) {
                fail("state field 'sum_de' (pair ", i, ", ", j, ") is ", z.de[k], ", outside [0, √(Σd²·Σe²)] = [0, ",
                     bound, "] (Cauchy–Schwarz): the sums do not belong to this factor");
            }
            auto check_cross = [&](const VecD& v, const VecD& cd, double tr_self, double d2_other, const char* field) {
                const double floor = kSumsSlack * std::sqrt(tr_self * d2_other);
                for (Index c = 0; c < v.size(); ++c) {
                    const double b = std::sqrt(cd[c] * d2_other);
                    if (std::abs(v[c]) > b * (1.0 + kSumsSlack) + floor) {
                        fail("state field '", field, "' (pair ", i, ", ", j, ") entry ", c, " is ", v[c],
                             ", beyond the Cauchy–Schwarz bound ", b, ": the sums do not belong to this factor");
                    }
                }
            };
            check_cross(z.xe[k], cdiag[i], tr[i], z.d2[ly], "sum_xe");
            check_cross(z.yd[k], cdiag[ly], tr[ly], z.d2[i], "sum_yd");
        }
    }
}

double factor_state_bytes(const FactorState& s) {
    double count = double(s.r.size()) + double(s.pending.size()) + double(s.reference.size());
    for (const auto& m : s.mean) count += 2.0 * double(m.size());
    for (const auto& v : s.sums.ud) count += double(v.size());
    for (const auto& v : s.sums.xe) count += double(v.size());
    for (const auto& v : s.sums.yd) count += double(v.size());
    return 8.0 * count;
}

FactorEstimate factor_state_estimate(Index k1, Index k2, const std::vector<Index>& widths) {
    double P = 0, max_block = 0, max_pair = 0;
    for (Index w : widths) P += double(w);
    Index off = 0;
    for (std::size_t l = 0; l < widths.size(); ++l) {
        off += widths[l];
        // A layer's block of R and its basis W, both (rows up to the layer's end) × width.
        max_block = std::max(max_block, 2.0 * double(off) * double(widths[l]));
    }
    for (Index i = 0; i < k1; ++i)
        for (Index j = 0; j < k2; ++j)
            max_pair = std::max(max_pair, 2.0 * double(widths[i]) * double(widths[k1 + j]));
    const double cap = std::clamp(P, 256.0, 4096.0);
    FactorEstimate e;
    e.state_bytes = 8.0 * (P * P + (cap + 1.0) * P + 6.0 * P + double(k1 * k2) * P);
    const double flush = std::min(P, double(kQRPanel)) * (std::min(P, double(kQRPanel)) + P) + 2.0 * cap * double(widths.size());
    // The values keep every layer's factor (their bases of up to P rows) while pairs are formed.
    double bases = 0;
    off = 0;
    for (Index w : widths) {
        off += w;
        bases += double(off) * double(w) + double(w) * double(w);
    }
    e.workspace_bytes = 8.0 * std::max(flush, bases + max_block + max_pair);
    return e;
}

#define REPRSIM_INSTANTIATE(T)                                                                             \
    template void factor_update<T>(FactorState&, const std::vector<View<T>>&, const std::vector<View<T>>&, \
                                   const std::vector<std::string>&, const std::vector<std::string>&);
REPRSIM_INSTANTIATE(float)
REPRSIM_INSTANTIATE(double)
#undef REPRSIM_INSTANTIATE

}  // namespace reprsim
