// BLAS/LAPACK glue: float and double instantiations over scipy-openblas32 (scipy_-prefixed symbols).
#include "reprsim/blas.hpp"

#include <cblas.h>
#include <lapacke.h>

#include <mutex>
#include <stdexcept>
#include <vector>

namespace reprsim::blas {

namespace {
inline int I(Index v) { return static_cast<int>(v); }

// Below this many flops a call runs on the calling thread alone: waking BLAS threads costs more than it
// saves, and on a busy machine far more (a 500×64 QR measured 2 ms on one thread, 0.1–0.7 s on two).
constexpr double kSmallFlops = 2e7;

// OpenBLAS's thread count is process-wide (this build exports no per-thread setting), so small calls
// lower it to one while any of them runs and the last one out restores it; a set_num_threads issued
// meanwhile is remembered and applied then. A large call that overlaps a small one in another thread
// merely runs on one thread for that moment.
std::mutex g_threads_mutex;
int g_small_depth = 0;
int g_saved_threads = 0;

class SmallWork {
public:
    explicit SmallWork(double flops) : active_(flops < kSmallFlops) {
        if (!active_) return;
        std::lock_guard<std::mutex> lock(g_threads_mutex);
        if (g_small_depth++ == 0) {
            g_saved_threads = scipy_openblas_get_num_threads();
            if (g_saved_threads != 1) scipy_openblas_set_num_threads(1);
        }
    }
    ~SmallWork() {
        if (!active_) return;
        std::lock_guard<std::mutex> lock(g_threads_mutex);
        if (--g_small_depth == 0 && g_saved_threads != 1) scipy_openblas_set_num_threads(g_saved_threads);
    }
    SmallWork(const SmallWork&) = delete;
    SmallWork& operator=(const SmallWork&) = delete;

private:
    bool active_;
};

inline double D(Index v) { return static_cast<double>(v); }

void lapack_check(lapack_int info, const char* routine) {
    // LAPACKE rejects a matrix holding NaN/Inf as an invalid argument; inputs are checked for both,
    // so either failure means an intermediate went wrong: say so rather than return a wrong number.
    if (info < 0) {
        throw NumericalError(std::string("LAPACK ") + routine + " rejected argument " + std::to_string(-info) +
                             " (a non-finite intermediate); please report this input");
    }
    if (info > 0 && std::string(routine) != "dpotrf") {
        throw NumericalError(std::string("LAPACK ") + routine + " did not converge (info=" + std::to_string(info) +
                             "); please report this input");
    }
}
}  // namespace

template <>
void gemm_tn<float>(Index n, Index m, Index k, const float* a, Index lda, const float* b, Index ldb, float* c,
                    Index ldc) {
    SmallWork guard(2 * D(n) * D(m) * D(k));
    scipy_cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I(m), I(k), I(n), 1.0f, a, I(lda), b, I(ldb), 0.0f, c,
                      I(ldc));
}
template <>
void gemm_tn<double>(Index n, Index m, Index k, const double* a, Index lda, const double* b, Index ldb, double* c,
                     Index ldc) {
    SmallWork guard(2 * D(n) * D(m) * D(k));
    scipy_cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I(m), I(k), I(n), 1.0, a, I(lda), b, I(ldb), 0.0, c,
                      I(ldc));
}

template <>
void gemm_nt<float>(Index m, Index k, Index n, const float* a, Index lda, const float* b, Index ldb, float* c,
                    Index ldc) {
    SmallWork guard(2 * D(m) * D(k) * D(n));
    scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, I(m), I(k), I(n), 1.0f, a, I(lda), b, I(ldb), 0.0f, c,
                      I(ldc));
}
template <>
void gemm_nt<double>(Index m, Index k, Index n, const double* a, Index lda, const double* b, Index ldb, double* c,
                     Index ldc) {
    SmallWork guard(2 * D(m) * D(k) * D(n));
    scipy_cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, I(m), I(k), I(n), 1.0, a, I(lda), b, I(ldb), 0.0, c,
                      I(ldc));
}

template <>
void gemm_nn<float>(Index m, Index k, Index n, const float* a, Index lda, const float* b, Index ldb, float* c,
                    Index ldc) {
    SmallWork guard(2 * D(m) * D(k) * D(n));
    scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, I(m), I(k), I(n), 1.0f, a, I(lda), b, I(ldb), 0.0f, c,
                      I(ldc));
}
template <>
void gemm_nn<double>(Index m, Index k, Index n, const double* a, Index lda, const double* b, Index ldb, double* c,
                     Index ldc) {
    SmallWork guard(2 * D(m) * D(k) * D(n));
    scipy_cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, I(m), I(k), I(n), 1.0, a, I(lda), b, I(ldb), 0.0, c,
                      I(ldc));
}

template <>
void syrk_t<float>(Index n, Index p, const float* a, Index lda, float* c, Index ldc) {
    SmallWork guard(D(n) * D(p) * D(p));
    scipy_cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, I(p), I(n), 1.0f, a, I(lda), 0.0f, c, I(ldc));
}
template <>
void syrk_t<double>(Index n, Index p, const double* a, Index lda, double* c, Index ldc) {
    SmallWork guard(D(n) * D(p) * D(p));
    scipy_cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, I(p), I(n), 1.0, a, I(lda), 0.0, c, I(ldc));
}

template <>
void syrk_n<float>(Index n, Index p, const float* a, Index lda, float* c, Index ldc) {
    SmallWork guard(D(n) * D(n) * D(p));
    scipy_cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, I(n), I(p), 1.0f, a, I(lda), 0.0f, c, I(ldc));
}
template <>
void syrk_n<double>(Index n, Index p, const double* a, Index lda, double* c, Index ldc) {
    SmallWork guard(D(n) * D(n) * D(p));
    scipy_cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, I(n), I(p), 1.0, a, I(lda), 0.0, c, I(ldc));
}

void dgemm_col(bool ta, bool tb, Index m, Index k, Index inner, const double* a, Index lda, const double* b, Index ldb,
               double* c, Index ldc) {
    SmallWork guard(2 * D(m) * D(k) * D(inner));
    scipy_cblas_dgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, I(m), I(k),
                      I(inner), 1.0, a, I(lda), b, I(ldb), 0.0, c, I(ldc));
}

double trcon_upper(Index n, const double* a, Index lda) {
    SmallWork guard(D(n) * D(n));
    double rcond = 0.0;
    lapack_check(scipy_LAPACKE_dtrcon(LAPACK_COL_MAJOR, '1', 'U', 'N', I(n), a, I(lda), &rcond), "dtrcon");
    return rcond;
}

int trtri_upper(Index n, double* a, Index lda) {
    SmallWork guard(D(n) * D(n) * D(n) / 3);
    const lapack_int info = scipy_LAPACKE_dtrtri(LAPACK_COL_MAJOR, 'U', 'N', I(n), a, I(lda));
    if (info < 0) lapack_check(info, "dtrtri");
    return int(info);
}

void geqp3(Index m, Index n, double* a, Index lda, int* jpvt, double* tau) {
    SmallWork guard(4 * D(m) * D(n) * D(n));
    for (Index j = 0; j < n; ++j) jpvt[j] = 0;  // 0: every column is free to pivot
    lapack_check(scipy_LAPACKE_dgeqp3(LAPACK_COL_MAJOR, I(m), I(n), a, I(lda), jpvt, tau), "dgeqp3");
    for (Index j = 0; j < n; ++j) jpvt[j] -= 1;  // LAPACK pivots are 1-based
}

void geqrf(Index m, Index n, double* a, Index lda) {
    SmallWork guard(2 * D(m) * D(n) * D(std::min(m, n)));
    if (m == 0 || n == 0) return;
    std::vector<double> tau(std::size_t(std::min(m, n)));
    lapack_check(scipy_LAPACKE_dgeqrf(LAPACK_COL_MAJOR, I(m), I(n), a, I(lda), tau.data()), "dgeqrf");
}

void orgqr(Index m, Index k, double* a, Index lda, const double* tau) {
    SmallWork guard(4 * D(m) * D(k) * D(k));
    if (k == 0) return;
    lapack_check(scipy_LAPACKE_dorgqr(LAPACK_COL_MAJOR, I(m), I(k), I(k), a, I(lda), tau), "dorgqr");
}

void gesdd(Index m, Index n, double* a, Index lda, double* s, double* u, double* vt, bool vectors) {
    SmallWork guard(10 * D(m) * D(n) * D(std::min(m, n)));
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
    SmallWork guard(D(n) * D(n) * D(n) / 3);
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
    SmallWork guard(9 * D(n) * D(n) * D(n));
    lapack_check(scipy_LAPACKE_dsyevd(LAPACK_COL_MAJOR, vectors ? 'V' : 'N', 'U', I(n), a, I(lda), w), "dsyevd");
}

void tpqrt(Index m, Index n, Index l, double* a, Index lda, double* b, Index ldb) {
    if (m == 0 || n == 0) return;
    // Reflectors are 1 + (rows of B) long; the flops are about 2·m·n² (l = 0) and 2n³/3 (l = m = n).
    SmallWork guard(2 * D(m) * D(n) * D(n));
    // Block size: the panels are factored by level-2 code, the rest by level-3 updates; measured best
    // at 16 for narrow factors and 32-64 for wide ones (OpenBLAS, x86-64).
    const Index nb = std::min<Index>(n, n < 384 ? 16 : (n < 1024 ? 32 : 64));
    std::vector<double> t(std::size_t(nb) * std::size_t(n)), work(std::size_t(nb) * std::size_t(n));
    lapack_check(scipy_LAPACKE_dtpqrt_work(LAPACK_COL_MAJOR, I(m), I(n), I(l), I(nb), a, I(lda), b, I(ldb), t.data(),
                                           I(nb), work.data()),
                 "dtpqrt");
}

void tpqrt2(Index m, Index n, Index l, double* a, Index lda, double* b, Index ldb, double* t, Index ldt) {
    if (m == 0 || n == 0) return;
    SmallWork guard(2 * D(m) * D(n) * D(n));
    lapack_check(scipy_LAPACKE_dtpqrt2_work(LAPACK_COL_MAJOR, I(m), I(n), I(l), a, I(lda), b, I(ldb), t, I(ldt)),
                 "dtpqrt2");
}

void dgemm_col_acc(bool ta, bool tb, Index m, Index k, Index inner, double alpha, const double* a, Index lda,
                   const double* b, Index ldb, double beta, double* c, Index ldc) {
    if (m == 0 || k == 0) return;
    SmallWork guard(2 * D(m) * D(k) * D(inner));
    scipy_cblas_dgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, I(m), I(k),
                      I(inner), alpha, a, I(lda), b, I(ldb), beta, c, I(ldc));
}

void trmm_upper(bool left, bool trans, Index m, Index n, double alpha, const double* t, Index ldt, double* b,
                Index ldb) {
    if (m == 0 || n == 0) return;
    SmallWork guard(D(m) * D(n) * D(left ? m : n));
    scipy_cblas_dtrmm(CblasColMajor, left ? CblasLeft : CblasRight, CblasUpper, trans ? CblasTrans : CblasNoTrans,
                      CblasNonUnit, I(m), I(n), alpha, t, I(ldt), b, I(ldb));
}

void set_num_threads(int n) {
    std::lock_guard<std::mutex> lock(g_threads_mutex);
    if (g_small_depth > 0) {
        g_saved_threads = n;
    } else {
        scipy_openblas_set_num_threads(n);
    }
}

OneThread::OneThread() {
    std::lock_guard<std::mutex> lock(g_threads_mutex);
    if (g_small_depth++ == 0) {
        g_saved_threads = scipy_openblas_get_num_threads();
        if (g_saved_threads != 1) scipy_openblas_set_num_threads(1);
    }
}

OneThread::~OneThread() {
    std::lock_guard<std::mutex> lock(g_threads_mutex);
    if (--g_small_depth == 0 && g_saved_threads != 1) scipy_openblas_set_num_threads(g_saved_threads);
}

int get_num_threads() {
    std::lock_guard<std::mutex> lock(g_threads_mutex);
    return g_small_depth > 0 ? g_saved_threads : scipy_openblas_get_num_threads();
}

}  // namespace reprsim::blas
