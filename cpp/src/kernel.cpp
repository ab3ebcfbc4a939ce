#include "reprsim/kernel.hpp"

#include "reprsim/blas.hpp"
#include "reprsim/centering.hpp"
#include "reprsim/cka.hpp"
#include "reprsim/interrupt.hpp"

#include <algorithm>
#include <vector>

namespace reprsim {

BandwidthRule parse_bandwidth_rule(const std::string& rule) {
    if (rule == "median") return BandwidthRule::Median;
    if (rule == "mean") return BandwidthRule::Mean;
    if (rule == "median_full") return BandwidthRule::MedianFull;
    fail("bandwidth must be 'median', 'mean', 'median_full' or a positive number (the kernel width sigma), got '",
         rule, "'");
}

namespace {

// Squared distances of the rows of x times scale², with scale = 1 unless `scaled` is given: then the
// power of two of safe_scale<double>, so that the squares neither overflow nor underflow float64.
template <class T>
MatD squared_distances_scaled(const View<T>& x, const char* name, double* scaled) {
    const Index n = x.n, p = x.p;
    check_blas_dims(name, n, p);
    const ScaledMeans m = scaled ? scaled_column_means<double>(x, name) : unscaled_column_means(x, name);
    if (scaled) *scaled = m.scale;
    MatR<double> u(n, p);
    for (Index i = 0; i < n; ++i) {
        const T* row = x.data + i * x.row_stride;
        for (Index j = 0; j < p; ++j) u(i, j) = static_cast<double>(row[j * x.col_stride]) * m.factor[j] - m.mean[j];
    }
    const VecD sq = u.rowwise().squaredNorm();
    MatD d(n, n);
    constexpr Index kBlock = 512;
    for (Index r0 = 0; r0 < n; r0 += kBlock) {
        if (r0 > 0) check_interrupt();
        const Index b = std::min(kBlock, n - r0);
        // Rows r0..r0+b of the row-major Gram U·Uᵀ are columns r0..r0+b of the column-major one
        // (it is symmetric).
        double* g = d.data() + r0 * n;
        blas::gemm_nt<double>(b, n, p, u.data() + r0 * p, p, u.data(), p, g, n);
        for (Index c = 0; c < b; ++c) {
            const Index j = r0 + c;
            double* col = g + c * n;
            for (Index i = 0; i < n; ++i) {
                // Rounding can leave a tiny negative for (nearly) coincident rows; a distance is ≥ 0.
                col[i] = std::max(0.0, sq[i] + sq[j] - 2.0 * col[i]);
            }
            col[j] = 0.0;
        }
    }
    return d;
}

}  // namespace

template <class T>
MatD squared_distances(const View<T>& x, const char* name) {
    return squared_distances_scaled(x, name, nullptr);
}

namespace {

// The median of v (numpy's convention: the mean of the two middle values for an even count).
double median_of(std::vector<double>& v) {
    const std::size_t m = v.size();
    const std::size_t mid = m / 2;
    std::nth_element(v.begin(), v.begin() + mid, v.end());
    const double hi = v[mid];
    if (m % 2 == 1) return hi;
    const double lo = *std::max_element(v.begin(), v.begin() + mid);
    return 0.5 * (lo + hi);
}

}  // namespace

double distance_scale(const MatD& sqd, BandwidthRule rule) {
    const Index n = sqd.rows();
    if (rule == BandwidthRule::Mean) {
        double s = 0.0;
        for (Index j = 0; j < n; ++j)
            for (Index i = 0; i < j; ++i) s += sqd(i, j);
        return s / (0.5 * double(n) * double(n - 1));
    }
    std::vector<double> upper;
    upper.reserve(std::size_t(n) * std::size_t(n - 1) / 2);
    for (Index j = 0; j < n; ++j)
        for (Index i = 0; i < j; ++i) upper.push_back(sqd(i, j));
    if (rule == BandwidthRule::Median) return median_of(upper);
    // All n² entries: n zeros (the diagonal), then every off-diagonal value twice. Entry k of that
    // sorted list is 0 for k < n, else the ((k − n)/2)-th smallest off-diagonal value.
    std::sort(upper.begin(), upper.end());
    const std::size_t total = std::size_t(n) * std::size_t(n);
    auto at = [&](std::size_t k) { return k < std::size_t(n) ? 0.0 : upper[(k - std::size_t(n)) / 2]; };
    return total % 2 == 1 ? at(total / 2) : 0.5 * (at(total / 2 - 1) + at(total / 2));
}

template <class T>
MatD rbf_gram(const View<T>& x, BandwidthRule rule, double threshold, double sigma, const char* name) {
    // The distances come scaled by scale² (a power of two, 1 for data of moderate magnitude): a rule's
    // summary scales alike, and a fixed σ² is scaled to match, so the kernel is unchanged.
    double scale = 1.0;
    MatD k = squared_distances_scaled(x, name, &scale);
    double sigma2 = 0.0;
    if (rule == BandwidthRule::Fixed) {
        sigma2 = (sigma * scale) * (sigma * scale);
    } else {
        const double s = distance_scale(k, rule);
        if (!(s > 0.0)) {
            if (k.maxCoeff() == 0.0) {
                fail(name, " has zero variance (all ", x.n,
                     " samples are identical): the RBF bandwidth and kernel CKA are undefined");
            }
            fail("the ", rule == BandwidthRule::Mean ? "mean" : "median", " squared distance between the samples of ",
                 name, " is 0 (more than half of the pairs are duplicates), so the RBF bandwidth is 0; use "
                 "bandwidth='mean' or a fixed bandwidth");
        }
        sigma2 = threshold * threshold * s;
    }
    // A fixed σ far below the data's scale can make the factor infinite: distances of 0 (the diagonal,
    // duplicated rows) still give exp(0) = 1, every other distance exp(−∞) = 0.
    const double factor = -1.0 / (2.0 * sigma2);
    if (std::isfinite(factor)) {
        k = (k.array() * factor).exp().matrix();
    } else {
        k = k.unaryExpr([](double v) { return v == 0.0 ? 1.0 : 0.0; });
    }
    return k;
}

double kernel_cka(MatD k, MatD l, bool debiased) {
    const Index n = k.rows();
    if (debiased) {
        const double hx = hsic_unbiased_gram(k, k), hy = hsic_unbiased_gram(l, l);
        if (!(hx > 0.0) || !(hy > 0.0)) {
            fail("the debiased HSIC of ", (hx > 0.0 ? "y" : "x"), " with itself is ", (hx > 0.0 ? hy : hx),
                 " (not positive) with n = ", n, " samples, so debiased kernel CKA is undefined; use more samples "
                 "or debiased=False");
        }
        return hsic_unbiased_gram(k, l) / (std::sqrt(hx) * std::sqrt(hy));
    }
    auto double_centre = [n](MatD& g) {
        const VecD r = g.rowwise().mean();
        const double all = r.mean();
        for (Index j = 0; j < n; ++j)
            for (Index i = 0; i < n; ++i) g(i, j) += all - r[i] - r[j];
    };
    double_centre(k);
    double_centre(l);
    const double sk = k.squaredNorm(), sl = l.squaredNorm();
    if (sk == 0.0 || sl == 0.0) {
        fail(sk == 0.0 ? "x" : "y", " has a constant kernel matrix after centring, so kernel CKA is undefined");
    }
    return (k.array() * l.array()).sum() / (std::sqrt(sk) * std::sqrt(sl));
}

template MatD squared_distances<float>(const View<float>&, const char*);
template MatD squared_distances<double>(const View<double>&, const char*);
template MatD rbf_gram<float>(const View<float>&, BandwidthRule, double, double, const char*);
template MatD rbf_gram<double>(const View<double>&, BandwidthRule, double, double, const char*);

}  // namespace reprsim
