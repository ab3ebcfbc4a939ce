// Neighbourhood measures: exact k-nearest-neighbour lists by cosine similarity, and the measures of
// Huh et al. (2024, "The Platonic Representation Hypothesis") computed from two such lists: mutual
// k-NN, Jaccard k-NN, cycle k-NN and CKNNA.
//
// Neighbours. The similarity of rows i and j is the inner product of the L2-normalised rows
// (optionally of the column-centred rows), K_ij = ẑ_i·ẑ_j. The k neighbours of row i are the k rows
// j ≠ i of largest K_ij, exactly k per row; of rows with equal similarity the smaller row index comes
// first (the comparison key is (K_ij, −j)). The search never holds an n×n matrix: K is symmetric, so
// only its upper part is formed, in blocks (1024 rows × 4096 columns, one GEMM each, 16 MB in float32),
// and every entry is offered twice, to row i's top-k and to row j's, through per-row bounded heaps
// whose current worst entry filters most candidates with one comparison (n²·p flops in all, half of a
// full product). Memory: the normalised copy (n·p), one block and the heaps (n·k).
//
// Lists. A representation's statistics are its k-NN lists: for every row the k neighbour indices in
// ascending order (a set), their similarities K_ij, and the row mean of K over all n columns (the
// anchor of the row-anchored CKNNA). Every pair measure is a finaliser of two lists, O(n·k) or
// O(n·k·log k); a row permutation of y relabels y's lists, so permutation nulls reuse them.
#pragma once

#include "reprsim/common.hpp"

#include <cstdint>
#include <vector>

namespace reprsim {

// How unit_rows prepares each row before scaling it to unit norm.
enum class RowPrep {
    None,           // x_i
    ColumnCentred,  // x_i − column means (the mean row)
    RowCentred,     // x_i − mean of row i's entries (1 − Pearson r between rows)
};

// out (n×p, contiguous, type T) = each prepared row divided by its norm, formed in float64. Throws
// std::invalid_argument naming `name` for NaN/Inf entries or for rows whose prepared norm is zero (the
// cosine similarity of such a row is undefined; the message lists the rows). Norms of rows whose sum
// of squares would overflow or underflow float64 are taken with the row scaled by its largest entry.
template <class T>
void unit_rows(const View<T>& x, RowPrep prep, const char* name, T* out);

// The exact k-NN lists of x (see above). index, sim: n×k row-major outputs; row_mean: n outputs,
// row_mean[i] = (1/n)·Σ_l K_il over every l including i. Requires 1 ≤ k ≤ n − 1 and n < 2^31.
// block_rows × block_cols is the block of similarities per product (the defaults suit any n; the
// tests shrink them to exercise the block edges on small inputs).
inline constexpr Index kKnnBlockRows = 1024;
inline constexpr Index kKnnBlockCols = 4096;
template <class T>
void knn_search(const View<T>& x, Index k, bool center, const char* name, std::int64_t* index, double* sim,
                double* row_mean, Index block_rows = kKnnBlockRows, Index block_cols = kKnnBlockCols);

// A non-owning view of one representation's lists (arrays as knn_search writes them).
struct KnnView {
    Index n = 0;
    Index k = 0;
    const std::int64_t* index = nullptr;  // n×k, each row strictly ascending, never the row itself
    const double* sim = nullptr;          // n×k
    const double* row_mean = nullptr;     // n
};

// Throws std::invalid_argument naming `name` unless every row of v.index is strictly ascending, in
// [0, n) and free of the row's own index, and every similarity and row mean is finite.
void check_knn_view(const KnnView& v, const char* name);

enum class KnnMeasure {
    Mutual,      // mean_i |N_x(i) ∩ N_y(i)| / k
    Jaccard,     // mean_i |N_x(i) ∩ N_y(i)| / |N_x(i) ∪ N_y(i)|
    Cycle,       // fraction of i with i ∈ N_x(j) for some j ∈ N_y(i)
    CknnaHsic,   // platonic-rep's CKNNA: unbiased HSIC of the mutual-neighbour-masked kernels
    CknnaRow,    // the paper's row-anchored CKNNA
};

// The pair statistic of (x, y[π]): the measure itself for Mutual/Jaccard/Cycle, and for the CKNNA
// variants the unnormalised cross term (HSIC₁ of the masked kernels, or the row-anchored alignment).
// perm (length n, may be null for the identity) is π: row i of the permuted y is row π(i) of y, whose
// lists are y's relabelled by π⁻¹ (inverse, required with perm). Cost O(n·k), O(n·k·log k) for
// Cycle and CKNNA. a and b must share n and k (checked by the caller).
double knn_pair_statistic(const KnnView& a, const KnnView& b, KnnMeasure m, const std::int64_t* perm = nullptr,
                          const std::int64_t* inverse = nullptr);

// CKNNA's self term of one representation (its cross term with itself), with values within rounding
// of zero set to zero (the U-statistic is a difference of larger terms). NaN when n < 4 (the
// unbiased HSIC needs n ≥ 4).
double cknna_self_term(const KnnView& a, KnnMeasure variant);

// The measure from the pair statistic and, for CKNNA, the two self terms: cross / (√self_x·√self_y).
// Throws std::invalid_argument when a self term is not positive (CKNNA undefined).
double knn_finalise(KnnMeasure m, double statistic, double self_x, double self_y);

// out[r] = the measure of (x, y[perms[r]]) for count permutations (row-major count×n, each a
// permutation of 0..n−1, checked), from the lists alone; split over n_threads threads.
void knn_permutation_null(const KnnView& a, const KnnView& b, KnnMeasure m, double self_x, double self_y,
                          const std::int64_t* perms, Index count, double* out, int n_threads);

}  // namespace reprsim
