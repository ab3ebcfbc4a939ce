#include "reprsim/permutation.hpp"

#include "reprsim/blas.hpp"
#include "reprsim/interrupt.hpp"

#include <algorithm>
#include <thread>
#include <vector>

namespace reprsim {

void check_permutations(const std::int64_t* perms, Index count, Index n, const char* name) {
    std::vector<unsigned char> seen(static_cast<std::size_t>(n));
    for (Index b = 0; b < count; ++b) {
        std::fill(seen.begin(), seen.end(), 0);
        const std::int64_t* p = perms + b * n;
        for (Index i = 0; i < n; ++i) {
            const std::int64_t v = p[i];
            if (v < 0 || v >= n || seen[static_cast<std::size_t>(v)]) {
                fail(name, "[", b, "] is not a permutation of 0..", n - 1, ": entry ", i, " is ", v,
                     (v >= 0 && v < n) ? " (repeated)" : " (out of range)",
                     "; pass rows produced by numpy.random.Generator.permutation(n)");
            }
            seen[static_cast<std::size_t>(v)] = 1;
        }
    }
}

namespace {

template <class T>
class LinearCKANullImpl final : public LinearCKANull {
  public:
    LinearCKANullImpl(const View<T>& x, const View<T>& y, Space space, bool debiased)
        : debiased_(debiased),
          fx_(linear_factor(x, space, debiased, "x")),
          fy_(linear_factor(y, space, debiased, "y")) {
        if (space == Space::Gram) {
            // The factors hold packed upper triangles with the off-diagonal scaled by √2 (see
            // LinearFactor). K is read in that form, row by row. The gathered reads L[π(i), π(j)]
            // cross the diagonal, so L is unpacked into a full symmetric matrix.
            const Index n = fy_.n;
            const double inv_root2 = 1.0 / std::sqrt(2.0);
            l_.resize(n, n);
            const T* src = fy_.packed.data();
            for (Index i = 0; i < n; ++i) {
                l_(i, i) = *src++;
                for (Index j = i + 1; j < n; ++j) l_(i, j) = l_(j, i) = static_cast<T>(inv_root2 * double(*src++));
            }
            fy_.packed = decltype(fy_.packed)();
            row_start_.resize(static_cast<std::size_t>(n));
            Index start = 0;
            for (Index i = 0; i < n; ++i) {
                row_start_[static_cast<std::size_t>(i)] = start;
                start += n - i;
            }
        }
        // Once L outgrows the caches, row π(i) of L is read at random positions that the hardware
        // prefetcher cannot predict; copying the row first (a sequential read) and gathering from
        // the copy was 1.3–1.5× faster at n = 2000–4000 here, and slower while L fits in cache.
        copy_rows_ = space == Space::Gram && double(fy_.n) * double(fy_.n) * sizeof(T) > kCopyRowsAboveBytes;
        denom_ = debiased ? std::sqrt(fx_.self_debiased) * std::sqrt(fy_.self_debiased)
                          : std::sqrt(fx_.self_biased) * std::sqrt(fy_.self_biased);
    }

    double exact_null_mean() const override {
        if (debiased_) return 0.0;
        return fx_.sum_d * fy_.sum_d / ((double(fx_.n) - 1.0) * denom_);
    }

    Space space() const override { return fx_.space; }
    Index n() const override { return fx_.n; }

    void evaluate(const std::int64_t* perms, Index count, double* out, int n_threads) const override {
        const Index n = fx_.n;
        check_permutations(perms, count, n, "permutations");
        if (count == 0) return;
        if (fx_.space == Space::Feature) {
            // The BLAS product is already threaded; one pass over the permutations.
            MatR<T> buf(n, fy_.p);
            MatR<T> c(fx_.p, fy_.p);
            for (Index b = 0; b < count; ++b) {
                out[b] = finish(feature_cross(perms + b * n, buf, c), perms + b * n);
                check_interrupt();
            }
            return;
        }
        const Index threads = std::max<Index>(1, std::min<Index>(n_threads, count));
        // Buffers are allocated here, so that nothing inside a worker thread can throw.
        std::vector<std::vector<T>> bufs(static_cast<std::size_t>(threads),
                                         std::vector<T>(copy_rows_ ? std::size_t(n) : 0));
        auto work = [&](Index lo, Index hi, std::vector<T>* buf) {
            for (Index b = lo; b < hi; b += kBlock) {
                const Index m = std::min(kBlock, hi - b);
                double cross[kBlock];
                gram_cross_block(perms + b * n, m, cross, *buf);
                for (Index t = 0; t < m; ++t) out[b + t] = finish(cross[t], perms + (b + t) * n);
            }
        };
        // Rounds of about kRoundEntries gathered products per thread (a fraction of a second), with an
        // interruption check between rounds, when no worker is running.
        const Index per_thread = std::max<Index>(kBlock, Index(kRoundEntries / (double(n) * double(n))) / kBlock * kBlock);
        for (Index r0 = 0; r0 < count; r0 += per_thread * threads) {
            if (r0 > 0) check_interrupt();
            const Index r1 = std::min(count, r0 + per_thread * threads);
            if (threads == 1) {
                work(r0, r1, &bufs[0]);
                continue;
            }
            std::vector<std::thread> pool;
            const Index chunk = (r1 - r0 + threads - 1) / threads;
            try {
                for (Index t = 0; t < threads; ++t) {
                    const Index lo = r0 + t * chunk, hi = std::min(r1, lo + chunk);
                    if (lo < hi) pool.emplace_back(work, lo, hi, &bufs[static_cast<std::size_t>(t)]);
                }
            } catch (...) {  // a thread could not start: finish the started ones, then report
                for (auto& th : pool) th.join();
                throw;
            }
            for (auto& th : pool) th.join();
        }
    }

  private:
    // Permutations evaluated together share each pass over a row of K, which is read from memory
    // once per block instead of once per permutation (the gathered rows of L cannot be shared).
    static constexpr Index kBlock = 4;
    static constexpr double kRoundEntries = 2e8;
    static constexpr double kCopyRowsAboveBytes = 8.0 * (1 << 20);

    void gram_cross_block(const std::int64_t* perms, Index m, double* cross, std::vector<T>& buf) const {
        const Index n = fx_.n;
        const double root2 = std::sqrt(2.0);
        double diag[kBlock] = {}, off[kBlock] = {};
        for (Index i = 0; i < n; ++i) {
            const T* krow = fx_.packed.data() + row_start_[static_cast<std::size_t>(i)];
            for (Index t = 0; t < m; ++t) {
                const T* lrow = l_.data() + perms[t * n + i] * n;
                if (!buf.empty()) {
                    std::copy_n(lrow, n, buf.data());
                    lrow = buf.data();
                }
                row_terms(krow, lrow, perms + t * n, i, diag[t], off[t]);
            }
        }
        // The packed off-diagonal entries are √2·K_ij, and each stands for K_ij and K_ji.
        for (Index t = 0; t < m; ++t) cross[t] = diag[t] + root2 * off[t];
    }

    // Row i's share of ⟨K, L_π⟩ = Σ_ij K[i, j]·L[π(i), π(j)] from the packed row i of K (krow[0] = K_ii,
    // krow[t] = √2·K_i,i+t): the diagonal term, and the sum over j > i of krow[j − i]·L[π(i), π(j)].
    void row_terms(const T* krow, const T* lrow, const std::int64_t* p, Index i, double& diag, double& off) const {
        const Index n = fx_.n;
        diag += static_cast<double>(krow[0]) * static_cast<double>(lrow[p[i]]);
        const T* k = krow - i;  // k[j] = krow[j − i]
        // Four accumulators hide the latency of the floating-point adds.
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        Index j = i + 1;
        for (; j + 3 < n; j += 4) {
            s0 += static_cast<double>(k[j]) * static_cast<double>(lrow[p[j]]);
            s1 += static_cast<double>(k[j + 1]) * static_cast<double>(lrow[p[j + 1]]);
            s2 += static_cast<double>(k[j + 2]) * static_cast<double>(lrow[p[j + 2]]);
            s3 += static_cast<double>(k[j + 3]) * static_cast<double>(lrow[p[j + 3]]);
        }
        for (; j < n; ++j) s0 += static_cast<double>(k[j]) * static_cast<double>(lrow[p[j]]);
        off += (s0 + s1) + (s2 + s3);
    }

    // ‖XcᵀYc[π]‖²_F with Yc[π] gathered into buf.
    double feature_cross(const std::int64_t* p, MatR<T>& buf, MatR<T>& c) const {
        const Index n = fx_.n, q = fy_.p;
        for (Index i = 0; i < n; ++i) std::copy_n(fy_.xc.data() + p[i] * q, q, buf.data() + i * q);
        blas::gemm_tn<T>(n, fx_.p, q, fx_.xc.data(), fx_.p, buf.data(), q, c.data(), q);
        double s = 0.0;
        const T* cd = c.data();
        for (Index i = 0; i < c.size(); ++i) s += static_cast<double>(cd[i]) * static_cast<double>(cd[i]);
        return s;
    }

    double finish(double cross, const std::int64_t* p) const {
        if (!debiased_) return cross / denom_;
        // Of the debiased numerator's pieces only Σ_i d_i e_π(i) changes with π.
        const Index n = fx_.n;
        double de = 0.0;
        for (Index i = 0; i < n; ++i) de += fx_.d[i] * fy_.d[p[i]];
        return debiased_from_sums(cross, de, fx_.sum_d, fy_.sum_d, double(n)) / denom_;
    }

    bool debiased_;
    LinearFactor<T> fx_;
    LinearFactor<T> fy_;
    MatR<T> l_;                     // Gram space: L in full
    std::vector<Index> row_start_;  // Gram space: offset of row i in the packed K
    double denom_ = 0.0;
    bool copy_rows_ = false;
};

}  // namespace

Space choose_null_space(Index n, Index p1, Index p2, std::size_t itemsize, double n_permutations) {
    const double dn = double(n), a = double(p1), b = double(p2), m = std::max(1.0, n_permutations);
    const double feature = dn * (a * a + b * b) + m * 2.0 * dn * a * b;
    const double gram = dn * dn * (a + b) + m * kGatherCost * dn * dn / 2.0;
    const double gram_bytes = 2.0 * dn * dn * double(itemsize);  // packed K, full L
    const double feature_bytes = dn * (a + b) * double(itemsize);
    if (gram_bytes > 4.0 * double(1ull << 30) && feature_bytes < gram_bytes) return Space::Feature;
    return gram < feature ? Space::Gram : Space::Feature;
}

template <class T>
std::unique_ptr<LinearCKANull> make_linear_cka_null(const View<T>& x, const View<T>& y, Space space, bool debiased) {
    if (x.n != y.n) {
        fail("x and y must have the same number of samples: x has shape ", shape_str(x.n, x.p), ", y has shape ",
             shape_str(y.n, y.p));
    }
    return std::make_unique<LinearCKANullImpl<T>>(x, y, space, debiased);
}

template std::unique_ptr<LinearCKANull> make_linear_cka_null<float>(const View<float>&, const View<float>&, Space,
                                                                    bool);
template std::unique_ptr<LinearCKANull> make_linear_cka_null<double>(const View<double>&, const View<double>&, Space,
                                                                     bool);

}  // namespace reprsim
