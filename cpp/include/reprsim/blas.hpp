// Glue to a runtime-dispatched, threaded OpenBLAS: the linked scipy-openblas32, or numpy's own
// OpenBLAS when it is loaded and usable (see use_library), so that numpy and reprsim share one pool.
//
// Why direct calls rather than EIGEN_USE_BLAS: the kernels need only a handful of products (XᵀY,
// XᵀX as syrk, XXᵀ as syrk) and LAPACK factorisations, on strided views that Eigen's BLAS hooks
// would copy first; calling cblas on the buffers directly keeps the memory traffic minimal and the
// code path obvious. Eigen handles centring, small decompositions and bookkeeping.
//
// All matrices here are row-major with a leading dimension in elements.
//
// Threads: a call below 2e7 flops runs on the calling thread alone; a larger one on
// min(set_num_threads's limit, the library's own setting). Products above 2e10 flops run in panels of
// their inner dimension with an interruption check (reprsim/interrupt.hpp) between panels.
#pragma once

#include "reprsim/common.hpp"

#include <string>

namespace reprsim::blas {

// C (m×k) = Aᵀ B, where A is (n×m) and B is (n×k), row-major (C += Aᵀ B when `accumulate`).
template <class T>
void gemm_tn(Index n, Index m, Index k, const T* a, Index lda, const T* b, Index ldb, T* c, Index ldc,
             bool accumulate = false);

// C (m×k) = A Bᵀ, where A is (m×n) and B is (k×n), row-major (C += A Bᵀ when `accumulate`).
template <class T>
void gemm_nt(Index m, Index k, Index n, const T* a, Index lda, const T* b, Index ldb, T* c, Index ldc,
             bool accumulate = false);

// C (m×k) = A B, where A is (m×n) and B is (n×k), row-major.
template <class T>
void gemm_nn(Index m, Index k, Index n, const T* a, Index lda, const T* b, Index ldb, T* c, Index ldc);

// Upper triangle of C (p×p) = Aᵀ A, A (n×p) row-major (+= when `accumulate`). The lower triangle is
// left untouched.
template <class T>
void syrk_t(Index n, Index p, const T* a, Index lda, T* c, Index ldc, bool accumulate = false);

// Upper triangle of C (n×n) = A Aᵀ, A (n×p) row-major (+= when `accumulate`). The lower triangle is
// left untouched.
template <class T>
void syrk_n(Index n, Index p, const T* a, Index lda, T* c, Index ldc, bool accumulate = false);

// Column-major B (m×k) = U⁻ᵀ·B (left) or B·U⁻¹ (right), U upper triangular (ldu), in place (dtrsm).
void trsm_upper(bool left, Index m, Index k, const double* u, Index ldu, double* b, Index ldb);

// Column-major general product C (m×k) = op(A)·op(B), op transposing when the flag is set.
void dgemm_col(bool ta, bool tb, Index m, Index k, Index inner, const double* a, Index lda, const double* b, Index ldb,
               double* c, Index ldc);

// Reciprocal condition number (1-norm estimate) of an upper-triangular column-major (n×n) matrix
// (LAPACK dtrcon).
double trcon_upper(Index n, const double* a, Index lda);

// Inverse of an upper-triangular column-major (n×n) matrix, in place (LAPACK dtrtri); the strictly
// lower triangle is not referenced. Returns LAPACK's info (i > 0: U_ii is exactly zero).
int trtri_upper(Index n, double* a, Index lda);

// Column-pivoted Householder QR (LAPACK dgeqp3) of a column-major (m×n) matrix, in place.
// jpvt receives 0-based pivots. Returns nothing; throws std::runtime_error on a LAPACK failure.
void geqp3(Index m, Index n, double* a, Index lda, int* jpvt, double* tau);

// Householder QR without pivoting (LAPACK dgeqrf) of a column-major (m×n) matrix, in place: R in the
// upper triangle (diagonal of either sign), the reflectors below it.
void geqrf(Index m, Index n, double* a, Index lda);

// Forms the first k columns of Q from geqp3's output (LAPACK dorgqr), in place, column-major.
void orgqr(Index m, Index k, double* a, Index lda, const double* tau);

// Singular values (descending) and, optionally, left/right singular vectors of a column-major
// (m×n) matrix (LAPACK dgesdd, thin). a is overwritten. u is m×min(m,n), vt is min(m,n)×n.
void gesdd(Index m, Index n, double* a, Index lda, double* s, double* u, double* vt, bool vectors);

// Singular values only (descending) of a float32 column-major (m×n) matrix (LAPACK sgesdd); a is
// overwritten.
void sgesdd_values(Index m, Index n, float* a, Index lda, float* s);

// Cholesky factorisation (upper, column-major, LAPACK dpotrf). Returns LAPACK's info: 0 on
// success, i > 0 when the leading minor of order i is not positive definite.
int potrf_upper(Index n, double* a, Index lda);

// Cholesky factorisation with complete pivoting of a positive semi-definite matrix (upper,
// column-major, LAPACK dpstrf): Pᵀ·A·P = UᵀU. It stops once the largest remaining diagonal entry is
// at most `tol` (absolute); returns the number of steps taken (the computed rank). piv receives the
// 0-based pivots. Only the leading rank rows of U are meaningful.
Index pstrf_upper(Index n, double* a, Index lda, int* piv, double tol);

// Symmetric eigendecomposition (LAPACK dsyevd, column-major, upper): eigenvalues ascending in w,
// eigenvectors overwrite a when vectors is true.
void syevd(Index n, double* a, Index lda, double* w, bool vectors);

// QR of a triangle stacked on a pentagon (LAPACK dtpqrt): [A; B] = Q·[R; 0], A (n×n upper triangular)
// and B (m×n; its first m − l rows dense, its last l rows upper trapezoidal), column-major. A receives
// R (its diagonal of either sign, its strictly lower triangle untouched); B is overwritten by the
// reflectors. Used without Q: only R is read back.
void tpqrt(Index m, Index n, Index l, double* a, Index lda, double* b, Index ldb);

// The unblocked form (LAPACK dtpqrt2), which also returns the n×n upper-triangular T of the compact WY
// representation Q = I − V·T·Vᵀ, V = [I; B's reflectors].
void tpqrt2(Index m, Index n, Index l, double* a, Index lda, double* b, Index ldb, double* t, Index ldt);

// Column-major C (m×k) = alpha·op(A)·op(B) + beta·C.
void dgemm_col_acc(bool ta, bool tb, Index m, Index k, Index inner, double alpha, const double* a, Index lda,
                   const double* b, Index ldb, double beta, double* c, Index ldc);

// Column-major B (m×n) = alpha·op(T)·B (left) or alpha·B·op(T) (right), T upper triangular, non-unit.
void trmm_upper(bool left, bool trans, Index m, Index n, double alpha, const double* t, Index ldt, double* b,
                Index ldb);

// reprsim's limit on the threads of a BLAS call (0: none, the library's own setting applies).
void set_num_threads(int n);
// The threads a large call uses now: min(the limit, the library's own setting).
int get_num_threads();
// The library's own process-wide setting (what numpy, threadpoolctl or OPENBLAS_NUM_THREADS set).
int library_num_threads();

// Switches every call to the OpenBLAS at `path`, which must already be loaded in this process (numpy's)
// and be an ILP64 build exporting scipy_…64_ or …64_ CBLAS/LAPACKE symbols; an empty path switches back
// to the linked scipy-openblas32. Returns false (and the reason in *why) when it cannot, leaving the
// library in use unchanged. Call it before any computation starts (the Python package does, at import).
bool use_library(const std::string& path, std::string* why);

struct LibraryInfo {
    bool external = false;  // true: the library at `path`; false: the linked scipy-openblas32
    std::string path;
    std::string config;     // openblas_get_config()
};
LibraryInfo library_info();

// While an instance lives, every BLAS call runs on its calling thread alone: for work that is split over
// threads of its own (see batch.hpp). Composes with the single-threaded small calls; the thread count is
// restored when the last of them ends.
class OneThread {
public:
    OneThread();
    ~OneThread();
    OneThread(const OneThread&) = delete;
    OneThread& operator=(const OneThread&) = delete;
};

}  // namespace reprsim::blas
