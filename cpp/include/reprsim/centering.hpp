// Column centring with float64 means, into a contiguous copy.
//
// The column sums double as the finiteness check: a NaN or Inf anywhere in a column makes its
// float64 sum non-finite, so the check costs nothing beyond the pass that computes the means.
// Both passes are memory-bound; on large inputs they split the rows over as many threads as the BLAS
// is allowed (std::thread, no OpenMP), and the squared norms of the centred rows are formed in the
// centring pass instead of a third one.
#pragma once

#include "reprsim/common.hpp"

#include <algorithm>
#include <thread>
#include <vector>

namespace reprsim {

namespace blas {
int get_num_threads();
}

// How many row ranges for_row_ranges uses: up to the BLAS's thread count when there are at least
// `min_elements` elements (n·p) to touch, else one.
inline Index row_range_count(Index n, Index p, Index min_elements = Index(1) << 21) {
    if (n * p < min_elements || n < 2) return 1;
    return std::min<Index>(std::max(1, blas::get_num_threads()), std::min<Index>(n, 16));
}

// Calls f(range, first_row, end_row) for each of row_range_count(n, p) contiguous ranges of [0, n),
// each on its own thread (the first on this one).
template <class F>
void for_row_ranges(Index n, Index p, F&& f) {
    const Index ranges = row_range_count(n, p);
    const Index step = (n + ranges - 1) / ranges;
    std::vector<std::thread> pool;
    for (Index t = 1; t < ranges; ++t) {
        const Index r0 = std::min(n, t * step), r1 = std::min(n, r0 + step);
        pool.emplace_back([&f, t, r0, r1] { f(t, r0, r1); });
    }
    f(Index(0), Index(0), std::min(n, step));
    for (auto& th : pool) th.join();
}

// Float64 column means of v; throws if any column sum is not finite.
template <class T>
VecD column_means(const View<T>& v, const char* name) {
    // Partial sums per range, added in range order (the same result for the same thread count).
    std::vector<VecD> partial(row_range_count(v.n, v.p), VecD::Zero(v.p));
    for_row_ranges(v.n, v.p, [&](Index t, Index r0, Index r1) {
        double* s = partial[t].data();
        for (Index i = r0; i < r1; ++i) {
            const T* row = v.data + i * v.row_stride;
            if (v.col_stride == 1) {  // contiguous rows: a loop the compiler vectorises
                for (Index j = 0; j < v.p; ++j) s[j] += static_cast<double>(row[j]);
            } else {
                for (Index j = 0; j < v.p; ++j) s[j] += static_cast<double>(row[j * v.col_stride]);
            }
        }
    });
    VecD sum = partial[0];
    for (std::size_t t = 1; t < partial.size(); ++t) sum += partial[t];
    for (Index j = 0; j < v.p; ++j) {
        if (!std::isfinite(sum[j])) {
            fail(name, " contains NaN or Inf (column ", j,
                 "), or values so large that their sum overflows float64; remove or replace them "
                 "(e.g. numpy.nan_to_num) before comparing");
        }
    }
    return sum / static_cast<double>(v.n);
}

// out (n×p, row-major with leading dimension ld ≥ p, type T) = v − column means, each difference
// formed in float64. When sq_norms is given, sq_norms[i] receives the float64 squared norm of centred
// row i (as stored, i.e. after rounding to T).
template <class T>
void center_into(const View<T>& v, const VecD& mean, T* out, Index ld, double* sq_norms = nullptr) {
    const double* m = mean.data();
    for_row_ranges(v.n, v.p, [&](Index, Index r0, Index r1) {
        for (Index i = r0; i < r1; ++i) {
            const T* row = v.data + i * v.row_stride;
            T* dst = out + i * ld;
            if (v.col_stride == 1) {
                for (Index j = 0; j < v.p; ++j) dst[j] = static_cast<T>(static_cast<double>(row[j]) - m[j]);
            } else {
                for (Index j = 0; j < v.p; ++j) dst[j] = static_cast<T>(static_cast<double>(row[j * v.col_stride]) - m[j]);
            }
            if (sq_norms) {
                // Four independent partial sums: a dependency chain a quarter as long, without
                // reassociating beyond what is written here.
                double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
                Index j = 0;
                for (; j + 4 <= v.p; j += 4) {
                    const double a0 = dst[j], a1 = dst[j + 1], a2 = dst[j + 2], a3 = dst[j + 3];
                    s0 += a0 * a0;
                    s1 += a1 * a1;
                    s2 += a2 * a2;
                    s3 += a3 * a3;
                }
                for (; j < v.p; ++j) s0 += static_cast<double>(dst[j]) * static_cast<double>(dst[j]);
                sq_norms[i] = (s0 + s1) + (s2 + s3);
            }
        }
    });
}

template <class T>
MatR<T> centered(const View<T>& v, const char* name, VecD* sq_norms = nullptr) {
    check_blas_dims(name, v.n, v.p);
    const VecD mean = column_means(v, name);
    MatR<T> out(v.n, v.p);
    if (sq_norms) sq_norms->resize(v.n);
    center_into(v, mean, out.data(), v.p, sq_norms ? sq_norms->data() : nullptr);
    return out;
}

// Centred copy as a float64 column-major matrix (the layout LAPACK factorises in place).
template <class T>
MatD centered_colmajor_f64(const View<T>& v, const char* name) {
    check_blas_dims(name, v.n, v.p);
    const VecD mean = column_means(v, name);
    MatD out(v.n, v.p);
    for_row_ranges(v.n, v.p, [&](Index, Index r0, Index r1) {
        for (Index i = r0; i < r1; ++i) {
            const T* row = v.data + i * v.row_stride;
            for (Index j = 0; j < v.p; ++j) out(i, j) = static_cast<double>(row[j * v.col_stride]) - mean[j];
        }
    });
    return out;
}

}  // namespace reprsim
