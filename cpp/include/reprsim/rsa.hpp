// Representational similarity analysis: representational dissimilarity matrices (RDMs) and their
// comparison, with rsatoolbox's definitions (Nili et al. 2014; Schütt et al. 2023).
//
// An RDM is returned and compared as its condensed upper triangle: the N = n(n−1)/2 entries (i, j),
// i < j, row by row (scipy.spatial.distance.pdist's order). Its entries come from row panels of one
// GEMM each (rows [i0, i1) against rows [i0, n)), so no n×n matrix is ever held:
//   euclidean:   ‖x_i − x_j‖² / p, from the column-centred rows (centring leaves distances unchanged and
//                keeps ‖x_i‖² + ‖x_j‖² − 2x_i·x_j free of cancellation against a large mean; the shift
//                is rounded to the column's binary grid, so integer-valued data stay exact and equal
//                distances stay tied); a value below zero within the rounding bound
//                p·ε·(‖x_i‖² + ‖x_j‖²) of that formula is 0.
//   correlation: 1 − Pearson r between the rows (each row centred across its features).
//   cosine:      1 − cosine similarity of the rows.
// Comparisons of two condensed RDMs a, b (N entries each):
//   pearson:       Pearson r, streamed panel by panel (per-panel centred sums merged with Chan et
//                  al.'s update), O(panel) memory;
//   cosine:        a·b / (‖a‖‖b‖), streamed likewise;
//   spearman:      Pearson r of the average ranks (ties share the mean of their positions); each
//                  vector's ranks come from one sort of (value, position) pairs (a counting pass into
//                  2^16 buckets by the top bits of the value's order-preserving integer key, then a
//                  comparison sort per bucket), written back to position order through cache-sized
//                  position buckets;
//   kendall_tau_a: (concordant − discordant) / (N(N−1)/2), tied pairs counting as neither; the
//                  discordant pairs are counted by a merge sort in O(N log N), the ties from runs.
#pragma once

#include "reprsim/common.hpp"

#include <cstddef>

namespace reprsim {

enum class RdmMethod { Euclidean, Correlation, Cosine };
enum class RdmCompare { Spearman, Pearson, KendallTauA, Cosine };

// The condensed RDM of x into out (n(n−1)/2 entries). Requires n ≥ 2.
template <class T>
void rdm_condensed(const View<T>& x, RdmMethod method, const char* name, double* out);

// The comparison of two condensed RDMs of length N (≥ 2). Throws std::invalid_argument when it is
// undefined (Pearson/Spearman: an RDM with all entries equal; cosine: an all-zero RDM). The messages
// name the RDMs `name_a` and `name_b`.
double compare_condensed(const double* a, const double* b, std::size_t count, RdmCompare compare,
                         const char* name_a = "a", const char* name_b = "b", int n_threads = 1);

// The comparison of the RDMs of x and y (same n ≥ 3), without holding either RDM when the comparison
// streams (pearson, cosine); spearman holds a (value, position) sort buffer and both rank vectors,
// kendall_tau_a both value vectors and an (x, y) pair buffer: 32 bytes per entry at the peak.
template <class T>
double rsa(const View<T>& x, const View<T>& y, RdmMethod method, RdmCompare compare);

}  // namespace reprsim
