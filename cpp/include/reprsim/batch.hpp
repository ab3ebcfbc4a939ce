// Many small dense decompositions at once (the per-pair SVDs and per-representation eigendecompositions of
// the shape metrics and GULP over a layer × layer matrix), split over threads of their own: each LAPACK
// call runs on one BLAS thread, so k threads run k decompositions side by side instead of fighting over
// one. A 768×768 dgesdd is mostly level-2 work that two BLAS threads barely speed up; two at once do.
#pragma once

#include <vector>

#include "reprsim/common.hpp"

namespace reprsim {

// The nuclear norm (sum of singular values) of each matrix; the matrices are overwritten. float32
// matrices (float32 products of float32 inputs) take LAPACK's sgesdd, float64 ones dgesdd; the sums are
// float64 either way.
std::vector<double> nuclear_norms(std::vector<MatD>& mats, int n_threads);
std::vector<double> nuclear_norms(std::vector<MatC<float>>& mats, int n_threads);

// Symmetric eigendecompositions (upper triangle read): eigenvalues ascending into ws, eigenvectors
// overwrite mats (columns).
void symmetric_eigens(std::vector<MatD>& mats, std::vector<VecD>& ws, int n_threads);

}  // namespace reprsim
