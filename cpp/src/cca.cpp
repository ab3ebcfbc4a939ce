#include "reprsim/cca.hpp"

#include "reprsim/blas.hpp"
#include "reprsim/centering.hpp"

#include <cmath>
#include <vector>

namespace reprsim {

namespace {

// C = op(A)·op(B) through the BLAS (the small products here reach p³ flops for wide layers).
MatD matmul(const MatD& a, bool ta, const MatD& b, bool tb) {
    const Index m = ta ? a.cols() : a.rows(), inner = ta ? a.rows() : a.cols(), k = tb ? b.rows() : b.cols();
    MatD c(m, k);
    if (m == 0 || k == 0) return c;
    if (inner == 0) return MatD::Zero(m, k);
    blas::dgemm_col(ta, tb, m, k, inner, a.data(), a.rows(), b.data(), b.rows(), c.data(), m);
    return c;
}

// Fast route; returns false (leaving f untouched) when it is not safe for this input.
bool cholesky_factor(const MatD& xc, CCAFactor& f) {
    const Index n = xc.rows(), p = xc.cols();
    if (p >= n) return false;
    MatD u(p, p);
    // XcᵀXc: the column-major (n×p) Xc is the row-major (p×n) Xcᵀ, so syrk "no-trans" on it gives the
    // upper triangle of the row-major p×p product, i.e. the lower triangle in column-major terms.
    blas::syrk_n<double>(p, n, xc.data(), n, u.data(), p);
    for (Index j = 0; j < p; ++j)
        for (Index i = 0; i < j; ++i) u(i, j) = u(j, i);
    if (blas::potrf_upper(p, u.data(), p) != 0) return false;
    for (Index j = 0; j < p; ++j)
        for (Index i = j + 1; i < p; ++i) u(i, j) = 0.0;
    if (blas::trcon_upper(p, u.data(), p) * kCholeskyMaxCondition < 1.0) return false;
    MatD t = u;
    if (blas::trtri_upper(p, t.data(), p) != 0) return false;
    f.rank = p;
    f.t = std::move(t);  // upper triangle U⁻¹; its zero lower triangle was copied from u
    f.r = std::move(u);
    f.cholesky = true;
    return true;
}

}  // namespace

template <class T>
CCAFactor cca_factor(const View<T>& x, double rank_rtol, const char* name, bool allow_cholesky) {
    CCAFactor f;
    f.n = x.n;
    f.p = x.p;
    MatD a = centered_colmajor_f64(x, name);
    if (a.squaredNorm() == 0.0) {
        fail(name, " has zero variance (every column is constant over the ", x.n,
             " samples): canonical correlations are undefined for a constant representation");
    }
    if (allow_cholesky && cholesky_factor(a, f)) {
        f.z = std::make_shared<const MatD>(std::move(a));
        return f;
    }
    const Index k = std::min(x.n, x.p);
    std::vector<int> jpvt(x.p);
    VecD tau(k);
    blas::geqp3(x.n, x.p, a.data(), x.n, jpvt.data(), tau.data());
    const double r00 = std::abs(a(0, 0));
    Index rank = 0;
    while (rank < k && std::abs(a(rank, rank)) > rank_rtol * r00) ++rank;
    f.rank = rank;

    // R (rank×p), columns returned to the input's order: Qᵀ·Xc = R·Pᵀ.
    f.r = MatD::Zero(rank, x.p);
    for (Index j = 0; j < x.p; ++j) {
        const Index col = jpvt[j];
        for (Index i = 0; i < std::min<Index>(rank, j + 1); ++i) f.r(i, col) = a(i, j);
    }
    blas::orgqr(x.n, rank, a.data(), x.n, tau.data());
    f.z = std::make_shared<const MatD>(a.leftCols(rank));
    return f;
}

void require_nontrivial_rank(const CCAFactor& f, const char* name) {
    if (f.rank >= f.n - 1) {
        fail(name, " has numerical rank ", f.rank, " after centring (width ", f.p, ") with only n = ", f.n,
             " samples; once the rank reaches n - 1 = ", f.n - 1,
             ", every canonical correlation is trivially 1. Reduce the features first (e.g. keep fewer than ",
             f.n - 1, " principal components), use more samples, or use reprsim.svcca");
    }
}

namespace {

// M = Qxᵀ·Qy = (Zx·Tx)ᵀ·(Zy·Ty) = Txᵀ·(Zxᵀ·Zy)·Ty.
MatD cross_m(const CCAFactor& fx, const CCAFactor& fy) {
    if (fx.n != fy.n) throw std::logic_error("cca_pair: different n");
    MatD m = matmul(*fx.z, true, *fy.z, false);
    if (fx.t.size() > 0) m = matmul(fx.t, true, m, false);
    if (fy.t.size() > 0) m = matmul(m, false, fy.t, false);
    return m;
}

}  // namespace

CCAResult cca_pair(const CCAFactor& fx, const CCAFactor& fy, bool vectors) {
    return cca_from_m(cross_m(fx, fy), vectors);
}

CCAResult cca_from_m(MatD m, bool vectors) {
    SVDResult s = svd(std::move(m), vectors);
    CCAResult out;
    out.rho = std::move(s.s);
    if (vectors) {
        out.a = std::move(s.u);
        out.b = s.vt.transpose();
    }
    return out;
}

VecD projection_weights(const MatD& r, const MatD& a) { return matmul(a, true, r, false).cwiseAbs().rowwise().sum(); }

MatD svcca_basis(const MatD& r, double keep, bool on_variance) {
    // basisᵀ·Xc = R = U·S·Vᵀ, so the principal-component scores are basis·U·S and basis·U_k is an
    // orthonormal basis of the top-k components.
    SVDResult s = svd(r, true);
    VecD w = on_variance ? VecD(s.s.array().square()) : s.s;
    const double total = w.sum();
    Index k = 0;
    double acc = 0.0;
    while (k < w.size()) {
        acc += w[k];
        ++k;
        if (acc >= keep * total) break;
    }
    return s.u.leftCols(k);
}

CCAFactor svcca_reduce(const CCAFactor& f, double keep, bool on_variance) {
    const MatD uk = svcca_basis(f.r, keep, on_variance);
    CCAFactor out;
    out.n = f.n;
    out.p = f.p;
    out.rank = uk.cols();
    out.z = f.z;
    out.cholesky = f.cholesky;
    out.t = f.t.size() > 0 ? matmul(f.t, false, uk, false) : uk;
    out.r = matmul(uk, true, f.r, false);
    return out;
}

CCAStat cca_stat_from_name(const std::string& name) {
    if (name == "mean") return CCAStat::Mean;
    if (name == "mean_sq") return CCAStat::MeanSq;
    if (name == "pwcca_x") return CCAStat::PWCCAX;
    if (name == "pwcca_y") return CCAStat::PWCCAY;
    if (name == "pwcca_smaller") return CCAStat::PWCCASmaller;
    if (name == "mean_padded") return CCAStat::MeanPadded;
    if (name == "mean_sq_padded") return CCAStat::MeanSqPadded;
    if (name == "pwcca_padded") return CCAStat::PWCCAPadded;
    fail("unknown CCA statistic '", name,
         "'; expected one of mean, mean_sq, pwcca_x, pwcca_y, pwcca_smaller, mean_padded, mean_sq_padded, "
         "pwcca_padded");
}

bool is_pwcca(CCAStat stat) {
    return stat == CCAStat::PWCCAX || stat == CCAStat::PWCCAY || stat == CCAStat::PWCCASmaller ||
           stat == CCAStat::PWCCAPadded;
}

double sphere_mean_abs_coordinate(Index d) {
    if (d < 1) throw std::logic_error("sphere_mean_abs_coordinate: d < 1");
    const double h = 0.5 * double(d);
    constexpr double kPi = 3.14159265358979323846;
    return std::exp(std::lgamma(h) - std::lgamma(h + 0.5)) / std::sqrt(kPi);
}

double cca_statistic(const CCAFactor& fx, const CCAFactor& fy, CCAStat stat) {
    return cca_statistic_from_m(cross_m(fx, fy), fx.r, fy.r, fx.p, fy.p, stat);
}

namespace {

// The padded PWCCA (see CCAStat): the canonical directions of x grouped by their correlation, each group
// weighted by the expected projection weight of a random orthonormal basis of its subspace (a group of
// one: Morcos's weight), the part of x's column space without a correlation being the group of ρ = 0.
double padded_pwcca(const CCAResult& res, const MatD& rx) {
    const Index m = res.rho.size(), d_rest = rx.rows() - m;
    const MatD proj = res.a.transpose() * rx;  // m×p: ⟨h_i, x̃_j⟩ in x's basis
    // Σ_j ‖P_G x̃_j‖ over a group G of directions (rows [i0, i1) of proj), times d·E|u₁|.
    auto group_weight = [&](Index i0, Index i1) {
        const Index d = i1 - i0;
        if (d == 1) return proj.row(i0).cwiseAbs().sum();
        return double(d) * sphere_mean_abs_coordinate(d) * proj.middleRows(i0, d).colwise().norm().sum();
    };
    double num = 0.0, den = 0.0;
    for (Index i0 = 0; i0 < m;) {
        Index i1 = i0 + 1;
        while (i1 < m && res.rho[i1 - 1] - res.rho[i1] <= kTiedCorrelation) ++i1;
        const double w = group_weight(i0, i1);
        num += w * res.rho.segment(i0, i1 - i0).mean();
        den += w;
        i0 = i1;
    }
    if (d_rest > 0) {
        // P_S r_j in x's basis: r_j minus its part in the span of A's orthonormal columns, projected out
        // twice (one pass leaves rounding of order ε·‖r_j‖ in directions of A).
        MatD resid = rx - res.a * proj;
        resid -= res.a * (res.a.transpose() * resid);
        den += double(d_rest) * sphere_mean_abs_coordinate(d_rest) * resid.colwise().norm().sum();
    }
    return num / den;
}

// PWCCA of a result with vectors, weighted from the side `stat` names.
double pwcca_of(const CCAResult& res, const MatD& rx, const MatD& ry, Index px, Index py, CCAStat stat) {
    if (stat == CCAStat::PWCCAPadded) return padded_pwcca(res, rx);
    const bool from_x = stat == CCAStat::PWCCAX || (stat == CCAStat::PWCCASmaller && px <= py);
    const VecD w = from_x ? projection_weights(rx, res.a) : projection_weights(ry, res.b);
    return w.dot(res.rho) / w.sum();
}

}  // namespace

double cca_statistic_from_m(MatD m, const MatD& rx, const MatD& ry, Index px, Index py, CCAStat stat) {
    CCAResult res = cca_from_m(std::move(m), is_pwcca(stat));
    const VecD& rho = res.rho;
    if (rho.size() == 0) throw std::logic_error("cca_statistic: no canonical correlations");
    switch (stat) {
        case CCAStat::Mean:
            return rho.mean();
        case CCAStat::MeanSq:
            return rho.array().square().mean();
        case CCAStat::MeanPadded:
            return rho.sum() / double(std::max<Index>(rx.rows(), rho.size()));
        case CCAStat::MeanSqPadded:
            return rho.array().square().sum() / double(std::max<Index>(rx.rows(), rho.size()));
        default:
            break;
    }
    return pwcca_of(res, rx, ry, px, py, stat);
}

CCASummary cca_summary(const CCAFactor& fx, const CCAFactor& fy, CCAStat pwcca_stat) {
    if (!is_pwcca(pwcca_stat)) {
        throw std::logic_error("cca_summary: the PWCCA statistic must name a weighting side");
    }
    CCAResult res = cca_from_m(cross_m(fx, fy), true);
    if (res.rho.size() == 0) throw std::logic_error("cca_summary: no canonical correlations");
    CCASummary out;
    out.mean = res.rho.mean();
    out.mean_sq = res.rho.array().square().mean();
    out.pwcca = pwcca_of(res, fx.r, fy.r, fx.p, fy.p, pwcca_stat);
    out.rank_x = fx.rank;
    out.rank_y = fy.rank;
    out.rho = std::move(res.rho);
    return out;
}

CCASummary cca_summary_from_m(MatD m, const MatD& rx, const MatD& ry, Index px, Index py, CCAStat pwcca_stat) {
    if (pwcca_stat == CCAStat::Mean || pwcca_stat == CCAStat::MeanSq) {
        throw std::logic_error("cca_summary: the PWCCA statistic must name a weighting side");
    }
    CCAResult res = cca_from_m(std::move(m), true);
    if (res.rho.size() == 0) throw std::logic_error("cca_summary: no canonical correlations");
    CCASummary out;
    out.mean = res.rho.mean();
    out.mean_sq = res.rho.array().square().mean();
    out.pwcca = pwcca_of(res, rx, ry, px, py, pwcca_stat);
    out.rho = std::move(res.rho);
    return out;
}

namespace {

// The Cholesky factor U (upper, zero below) of the symmetric block of the row-major C (upper triangle
// valid) at (off, off) of width p, and whether the Cholesky route is safe for it (as in cholesky_factor).
bool cholesky_block(const MatR<double>& c, Index off, Index p, MatD& u) {
    u.resize(p, p);
    for (Index j = 0; j < p; ++j)
        for (Index i = 0; i <= j; ++i) u(i, j) = u(j, i) = c(off + i, off + j);
    if (blas::potrf_upper(p, u.data(), p) != 0) return false;
    for (Index j = 0; j < p; ++j)
        for (Index i = j + 1; i < p; ++i) u(i, j) = 0.0;
    return blas::trcon_upper(p, u.data(), p) * kCholeskyMaxCondition >= 1.0;
}

}  // namespace

template <class T>
bool cca_pair_m(const View<T>& x, const View<T>& y, double keep, bool on_variance, CCAPairM& out) {
    const Index n = x.n, p1 = x.p, p2 = y.p, p = p1 + p2;
    if (p1 >= n - 1 || p2 >= n - 1) return false;
    check_blas_dims("x", n, p);
    const ScaledMeans mx = scaled_column_means<double>(x, "x");
    const ScaledMeans my = scaled_column_means<double>(y, "y");
    MatR<double> c(p, p);
    joint_centred_syrk<double>(x, mx, y, my, c.data());
    auto zero_variance = [&](Index off, Index w) {
        for (Index j = 0; j < w; ++j)
            if (c(off + j, off + j) != 0.0) return false;
        return true;
    };
    if (zero_variance(0, p1) || zero_variance(p1, p2)) {
        const bool is_x = zero_variance(0, p1);
        fail(is_x ? "x" : "y", " has zero variance (every column is constant over the ", n,
             " samples): canonical correlations are undefined for a constant representation");
    }
    MatD ux, uy;
    if (!cholesky_block(c, 0, p1, ux) || !cholesky_block(c, p1, p2, uy)) return false;
    // M = Ux⁻ᵀ·(XcᵀYc)·Uy⁻¹ (Qx = Xc·Ux⁻¹): the XcᵀYc block, then two triangular solves.
    MatD m(p1, p2);
    for (Index j = 0; j < p2; ++j)
        for (Index i = 0; i < p1; ++i) m(i, j) = c(i, p1 + j);
    blas::trsm_upper(true, p1, p2, ux.data(), p1, m.data(), p1);
    blas::trsm_upper(false, p1, p2, uy.data(), p2, m.data(), p1);
    out.px = p1;
    out.py = p2;
    if (keep > 0) {
        // SVCCA: bases U_k of the top components of each R; M' = U_kxᵀ·M·U_ky, R' = U_kᵀ·R.
        const MatD kx = svcca_basis(ux, keep, on_variance), ky = svcca_basis(uy, keep, on_variance);
        out.m = matmul(kx, true, matmul(m, false, ky, false), false);
        out.rx = matmul(kx, true, ux, false);
        out.ry = matmul(ky, true, uy, false);
        return true;
    }
    out.m = std::move(m);
    out.rx = std::move(ux);
    out.ry = std::move(uy);
    return true;
}

template bool cca_pair_m<float>(const View<float>&, const View<float>&, double, bool, CCAPairM&);
template bool cca_pair_m<double>(const View<double>&, const View<double>&, double, bool, CCAPairM&);
template CCAFactor cca_factor<float>(const View<float>&, double, const char*, bool);
template CCAFactor cca_factor<double>(const View<double>&, double, const char*, bool);

}  // namespace reprsim
