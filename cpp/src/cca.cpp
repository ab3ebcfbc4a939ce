#include "reprsim/cca.hpp"

#include "reprsim/blas.hpp"
#include "reprsim/centering.hpp"

#include <vector>

namespace reprsim {

template <class T>
CCAFactor cca_factor(const View<T>& x, double rank_rtol, const char* name) {
    CCAFactor f;
    f.n = x.n;
    f.p = x.p;
    MatD a = centered_colmajor_f64(x, name);
    const Index k = std::min(x.n, x.p);
    std::vector<int> jpvt(x.p);
    VecD tau(k);
    blas::geqp3(x.n, x.p, a.data(), x.n, jpvt.data(), tau.data());

    const double r00 = k > 0 ? std::abs(a(0, 0)) : 0.0;
    if (r00 == 0.0) {
        fail(name, " has zero variance (every column is constant over the ", x.n,
             " samples): canonical correlations are undefined for a constant representation");
    }
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
    f.q = a.leftCols(rank);
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

// M = Qxᵀ·Qy (rank_x × rank_y).
MatD cross_q(const CCAFactor& fx, const CCAFactor& fy) {
    if (fx.n != fy.n) throw std::logic_error("cca_pair: different n");
    // A column-major (n×r) matrix is the row-major (r×n) matrix Qᵀ, so the column-major M is the
    // row-major Mᵀ = Qyᵀ·Qx.
    MatD m(fx.rank, fy.rank);
    if (fx.rank > 0 && fy.rank > 0) {
        blas::gemm_nt<double>(fy.rank, fx.rank, fx.n, fy.q.data(), fx.n, fx.q.data(), fx.n, m.data(), fx.rank);
    }
    return m;
}

}  // namespace

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

CCAResult cca_pair(const CCAFactor& fx, const CCAFactor& fy, bool vectors) {
    return cca_from_m(cross_q(fx, fy), vectors);
}

VecD projection_weights(const MatD& r, const MatD& a) { return (a.transpose() * r).cwiseAbs().rowwise().sum(); }

VecD projection_weights(const CCAFactor& f, const MatD& a) { return projection_weights(f.r, a); }

MatD svcca_basis(const MatD& r, double keep, bool on_variance) {
    // Xc = Q·R and R = U·S·Vᵀ, so the principal-component scores are Q·U·S and Q·U_k is an orthonormal
    // basis of the top-k components.
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
    const MatD u = svcca_basis(f.r, keep, on_variance);
    CCAFactor out;
    out.n = f.n;
    out.p = f.p;
    out.rank = u.cols();
    out.q = f.q * u;
    out.r = u.transpose() * f.r;
    return out;
}

template CCAFactor cca_factor<float>(const View<float>&, double, const char*);
template CCAFactor cca_factor<double>(const View<double>&, double, const char*);

}  // namespace reprsim

namespace reprsim {

double cca_statistic(const CCAFactor& fx, const CCAFactor& fy, CCAStat stat) {
    return cca_statistic_from_m(cross_q(fx, fy), fx.r, fy.r, fx.p, fy.p, stat);
}

double cca_statistic_from_m(MatD m, const MatD& rx, const MatD& ry, Index px, Index py, CCAStat stat) {
    const bool pw = stat == CCAStat::PWCCAX || stat == CCAStat::PWCCAY || stat == CCAStat::PWCCASmaller;
    CCAResult res = cca_from_m(std::move(m), pw);
    const VecD& rho = res.rho;
    if (rho.size() == 0) throw std::logic_error("cca_statistic: no canonical correlations");
    switch (stat) {
        case CCAStat::Mean:
            return rho.mean();
        case CCAStat::MeanSq:
            return rho.array().square().mean();
        default:
            break;
    }
    const bool from_x = stat == CCAStat::PWCCAX || (stat == CCAStat::PWCCASmaller && px <= py);
    const VecD w = from_x ? projection_weights(rx, res.a) : projection_weights(ry, res.b);
    return w.dot(rho) / w.sum();
}

}  // namespace reprsim
