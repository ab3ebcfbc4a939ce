#include "reprsim/kernel.hpp"

#include "reprsim/blas.hpp"
#include "reprsim/centering.hpp"
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

// Upper triangle (row-major n×n) of the squared distances of the rows of x times scale², with scale = 1
// unless `scaled` is given: then the power of two of safe_scale<double>, so that the squares neither
// overflow nor underflow float64. The Gram U·Uᵀ of the centred rows is built in tiles of rows (a syrk
// for the diagonal block, a gemm to its right), each turned into distances while it is in cache.
template <class T>
MatR<double> squared_distances_upper(const View<T>& x, const char* name, double* scaled) {
    const Index n = x.n, p = x.p;
    check_blas_dims(name, n, p);
    const ScaledMeans m = scaled ? scaled_column_means<double>(x, name) : unscaled_column_means(x, name);
    if (scaled) *scaled = m.scale;
    MatR<double> u(n, p);
    VecD sq(n);
    center_into(x, m, u.data(), p, sq.data());
    MatR<double> d(n, n);
    const Index rows = std::min<Index>(n, std::max<Index>(128, Index((4u << 20) / (std::size_t(n) * sizeof(double)))));
    for (Index r0 = 0; r0 < n; r0 += rows) {
        check_interrupt();
        const Index b = std::min(rows, n - r0), r1 = r0 + b;
        double* g = d.data() + r0 * n + r0;  // the tile's diagonal block starts at (r0, r0)
        blas::syrk_n<double>(b, p, u.data() + r0 * p, p, g, n);
        if (r1 < n) blas::gemm_nt<double>(b, n - r1, p, u.data() + r0 * p, p, u.data() + r1 * p, p, g + b, n);
        for (Index i = r0; i < r1; ++i) {
            double* row = d.data() + i * n;
            row[i] = 0.0;
            for (Index j = i + 1; j < n; ++j) {
                // Rounding can leave a tiny negative for (nearly) coincident rows; a distance is ≥ 0.
                row[j] = std::max(0.0, sq[i] + sq[j] - 2.0 * row[j]);
            }
        }
    }
    return d;
}

// The k-th smallest (0-based) of v, reordering v.
double kth(std::vector<double>& v, std::size_t k) {
    std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(k), v.end());
    return v[k];
}

// The largest of v[0, k), which after kth(v, k) are the k smallest: the (k−1)-th smallest.
double below(const std::vector<double>& v, std::size_t k) {
    return *std::max_element(v.begin(), v.begin() + std::ptrdiff_t(k));
}

}  // namespace

template <class T>
MatD squared_distances(const View<T>& x, const char* name) {
    const MatR<double> d = squared_distances_upper(x, name, nullptr);
    const Index n = d.rows();
    MatD out(n, n);
    for (Index j = 0; j < n; ++j) {
        for (Index i = 0; i < j; ++i) out(i, j) = out(j, i) = d(i, j);
        out(j, j) = 0.0;
    }
    return out;
}

double distance_scale(const MatR<double>& sqd, BandwidthRule rule) {
    const Index n = sqd.rows();
    if (rule == BandwidthRule::Mean) {
        double s = 0.0;
        for (Index i = 0; i < n; ++i)
            for (Index j = i + 1; j < n; ++j) s += sqd(i, j);
        return s / (0.5 * double(n) * double(n - 1));
    }
    std::vector<double> upper;
    upper.reserve(std::size_t(n) * std::size_t(n - 1) / 2);
    for (Index i = 0; i < n; ++i) upper.insert(upper.end(), sqd.data() + i * n + i + 1, sqd.data() + (i + 1) * n);
    const std::size_t m = upper.size();
    if (rule == BandwidthRule::Median) {
        // numpy's median: the middle value, or the mean of the two middle values for an even count.
        const double hi = kth(upper, m / 2);
        return m % 2 == 1 ? hi : 0.5 * (below(upper, m / 2) + hi);
    }
    // All n² entries: n zeros (the diagonal), then every off-diagonal value twice. Entry k of that
    // sorted list is 0 for k < n, else the ((k − n)/2)-th smallest off-diagonal value.
    const std::size_t total = std::size_t(n) * std::size_t(n), nn = std::size_t(n);
    auto rank = [&](std::size_t k) { return (k - nn) / 2; };
    if (total % 2 == 1) {
        const std::size_t k = total / 2;
        return k < nn ? 0.0 : kth(upper, rank(k));
    }
    const std::size_t k1 = total / 2 - 1, k2 = total / 2;
    if (k2 < nn) return 0.0;
    const double v2 = kth(upper, rank(k2));
    double v1 = 0.0;
    if (k1 >= nn) v1 = rank(k1) == rank(k2) ? v2 : below(upper, rank(k2));  // rank(k1) = rank(k2) − 1 here
    return 0.5 * (v1 + v2);
}

template <class T>
SymmetricMatrix rbf_gram(const View<T>& x, BandwidthRule rule, double threshold, double sigma, const char* name) {
    // The distances come scaled by scale² (a power of two, 1 for data of moderate magnitude): a rule's
    // summary scales alike, and a fixed σ² is scaled to match, so the kernel is unchanged.
    double scale = 1.0;
    SymmetricMatrix k;
    k.upper = squared_distances_upper(x, name, &scale);
    MatR<double>& d = k.upper;
    const Index n = d.rows();
    double sigma2 = 0.0;
    if (rule == BandwidthRule::Fixed) {
        sigma2 = (sigma * scale) * (sigma * scale);
    } else {
        const double s = distance_scale(d, rule);
        if (!(s > 0.0)) {
            double far = 0.0;
            for (Index i = 0; i < n; ++i)
                for (Index j = i + 1; j < n; ++j) far = std::max(far, d(i, j));
            if (far == 0.0) {
                fail(name, " has zero variance (all ", x.n,
                     " samples are identical): the RBF bandwidth and kernel CKA are undefined");
            }
            fail("the ", rule == BandwidthRule::Mean ? "mean" : "median", " squared distance between the samples of ",
                 name, " is 0 (more than half of the pairs are duplicates), so the RBF bandwidth is 0; use "
                 "bandwidth='mean' or a fixed bandwidth");
        }
        sigma2 = threshold * threshold * s;
    }
    check_interrupt();
    // A fixed σ far below the data's scale can make the factor infinite: distances of 0 (the diagonal,
    // duplicated rows) still give exp(0) = 1, every other distance exp(−∞) = 0.
    const double factor = -1.0 / (2.0 * sigma2);
    const bool finite = std::isfinite(factor);
    k.row_sums = VecD::Zero(n);
    double* r = k.row_sums.data();
    for (Index i = 0; i < n; ++i) {
        double* row = d.data() + i * n;
        auto tail = Eigen::Map<Eigen::ArrayXd>(row + i, n - i);
        if (finite) {
            tail = (tail * factor).exp();
        } else {
            tail = (tail == 0.0).cast<double>();
        }
        // Row i's sum gets its upper part; every later row j gets K_ij from here (symmetry).
        r[i] += tail.sum();
        for (Index j = i + 1; j < n; ++j) r[j] += row[j];
    }
    return k;
}

double kernel_cka(const SymmetricMatrix& k, const SymmetricMatrix& l, bool debiased) {
    const Index n = k.n();
    const double dn = double(n);
    const double* kd = k.upper.data();
    const double* ld = l.upper.data();
    if (debiased) {
        // n(n−3)·HSIC₁ = tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2)·(K̃1)ᵀ(L̃1), K̃ = K with zero
        // diagonal: tr(K̃L̃) = 2·Σ_{i<j} K_ij·L_ij and K̃1 = row sums less the diagonal.
        double kl = 0.0, kk = 0.0, ll = 0.0;
        for (Index i = 0; i < n; ++i) {
            const double* a = kd + i * n;
            const double* b = ld + i * n;
            for (Index j = i + 1; j < n; ++j) {
                kl += a[j] * b[j];
                kk += a[j] * a[j];
                ll += b[j] * b[j];
            }
        }
        VecD rk(n), rl(n);
        for (Index i = 0; i < n; ++i) {
            rk[i] = k.row_sums[i] - kd[i * n + i];
            rl[i] = l.row_sums[i] - ld[i * n + i];
        }
        auto hsic = [&](double tr, const VecD& a, const VecD& b) {
            return tr + a.sum() * b.sum() / ((dn - 1.0) * (dn - 2.0)) - 2.0 / (dn - 2.0) * a.dot(b);
        };
        const double hx = hsic(2.0 * kk, rk, rk), hy = hsic(2.0 * ll, rl, rl);
        if (!(hx > 0.0) || !(hy > 0.0)) {
            fail("the debiased HSIC of ", (hx > 0.0 ? "y" : "x"), " with itself is ", (hx > 0.0 ? hy : hx),
                 " (not positive) with n = ", n, " samples, so debiased kernel CKA is undefined; use more samples "
                 "or debiased=False");
        }
        return hsic(2.0 * kl, rk, rl) / (std::sqrt(hx) * std::sqrt(hy));
    }
    // HKH_ij = K_ij − m_i − m_j + m̄ with m the row means and m̄ their mean, formed entry by entry.
    const VecD mk = k.row_sums / dn, ml = l.row_sums / dn;
    const double ak = mk.mean(), al = ml.mean();
    double kl = 0.0, kk = 0.0, ll = 0.0, kl_d = 0.0, kk_d = 0.0, ll_d = 0.0;
    for (Index i = 0; i < n; ++i) {
        check_interrupt();
        const double* a = kd + i * n;
        const double* b = ld + i * n;
        const double ci = ak - mk[i], di = al - ml[i];
        {
            const double u = a[i] + ci - mk[i], v = b[i] + di - ml[i];
            kl_d += u * v;
            kk_d += u * u;
            ll_d += v * v;
        }
        for (Index j = i + 1; j < n; ++j) {
            const double u = a[j] + ci - mk[j], v = b[j] + di - ml[j];
            kl += u * v;
            kk += u * u;
            ll += v * v;
        }
    }
    const double sk = 2.0 * kk + kk_d, sl = 2.0 * ll + ll_d;
    if (sk == 0.0 || sl == 0.0) {
        fail(sk == 0.0 ? "x" : "y", " has a constant kernel matrix after centring, so kernel CKA is undefined");
    }
    return (2.0 * kl + kl_d) / (std::sqrt(sk) * std::sqrt(sl));
}

template MatD squared_distances<float>(const View<float>&, const char*);
template MatD squared_distances<double>(const View<double>&, const char*);
template SymmetricMatrix rbf_gram<float>(const View<float>&, BandwidthRule, double, double, const char*);
template SymmetricMatrix rbf_gram<double>(const View<double>&, BandwidthRule, double, double, const char*);

}  // namespace reprsim
