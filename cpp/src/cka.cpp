#include "reprsim/cka.hpp"

#include "reprsim/blas.hpp"
#include "reprsim/centering.hpp"

namespace reprsim {

namespace {

// Σ_ij C_ij² of a symmetric matrix of which only the upper triangle is valid.
template <class T>
double sym_sq_norm_upper(const MatR<T>& c) {
    double off = 0.0, diag = 0.0;
    for (Index i = 0; i < c.rows(); ++i) {
        const T* row = c.data() + i * c.cols();
        diag += static_cast<double>(row[i]) * static_cast<double>(row[i]);
        for (Index j = i + 1; j < c.cols(); ++j) off += static_cast<double>(row[j]) * static_cast<double>(row[j]);
    }
    return 2.0 * off + diag;
}

// Σ_ij A_ij B_ij of two symmetric matrices of which only the upper triangles are valid.
template <class T>
double sym_inner_upper(const MatR<T>& a, const MatR<T>& b) {
    double off = 0.0, diag = 0.0;
    const Index n = a.rows();
    for (Index i = 0; i < n; ++i) {
        const T* ra = a.data() + i * n;
        const T* rb = b.data() + i * n;
        diag += static_cast<double>(ra[i]) * static_cast<double>(rb[i]);
        for (Index j = i + 1; j < n; ++j) off += static_cast<double>(ra[j]) * static_cast<double>(rb[j]);
    }
    return 2.0 * off + diag;
}

template <class T>
double sq_norm(const MatR<T>& c) {
    double s = 0.0;
    const T* p = c.data();
    for (Index i = 0; i < c.size(); ++i) s += static_cast<double>(p[i]) * static_cast<double>(p[i]);
    return s;
}

}  // namespace

Space choose_space(Index n, Index p1, Index p2, std::size_t itemsize, double pairs_per_factor) {
    // Flop counts: feature space syrk n·p² per factor, 2·n·p1·p2 per pair; Gram space syrk n²·p per
    // factor, 2·n² per pair. Memory: Gram space holds an n×n matrix per factor, so it is avoided when
    // that would exceed 4 GiB and the feature form is smaller.
    const double dn = double(n), a = double(p1), b = double(p2);
    const double feature = dn * (a * a + b * b) + pairs_per_factor * 2.0 * dn * a * b;
    const double gram = dn * dn * (a + b) + pairs_per_factor * 2.0 * dn * dn;
    const double gram_bytes = 2.0 * dn * dn * double(itemsize);
    const double feature_bytes = dn * (a + b) * double(itemsize);
    if (gram_bytes > 4.0 * (1ull << 30) && feature_bytes < gram_bytes) return Space::Feature;
    return gram < feature ? Space::Gram : Space::Feature;
}

template <class T>
LinearFactor<T> linear_factor(const View<T>& x, Space space, bool need_debiased, const char* name) {
    LinearFactor<T> f;
    f.space = space;
    f.n = x.n;
    f.p = x.p;
    MatR<T> xc = centered(x, name);
    f.d = row_sq_norms(xc.data(), x.n, x.p);
    f.sum_d = f.d.sum();
    if (space == Space::Feature) {
        MatR<T> c(x.p, x.p);
        blas::syrk_t<T>(x.n, x.p, xc.data(), x.p, c.data(), x.p);
        f.self_biased = sym_sq_norm_upper(c);
        f.xc = std::move(xc);
    } else {
        f.gram.resize(x.n, x.n);
        blas::syrk_n<T>(x.n, x.p, xc.data(), x.p, f.gram.data(), x.n);
        f.self_biased = sym_sq_norm_upper(f.gram);
    }
    if (f.self_biased == 0.0) {
        fail(name, " has zero variance (every column is constant over the ", x.n,
             " samples): CKA is undefined for a constant representation; drop it or check how it was collected");
    }
    if (need_debiased) {
        f.self_debiased = debiased_from_cross(f.self_biased, f.d, f.d, f.sum_d, f.sum_d, x.n);
        if (!(f.self_debiased > 0.0)) {
            fail("the debiased HSIC of ", name, " with itself is ", f.self_debiased,
                 " (not positive) with n = ", x.n,
                 " samples, so debiased CKA is undefined; use more samples or debiased=False");
        }
    }
    return f;
}

template <class T>
double linear_cross(const LinearFactor<T>& fx, const LinearFactor<T>& fy) {
    if (fx.space != fy.space) throw std::logic_error("linear_cross: factors in different spaces");
    if (fx.space == Space::Feature) {
        MatR<T> c(fx.p, fy.p);
        blas::gemm_tn<T>(fx.n, fx.p, fy.p, fx.xc.data(), fx.p, fy.xc.data(), fy.p, c.data(), fy.p);
        return sq_norm(c);
    }
    return sym_inner_upper(fx.gram, fy.gram);
}

double debiased_from_cross(double cross, const VecD& d, const VecD& e, double sum_d, double sum_e, Index n) {
    return debiased_from_sums(cross, d.dot(e), sum_d, sum_e, double(n));
}

double debiased_from_sums(double cross, double sum_de, double sum_d, double sum_e, double n) {
    return cross - n / (n - 2.0) * sum_de + sum_d * sum_e / ((n - 1.0) * (n - 2.0));
}

template <class T>
double linear_cka_pair(const LinearFactor<T>& fx, const LinearFactor<T>& fy, bool debiased) {
    const double cross = linear_cross(fx, fy);
    if (!debiased) return cross / std::sqrt(fx.self_biased * fy.self_biased);
    const double num = debiased_from_cross(cross, fx.d, fy.d, fx.sum_d, fy.sum_d, fx.n);
    return num / std::sqrt(fx.self_debiased * fy.self_debiased);
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

#define REPRSIM_INSTANTIATE(T)                                                                          \
    template LinearFactor<T> linear_factor<T>(const View<T>&, Space, bool, const char*);             \
    template double linear_cross<T>(const LinearFactor<T>&, const LinearFactor<T>&);                  \
    template double linear_cka_pair<T>(const LinearFactor<T>&, const LinearFactor<T>&, bool);
REPRSIM_INSTANTIATE(float)
REPRSIM_INSTANTIATE(double)
#undef REPRSIM_INSTANTIATE

}  // namespace reprsim
