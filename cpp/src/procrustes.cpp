#include "reprsim/procrustes.hpp"

#include "reprsim/blas.hpp"
#include "reprsim/centering.hpp"
#include "reprsim/linalg.hpp"

#include <type_traits>
#include <vector>

namespace reprsim {

template <class T>
ProcrustesFactor<T> procrustes_factor(const View<T>& x, const char* name) {
    ProcrustesFactor<T> f;
    f.n = x.n;
    f.p = x.p;
    VecD d;
    MatR<T> xc = centered(x, name, &d);
    f.norm = std::sqrt(d.sum());
    if (f.norm == 0.0) {
        fail(name, " has zero variance (every column is constant over the ", x.n,
             " samples): it cannot be scaled to unit norm, so the Procrustes distance is undefined");
    }
    if (x.p <= x.n) {
        f.f = std::move(xc);
        return f;
    }
    // p > n: an n-column factor from the centred Gram, K = V·Λ·Vᵀ, F = V·√Λ over the eigenvalues
    // above rounding level.
    MatR<T> k(x.n, x.n);
    blas::syrk_n<T>(x.n, x.p, xc.data(), x.p, k.data(), x.n);
    MatD g(x.n, x.n);
    for (Index i = 0; i < x.n; ++i)
        for (Index j = i; j < x.n; ++j) g(i, j) = g(j, i) = static_cast<double>(k(i, j));
    VecD w(x.n);
    blas::syevd(x.n, g.data(), x.n, w.data(), true);
    const double tol = w[x.n - 1] * double(x.n) * std::numeric_limits<T>::epsilon();
    Index keep = 0;
    while (keep < x.n && w[x.n - 1 - keep] > tol) ++keep;
    f.f.resize(x.n, keep);
    for (Index c = 0; c < keep; ++c) {
        const Index src = x.n - 1 - c;
        const double root = std::sqrt(w[src]);
        for (Index i = 0; i < x.n; ++i) f.f(i, c) = static_cast<T>(g(i, src) * root);
    }
    return f;
}

template <class T>
double procrustes_nuclear(const ProcrustesFactor<T>& fx, const ProcrustesFactor<T>& fy) {
    const Index kx = fx.f.cols(), ky = fy.f.cols();
    MatR<T> c(kx, ky);
    blas::gemm_tn<T>(fx.n, kx, ky, fx.f.data(), kx, fy.f.data(), ky, c.data(), ky);
    // Singular values are the same for the matrix and its transpose: read the row-major buffer as a
    // column-major (ky×kx) matrix. A float32 product gets a float32 SVD: its entries already carry
    // float32 rounding (relative ~1e-7 of the largest), which a float32 SVD's backward error matches,
    // at half the cost of a float64 one (the bidiagonalisation is memory-bound). The sum is float64.
    if constexpr (std::is_same<T, float>::value) {
        std::vector<float> s(static_cast<std::size_t>(std::min(kx, ky)));
        blas::sgesdd_values(ky, kx, c.data(), ky, s.data());
        double total = 0.0;
        for (float v : s) total += double(v);
        return total / (fx.norm * fy.norm);
    } else {
        MatD m = Eigen::Map<const MatC<T>>(c.data(), ky, kx);
        const VecD s = svd(std::move(m), false).s;
        return s.sum() / (fx.norm * fy.norm);
    }
}

double procrustes_chord_rows(const MatD& a_in, const MatD& b_in) {
    if (a_in.rows() != b_in.rows()) throw std::logic_error("procrustes_chord_rows: different rows");
    // Rotate the narrower onto the wider: with M = b̂ᵀâ = U·S·Vᵀ and b̂ the narrower, U is square, Q* =
    // U·Vᵀ has orthonormal rows, ‖b̂Q*‖ = ‖b̂‖ = 1, and ‖â − b̂Q*‖² = 2 − 2·tr S exactly.
    const bool swap = b_in.cols() > a_in.cols();
    const MatD& a = swap ? b_in : a_in;
    const MatD& b = swap ? a_in : b_in;
    const double na = a.norm(), nb = b.norm();
    if (!(na > 0.0) || !(nb > 0.0)) throw std::invalid_argument("the Procrustes distance is undefined for a constant input");
    const Index m = a.rows(), pa = a.cols(), pb = b.cols();
    if (m == 0) return 0.0;
    MatD mm(pb, pa);
    blas::dgemm_col(true, false, pb, pa, m, b.data(), m, a.data(), m, mm.data(), pb);
    SVDResult s = svd(std::move(mm), true);  // u: pb×pb, vt: pb×pa
    MatD q(pb, pa);
    blas::dgemm_col(false, false, pb, pa, pb, s.u.data(), pb, s.vt.data(), pb, q.data(), pb);
    MatD bq(m, pa);
    blas::dgemm_col(false, false, m, pa, pb, b.data(), m, q.data(), pb, bq.data(), m);
    // â − b̂Q*, each term formed once in float64: (a/na − bq/nb).
    double acc = 0.0;
    const double ia = 1.0 / na, ib = 1.0 / nb;
    for (Index j = 0; j < pa; ++j) {
        double col = 0.0;
        for (Index i = 0; i < m; ++i) {
            const double r = a(i, j) * ia - bq(i, j) * ib;
            col += r * r;
        }
        acc += col;
    }
    return std::sqrt(acc);
}

namespace {

// Centred float64 rows of v (column-major n×p), reduced to n×n (L of Xc = L·Qᵀ) when p > n.
template <class T>
MatD chord_rows_of(const View<T>& v, const char* name) {
    MatD xc = centered_colmajor_f64(v, name);
    if (xc.squaredNorm() == 0.0) {
        fail(name, " has zero variance (every column is constant over the ", v.n,
             " samples): it cannot be scaled to unit norm, so the Procrustes distance is undefined");
    }
    if (v.p <= v.n) return xc;
    MatD t = xc.transpose();  // p×n: Xcᵀ = Q·R, so Xc = Rᵀ·Qᵀ and Rᵀ has Xc's row geometry
    blas::geqrf(v.p, v.n, t.data(), v.p);
    MatD l = MatD::Zero(v.n, v.n);
    for (Index j = 0; j < v.n; ++j)
        for (Index i = 0; i <= j; ++i) l(j, i) = t(i, j);
    return l;
}

}  // namespace

template <class T>
double procrustes_chord(const View<T>& x, const View<T>& y, const char* name_x, const char* name_y) {
    if (x.n != y.n) throw std::logic_error("procrustes_chord: different n");
    return procrustes_chord_rows(chord_rows_of(x, name_x), chord_rows_of(y, name_y));
}

template double procrustes_chord<float>(const View<float>&, const View<float>&, const char*, const char*);
template double procrustes_chord<double>(const View<double>&, const View<double>&, const char*, const char*);

template ProcrustesFactor<float> procrustes_factor<float>(const View<float>&, const char*);
template ProcrustesFactor<double> procrustes_factor<double>(const View<double>&, const char*);
template double procrustes_nuclear<float>(const ProcrustesFactor<float>&, const ProcrustesFactor<float>&);
template double procrustes_nuclear<double>(const ProcrustesFactor<double>&, const ProcrustesFactor<double>&);

}  // namespace reprsim
