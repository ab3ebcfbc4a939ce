#include "reprsim/cka.hpp"

#include "reprsim/blas.hpp"
#include "reprsim/centering.hpp"
#include "reprsim/interrupt.hpp"

#include <algorithm>

namespace reprsim {

namespace {

// Σ_ij C_ij² over the symmetric (p×p) block at (off, off) of a matrix with leading dimension ld, of
// which only the upper triangle is valid.
template <class T>
double sym_sq_norm_upper(const T* c, Index p, Index ld) {
    double off = 0.0, diag = 0.0;
    for (Index i = 0; i < p; ++i) {
        const T* row = c + i * ld;
        diag += static_cast<double>(row[i]) * static_cast<double>(row[i]);
        for (Index j = i + 1; j < p; ++j) off += static_cast<double>(row[j]) * static_cast<double>(row[j]);
    }
    return 2.0 * off + diag;
}

// Σ_ij C_ij² over an (m×k) block with leading dimension ld.
template <class T>
double block_sq_norm(const T* c, Index m, Index k, Index ld) {
    double s = 0.0;
    for (Index i = 0; i < m; ++i) {
        const T* row = c + i * ld;
        for (Index j = 0; j < k; ++j) s += static_cast<double>(row[j]) * static_cast<double>(row[j]);
    }
    return s;
}

// The packed, √2-scaled upper triangle of the centred Gram K = Xc·Xcᵀ (one syrk into `work`, an n×n
// buffer that callers reuse across factors), and ⟨K, K⟩ summed while packing.
template <class T>
double packed_gram(const T* xc, Index n, Index p, T* work, Eigen::Matrix<T, Eigen::Dynamic, 1>& packed) {
    blas::syrk_n<T>(n, p, xc, p, work, n);
    const double root2 = std::sqrt(2.0);
    packed.resize(n * (n + 1) / 2);
    T* o = packed.data();
    double off = 0.0, diag = 0.0;
    for (Index i = 0; i < n; ++i) {
        const T* row = work + i * n;
        diag += static_cast<double>(row[i]) * static_cast<double>(row[i]);
        *o++ = row[i];
        double off0 = 0.0, off1 = 0.0;  // two chains: half the latency of one
        Index j = i + 1;
        for (; j + 2 <= n; j += 2) {
            const double v0 = row[j], v1 = row[j + 1];
            off0 += v0 * v0;
            off1 += v1 * v1;
            o[0] = static_cast<T>(root2 * v0);
            o[1] = static_cast<T>(root2 * v1);
            o += 2;
        }
        for (; j < n; ++j) {
            const double v = row[j];
            off0 += v * v;
            *o++ = static_cast<T>(root2 * v);
        }
        off += off0 + off1;
    }
    return 2.0 * off + diag;
}

// The debiased self term n(n−3)·HSIC₁(K, K) is a difference of terms far larger than itself when the
// estimator is degenerate (e.g. one row apart from the others at n = 4, where it is exactly 0): below
// this floor, a multiple of the rounding in those terms, its sign is noise and CKA would be garbage
// (fuzzing found 2.23 for float32 input whose exact value is undefined).
template <class T>
double debiased_noise_floor(const LinearFactor<T>& f) {
    const double n = double(f.n);
    const double terms = std::abs(f.self_biased) + n / (n - 2.0) * f.d.squaredNorm() +
                         f.sum_d * f.sum_d / ((n - 1.0) * (n - 2.0));
    return 16.0 * double(std::numeric_limits<T>::epsilon()) * terms;
}

template <class T>
void check_self(const LinearFactor<T>& f, bool need_debiased, const char* name) {
    if (f.self_biased == 0.0) {
        fail(name, " has zero variance (every column is constant over the ", f.n,
             " samples): CKA is undefined for a constant representation; drop it or check how it was collected");
    }
    if (need_debiased && !(f.self_debiased > debiased_noise_floor(f))) {
        fail("the debiased HSIC of ", name, " with itself is ", f.self_debiased, " (not positive beyond rounding) with n = ",
             f.n, " samples, so debiased CKA is undefined; use more samples or debiased=False");
    }
}

}  // namespace

Space choose_space(Index n, Index p1, Index p2, std::size_t itemsize, Index k1, Index k2, double gram_budget_bytes) {
    // Flop counts: feature space syrk n·p² per factor and 2·n·p1·p2 per pair; Gram space syrk n²·p per
    // factor and n² per pair (a dot product of packed triangles). Memory: n²/2 entries per Gram.
    const double dn = double(n), a = double(p1), b = double(p2), c1 = double(k1), c2 = double(k2);
    const double feature = dn * (c1 * a * a + c2 * b * b) + c1 * c2 * 2.0 * dn * a * b;
    const double gram = dn * dn * (c1 * a + c2 * b) + c1 * c2 * dn * dn;
    const double gram_bytes = (c1 + c2) * dn * dn / 2.0 * double(itemsize);
    const double feature_bytes = dn * (c1 * a + c2 * b) * double(itemsize);
    if (gram_bytes > gram_budget_bytes && feature_bytes < gram_bytes) return Space::Feature;
    return gram < feature ? Space::Gram : Space::Feature;
}

template <class T>
LinearFactor<T> linear_factor(const View<T>& x, Space space, bool need_debiased, const char* name,
                              GramWork<T>* work, bool check) {
    LinearFactor<T> f;
    f.space = space;
    f.n = x.n;
    f.p = x.p;
    if (space == Space::Feature) {
        check_blas_dims(name, x.n, x.p);
        MatR<T> xc(x.n, x.p);
        f.d.resize(x.n);
        f.scale = center_scaled_into(x, name, xc.data(), x.p, f.d.data());
        MatR<T> c(x.p, x.p);
        blas::syrk_t<T>(x.n, x.p, xc.data(), x.p, c.data(), x.p);
        f.self_biased = sym_sq_norm_upper(c.data(), x.p, x.p);
        f.xc = std::move(xc);
    } else {
        // The centred copy is only needed for the Gram: both live in scratch space.
        check_blas_dims(name, x.n, x.p);
        GramWork<T> local;
        GramWork<T>& w = work ? *work : local;
        T* xc = GramWork<T>::get(w.centred, std::size_t(x.n) * std::size_t(x.p));
        T* gram = GramWork<T>::get(w.gram, std::size_t(x.n) * std::size_t(x.n));
        f.d.resize(x.n);
        f.scale = center_scaled_into(x, name, xc, x.p, f.d.data());
        f.self_biased = packed_gram(xc, x.n, x.p, gram, f.packed);
    }
    f.sum_d = f.d.sum();
    if (need_debiased) f.self_debiased = debiased_from_cross(f.self_biased, f.d, f.d, f.sum_d, f.sum_d, x.n);
    if (check) check_self(f, need_debiased, name);
    return f;
}

double debiased_from_cross(double cross, const VecD& d, const VecD& e, double sum_d, double sum_e, Index n) {
    return debiased_from_sums(cross, d.dot(e), sum_d, sum_e, double(n));
}

double debiased_from_sums(double cross, double sum_de, double sum_d, double sum_e, double n) {
    return cross - n / (n - 2.0) * sum_de + sum_d * sum_e / ((n - 1.0) * (n - 2.0));
}

template <class T>
CKASums linear_cka_sums_from_cross(double cross, const LinearFactor<T>& fx, const LinearFactor<T>& fy) {
    CKASums m;
    m.n = double(fx.n);
    m.cross = cross;
    m.sxx = fx.self_biased;
    m.syy = fy.self_biased;
    m.tx = fx.sum_d;
    m.ty = fy.sum_d;
    m.sum_d2 = fx.d.squaredNorm();
    m.sum_e2 = fy.d.squaredNorm();
    m.sum_de = fx.d.dot(fy.d);
    m.scale_x = fx.scale;
    m.scale_y = fy.scale;
    m.eps = double(std::numeric_limits<T>::epsilon());
    return m;
}

namespace {

// The cross term ‖XcᵀYc‖²_F of one pair, with both inputs' statistics (self terms; row norms when
// `debiased`), not checked.
template <class T>
struct PairTerms {
    double cross = 0.0;
    LinearFactor<T> fx, fy;
};

// sum_d: Σ d_i from the row norms when they were taken (debiased), else the trace passed in.
template <class T>
void finish_self(LinearFactor<T>& f, bool debiased, double trace) {
    f.sum_d = debiased ? f.d.sum() : trace;
    if (debiased) f.self_debiased = debiased_from_cross(f.self_biased, f.d, f.d, f.sum_d, f.sum_d, f.n);
}

// Feature space: x and y are centred side by side one panel of rows at a time into a reused buffer,
// and the panel's syrk accumulates into C = [Xc Yc]ᵀ[Xc Yc]: no centred copy of the whole inputs is
// ever made. The biased estimator needs no row norms (its traces come from C's diagonal); the debiased
// one gets them from the centring.
template <class T>
PairTerms<T> pair_terms_feature(const View<T>& x, const View<T>& y, bool debiased, const char* nx = "x",
                                const char* ny = "y") {
    check_blas_dims(nx, x.n, x.p + y.p);
    const Index n = x.n, p1 = x.p, p2 = y.p, p = p1 + p2;
    PairTerms<T> t;
    t.fx.n = t.fy.n = n;
    t.fx.p = p1;
    t.fy.p = p2;
    if (debiased) {
        t.fx.d.resize(n);
        t.fy.d.resize(n);
    }
    const ScaledMeans mx = scaled_column_means<T>(x, nx);
    const ScaledMeans my = scaled_column_means<T>(y, ny);
    t.fx.scale = mx.scale;
    t.fy.scale = my.scale;
    Buffer<T> c(std::size_t(p) * std::size_t(p));
    joint_centred_syrk<T>(x, mx, y, my, c.data(), debiased ? t.fx.d.data() : nullptr,
                          debiased ? t.fy.d.data() : nullptr);
    double trx = 0.0, try_ = 0.0;
    for (Index j = 0; j < p1; ++j) trx += static_cast<double>(c.data()[std::size_t(j) * std::size_t(p + 1)]);
    for (Index j = p1; j < p; ++j) try_ += static_cast<double>(c.data()[std::size_t(j) * std::size_t(p + 1)]);
    t.fx.self_biased = sym_sq_norm_upper(c.data(), p1, p);
    t.fy.self_biased = sym_sq_norm_upper(c.data() + p1 * p + p1, p2, p);
    finish_self(t.fx, debiased, trx);
    finish_self(t.fy, debiased, try_);
    t.cross = block_sq_norm(c.data() + p1, p1, p2, p);  // the XcᵀYc block, above the diagonal
    return t;
}

// Gram space: centred copies, then ⟨K, L⟩, ⟨K, K⟩, ⟨L, L⟩ over the upper triangles of K = Xc·Xcᵀ and
// L = Yc·Ycᵀ, built one tile of rows at a time (never whole: n×n matrices would be allocated,
// first-touched and read back from memory): rows [i0, i1) of each are a syrk for the diagonal block and
// a gemm for the columns to its right, and the tiles are summed in float64 while they are in cache.
template <class T>
PairTerms<T> pair_terms_gram(const View<T>& x, const View<T>& y, bool debiased, const char* nx = "x",
                             const char* ny = "y") {
    check_blas_dims(nx, x.n, x.p);
    check_blas_dims(ny, y.n, y.p);
    const Index n = x.n;
    PairTerms<T> t;
    LinearFactor<T>& fx = t.fx;
    LinearFactor<T>& fy = t.fy;
    fx.n = fy.n = n;
    fx.p = x.p;
    fy.p = y.p;
    if (debiased) {
        fx.d.resize(n);
        fy.d.resize(n);
    }
    Buffer<T> xc(std::size_t(n) * std::size_t(x.p)), yc(std::size_t(n) * std::size_t(y.p));
    fx.scale = center_scaled_into(x, nx, xc.data(), x.p, debiased ? fx.d.data() : nullptr);
    fy.scale = center_scaled_into(y, ny, yc.data(), y.p, debiased ? fy.d.data() : nullptr);
    const Index rows = std::min<Index>(n, std::max<Index>(256, Index((16u << 20) / (std::size_t(n) * sizeof(T)))));
    Buffer<T> kt(std::size_t(rows) * std::size_t(n)), lt(std::size_t(rows) * std::size_t(n));
    double kl = 0.0, kk = 0.0, ll = 0.0, kl_d = 0.0, kk_d = 0.0, ll_d = 0.0, trx = 0.0, try_ = 0.0;
    for (Index i0 = 0; i0 < n; i0 += rows) {
        check_interrupt();
        const Index b = std::min(rows, n - i0), i1 = i0 + b, rest = n - i1;
        blas::syrk_n<T>(b, x.p, xc.data() + i0 * x.p, x.p, kt.data(), n);
        blas::syrk_n<T>(b, y.p, yc.data() + i0 * y.p, y.p, lt.data(), n);
        if (rest > 0) {
            blas::gemm_nt<T>(b, rest, x.p, xc.data() + i0 * x.p, x.p, xc.data() + i1 * x.p, x.p, kt.data() + b, n);
            blas::gemm_nt<T>(b, rest, y.p, yc.data() + i0 * y.p, y.p, yc.data() + i1 * y.p, y.p, lt.data() + b, n);
        }
        for (Index r = 0; r < b; ++r) {
            const T* rk = kt.data() + std::size_t(r) * n;
            const T* rl = lt.data() + std::size_t(r) * n;
            const double a = rk[r], c = rl[r];
            trx += a;
            try_ += c;
            kl_d += a * c;
            kk_d += a * a;
            ll_d += c * c;
            // Row r's upper part: the diagonal block right of the diagonal, then the rest of the row.
            for (Index j = r + 1; j < b + rest; ++j) {
                const double u = rk[j], v = rl[j];
                kl += u * v;
                kk += u * u;
                ll += v * v;
            }
        }
    }
    fx.self_biased = 2.0 * kk + kk_d;
    fy.self_biased = 2.0 * ll + ll_d;
    finish_self(fx, debiased, trx);
    finish_self(fy, debiased, try_);
    t.cross = 2.0 * kl + kl_d;
    return t;
}

}  // namespace

template <class T>
CKASums linear_cka_sums_joint(const View<T>& x, const View<T>& y, bool debiased) {
    const PairTerms<T> t = pair_terms_feature(x, y, debiased);
    return linear_cka_sums_from_cross(t.cross, t.fx, t.fy);
}

template <class T>
CKASums linear_cka_sums_gram(const View<T>& x, const View<T>& y, bool debiased) {
    const PairTerms<T> t = pair_terms_gram(x, y, debiased);
    return linear_cka_sums_from_cross(t.cross, t.fx, t.fy);
}

namespace {

[[noreturn]] void zero_variance(const std::string& name, double n, const char* consequence) {
    fail(name, " has zero variance (every column is constant over the ", n, " rows): ", consequence);
}

}  // namespace

double cka_from_sums(const CKASums& m, bool debiased, const std::string& name_x, const std::string& name_y) {
    const double min_n = debiased ? 4.0 : 2.0;
    if (m.n < min_n) {
        fail("the representations have n = ", m.n, " rows; ", debiased ? "debiased CKA" : "CKA", " needs at least ",
             min_n);
    }
    const char* why = "CKA is undefined for a constant representation; drop it or check how it was collected";
    if (m.sxx == 0.0) zero_variance(name_x, m.n, why);
    if (m.syy == 0.0) zero_variance(name_y, m.n, why);
    // Square roots taken apart: the product of the self terms can leave the float64 range.
    if (!debiased) return m.cross / (std::sqrt(m.sxx) * std::sqrt(m.syy));
    const double hx = debiased_from_sums(m.sxx, m.sum_d2, m.tx, m.tx, m.n);
    const double hy = debiased_from_sums(m.syy, m.sum_e2, m.ty, m.ty, m.n);
    // The debiased self term n(n−3)·HSIC₁(K, K) is a difference of terms far larger than itself when
    // the estimator is degenerate (e.g. one row apart from the others at n = 4, where it is exactly 0):
    // below a multiple of the rounding in those terms its sign is noise and CKA would be garbage
    // (fuzzing found 2.23 for float32 input whose exact value is undefined).
    auto require_positive = [&](double h, double self, double sum_d2, double tr, const std::string& name) {
        const double terms = std::abs(self) + m.n / (m.n - 2.0) * sum_d2 + tr * tr / ((m.n - 1.0) * (m.n - 2.0));
        if (!(h > 16.0 * m.eps * terms)) {
            fail("the debiased HSIC of ", name, " with itself is ", h, " (not positive beyond rounding) with n = ",
                 m.n, " rows, so debiased CKA is undefined; use more rows or debiased=False");
        }
    };
    require_positive(hx, m.sxx, m.sum_d2, m.tx, name_x);
    require_positive(hy, m.syy, m.sum_e2, m.ty, name_y);
    return debiased_from_sums(m.cross, m.sum_de, m.tx, m.ty, m.n) / (std::sqrt(hx) * std::sqrt(hy));
}

template <class T>
MatR<double> linear_cross_matrix(const std::vector<LinearFactor<T>>& fx, const std::vector<LinearFactor<T>>& fy) {
    const Index k1 = Index(fx.size()), k2 = Index(fy.size());
    MatR<double> out = MatR<double>::Zero(k1, k2);
    if (k1 == 0 || k2 == 0) return out;
    const Index n = fx[0].n;
    if (fx[0].space == Space::Feature) {
        // Each x against every y at once: Xcᵀ·[Yc_1 … Yc_k2].
        Index pt = 0;
        for (const auto& f : fy) pt += f.p;
        MatR<T> yall(n, pt);
        for (Index j = 0, off = 0; j < k2; off += fy[j].p, ++j) yall.middleCols(off, fy[j].p) = fy[j].xc;
        for (Index i = 0; i < k1; ++i) {
            MatR<T> c(fx[i].p, pt);
            blas::gemm_tn<T>(n, fx[i].p, pt, fx[i].xc.data(), fx[i].p, yall.data(), pt, c.data(), pt);
            for (Index j = 0, off = 0; j < k2; off += fy[j].p, ++j)
                out(i, j) = block_sq_norm(c.data() + off, fx[i].p, fy[j].p, pt);
        }
        return out;
    }
    // Gram space: ⟨K_i, L_j⟩ = packed_iᵀ·packed_j, summed over blocks of 2^16 entries: each block is a
    // gemm of the stacked x blocks against the stacked y blocks (float32 accumulation stays short inside a
    // block; blocks add up in float64), and every Gram is read once for the whole matrix.
    const Index len_total = fx[0].packed.size();
    const Index block = std::min<Index>(len_total, Index(1) << 16);
    MatR<T> a(k1, block), b(k2, block), c(k1, k2);
    for (Index s0 = 0; s0 < len_total; s0 += block) {
        check_interrupt();
        const Index len = std::min(block, len_total - s0);
        for (Index i = 0; i < k1; ++i) std::copy_n(fx[i].packed.data() + s0, len, a.data() + i * block);
        for (Index j = 0; j < k2; ++j) std::copy_n(fy[j].packed.data() + s0, len, b.data() + j * block);
        blas::gemm_nt<T>(k1, k2, len, a.data(), block, b.data(), block, c.data(), k2);
        out += c.template cast<double>();
    }
    return out;
}

template <class T>
MatR<double> linear_cross_matrix_gram_blocked(const std::vector<View<T>>& xs, const std::vector<View<T>>* ys,
                                              const std::vector<std::string>& names_x,
                                              const std::vector<std::string>& names_y, bool debiased,
                                              std::vector<LinearFactor<T>>& fx, std::vector<LinearFactor<T>>& fy) {
    const Index k1 = Index(xs.size()), k2 = ys ? Index(ys->size()) : k1;
    const Index layers = k1 + (ys ? k2 : 0);
    const Index n = xs[0].n;
    // Every layer centred once into a copy of its own, with its row norms.
    std::vector<const View<T>*> views;
    std::vector<const char*> names;
    for (Index i = 0; i < k1; ++i) views.push_back(&xs[i]), names.push_back(names_x[i].c_str());
    if (ys)
        for (Index j = 0; j < k2; ++j) views.push_back(&(*ys)[j]), names.push_back(names_y[j].c_str());
    std::vector<std::unique_ptr<Buffer<T>>> xc;
    std::vector<LinearFactor<T>> f(static_cast<std::size_t>(layers));
    for (Index l = 0; l < layers; ++l) {
        const View<T>& v = *views[l];
        check_blas_dims(names[l], v.n, v.p);
        auto& fl = f[std::size_t(l)];
        fl.space = Space::Gram;
        fl.n = v.n;
        fl.p = v.p;
        fl.d.resize(v.n);
        xc.push_back(std::make_unique<Buffer<T>>(std::size_t(v.n) * std::size_t(v.p)));
        fl.scale = center_scaled_into(v, names[l], xc.back()->data(), v.p, fl.d.data());
        fl.sum_d = fl.d.sum();
        check_interrupt();
    }
    // Blocks of b×b Gram entries; the stacked tiles (layers × b²) are reduced in chunks of 2^16 entries
    // (float32 sums stay short inside a chunk; chunks add up in float64). Blocks of 1024 (fewer, larger
    // BLAS calls, each re-reading less of the inputs per flop) while the tiles stay within 128 MB.
    const Index b = std::min<Index>(
        n, double(layers) * 1024.0 * 1024.0 * double(sizeof(T)) <= 128.0 * (1 << 20) ? 1024 : 512);
    constexpr Index kChunk = Index(1) << 16;
    Buffer<T> tiles(std::size_t(layers) * std::size_t(b) * std::size_t(b));
    MatR<T> g(layers, layers);
    MatR<double> total = MatR<double>::Zero(layers, layers);
    for (Index r0 = 0; r0 < n; r0 += b) {
        const Index br = std::min(b, n - r0);
        for (Index c0 = r0; c0 < n; c0 += b) {
            check_interrupt();
            const Index bc = std::min(b, n - c0), size = br * bc;
            for (Index l = 0; l < layers; ++l) {
                const Index p = views[l]->p;
                const T* a = xc[std::size_t(l)]->data();
                T* t = tiles.data() + std::size_t(l) * std::size_t(size);
                if (c0 == r0) {
                    // The upper triangle stands for the whole symmetric block: off-diagonal entries
                    // scaled by √2 (their products count twice), the lower triangle zeroed, row by row.
                    blas::syrk_n<T>(br, p, a + r0 * p, p, t, br);
                    const T root2 = T(std::sqrt(2.0));
                    for (Index i = 0; i < br; ++i) {
                        T* row = t + i * br;
                        std::fill(row, row + i, T(0));
                        for (Index j = i + 1; j < br; ++j) row[j] *= root2;
                    }
                } else {
                    blas::gemm_nt<T>(br, bc, p, a + r0 * p, p, a + c0 * p, p, t, bc);
                }
            }
            // An off-diagonal block stands for itself and its mirror image below the diagonal.
            const double weight = c0 == r0 ? 1.0 : 2.0;
            for (Index k0 = 0; k0 < size; k0 += kChunk) {
                const Index len = std::min(kChunk, size - k0);
                if (!ys) {  // every pair of the layers: one syrk of the stacked tiles
                    blas::syrk_n<T>(layers, len, tiles.data() + k0, size, g.data(), layers);
                    for (Index i = 0; i < layers; ++i)
                        for (Index j = i; j < layers; ++j) total(i, j) += weight * static_cast<double>(g(i, j));
                    continue;
                }
                // xs against ys: the k1 × k2 cross products by one gemm of the x tiles against the y tiles
                // (the x-x and y-y pairs a syrk would add are not needed), each layer's self term apart.
                const T* tx = tiles.data() + k0;
                const T* ty = tiles.data() + std::size_t(k1) * std::size_t(size) + k0;
                blas::gemm_nt<T>(k1, k2, len, tx, size, ty, size, g.data(), k2);
                for (Index i = 0; i < k1; ++i)
                    for (Index j = 0; j < k2; ++j)
                        total(i, k1 + j) += weight * static_cast<double>(g.data()[i * k2 + j]);
                for (Index l = 0; l < layers; ++l) {
                    // in pieces of 4096 entries summed in float64 (one float sum over the whole chunk loses
                    // an order of magnitude of accuracy)
                    const T* v = tiles.data() + std::size_t(l) * std::size_t(size) + k0;
                    double self = 0.0;
                    for (Index s0 = 0; s0 < len; s0 += 4096) {
                        const Index m = std::min<Index>(4096, len - s0);
                        self += static_cast<double>(Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(v + s0, m)
                                                        .squaredNorm());
                    }
                    total(l, l) += weight * self;
                }
            }
        }
    }
    for (Index l = 0; l < layers; ++l) {
        auto& fl = f[std::size_t(l)];
        fl.self_biased = total(l, l);
        if (debiased) fl.self_debiased = debiased_from_cross(fl.self_biased, fl.d, fl.d, fl.sum_d, fl.sum_d, n);
        check_self(fl, debiased, names[l]);
    }
    const Index off = ys ? k1 : 0;
    MatR<double> cross(k1, k2);
    for (Index i = 0; i < k1; ++i)
        for (Index j = 0; j < k2; ++j) {
            const Index a = std::min(i, off + j), c = std::max(i, off + j);
            cross(i, j) = total(a, c);
        }
    fx.assign(f.begin(), f.begin() + k1);
    fy.assign(f.begin() + k1, f.end());
    return cross;
}

double hsic_unbiased_gram(const MatD& k, const MatD& l) {
    // n(n−3)·HSIC₁ = tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2)·(K̃1)ᵀ(L̃1), K̃ = K with zero diagonal.
    const Index n = k.rows();
    const double dn = double(n);
    double tr = 0.0;
    VecD rk = VecD::Zero(n), rl = VecD::Zero(n);
    for (Index j = 0; j < n; ++j) {
        for (Index i = 0; i < n; ++i) {
            if (i == j) continue;
            tr += k(i, j) * l(i, j);
            rk[j] += k(i, j);
            rl[j] += l(i, j);
        }
    }
    return tr + rk.sum() * rl.sum() / ((dn - 1.0) * (dn - 2.0)) - 2.0 / (dn - 2.0) * rk.dot(rl);
}

template <class T>
BatchHSIC minibatch_hsic(const std::vector<View<T>>& xs, const std::vector<View<T>>& ys, bool debiased,
                         const std::vector<std::string>& names_x, const std::vector<std::string>& names_y) {
    const Index k1 = Index(xs.size()), k2 = Index(ys.size());
    if (k1 == 0 || k2 == 0) throw std::logic_error("minibatch_hsic: no layers");
    const Index n = xs[0].n;
    const double dn = double(n);
    Index p1 = 0, p2 = 0;
    for (const auto& v : xs) p1 = std::max(p1, v.p);
    for (const auto& v : ys) p2 = std::max(p2, v.p);
    const Space space = choose_space(n, p1, p2, sizeof(T), k1, k2);
    std::vector<LinearFactor<T>> fx, fy;
    MatR<double> cross(k1, k2);
    if (k1 == 1 && k2 == 1) {  // one pair: its terms directly, no factor kept
        const char* nx = names_x[0].c_str();
        const char* ny = names_y[0].c_str();
        PairTerms<T> t = space == Space::Feature ? pair_terms_feature(xs[0], ys[0], debiased, nx, ny)
                                                 : pair_terms_gram(xs[0], ys[0], debiased, nx, ny);
        cross(0, 0) = t.cross;
        fx.push_back(std::move(t.fx));
        fy.push_back(std::move(t.fy));
    } else {
        GramWork<T> work;
        for (Index i = 0; i < k1; ++i)
            fx.push_back(linear_factor(xs[i], space, debiased, names_x[i].c_str(), &work, false));
        for (Index j = 0; j < k2; ++j)
            fy.push_back(linear_factor(ys[j], space, debiased, names_y[j].c_str(), &work, false));
        cross = linear_cross_matrix(fx, fy);
    }
    // Each factor's entries were multiplied by its scale (a power of two, 1 for data of moderate
    // magnitude) and a product of two of them by both squared; terms of different minibatches are summed,
    // so every term is brought back to the data's own scale (exactly: powers of two).
    auto hsic = [&](double c, const LinearFactor<T>& a, const LinearFactor<T>& b) {
        const double h = debiased ? debiased_from_sums(c, a.d.dot(b.d), a.sum_d, b.sum_d, dn) / (dn * (dn - 3.0))
                                  : c / ((dn - 1.0) * (dn - 1.0));
        return h / (a.scale * a.scale * b.scale * b.scale);
    };
    BatchHSIC out;
    out.xy.resize(k1, k2);
    out.xx.resize(k1);
    out.yy.resize(k2);
    for (Index i = 0; i < k1; ++i) out.xx[i] = hsic(fx[i].self_biased, fx[i], fx[i]);
    for (Index j = 0; j < k2; ++j) out.yy[j] = hsic(fy[j].self_biased, fy[j], fy[j]);
    for (Index i = 0; i < k1; ++i)
        for (Index j = 0; j < k2; ++j) out.xy(i, j) = hsic(cross(i, j), fx[i], fy[j]);
    return out;
}

#define REPRSIM_INSTANTIATE(T)                                                                                   \
    template LinearFactor<T> linear_factor<T>(const View<T>&, Space, bool, const char*, GramWork<T>*, bool);        \
    template CKASums linear_cka_sums_joint<T>(const View<T>&, const View<T>&, bool);                             \
    template CKASums linear_cka_sums_gram<T>(const View<T>&, const View<T>&, bool);                              \
    template CKASums linear_cka_sums_from_cross<T>(double, const LinearFactor<T>&, const LinearFactor<T>&);      \
    template MatR<double> linear_cross_matrix_gram_blocked<T>(                                                   \
        const std::vector<View<T>>&, const std::vector<View<T>>*, const std::vector<std::string>&,                 \
        const std::vector<std::string>&, bool, std::vector<LinearFactor<T>>&, std::vector<LinearFactor<T>>&);      \
    template BatchHSIC minibatch_hsic<T>(const std::vector<View<T>>&, const std::vector<View<T>>&, bool,          \
                                         const std::vector<std::string>&, const std::vector<std::string>&);        \
    template MatR<double> linear_cross_matrix<T>(const std::vector<LinearFactor<T>>&,                          \
                                                 const std::vector<LinearFactor<T>>&);
REPRSIM_INSTANTIATE(float)
REPRSIM_INSTANTIATE(double)
#undef REPRSIM_INSTANTIATE

}  // namespace reprsim
