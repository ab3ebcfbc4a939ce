// Column centring with float64 means, into a contiguous copy.
//
// The column sums double as the finiteness check: a NaN or Inf anywhere in a column makes its
// float64 sum non-finite, so the check costs nothing beyond the pass that computes the means.
// Both passes are memory-bound; on large inputs they split the rows over as many threads as the BLAS
// is allowed (std::thread, no OpenMP), and the squared norms of the centred rows are formed in the
// centring pass instead of a third one.
#pragma once

#include "reprsim/blas.hpp"
#include "reprsim/common.hpp"
#include "reprsim/interrupt.hpp"

#include <algorithm>
#include <thread>
#include <type_traits>
#include <vector>

namespace reprsim {

// How many row ranges for_row_ranges uses: up to the BLAS's thread count when there are at least
// `min_elements` elements (n·p) to touch, else one.
inline Index row_range_count(Index n, Index p, Index min_elements = Index(1) << 21) {
    if (n * p < min_elements || n < 2) return 1;
    return std::min<Index>(std::max(1, blas::get_num_threads()), std::min<Index>(n, 16));
}

// Calls f(range, first_row, end_row) over [0, n) split into row_range_count(n, p, min_elements)
// ranges, each on its own thread (the first on this one). Large inputs go through in blocks of rows,
// each block split over the ranges, with an interruption check between blocks (a pass over gigabytes
// takes seconds); range t always gets the t-th part of each block, in block order, so per-range partial
// sums come out the same for the same thread count.
template <class F>
void for_row_ranges(Index n, Index p, F&& f, Index min_elements = Index(1) << 21) {
    const Index ranges = row_range_count(n, p, min_elements);
    constexpr Index kBlockElements = Index(1) << 24;
    const Index block =
        std::max<Index>(ranges, std::min<Index>(n, std::max<Index>(1, kBlockElements / std::max<Index>(p, 1))));
    for (Index b0 = 0; b0 < n; b0 += block) {
        if (b0 > 0) check_interrupt();
        const Index b1 = std::min(n, b0 + block), len = b1 - b0;
        const Index step = (len + ranges - 1) / ranges;
        std::vector<std::thread> pool;
        for (Index t = 1; t < ranges; ++t) {
            const Index r0 = std::min(b1, b0 + t * step), r1 = std::min(b1, r0 + step);
            pool.emplace_back([&f, t, r0, r1] { f(t, r0, r1); });
        }
        f(Index(0), b0, std::min(b1, b0 + step));
        for (auto& th : pool) th.join();
    }
}

// One pass over v: float64 column sums, minima and maxima; throws if any column sum is not finite.
struct ColumnPass {
    VecD sum, lo, hi;
};

template <class T>
ColumnPass column_pass(const View<T>& v, const char* name) {
    // Partial sums (and extremes) per range, combined in range order (the same result for the same
    // thread count). Extremes are kept in T (exact: they are input values), which halves the float32
    // work of the pass; only the sums are float64.
    const Index ranges = row_range_count(v.n, v.p);
    constexpr T inf = std::numeric_limits<T>::infinity();
    using VecT = Eigen::Matrix<T, Eigen::Dynamic, 1>;
    std::vector<VecD> partial(ranges, VecD::Zero(v.p));
    std::vector<VecT> low(ranges, VecT::Constant(v.p, inf)), high(ranges, VecT::Constant(v.p, -inf));
    for_row_ranges(v.n, v.p, [&](Index t, Index r0, Index r1) {
        double* s = partial[t].data();
        T* lo = low[t].data();
        T* hi = high[t].data();
        for (Index i = r0; i < r1; ++i) {
            const T* row = v.data + i * v.row_stride;
            if (v.col_stride == 1) {  // contiguous rows: loops the compiler vectorises
                for (Index j = 0; j < v.p; ++j) s[j] += static_cast<double>(row[j]);
                for (Index j = 0; j < v.p; ++j) {
                    const T a = row[j];
                    lo[j] = a < lo[j] ? a : lo[j];
                    hi[j] = a > hi[j] ? a : hi[j];
                }
            } else {
                for (Index j = 0; j < v.p; ++j) {
                    const T a = row[j * v.col_stride];
                    s[j] += static_cast<double>(a);
                    lo[j] = a < lo[j] ? a : lo[j];
                    hi[j] = a > hi[j] ? a : hi[j];
                }
            }
        }
    });
    ColumnPass out{partial[0], low[0].template cast<double>(), high[0].template cast<double>()};
    for (std::size_t t = 1; t < partial.size(); ++t) {
        out.sum += partial[t];
        out.lo = out.lo.cwiseMin(low[t].template cast<double>());
        out.hi = out.hi.cwiseMax(high[t].template cast<double>());
    }
    for (Index j = 0; j < v.p; ++j) {
        if (!std::isfinite(out.sum[j])) {
            fail(name, " contains NaN or Inf (column ", j,
                 "), or values so large that their sum overflows float64; remove or replace them "
                 "(e.g. numpy.nan_to_num) before comparing");
        }
    }
    return out;
}

// Column j's mean times `scale` (a power of two): exactly lo·scale for a column whose entries are all
// equal (a float64 sum of n equal values can round, which would leave rounding noise instead of exact
// zeros after centring, and a constant input would not be seen as constant); otherwise the sum scaled
// before the division, so that the mean of subnormal data is not rounded to the subnormal grid.
inline VecD means_from_pass(const ColumnPass& c, Index n, double scale) {
    VecD mean(c.sum.size());
    for (Index j = 0; j < mean.size(); ++j)
        mean[j] = c.lo[j] == c.hi[j] ? c.lo[j] * scale : (c.sum[j] * scale) / static_cast<double>(n);
    return mean;
}

// Float64 column means of v (see means_from_pass); throws if any column sum is not finite. When
// `spread` is given it receives max_ij |v_ij − mean_j|, the largest magnitude of a centred entry.
template <class T>
VecD column_means(const View<T>& v, const char* name, double* spread = nullptr) {
    const ColumnPass c = column_pass(v, name);
    VecD mean = means_from_pass(c, v.n, 1.0);
    if (spread) {
        double far = 0.0;
        for (Index j = 0; j < v.p; ++j) far = std::max(far, std::max(c.hi[j] - mean[j], mean[j] - c.lo[j]));
        *spread = far;
    }
    return mean;
}

// Centred entries are brought to magnitude [1, 2) by an exact power-of-two factor when their largest
// magnitude lies outside [2^-L, 2^L] for the type T the products run in: L = 40 for float32 (a float32
// product of entries near 1e30 overflows; near 1e-30 it underflows), L = 200 for float64 (where CKA's
// squared Gram entries, fourth powers of the data, overflow near 1e77). Scaling by a power of two is
// exact, and every metric that centres this way (linear CKA, CCA, Procrustes, RBF with a bandwidth
// rule) is invariant to scaling an input, so in-range data are untouched and out-of-range data get
// the value they would have at a moderate scale.
template <class T>
constexpr int safe_exponent() {
    return std::is_same<T, float>::value ? 40 : 200;
}

template <class T>
double safe_scale(double spread) {
    if (!(spread > 0.0)) return 1.0;
    const int e = std::ilogb(spread);
    if (e >= -safe_exponent<T>() && e <= safe_exponent<T>()) return 1.0;
    // Subnormal data (down to 2^-1074) would need a factor beyond the float64 range; 2^1000 already
    // brings them into the safe range.
    return std::ldexp(1.0, std::clamp(-e, -1000, 1000));
}

// out (n×p, row-major with leading dimension ld ≥ p, type T) = v − column means, each difference
// formed in float64. When sq_norms is given, sq_norms[i] receives the float64 squared norm of centred
// row i (as stored, i.e. after rounding to T).
// What centring subtracts and multiplies, column by column: out_ij = v_ij·factor_j − mean_j. For a
// column whose entries are all equal, factor = mean = 0, so its centred entries are exactly 0 (a float64
// sum of n equal values can round, which would leave rounding noise, and a constant input would not be
// seen as constant). Otherwise factor_j = scale, a power of two (1 for data of moderate magnitude), and
// mean_j is the column mean times scale, the sum scaled before the division so that the mean of
// subnormal data is not rounded to the subnormal grid.
struct ScaledMeans {
    VecD mean;
    VecD factor;
    double scale = 1.0;
};

inline ScaledMeans scaled_means_from_pass(const ColumnPass& c, Index n, double scale) {
    ScaledMeans out;
    out.scale = scale;
    const Index p = c.sum.size();
    out.mean.resize(p);
    out.factor.resize(p);
    for (Index j = 0; j < p; ++j) {
        const bool constant = c.lo[j] == c.hi[j];
        out.factor[j] = constant ? 0.0 : scale;
        out.mean[j] = constant ? 0.0 : (c.sum[j] * scale) / static_cast<double>(n);
    }
    return out;
}

// Centring with the entries scaled by safe_scale<Out> (Out: the type the products run in).
template <class Out, class T>
ScaledMeans scaled_column_means(const View<T>& v, const char* name) {
    const ColumnPass c = column_pass(v, name);
    // Half the largest column range (halved so that it cannot overflow): within a factor of two of the
    // largest centred magnitude, which is all the choice of a power of two needs.
    double half_range = 0.0;
    for (Index j = 0; j < v.p; ++j) half_range = std::max(half_range, 0.5 * c.hi[j] - 0.5 * c.lo[j]);
    return scaled_means_from_pass(c, v.n, safe_scale<Out>(half_range));
}

// Centring without scaling (factor 1, or 0 for constant columns).
template <class T>
ScaledMeans unscaled_column_means(const View<T>& v, const char* name) {
    return scaled_means_from_pass(column_pass(v, name), v.n, 1.0);
}

// Rows [r0, r1) of v·factor − mean (see ScaledMeans) into out (row r0 of v is row 0 of out; row-major,
// leading dimension ld ≥ p, type T), each entry formed in float64. When sq_norms is given,
// sq_norms[i − r0] receives the float64 squared norm of centred row i (as stored, i.e. after rounding
// to T). Threads as for_row_ranges with min_elements.
template <class T, class Out>
void center_rows_into(const View<T>& v, const ScaledMeans& sm, Index r0, Index r1, Out* out, Index ld,
                      double* sq_norms = nullptr, Index min_elements = Index(1) << 21) {
    const double* m = sm.mean.data();
    const double* f = sm.factor.data();
    const Index p = v.p;
    for_row_ranges(
        r1 - r0, p,
        [&](Index, Index a, Index b) {
            for (Index k = a; k < b; ++k) {
                const T* row = v.data + (r0 + k) * v.row_stride;
                Out* dst = out + k * ld;
                if (v.col_stride == 1) {
                    for (Index j = 0; j < p; ++j) dst[j] = static_cast<Out>(static_cast<double>(row[j]) * f[j] - m[j]);
                } else {
                    for (Index j = 0; j < p; ++j)
                        dst[j] = static_cast<Out>(static_cast<double>(row[j * v.col_stride]) * f[j] - m[j]);
                }
                if (sq_norms) {
                    // Four independent partial sums: a dependency chain a quarter as long, without
                    // reassociating beyond what is written here.
                    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
                    Index j = 0;
                    for (; j + 4 <= p; j += 4) {
                        const double a0 = dst[j], a1 = dst[j + 1], a2 = dst[j + 2], a3 = dst[j + 3];
                        s0 += a0 * a0;
                        s1 += a1 * a1;
                        s2 += a2 * a2;
                        s3 += a3 * a3;
                    }
                    for (; j < p; ++j) s0 += static_cast<double>(dst[j]) * static_cast<double>(dst[j]);
                    sq_norms[k] = (s0 + s1) + (s2 + s3);
                }
            }
        },
        min_elements);
}

// out (n×p, row-major with leading dimension ld ≥ p, type T) = v·factor − mean (see ScaledMeans), each
// entry formed in float64. When sq_norms is given, sq_norms[i] receives the float64 squared norm of
// centred row i (as stored, i.e. after rounding to T).
template <class T, class Out>
void center_into(const View<T>& v, const ScaledMeans& sm, Out* out, Index ld, double* sq_norms = nullptr) {
    center_rows_into(v, sm, 0, v.n, out, ld, sq_norms);
}

// Rows per panel when a product is fed by centring one panel of rows at a time into a reused buffer
// (instead of a centred copy of the whole input): the buffer holds about 8 MB (it stays in cache while
// the BLAS packs it, and no gigabyte-sized copy is allocated and first-touched), and a panel keeps at
// least 512 rows so that the BLAS runs at full speed on it.
inline Index panel_rows(Index n, Index width, std::size_t itemsize) {
    const Index target = Index((8u << 20) / (std::max<Index>(width, 1) * Index(itemsize)));
    return std::max<Index>(1, std::min(n, std::max<Index>(512, target)));
}

// Centring in panels needs threads from fewer elements than a whole-input pass.
inline constexpr Index kPanelThreadElements = Index(1) << 17;

// The upper triangle of [Xc Yc]ᵀ[Xc Yc] (p × p row-major, p = x.p + y.p) into c: x and y centred side by
// side, one panel of rows at a time, into a reused buffer of type Out whose syrk accumulates into c (the
// products in Out; no centred copy of the inputs). dx, dy (n entries each), when given, receive the squared
// norms of the centred rows.
template <class Out, class T>
void joint_centred_syrk(const View<T>& x, const ScaledMeans& mx, const View<T>& y, const ScaledMeans& my, Out* c,
                        double* dx = nullptr, double* dy = nullptr) {
    const Index n = x.n, p1 = x.p, p = x.p + y.p;
    const Index rows = panel_rows(n, p, sizeof(Out));
    Buffer<Out> z(std::size_t(rows) * std::size_t(p));
    for (Index r0 = 0; r0 < n; r0 += rows) {
        const Index len = std::min(rows, n - r0);
        center_rows_into(x, mx, r0, r0 + len, z.data(), p, dx ? dx + r0 : nullptr, kPanelThreadElements);
        center_rows_into(y, my, r0, r0 + len, z.data() + p1, p, dy ? dy + r0 : nullptr, kPanelThreadElements);
        blas::syrk_t<Out>(len, p, z.data(), p, c, p, r0 > 0);
    }
}

// Column means, then the centred copy into out (leading dimension ld), scaled by safe_scale for the
// product type T. Returns the scale applied. For scale-invariant statistics only.
template <class T>
double center_scaled_into(const View<T>& v, const char* name, T* out, Index ld, double* sq_norms = nullptr) {
    const ScaledMeans m = scaled_column_means<T>(v, name);
    center_into(v, m, out, ld, sq_norms);
    return m.scale;
}

// Centred copy, scaled by safe_scale (see center_scaled_into).
template <class T>
MatR<T> centered(const View<T>& v, const char* name, VecD* sq_norms = nullptr) {
    check_blas_dims(name, v.n, v.p);
    MatR<T> out(v.n, v.p);
    if (sq_norms) sq_norms->resize(v.n);
    center_scaled_into(v, name, out.data(), v.p, sq_norms ? sq_norms->data() : nullptr);
    return out;
}

// Centred copy as a float64 column-major matrix (the layout LAPACK factorises in place), scaled by
// safe_scale<double> (for scale-invariant statistics only).
template <class T>
MatD centered_colmajor_f64(const View<T>& v, const char* name) {
    check_blas_dims(name, v.n, v.p);
    const ScaledMeans m = scaled_column_means<double>(v, name);
    const VecD& mean = m.mean;
    const VecD& factor = m.factor;
    MatD out(v.n, v.p);
    for_row_ranges(v.n, v.p, [&](Index, Index r0, Index r1) {
        for (Index i = r0; i < r1; ++i) {
            const T* row = v.data + i * v.row_stride;
            for (Index j = 0; j < v.p; ++j) out(i, j) = static_cast<double>(row[j * v.col_stride]) * factor[j] - mean[j];
        }
    });
    return out;
}

}  // namespace reprsim
