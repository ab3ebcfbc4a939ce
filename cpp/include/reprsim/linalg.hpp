// Small dense decompositions on float64 column-major matrices (LAPACK through the BLAS glue).
#pragma once

#include "reprsim/common.hpp"

namespace reprsim {

struct SVDResult {
    VecD s;   // singular values, descending
    MatD u;   // m×r left singular vectors (when requested)
    MatD vt;  // r×n right singular vectors, transposed (when requested)
};

// Thin SVD of a (copied) matrix; r = min(m, n).
SVDResult svd(MatD a, bool vectors);

}  // namespace reprsim
