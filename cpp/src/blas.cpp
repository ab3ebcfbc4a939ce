// BLAS/LAPACK glue: float and double instantiations over one of two OpenBLAS libraries.
//
// The linked one is scipy-openblas32 (scipy_-prefixed symbols, 32-bit integers). When numpy's own
// OpenBLAS is loaded in the process and exports what the kernels need (numpy ≥ 2 wheels bundle
// scipy-openblas64: scipy_-prefixed, 64_-suffixed ILP64 symbols), use_library() switches every call to
// it through the function pointers below, so that numpy and reprsim share one thread pool: two pools
// whose idle threads spin after each call (OpenBLAS's threads busy-wait ~0.1 s before sleeping) steal
// each other's cores whenever numpy and reprsim calls alternate.
#include "reprsim/blas.hpp"

#include "reprsim/interrupt.hpp"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <set>
#include <stdexcept>
#include <vector>

#if defined(_WIN32)
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#else
#include <dlfcn.h>
#endif

namespace reprsim::blas {

namespace {

// ------------------------------------------------------------------------------------------------
// The external (ILP64) library: function pointers resolved by use_library().

using xint = std::int64_t;
struct External {
    void (*sgemm)(int, int, int, xint, xint, xint, float, const float*, xint, const float*, xint, float, float*, xint);
    void (*dgemm)(int, int, int, xint, xint, xint, double, const double*, xint, const double*, xint, double, double*,
                  xint);
    void (*ssyrk)(int, int, int, xint, xint, float, const float*, xint, float, float*, xint);
    void (*dsyrk)(int, int, int, xint, xint, double, const double*, xint, double, double*, xint);
    xint (*dtrcon)(int, char, char, char, xint, const double*, xint, double*);
    xint (*dtrtri)(int, char, char, xint, double*, xint);
    xint (*dgeqp3)(int, xint, xint, double*, xint, xint*, double*);
    xint (*dorgqr)(int, xint, xint, xint, double*, xint, const double*);
    xint (*dgesdd)(int, char, xint, xint, double*, xint, double*, double*, xint, double*, xint);
    xint (*sgesdd)(int, char, xint, xint, float*, xint, float*, float*, xint, float*, xint);
    void (*dtrsm)(int, int, int, int, int, xint, xint, double, const double*, xint, double*, xint);
    xint (*dpotrf)(int, char, xint, double*, xint);
    xint (*dpstrf)(int, char, xint, double*, xint, xint*, xint*, double);
    xint (*dsyevd)(int, char, char, xint, double*, xint, double*);
    xint (*dgeqrf)(int, xint, xint, double*, xint, double*);
    xint (*dtpqrt_work)(int, xint, xint, xint, xint, double*, xint, double*, xint, double*, xint, double*);
    xint (*dtpqrt2_work)(int, xint, xint, xint, double*, xint, double*, xint, double*, xint);
    void (*dtrmm)(int, int, int, int, int, xint, xint, double, const double*, xint, double*, xint);
    void (*set_threads)(int);
    int (*get_threads)();
    const char* (*get_config)();
};

External g_ext{};
bool g_use_ext = false;
std::string g_ext_path;
std::string g_ext_config;

inline int I(Index v) { return static_cast<int>(v); }
inline double D(Index v) { return static_cast<double>(v); }

int lib_get_threads() { return g_use_ext ? g_ext.get_threads() : scipy_openblas_get_num_threads(); }
void lib_set_threads(int n) {
    if (g_use_ext) {
        g_ext.set_threads(n);
    } else {
        scipy_openblas_set_num_threads(n);
    }
}

// ------------------------------------------------------------------------------------------------
// Threads. Below kSmallFlops a call runs on the calling thread alone: waking BLAS threads costs more
// than it saves, and on a busy machine far more (a 500×64 QR measured 2 ms on one thread, 0.1–0.7 s on
// two). Above it a call runs on min(reprsim's limit, the library's own setting) threads. OpenBLAS's
// thread count is process-wide (openblas_set_num_threads_local is the same global setting in its
// pthreads builds), so a call that needs fewer threads than the library is set to lowers the setting
// while it runs and the last call out restores it; calls overlapping in several threads get the
// smallest of their counts.

constexpr double kSmallFlops = 2e7;

std::mutex g_threads_mutex;
int g_user_limit = 0;       // reprsim.set_num_threads; 0: none
int g_saved = 0;            // the library's own setting while any guard is active
int g_applied = 0;          // what the library is set to while any guard is active
std::multiset<int> g_wanted;

int limit_of(int library) { return g_user_limit > 0 ? std::min(g_user_limit, library) : library; }

void apply_wanted() {
    const int m = *g_wanted.begin();
    if (m != g_applied) {
        lib_set_threads(m);
        g_applied = m;
    }
}

// Registers a call (or a OneThread scope) that wants `want` threads (0: as many as allowed) and returns
// the count registered; the library runs on the smallest registered count.
int enter_threads(int want) {
    std::lock_guard<std::mutex> lock(g_threads_mutex);
    if (g_wanted.empty()) g_saved = g_applied = lib_get_threads();
    if (want <= 0) want = limit_of(g_saved);
    g_wanted.insert(want);
    apply_wanted();
    return want;
}

void leave_threads(int want) {
    std::lock_guard<std::mutex> lock(g_threads_mutex);
    g_wanted.erase(g_wanted.find(want));
    if (g_wanted.empty()) {
        if (g_applied != g_saved) lib_set_threads(g_saved);
    } else {
        apply_wanted();
    }
}

class Threads {
public:
    explicit Threads(double flops) {
        // Every BLAS/LAPACK call starts with an interruption check (a clock read when none is due).
        check_interrupt();
        want_ = enter_threads(flops < kSmallFlops ? 1 : 0);
    }
    ~Threads() { leave_threads(want_); }
    Threads(const Threads&) = delete;
    Threads& operator=(const Threads&) = delete;

private:
    int want_ = 1;
};

// ------------------------------------------------------------------------------------------------
// Panels. A product of more than kPanelFlops is split along its inner dimension into panels,
// accumulated with beta = 1, with an interruption check between panels: a single BLAS call cannot be
// stopped, and one of 1e12 flops runs for tens of seconds. The first panel has about kPanelFlops
// flops; later ones are sized from the time the previous one took, so that each lasts about
// kPanelSeconds on this machine under its present load (a Ctrl-C then takes effect within about that
// long). A panel of ≥ kMinPanel along the inner dimension keeps the BLAS at full speed (it blocks the
// inner dimension in a few hundred internally anyway), so the split costs one extra pass over C per
// panel.

constexpr double kPanelFlops = 1e10;
constexpr double kPanelSeconds = 0.25;
constexpr Index kMinPanel = 512;

template <class Call>
void in_panels(Index inner, double flops_per_inner, Call call) {
    const double total = D(inner) * flops_per_inner;
    if (total <= kPanelFlops || inner <= 2 * kMinPanel) {
        call(Index(0), inner, false);
        return;
    }
    Index step = std::max<Index>(kMinPanel, Index(kPanelFlops / std::max(flops_per_inner, 1.0)));
    for (Index k0 = 0; k0 < inner;) {
        if (k0 > 0) check_interrupt();
        const Index len = std::min(step, inner - k0);
        const auto t0 = std::chrono::steady_clock::now();
        call(k0, len, k0 > 0);
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        k0 += len;
        if (dt > 0) {
            const double next = double(len) * kPanelSeconds / dt;
            step = std::clamp<Index>(Index(std::min(next, 4.0 * double(len))), kMinPanel, inner);
        }
    }
}

// Row-major general product with CBLAS conventions (the panels pass offset pointers).
template <class T>
void gemm_rm(bool ta, bool tb, Index m, Index k, Index inner, const T* a, Index lda, const T* b, Index ldb, T beta,
             T* c, Index ldc);

template <>
void gemm_rm<float>(bool ta, bool tb, Index m, Index k, Index inner, const float* a, Index lda, const float* b,
                    Index ldb, float beta, float* c, Index ldc) {
    const int order = CblasRowMajor, opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
    if (g_use_ext) {
        g_ext.sgemm(order, opa, opb, m, k, inner, 1.0f, a, lda, b, ldb, beta, c, ldc);
    } else {
        scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, I(m), I(k),
                          I(inner), 1.0f, a, I(lda), b, I(ldb), beta, c, I(ldc));
    }
}
template <>
void gemm_rm<double>(bool ta, bool tb, Index m, Index k, Index inner, const double* a, Index lda, const double* b,
                     Index ldb, double beta, double* c, Index ldc) {
    const int order = CblasRowMajor, opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
    if (g_use_ext) {
        g_ext.dgemm(order, opa, opb, m, k, inner, 1.0, a, lda, b, ldb, beta, c, ldc);
    } else {
        scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, I(m), I(k),
                          I(inner), 1.0, a, I(lda), b, I(ldb), beta, c, I(ldc));
    }
}

// Upper triangle of the row-major C (n×n) = op(A)·op(A)ᵀ, op transposing when `trans` (A is inner×n)
// or not (A is n×inner).
template <class T>
void syrk_rm(bool trans, Index n, Index inner, const T* a, Index lda, T beta, T* c, Index ldc);

template <>
void syrk_rm<float>(bool trans, Index n, Index inner, const float* a, Index lda, float beta, float* c, Index ldc) {
    if (g_use_ext) {
        g_ext.ssyrk(CblasRowMajor, CblasUpper, trans ? CblasTrans : CblasNoTrans, n, inner, 1.0f, a, lda, beta, c,
                    ldc);
    } else {
        scipy_cblas_ssyrk(CblasRowMajor, CblasUpper, trans ? CblasTrans : CblasNoTrans, I(n), I(inner), 1.0f, a,
                          I(lda), beta, c, I(ldc));
    }
}
template <>
void syrk_rm<double>(bool trans, Index n, Index inner, const double* a, Index lda, double beta, double* c,
                     Index ldc) {
    if (g_use_ext) {
        g_ext.dsyrk(CblasRowMajor, CblasUpper, trans ? CblasTrans : CblasNoTrans, n, inner, 1.0, a, lda, beta, c,
                    ldc);
    } else {
        scipy_cblas_dsyrk(CblasRowMajor, CblasUpper, trans ? CblasTrans : CblasNoTrans, I(n), I(inner), 1.0, a,
                          I(lda), beta, c, I(ldc));
    }
}

void lapack_check(std::int64_t info, const char* routine) {
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

// ------------------------------------------------------------------------------------------------
// Products

template <class T>
void gemm_tn(Index n, Index m, Index k, const T* a, Index lda, const T* b, Index ldb, T* c, Index ldc,
             bool accumulate) {
    Threads guard(2 * D(n) * D(m) * D(k));
    in_panels(n, 2 * D(m) * D(k), [&](Index r0, Index len, bool acc) {
        gemm_rm<T>(true, false, m, k, len, a + r0 * lda, lda, b + r0 * ldb, ldb, acc || accumulate ? T(1) : T(0),
                   c, ldc);
    });
}

template <class T>
void gemm_nt(Index m, Index k, Index n, const T* a, Index lda, const T* b, Index ldb, T* c, Index ldc,
             bool accumulate) {
    Threads guard(2 * D(m) * D(k) * D(n));
    in_panels(n, 2 * D(m) * D(k), [&](Index c0, Index len, bool acc) {
        gemm_rm<T>(false, true, m, k, len, a + c0, lda, b + c0, ldb, acc || accumulate ? T(1) : T(0), c, ldc);
    });
}

template <class T>
void gemm_nn(Index m, Index k, Index n, const T* a, Index lda, const T* b, Index ldb, T* c, Index ldc) {
    Threads guard(2 * D(m) * D(k) * D(n));
    in_panels(n, 2 * D(m) * D(k), [&](Index c0, Index len, bool acc) {
        gemm_rm<T>(false, false, m, k, len, a + c0, lda, b + c0 * ldb, ldb, acc ? T(1) : T(0), c, ldc);
    });
}

template <class T>
void syrk_t(Index n, Index p, const T* a, Index lda, T* c, Index ldc, bool accumulate) {
    Threads guard(D(n) * D(p) * D(p));
    in_panels(n, D(p) * D(p), [&](Index r0, Index len, bool acc) {
        syrk_rm<T>(true, p, len, a + r0 * lda, lda, acc || accumulate ? T(1) : T(0), c, ldc);
    });
}

template <class T>
void syrk_n(Index n, Index p, const T* a, Index lda, T* c, Index ldc, bool accumulate) {
    Threads guard(D(n) * D(n) * D(p));
    in_panels(p, D(n) * D(n), [&](Index c0, Index len, bool acc) {
        syrk_rm<T>(false, n, len, a + c0, lda, acc || accumulate ? T(1) : T(0), c, ldc);
    });
}

#define REPRSIM_INSTANTIATE(T)                                                                         \
    template void gemm_tn<T>(Index, Index, Index, const T*, Index, const T*, Index, T*, Index, bool);  \
    template void gemm_nt<T>(Index, Index, Index, const T*, Index, const T*, Index, T*, Index, bool);  \
    template void gemm_nn<T>(Index, Index, Index, const T*, Index, const T*, Index, T*, Index);        \
    template void syrk_t<T>(Index, Index, const T*, Index, T*, Index, bool);                           \
    template void syrk_n<T>(Index, Index, const T*, Index, T*, Index, bool);
REPRSIM_INSTANTIATE(float)
REPRSIM_INSTANTIATE(double)
#undef REPRSIM_INSTANTIATE

void dgemm_col(bool ta, bool tb, Index m, Index k, Index inner, const double* a, Index lda, const double* b, Index ldb,
               double* c, Index ldc) {
    Threads guard(2 * D(m) * D(k) * D(inner));
    in_panels(inner, 2 * D(m) * D(k), [&](Index i0, Index len, bool acc) {
        // op(A) is m×inner, op(B) inner×k, column-major: a panel of the inner dimension is a block of
        // A's columns (rows when transposed) and of B's rows (columns when transposed).
        const double* ap = ta ? a + i0 : a + i0 * lda;
        const double* bp = tb ? b + i0 * ldb : b + i0;
        const double beta = acc ? 1.0 : 0.0;
        if (g_use_ext) {
            g_ext.dgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, k, len, 1.0,
                        ap, lda, bp, ldb, beta, c, ldc);
        } else {
            scipy_cblas_dgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, I(m),
                              I(k), I(len), 1.0, ap, I(lda), bp, I(ldb), beta, c, I(ldc));
        }
    });
}

void trsm_upper(bool left, Index m, Index k, const double* u, Index ldu, double* b, Index ldb) {
    const Index t = left ? m : k;
    Threads guard(D(t) * D(t) * D(left ? k : m));
    if (m == 0 || k == 0) return;
    // left: B = U⁻ᵀ·B (solve Uᵀ·X = B); right: B = B·U⁻¹ (solve X·U = B).
    const int side = left ? CblasLeft : CblasRight, trans = left ? CblasTrans : CblasNoTrans;
    if (g_use_ext) {
        g_ext.dtrsm(CblasColMajor, side, CblasUpper, trans, CblasNonUnit, m, k, 1.0, u, ldu, b, ldb);
    } else {
        scipy_cblas_dtrsm(CblasColMajor, left ? CblasLeft : CblasRight, CblasUpper, left ? CblasTrans : CblasNoTrans,
                          CblasNonUnit, I(m), I(k), 1.0, u, I(ldu), b, I(ldb));
    }
}

// ------------------------------------------------------------------------------------------------
// LAPACK

double trcon_upper(Index n, const double* a, Index lda) {
    Threads guard(D(n) * D(n));
    double rcond = 0.0;
    const std::int64_t info = g_use_ext ? g_ext.dtrcon(LAPACK_COL_MAJOR, '1', 'U', 'N', n, a, lda, &rcond)
                                        : scipy_LAPACKE_dtrcon(LAPACK_COL_MAJOR, '1', 'U', 'N', I(n), a, I(lda), &rcond);
    lapack_check(info, "dtrcon");
    return rcond;
}

int trtri_upper(Index n, double* a, Index lda) {
    Threads guard(D(n) * D(n) * D(n) / 3);
    const std::int64_t info = g_use_ext ? g_ext.dtrtri(LAPACK_COL_MAJOR, 'U', 'N', n, a, lda)
                                        : scipy_LAPACKE_dtrtri(LAPACK_COL_MAJOR, 'U', 'N', I(n), a, I(lda));
    if (info < 0) lapack_check(info, "dtrtri");
    return int(info);
}

void geqp3(Index m, Index n, double* a, Index lda, int* jpvt, double* tau) {
    Threads guard(4 * D(m) * D(n) * D(n));
    std::int64_t info = 0;
    if (g_use_ext) {
        std::vector<xint> piv(static_cast<std::size_t>(n), 0);  // 0: every column is free to pivot
        info = g_ext.dgeqp3(LAPACK_COL_MAJOR, m, n, a, lda, piv.data(), tau);
        for (Index j = 0; j < n; ++j) jpvt[j] = int(piv[std::size_t(j)]);
    } else {
        for (Index j = 0; j < n; ++j) jpvt[j] = 0;
        info = scipy_LAPACKE_dgeqp3(LAPACK_COL_MAJOR, I(m), I(n), a, I(lda), jpvt, tau);
    }
    lapack_check(info, "dgeqp3");
    for (Index j = 0; j < n; ++j) jpvt[j] -= 1;  // LAPACK pivots are 1-based
}

void geqrf(Index m, Index n, double* a, Index lda) {
    Threads guard(2 * D(m) * D(n) * D(std::min(m, n)));
    if (m == 0 || n == 0) return;
    std::vector<double> tau(std::size_t(std::min(m, n)));
    const std::int64_t info = g_use_ext ? g_ext.dgeqrf(LAPACK_COL_MAJOR, m, n, a, lda, tau.data())
                                        : scipy_LAPACKE_dgeqrf(LAPACK_COL_MAJOR, I(m), I(n), a, I(lda), tau.data());
    lapack_check(info, "dgeqrf");
}

void orgqr(Index m, Index k, double* a, Index lda, const double* tau) {
    Threads guard(4 * D(m) * D(k) * D(k));
    if (k == 0) return;
    const std::int64_t info = g_use_ext ? g_ext.dorgqr(LAPACK_COL_MAJOR, m, k, k, a, lda, tau)
                                        : scipy_LAPACKE_dorgqr(LAPACK_COL_MAJOR, I(m), I(k), I(k), a, I(lda), tau);
    lapack_check(info, "dorgqr");
}

void gesdd(Index m, Index n, double* a, Index lda, double* s, double* u, double* vt, bool vectors) {
    Threads guard(10 * D(m) * D(n) * D(std::min(m, n)));
    const Index r = std::min(m, n);
    if (r == 0) return;
    std::int64_t info = 0;
    if (vectors) {
        info = g_use_ext ? g_ext.dgesdd(LAPACK_COL_MAJOR, 'S', m, n, a, lda, s, u, m, vt, r)
                         : scipy_LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', I(m), I(n), a, I(lda), s, u, I(m), vt, I(r));
    } else {
        info = g_use_ext ? g_ext.dgesdd(LAPACK_COL_MAJOR, 'N', m, n, a, lda, s, nullptr, 1, nullptr, 1)
                         : scipy_LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', I(m), I(n), a, I(lda), s, nullptr, 1, nullptr, 1);
    }
    lapack_check(info, "dgesdd");
}

void sgesdd_values(Index m, Index n, float* a, Index lda, float* s) {
    Threads guard(10 * D(m) * D(n) * D(std::min(m, n)));
    if (std::min(m, n) == 0) return;
    const std::int64_t info =
        g_use_ext ? g_ext.sgesdd(LAPACK_COL_MAJOR, 'N', m, n, a, lda, s, nullptr, 1, nullptr, 1)
                  : scipy_LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'N', I(m), I(n), a, I(lda), s, nullptr, 1, nullptr, 1);
    lapack_check(info, "sgesdd");
}

int potrf_upper(Index n, double* a, Index lda) {
    Threads guard(D(n) * D(n) * D(n) / 3);
    const std::int64_t info = g_use_ext ? g_ext.dpotrf(LAPACK_COL_MAJOR, 'U', n, a, lda)
                                        : scipy_LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', I(n), a, I(lda));
    lapack_check(info, "dpotrf");
    return int(info);
}

Index pstrf_upper(Index n, double* a, Index lda, int* piv, double tol) {
    if (n == 0) return 0;
    Threads guard(D(n) * D(n) * D(n) / 3);
    std::int64_t info = 0, rank = 0;
    if (g_use_ext) {
        std::vector<xint> p(static_cast<std::size_t>(n));
        xint r = 0;
        info = g_ext.dpstrf(LAPACK_COL_MAJOR, 'U', n, a, lda, p.data(), &r, tol);
        rank = r;
        for (Index j = 0; j < n; ++j) piv[j] = int(p[std::size_t(j)]);
    } else {
        lapack_int r = 0;
        info = scipy_LAPACKE_dpstrf(LAPACK_COL_MAJOR, 'U', I(n), a, I(lda), piv, &r, tol);
        rank = r;
    }
    if (info < 0) lapack_check(info, "dpstrf");  // info > 0 only reports a rank below n
    for (Index j = 0; j < n; ++j) piv[j] -= 1;     // LAPACK pivots are 1-based
    return Index(rank);
}

void syevd(Index n, double* a, Index lda, double* w, bool vectors) {
    Threads guard(9 * D(n) * D(n) * D(n));
    const char job = vectors ? 'V' : 'N';
    const std::int64_t info = g_use_ext ? g_ext.dsyevd(LAPACK_COL_MAJOR, job, 'U', n, a, lda, w)
                                        : scipy_LAPACKE_dsyevd(LAPACK_COL_MAJOR, job, 'U', I(n), a, I(lda), w);
    lapack_check(info, "dsyevd");
}

void tpqrt(Index m, Index n, Index l, double* a, Index lda, double* b, Index ldb) {
    if (m == 0 || n == 0) return;
    // Reflectors are 1 + (rows of B) long; the flops are about 2·m·n² (l = 0) and 2n³/3 (l = m = n).
    Threads guard(2 * D(m) * D(n) * D(n));
    // Block size: the panels are factored by level-2 code, the rest by level-3 updates; measured best
    // at 16 for narrow factors and 32-64 for wide ones (OpenBLAS, x86-64).
    const Index nb = std::min<Index>(n, n < 384 ? 16 : (n < 1024 ? 32 : 64));
    std::vector<double> t(std::size_t(nb) * std::size_t(n)), work(std::size_t(nb) * std::size_t(n));
    const std::int64_t info =
        g_use_ext ? g_ext.dtpqrt_work(LAPACK_COL_MAJOR, m, n, l, nb, a, lda, b, ldb, t.data(), nb, work.data())
                  : scipy_LAPACKE_dtpqrt_work(LAPACK_COL_MAJOR, I(m), I(n), I(l), I(nb), a, I(lda), b, I(ldb), t.data(),
                                              I(nb), work.data());
    lapack_check(info, "dtpqrt");
}

void tpqrt2(Index m, Index n, Index l, double* a, Index lda, double* b, Index ldb, double* t, Index ldt) {
    if (m == 0 || n == 0) return;
    Threads guard(2 * D(m) * D(n) * D(n));
    const std::int64_t info =
        g_use_ext ? g_ext.dtpqrt2_work(LAPACK_COL_MAJOR, m, n, l, a, lda, b, ldb, t, ldt)
                  : scipy_LAPACKE_dtpqrt2_work(LAPACK_COL_MAJOR, I(m), I(n), I(l), a, I(lda), b, I(ldb), t, I(ldt));
    lapack_check(info, "dtpqrt2");
}

void dgemm_col_acc(bool ta, bool tb, Index m, Index k, Index inner, double alpha, const double* a, Index lda,
                   const double* b, Index ldb, double beta, double* c, Index ldc) {
    if (m == 0 || k == 0) return;
    Threads guard(2 * D(m) * D(k) * D(inner));
    const int opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
    if (g_use_ext) {
        g_ext.dgemm(CblasColMajor, opa, opb, m, k, inner, alpha, a, lda, b, ldb, beta, c, ldc);
    } else {
        scipy_cblas_dgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, I(m), I(k),
                          I(inner), alpha, a, I(lda), b, I(ldb), beta, c, I(ldc));
    }
}

void trmm_upper(bool left, bool trans, Index m, Index n, double alpha, const double* t, Index ldt, double* b,
                Index ldb) {
    if (m == 0 || n == 0) return;
    Threads guard(D(m) * D(n) * D(left ? m : n));
    const int side = left ? CblasLeft : CblasRight, op = trans ? CblasTrans : CblasNoTrans;
    if (g_use_ext) {
        g_ext.dtrmm(CblasColMajor, side, CblasUpper, op, CblasNonUnit, m, n, alpha, t, ldt, b, ldb);
    } else {
        scipy_cblas_dtrmm(CblasColMajor, left ? CblasLeft : CblasRight, CblasUpper, trans ? CblasTrans : CblasNoTrans,
                          CblasNonUnit, I(m), I(n), alpha, t, I(ldt), b, I(ldb));
    }
}
// ------------------------------------------------------------------------------------------------
// Threads and the library in use

void set_num_threads(int n) {
    std::lock_guard<std::mutex> lock(g_threads_mutex);
    g_user_limit = std::max(0, n);
}

OneThread::OneThread() { enter_threads(1); }

OneThread::~OneThread() { leave_threads(1); }

int get_num_threads() {
    std::lock_guard<std::mutex> lock(g_threads_mutex);
    return limit_of(g_wanted.empty() ? lib_get_threads() : g_saved);
}

int library_num_threads() {
    std::lock_guard<std::mutex> lock(g_threads_mutex);
    return g_wanted.empty() ? lib_get_threads() : g_saved;
}

namespace {

#if defined(_WIN32)
using Handle = HMODULE;
Handle open_loaded(const std::string& path) {
    // Only a library that is already loaded (GetModuleHandleEx takes a reference, so it stays loaded).
    const int len = MultiByteToWideChar(CP_UTF8, 0, path.c_str(), -1, nullptr, 0);
    std::wstring wide(static_cast<std::size_t>(len > 0 ? len : 1), L'\0');
    MultiByteToWideChar(CP_UTF8, 0, path.c_str(), -1, wide.data(), len);
    HMODULE h = nullptr;
    if (!GetModuleHandleExW(0, wide.c_str(), &h)) return nullptr;
    return h;
}
void* symbol(Handle h, const std::string& name) {
    return reinterpret_cast<void*>(GetProcAddress(h, name.c_str()));
}
void close_handle(Handle h) { FreeLibrary(h); }
#else
using Handle = void*;
Handle open_loaded(const std::string& path) { return dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD); }
void* symbol(Handle h, const std::string& name) { return dlsym(h, name.c_str()); }
void close_handle(Handle h) { dlclose(h); }
#endif

template <class F>
bool bind_symbol(Handle h, const std::string& prefix, const std::string& base, const std::string& suffix, F& out,
                 std::string& missing) {
    const std::string name = prefix + base + suffix;
    void* p = symbol(h, name);
    if (!p) {
        if (!missing.empty()) missing += ", ";
        missing += name;
        return false;
    }
    static_assert(sizeof(F) == sizeof(void*), "function pointer size");
    std::memcpy(&out, &p, sizeof(p));
    return true;
}

// A few calls whose results are known exactly: an ILP64 library called through the wrong integer
// width, or a LAPACK that is not what its name says, fails them instead of corrupting memory later.
bool self_test(const External& e, std::string& why) {
    const double a[4] = {1.0, 2.0, 3.0, 4.0}, b[4] = {5.0, 6.0, 7.0, 8.0};
    double c[4] = {0, 0, 0, 0};
    e.dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1.0, a, 2, b, 2, 0.0, c, 2);
    if (c[0] != 19.0 || c[1] != 22.0 || c[2] != 43.0 || c[3] != 50.0) {
        why = "dgemm self-test failed";
        return false;
    }
    const float fa[6] = {1, 2, 3, 4, 5, 6};
    float fc[4] = {0, 0, 0, 0};
    e.ssyrk(CblasRowMajor, CblasUpper, CblasTrans, 2, 3, 1.0f, fa, 2, 0.0f, fc, 2);  // AᵀA of the 3×2 A
    if (fc[0] != 35.0f || fc[1] != 44.0f || fc[3] != 56.0f) {
        why = "ssyrk self-test failed";
        return false;
    }
    double m[4] = {3.0, 0.0, 0.0, -4.0}, s[2] = {0, 0};
    if (e.dgesdd(LAPACK_COL_MAJOR, 'N', 2, 2, m, 2, s, nullptr, 1, nullptr, 1) != 0 || s[0] != 4.0 || s[1] != 3.0) {
        why = "dgesdd self-test failed";
        return false;
    }
    return true;
}

}  // namespace

bool use_library(const std::string& path, std::string* why) {
    std::string reason;
    auto refuse = [&](const std::string& r) {
        if (why) *why = r;
        return false;
    };
    {
        std::lock_guard<std::mutex> lock(g_threads_mutex);
        if (!g_wanted.empty()) return refuse("a BLAS call is running");
    }
    if (path.empty()) {  // back to the linked library
        g_use_ext = false;
        g_ext_path.clear();
        g_ext_config.clear();
        return true;
    }
    Handle h = open_loaded(path);
    if (!h) return refuse("not loaded in this process: " + path);
    External e{};
    bool found = false;
    std::string missing_all;
    // numpy ≥ 2 (scipy-openblas64) names its symbols scipy_…64_; numpy 1.2x's openblas64_ …64_.
    for (const std::string prefix : {"scipy_", ""}) {
        std::string missing;
        const std::string cb = "cblas_";
        const std::string lk = "LAPACKE_";
        bool ok = true;
        ok &= bind_symbol(h, prefix + cb, "sgemm", "64_", e.sgemm, missing);
        ok &= bind_symbol(h, prefix + cb, "dgemm", "64_", e.dgemm, missing);
        ok &= bind_symbol(h, prefix + cb, "ssyrk", "64_", e.ssyrk, missing);
        ok &= bind_symbol(h, prefix + cb, "dsyrk", "64_", e.dsyrk, missing);
        ok &= bind_symbol(h, prefix + lk, "dtrcon", "64_", e.dtrcon, missing);
        ok &= bind_symbol(h, prefix + lk, "dtrtri", "64_", e.dtrtri, missing);
        ok &= bind_symbol(h, prefix + lk, "dgeqp3", "64_", e.dgeqp3, missing);
        ok &= bind_symbol(h, prefix + lk, "dorgqr", "64_", e.dorgqr, missing);
        ok &= bind_symbol(h, prefix + lk, "dgesdd", "64_", e.dgesdd, missing);
        ok &= bind_symbol(h, prefix + lk, "sgesdd", "64_", e.sgesdd, missing);
        ok &= bind_symbol(h, prefix + cb, "dtrsm", "64_", e.dtrsm, missing);
        ok &= bind_symbol(h, prefix + lk, "dpotrf", "64_", e.dpotrf, missing);
        ok &= bind_symbol(h, prefix + lk, "dpstrf", "64_", e.dpstrf, missing);
        ok &= bind_symbol(h, prefix + lk, "dsyevd", "64_", e.dsyevd, missing);
        ok &= bind_symbol(h, prefix + lk, "dgeqrf", "64_", e.dgeqrf, missing);
        ok &= bind_symbol(h, prefix + lk, "dtpqrt_work", "64_", e.dtpqrt_work, missing);
        ok &= bind_symbol(h, prefix + lk, "dtpqrt2_work", "64_", e.dtpqrt2_work, missing);
        ok &= bind_symbol(h, prefix + cb, "dtrmm", "64_", e.dtrmm, missing);
        ok &= bind_symbol(h, prefix + "openblas_", "set_num_threads", "64_", e.set_threads, missing);
        ok &= bind_symbol(h, prefix + "openblas_", "get_num_threads", "64_", e.get_threads, missing);
        ok &= bind_symbol(h, prefix + "openblas_", "get_config", "64_", e.get_config, missing);
        if (ok) {
            found = true;
            break;
        }
        missing_all += (missing_all.empty() ? "" : "; ") + missing;
    }
    if (!found) {
        close_handle(h);
        return refuse("missing symbols: " + missing_all);
    }
    const std::string config = e.get_config() ? e.get_config() : "";
    if (config.find("USE64BITINT") == std::string::npos) {
        close_handle(h);
        return refuse("not an ILP64 build (" + config + ")");
    }
    if (!self_test(e, reason)) {
        close_handle(h);
        return refuse(reason);
    }
    // The handle stays open for the life of the process: the library is numpy's and stays loaded anyway.
    g_ext = e;
    g_ext_path = path;
    g_ext_config = config;
    g_use_ext = true;
    return true;
}

LibraryInfo library_info() {
    LibraryInfo out;
    out.external = g_use_ext;
    out.path = g_ext_path;
    out.config = g_use_ext ? g_ext_config : std::string(scipy_openblas_get_config());
    return out;
}

}  // namespace reprsim::blas
