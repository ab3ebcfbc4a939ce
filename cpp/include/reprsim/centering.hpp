// Column centring with float64 means, into a contiguous copy.
//
// The column sums double as the finiteness check: a NaN or Inf anywhere in a column makes its
// float64 sum non-finite, so the check costs nothing beyond the pass that computes the means.
#pragma once

#include "reprsim/common.hpp"

#include <vector>

namespace reprsim {

// Float64 column means of v; throws if any column sum is not finite.
template <class T>
VecD column_means(const View<T>& v, const char* name) {
    VecD sum = VecD::Zero(v.p);
    double* s = sum.data();
    for (Index i = 0; i < v.n; ++i) {
        const T* row = v.data + i * v.row_stride;
        if (v.col_stride == 1) {  // contiguous rows: a loop the compiler vectorises
            for (Index j = 0; j < v.p; ++j) s[j] += static_cast<double>(row[j]);
        } else {
            for (Index j = 0; j < v.p; ++j) s[j] += static_cast<double>(row[j * v.col_stride]);
        }
    }
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
// formed in float64.
template <class T>
void center_into(const View<T>& v, const VecD& mean, T* out, Index ld) {
    const double* m = mean.data();
    for (Index i = 0; i < v.n; ++i) {
        const T* row = v.data + i * v.row_stride;
        T* dst = out + i * ld;
        if (v.col_stride == 1) {
            for (Index j = 0; j < v.p; ++j) dst[j] = static_cast<T>(static_cast<double>(row[j]) - m[j]);
        } else {
            for (Index j = 0; j < v.p; ++j) dst[j] = static_cast<T>(static_cast<double>(row[j * v.col_stride]) - m[j]);
        }
    }
}

template <class T>
MatR<T> centered(const View<T>& v, const char* name) {
    check_blas_dims(name, v.n, v.p);
    const VecD mean = column_means(v, name);
    MatR<T> out(v.n, v.p);
    center_into(v, mean, out.data(), v.p);
    return out;
}

// Centred copy as a float64 column-major matrix (the layout LAPACK factorises in place).
template <class T>
MatD centered_colmajor_f64(const View<T>& v, const char* name) {
    check_blas_dims(name, v.n, v.p);
    const VecD mean = column_means(v, name);
    MatD out(v.n, v.p);
    for (Index i = 0; i < v.n; ++i) {
        const T* row = v.data + i * v.row_stride;
        for (Index j = 0; j < v.p; ++j) out(i, j) = static_cast<double>(row[j * v.col_stride]) - mean[j];
    }
    return out;
}

// Float64 squared Euclidean norm of each row of a row-major (n×p) matrix with leading dimension ld.
template <class T>
VecD row_sq_norms(const T* x, Index n, Index p, Index ld) {
    VecD d(n);
    for (Index i = 0; i < n; ++i) {
        const T* row = x + i * ld;
        double s = 0.0;
        for (Index j = 0; j < p; ++j) s += static_cast<double>(row[j]) * static_cast<double>(row[j]);
        d[i] = s;
    }
    return d;
}

}  // namespace reprsim
