// Shared types and input checks for the reprsim kernels.
//
// Conventions: a representation is an (n, p) matrix whose rows are samples. Kernels take raw pointers
// with element strides (so numpy arrays of any positive stride are read in place), centre into a
// contiguous copy with float64 means, and accumulate every reduction in float64. User mistakes throw
// std::invalid_argument, whose message names the argument and says how to fix it.
#pragma once

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

namespace reprsim {

using Index = Eigen::Index;

template <class T>
using MatR = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatC = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using MatD = MatC<double>;
using VecD = Eigen::VectorXd;

// A read-only view of an (n, p) matrix with element strides (row stride, column stride).
template <class T>
struct View {
    const T* data = nullptr;
    Index n = 0;
    Index p = 0;
    Index row_stride = 0;  // elements between consecutive rows
    Index col_stride = 1;  // elements between consecutive columns

    const T& operator()(Index i, Index j) const { return data[i * row_stride + j * col_stride]; }
    static View contiguous(const T* d, Index n, Index p) { return View{d, n, p, p, 1}; }
};

template <class... Args>
[[noreturn]] void fail(const Args&... args) {
    std::ostringstream os;
    (os << ... << args);
    throw std::invalid_argument(os.str());
}

inline std::string shape_str(Index n, Index p) {
    std::ostringstream os;
    os << "(" << n << ", " << p << ")";
    return os.str();
}

// Largest n*p the kernels accept; BLAS dimensions are 32-bit integers.
inline void check_blas_dims(const char* name, Index n, Index p) {
    constexpr Index kMax = std::numeric_limits<int32_t>::max();
    if (n > kMax || p > kMax) {
        fail(name, " has shape ", shape_str(n, p), ": each dimension must be below 2**31 for the BLAS kernels");
    }
}

}  // namespace reprsim
