// BLAS/LAPACK glue: float and double instantiations over scipy-openblas32 (scipy_-prefixed symbols).
#include "reprsim/blas.hpp"

#include <cblas.h>
#include <lapacke.h>

#include <stdexcept>
#include <vector>

namespace reprsim::blas {

namespace {
inline int I(Index v) { return static_cast<int>(v); }

void lapack_check(lapack_int info, const char* routine) {
    if (info < 0) {
        throw std::runtime_error(std::string("internal error: LAPACK ") + routine + " rejected argument " +
                                 std::to_string(-info));
    }
    if (info > 0 && std::string(routine) != "dpotrf") {
        throw std::runtime_error(std::string("LAPACK ") + routine + " did not converge (info=" +
                                 std::to_string(info) + ")");
    }
}
}  // namespace

template <>
void gemm_tn<float>(Index n, Index m, Index k, const float* a, Index lda, const float* b, Index ldb, float* c,
                    Index ldc) {
    scipy_cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I(m), I(k), I(n), 1.0f, a, I(lda), b, I(ldb), 0.0f, c,
                      I(ldc));
}
template <>
void gemm_tn<double>(Index n, Index m, Index k, const double* a, Index lda, const double* b, Index ldb, double* c,
                     Index ldc) {
    scipy_cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I(m), I(k), I(n), 1.0, a, I(lda), b, I(ldb), 0.0, c,
                      I(ldc));
}

template <>
void gemm_nt<float>(Index m, Index k, Index n, const float* a, Index lda, const float* b, Index ldb, float* c,
                    Index ldc) {
    scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, I(m), I(k), I(n), 1.0f, a, I(lda), b, I(ldb), 0.0f, c,
                      I(ldc));
}
template <>
void gemm_nt<double>(Index m, Index k, Index n, const double* a, Index lda, const double* b, Index ldb, double* c,
                     Index ldc) {
    scipy_cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, I(m), I(k), I(n), 1.0, a, I(lda), b, I(ldb), 0.0, c,
                      I(ldc));
}

template <>
void gemm_nn<float>(Index m, Index k, Index n, const float* a, Index lda, const float* b, Index ldb, float* c,
                    Index ldc) {
    scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, I(m), I(k), I(n), 1.0f, a, I(lda), b, I(ldb), 0.0f, c,
                      I(ldc));
}
template <>
void gemm_nn<double>(Index m, Index k, Index n, const double* a, Index lda, const double* b, Index ldb, double* c,
                     Index ldc) {
    scipy_cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, I(m), I(k), I(n), 1.0, a, I(lda), b, I(ldb), 0.0, c,
                      I(ldc));
}

template <>
void syrk_t<float>(Index n, Index p, const float* a, Index lda, float* c, Index ldc) {
    scipy_cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, I(p), I(n), 1.0f, a, I(lda), 0.0f, c, I(ldc));
}
template <>
void syrk_t<double>(Index n, Index p, const double* a, Index lda, double* c, Index ldc) {
    scipy_cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, I(p), I(n), 1.0, a, I(lda), 0.0, c, I(ldc));
}

template <>
void syrk_n<float>(Index n, Index p, const float* a, Index lda, float* c, Index ldc) {
    scipy_cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, I(n), I(p), 1.0f, a, I(lda), 0.0f, c, I(ldc));
}
template <>
void syrk_n<double>(Index n, Index p, const double* a, Index lda, double* c, Index ldc) {
    scipy_cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, I(n), I(p), 1.0, a, I(lda), 0.0, c, I(ldc));
}

void geqp3(Index m, Index n, double* a, Index lda, int* jpvt, double* tau) {
    for (Index j = 0; j < n; ++j) jpvt[j] = 0;  // 0: every column is free to pivot
    lapack_check(scipy_LAPACKE_dgeqp3(LAPACK_COL_MAJOR, I(m), I(n), a, I(lda), jpvt, tau), "dgeqp3");
    for (Index j = 0; j < n; ++j) jpvt[j] -= 1;  // LAPACK pivots are 1-based
}

void orgqr(Index m, Index k, double* a, Index lda, const double* tau) {
    if (k == 0) return;
    lapack_check(scipy_LAPACKE_dorgqr(LAPACK_COL_MAJOR, I(m), I(k), I(k), a, I(lda), tau), "dorgqr");
}

void gesdd(Index m, Index n, double* a, Index lda, double* s, double* u, double* vt, bool vectors) {
    const Index r = std::min(m, n);
    if (r == 0) return;
    if (vectors) {
        lapack_check(scipy_LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', I(m), I(n), a, I(lda), s, u, I(m), vt, I(r)),
                     "dgesdd");
    } else {
        lapack_check(scipy_LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', I(m), I(n), a, I(lda), s, nullptr, 1, nullptr, 1),
                     "dgesdd");
    }
}

int potrf_upper(Index n, double* a, Index lda) {
    const lapack_int info = scipy_LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', I(n), a, I(lda));
    lapack_check(info, "dpotrf");
    return info;
}

Index pstrf_upper(Index n, double* a, Index lda, int* piv, double tol) {
    if (n == 0) return 0;
    lapack_int rank = 0;
    const lapack_int info = scipy_LAPACKE_dpstrf(LAPACK_COL_MAJOR, 'U', I(n), a, I(lda), piv, &rank, tol);
    if (info < 0) lapack_check(info, "dpstrf");  // info > 0 only reports a rank below n
    for (Index j = 0; j < n; ++j) piv[j] -= 1;     // LAPACK pivots are 1-based
    return rank;
}

void syevd(Index n, double* a, Index lda, double* w, bool vectors) {
    lapack_check(scipy_LAPACKE_dsyevd(LAPACK_COL_MAJOR, vectors ? 'V' : 'N', 'U', I(n), a, I(lda), w), "dsyevd");
}

void set_num_threads(int n) { scipy_openblas_set_num_threads(n); }
int get_num_threads() { return scipy_openblas_get_num_threads(); }

}  // namespace reprsim::blas
