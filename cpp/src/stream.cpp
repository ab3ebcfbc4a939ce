#include "reprsim/stream.hpp"

#include "reprsim/blas.hpp"
#include "reprsim/cca.hpp"
#include "reprsim/centering.hpp"
#include "reprsim/cka.hpp"
#include "reprsim/linalg.hpp"

#include <Eigen/Dense>

#include <algorithm>

namespace reprsim {

namespace {

// Centred float64 copy (row-major) of v, with its float64 column means; throws on NaN/Inf and on
// magnitudes the accumulated moments cannot hold.
template <class T>
MatR<double> centred_f64(const View<T>& v, const std::string& name, VecD& mean) {
    check_blas_dims(name.c_str(), v.n, v.p);
    double spread = 0.0;
    mean = column_means(v, name.c_str(), &spread);
    check_stream_spread(spread, name);
    MatR<double> out(v.n, v.p);
    for (Index i = 0; i < v.n; ++i) {
        const T* row = v.data + i * v.row_stride;
        double* dst = out.data() + i * v.p;
        for (Index j = 0; j < v.p; ++j) dst[j] = static_cast<double>(row[j * v.col_stride]) - mean[j];
    }
    return out;
}

// UᵀU (p×p, full) of a row-major (n×p) float64 matrix, through syrk.
MatD cross_self(const MatR<double>& u) {
    const Index n = u.rows(), p = u.cols();
    MatD c(p, p);
    if (n == 0 || p == 0) return MatD::Zero(p, p);
    // The row-major upper triangle is the column-major lower one.
    blas::syrk_t<double>(n, p, u.data(), p, c.data(), p);
    for (Index j = 0; j < p; ++j)
        for (Index i = 0; i < j; ++i) c(i, j) = c(j, i);
    return c;
}

// UᵀV (p1×p2) of two row-major float64 matrices with the same rows, through gemm.
MatD cross_pair(const MatR<double>& u, const MatR<double>& v) {
    const Index n = u.rows(), p1 = u.cols(), p2 = v.cols();
    MatR<double> c(p1, p2);
    blas::gemm_tn<double>(n, p1, p2, u.data(), p1, v.data(), p2, c.data(), p2);
    return c;
}

// U·Uᵀ (n×n, full) of a row-major (n×p) float64 matrix.
MatD gram_of(const MatR<double>& u) {
    const Index n = u.rows(), p = u.cols();
    MatD k(n, n);
    blas::syrk_n<double>(n, p, u.data(), p, k.data(), n);
    for (Index j = 0; j < n; ++j)
        for (Index i = 0; i < j; ++i) k(i, j) = k(j, i);
    return k;
}

template <class T>
double eps_of() {
    return double(std::numeric_limits<T>::epsilon());
}

void shift_layer(LayerMoments& m, const VecD& delta, double n) {
    shift_layer_sums(m.sum_d2, m.sum_ud, delta, m.c * delta, m.c.trace(), n);
    m.c.noalias() += n * delta * delta.transpose();
}

// tr_x, tr_y: traces of the layers' c before their shift.
void shift_pair(PairMoments& m, const VecD& dx, const VecD& dy, double tr_x, double tr_y, double n) {
    shift_pair_sums(m.sum_de, m.sum_xe, m.sum_yd, dx, dy, m.cxy * dy, m.cxy.transpose() * dx, tr_x, tr_y, n);
    m.cxy.noalias() += n * dx * dy.transpose();
}

// Shifts s's moments, in place, to means that differ from its own by dx, dy: afterwards they are
// sums about the new means, no longer about s's mean.
void shift(StreamState& s, const std::vector<VecD>& dx, const std::vector<VecD>& dy) {
    std::vector<double> tx(s.k1), ty(s.k2);
    for (Index i = 0; i < s.k1; ++i) tx[i] = s.x[i].c.trace();
    for (Index j = 0; j < s.k2; ++j) ty[j] = s.y[j].c.trace();
    for (Index i = 0; i < s.k1; ++i)
        for (Index j = 0; j < s.k2; ++j) shift_pair(s.xy[i * s.k2 + j], dx[i], dy[j], tx[i], ty[j], s.n);
    for (Index i = 0; i < s.k1; ++i) shift_layer(s.x[i], dx[i], s.n);
    for (Index j = 0; j < s.k2; ++j) shift_layer(s.y[j], dy[j], s.n);
}

void add_layer(LayerMoments& a, const LayerMoments& b) {
    a.c += b.c;
    a.sum_d2 += b.sum_d2;
    a.sum_ud += b.sum_ud;
}

void add_pair(PairMoments& a, const PairMoments& b) {
    a.cxy += b.cxy;
    a.sum_de += b.sum_de;
    a.sum_xe += b.sum_xe;
    a.sum_yd += b.sum_yd;
}

}  // namespace

void check_stream_spread(double spread, const std::string& name) {
    if (spread > 0.0 && std::abs(std::ilogb(spread)) > kStreamExponent) {
        fail(name, " has centred values of magnitude up to ", spread,
             ": the streaming accumulators keep float64 sums of up to fourth powers of the data, which ",
             spread > 1.0 ? "overflow" : "underflow", " beyond about 1e", spread > 1.0 ? "" : "-",
             "60; rescale the data (e.g. divide every batch by one constant: the metrics are invariant to scaling)");
    }
}

void check_stream_mean_gap(double gap, const char* what, const char* side, Index i) {
    if (gap > 0.0 && std::ilogb(gap) > kStreamExponent) {
        fail(what, ": the means of ", side, " layer ", i, " differ by up to ", gap,
             " between the rows seen and the rows added: the streaming accumulators keep float64 sums of up "
             "to fourth powers of the centred data, which overflow beyond about 1e60; rescale the data (e.g. "
             "divide every batch by one constant: the metrics are invariant to scaling)");
    }
}

void shift_layer_sums(double& sum_d2, VecD& sum_ud, const VecD& delta, const VecD& c_delta, double tr, double n) {
    // d_i → d_i + 2u_iᵀδ + s with s = ‖δ‖²; Σu_i = 0 removes the odd terms.
    const double s = delta.squaredNorm();
    sum_d2 += 4.0 * delta.dot(c_delta) + n * s * s + 4.0 * delta.dot(sum_ud) + 2.0 * s * tr;
    sum_ud += 2.0 * c_delta + delta * (tr + n * s);
}

void shift_pair_sums(double& sum_de, VecD& sum_xe, VecD& sum_yd, const VecD& dx, const VecD& dy, const VecD& c_dy,
                     const VecD& ct_dx, double tr_x, double tr_y, double n) {
    const double s = dx.squaredNorm(), t = dy.squaredNorm();
    sum_de += 2.0 * dy.dot(sum_yd) + 2.0 * dx.dot(sum_xe) + 4.0 * dx.dot(c_dy) + t * tr_x + s * tr_y + n * s * t;
    sum_xe += 2.0 * c_dy + dx * (tr_y + n * t);
    sum_yd += 2.0 * ct_dx + dy * (tr_x + n * s);
}

template <class T>
StreamState batch_moments(const std::vector<View<T>>& xs, const std::vector<View<T>>& ys,
                          const std::vector<std::string>& names_x, const std::vector<std::string>& names_y) {
    const Index k1 = Index(xs.size()), k2 = Index(ys.size());
    if (k1 == 0 || k2 == 0) throw std::logic_error("batch_moments: no layers");
    const Index n = xs[0].n;
    StreamState s;
    s.k1 = k1;
    s.k2 = k2;
    s.n = double(n);
    s.rank_eps = eps_of<T>();
    s.x.resize(k1);
    s.y.resize(k2);
    s.xy.resize(k1 * k2);

    std::vector<MatR<double>> u(k1), v(k2);
    MatD norms(n, k1 + k2);  // d of every x-layer, then e of every y-layer
    for (Index i = 0; i < k1; ++i) {
        u[i] = centred_f64(xs[i], names_x[i], s.x[i].mean);
        norms.col(i) = u[i].rowwise().squaredNorm();
    }
    for (Index j = 0; j < k2; ++j) {
        v[j] = centred_f64(ys[j], names_y[j], s.y[j].mean);
        norms.col(k1 + j) = v[j].rowwise().squaredNorm();
    }
    for (Index i = 0; i < k1; ++i) {
        LayerMoments& m = s.x[i];
        m.c = cross_self(u[i]);
        const MatD w = u[i].transpose() * norms;  // Σ u·d for every d and e column
        m.sum_ud = w.col(i);
        m.sum_d2 = norms.col(i).squaredNorm();
        for (Index j = 0; j < k2; ++j) s.xy[i * k2 + j].sum_xe = w.col(k1 + j);
    }
    for (Index j = 0; j < k2; ++j) {
        LayerMoments& m = s.y[j];
        m.c = cross_self(v[j]);
        const MatD w = v[j].transpose() * norms;
        m.sum_ud = w.col(k1 + j);
        m.sum_d2 = norms.col(k1 + j).squaredNorm();
        for (Index i = 0; i < k1; ++i) s.xy[i * k2 + j].sum_yd = w.col(i);
    }
    for (Index i = 0; i < k1; ++i) {
        for (Index j = 0; j < k2; ++j) {
            PairMoments& m = s.xy[i * k2 + j];
            m.cxy = cross_pair(u[i], v[j]);
            m.sum_de = norms.col(i).dot(norms.col(k1 + j));
        }
    }
    return s;
}

void check_compatible(const StreamState& a, const StreamState& b, const char* what) {
    if (a.k1 != b.k1 || a.k2 != b.k2) {
        fail(what, ": the accumulators hold different numbers of layers (", a.k1, " x ", a.k2, " and ", b.k1, " x ",
             b.k2, "); only accumulators over the same layers combine");
    }
    if (a.empty() || b.empty()) return;
    for (Index i = 0; i < a.k1; ++i) {
        if (a.width_x(i) != b.width_x(i)) {
            fail(what, ": x layer ", i, " has width ", b.width_x(i), " but the accumulator has seen width ",
                 a.width_x(i), "; every batch of a layer must have the same number of features");
        }
    }
    for (Index j = 0; j < a.k2; ++j) {
        if (a.width_y(j) != b.width_y(j)) {
            fail(what, ": y layer ", j, " has width ", b.width_y(j), " but the accumulator has seen width ",
                 a.width_y(j), "; every batch of a layer must have the same number of features");
        }
    }
    // Merging shifts both parts' moments by the difference of their means (c += n·δδᵀ, and fourth
    // powers in Σd²): the same range limit as for a batch's centred values.
    auto check_means = [&](const LayerMoments& la, const LayerMoments& lb, const char* side, Index i) {
        check_stream_mean_gap((la.mean - lb.mean).cwiseAbs().maxCoeff(), what, side, i);
    };
    for (Index i = 0; i < a.k1; ++i) check_means(a.x[i], b.x[i], "x", i);
    for (Index j = 0; j < a.k2; ++j) check_means(a.y[j], b.y[j], "y", j);
}

StreamState merge(const StreamState& a, const StreamState& b) {
    StreamState out = a;
    merge_into(out, b);
    return out;
}

void merge_into(StreamState& a, StreamState b) {
    check_compatible(a, b, "merge");
    if (b.empty()) return;
    if (a.empty()) {
        a = std::move(b);
        return;
    }
    const double n = a.n + b.n;
    const double wa = a.n / n, wb = b.n / n;
    std::vector<VecD> mx(a.k1), my(a.k2), dxa(a.k1), dxb(a.k1), dya(a.k2), dyb(a.k2);
    // Combined mean m = wa·x̄_a + wb·x̄_b; the parts' shifts are x̄_a − m = wb·Δ and x̄_b − m = −wa·Δ.
    for (Index i = 0; i < a.k1; ++i) {
        const VecD diff = a.x[i].mean - b.x[i].mean;
        mx[i] = wa * a.x[i].mean + wb * b.x[i].mean;
        dxa[i] = wb * diff;
        dxb[i] = -wa * diff;
    }
    for (Index j = 0; j < a.k2; ++j) {
        const VecD diff = a.y[j].mean - b.y[j].mean;
        my[j] = wa * a.y[j].mean + wb * b.y[j].mean;
        dya[j] = wb * diff;
        dyb[j] = -wa * diff;
    }
    shift(a, dxa, dya);
    shift(b, dxb, dyb);
    a.n = n;
    a.rank_eps = std::max(a.rank_eps, b.rank_eps);
    for (Index i = 0; i < a.k1; ++i) {
        add_layer(a.x[i], b.x[i]);
        a.x[i].mean = std::move(mx[i]);
    }
    for (Index j = 0; j < a.k2; ++j) {
        add_layer(a.y[j], b.y[j]);
        a.y[j].mean = std::move(my[j]);
    }
    for (std::size_t k = 0; k < a.xy.size(); ++k) add_pair(a.xy[k], b.xy[k]);
}

namespace {

void require_rows(const StreamState& s, double min_n, const char* what) {
    if (s.n < min_n) fail("the accumulator has seen n = ", s.n, " rows; ", what, " needs at least ", min_n);
}

[[noreturn]] void zero_variance(const std::string& name, double n, const char* consequence) {
    fail(name, " has zero variance (every column is constant over the ", n, " rows seen): ", consequence);
}

}  // namespace

double stream_cka(const StreamState& s, Index i, Index j, bool debiased, const std::string& name_x,
                  const std::string& name_y) {
    const LayerMoments& x = s.x[i];
    const LayerMoments& y = s.y[j];
    const PairMoments& p = s.pair(i, j);
    CKASums m;
    m.n = s.n;
    m.cross = p.cxy.squaredNorm();
    m.sxx = x.c.squaredNorm();
    m.syy = y.c.squaredNorm();
    m.tx = x.c.trace();
    m.ty = y.c.trace();
    m.sum_d2 = x.sum_d2;
    m.sum_e2 = y.sum_d2;
    m.sum_de = p.sum_de;
    return cka_from_sums(m, debiased, name_x, name_y);
}

double stream_procrustes_nuclear(const StreamState& s, Index i, Index j, const std::string& name_x,
                                 const std::string& name_y) {
    require_rows(s, 2.0, "the Procrustes distance");
    const double tx = s.x[i].c.trace(), ty = s.y[j].c.trace();
    const char* why = "it cannot be scaled to unit norm, so the Procrustes distance is undefined";
    if (tx == 0.0) zero_variance(name_x, s.n, why);
    if (ty == 0.0) zero_variance(name_y, s.n, why);
    const VecD sv = svd(s.pair(i, j).cxy, false).s;
    return sv.sum() / (std::sqrt(tx) * std::sqrt(ty));
}

CholFactor chol_factor(const MatD& c, double n, double rank_eps, const std::string& name) {
    CholFactor f;
    f.n = Index(n);
    f.p = c.rows();
    const double max_diag = f.p > 0 ? c.diagonal().maxCoeff() : 0.0;
    if (!(max_diag > 0.0)) {
        zero_variance(name, n, "canonical correlations are undefined for a constant representation");
    }
    const double m = double(std::max<Index>(f.n, f.p));
    const double tol = std::max(rank_rtol(Index(n), c.rows(), rank_eps), std::sqrt(m * std::numeric_limits<double>::epsilon()));
    MatD a = c;
    f.piv.resize(f.p);
    // dpstrf stops once the largest remaining diagonal, R_kk², is at most tol²·R_11².
    f.rank = blas::pstrf_upper(f.p, a.data(), f.p, f.piv.data(), tol * tol * max_diag);
    f.u11 = a.topLeftCorner(f.rank, f.rank).triangularView<Eigen::Upper>();
    f.r = MatD::Zero(f.rank, f.p);
    for (Index jj = 0; jj < f.p; ++jj) {
        const Index col = f.piv[jj];
        for (Index ii = 0; ii < std::min<Index>(f.rank, jj + 1); ++ii) f.r(ii, col) = a(ii, jj);
    }
    return f;
}

void chol_svcca_reduce(CholFactor& f, double keep, bool on_variance) {
    f.basis = svcca_basis(f.r, keep, on_variance);
    f.r = f.basis.transpose() * f.r;
    f.rank = f.basis.cols();
}

MatD stream_cross_q(const CholFactor& fx, const CholFactor& fy, const MatD& cxy) {
    const Index rx = fx.u11.rows(), ry = fy.u11.rows();
    MatD m(rx, ry);
    for (Index b = 0; b < ry; ++b)
        for (Index a = 0; a < rx; ++a) m(a, b) = cxy(fx.piv[a], fy.piv[b]);
    // U₁₁ₓᵀ·Z = S, then M·U₁₁ᵧ = Z, i.e. U₁₁ᵧᵀ·Mᵀ = Zᵀ.
    fx.u11.triangularView<Eigen::Upper>().transpose().solveInPlace(m);
    MatD mt = m.transpose();
    fy.u11.triangularView<Eigen::Upper>().transpose().solveInPlace(mt);
    m = mt.transpose();
    if (fx.basis.size() > 0) m = fx.basis.transpose() * m;
    if (fy.basis.size() > 0) m = m * fy.basis;
    return m;
}

template <class T>
HSICTerms batch_hsic(const std::vector<View<T>>& xs, const std::vector<View<T>>& ys, bool debiased,
                     const std::vector<std::string>& names_x, const std::vector<std::string>& names_y) {
    const Index k1 = Index(xs.size()), k2 = Index(ys.size());
    const Index n = xs[0].n;
    const double dn = double(n);
    Index p1 = 0, p2 = 0;
    for (const auto& v : xs) p1 = std::max(p1, v.p);
    for (const auto& v : ys) p2 = std::max(p2, v.p);
    const Space space = choose_space(n, p1, p2, sizeof(double), k1, k2);

    struct Part {
        MatR<double> u;  // centred features (feature space)
        MatD k;          // centred Gram (Gram space)
        VecD d;
        double self = 0.0;
    };
    auto make = [&](const View<T>& v, const std::string& name) {
        Part part;
        VecD mean;
        part.u = centred_f64(v, name, mean);
        part.d = part.u.rowwise().squaredNorm();
        if (space == Space::Feature) {
            part.self = cross_self(part.u).squaredNorm();
        } else {
            part.k = gram_of(part.u);
            part.self = part.k.squaredNorm();
            part.u.resize(0, 0);
        }
        return part;
    };
    std::vector<Part> px, py;
    for (Index i = 0; i < k1; ++i) px.push_back(make(xs[i], names_x[i]));
    for (Index j = 0; j < k2; ++j) py.push_back(make(ys[j], names_y[j]));

    auto hsic = [&](double cross, const Part& a, const Part& b) {
        if (!debiased) return cross / ((dn - 1.0) * (dn - 1.0));
        return debiased_from_sums(cross, a.d.dot(b.d), a.d.sum(), b.d.sum(), dn) / (dn * (dn - 3.0));
    };
    HSICTerms out;
    out.xy.resize(k1, k2);
    out.xx.resize(k1);
    out.yy.resize(k2);
    for (Index i = 0; i < k1; ++i) out.xx[i] = hsic(px[i].self, px[i], px[i]);
    for (Index j = 0; j < k2; ++j) out.yy[j] = hsic(py[j].self, py[j], py[j]);
    for (Index i = 0; i < k1; ++i) {
        for (Index j = 0; j < k2; ++j) {
            const double cross = space == Space::Feature ? cross_pair(px[i].u, py[j].u).squaredNorm()
                                                         : (px[i].k.array() * py[j].k.array()).sum();
            out.xy(i, j) = hsic(cross, px[i], py[j]);
        }
    }
    return out;
}

#define REPRSIM_INSTANTIATE(T)                                                                               \
    template StreamState batch_moments<T>(const std::vector<View<T>>&, const std::vector<View<T>>&,         \
                                          const std::vector<std::string>&, const std::vector<std::string>&); \
    template HSICTerms batch_hsic<T>(const std::vector<View<T>>&, const std::vector<View<T>>&, bool,        \
                                     const std::vector<std::string>&, const std::vector<std::string>&);
REPRSIM_INSTANTIATE(float)
REPRSIM_INSTANTIATE(double)
#undef REPRSIM_INSTANTIATE

}  // namespace reprsim
