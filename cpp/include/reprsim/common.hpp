// Shared types and input checks for the reprsim kernels.
//
// Conventions: a representation is an (n, p) matrix whose rows are samples. Kernels take raw pointers
// with element strides (so numpy arrays of any positive stride are read in place), centre into a
// contiguous copy with float64 means, and accumulate every reduction in float64. User mistakes throw
// std::invalid_argument, whose message names the argument and says how to fix it.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#elif defined(_WIN32)
#include <malloc.h>  // _aligned_malloc, _aligned_free
#endif

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

// A numerical failure that no input check foresaw (a LAPACK routine that did not converge, or that
// met a non-finite intermediate). The bindings map it to Python's FloatingPointError.
struct NumericalError : std::runtime_error {
    using std::runtime_error::runtime_error;
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

// A large scratch array: 2 MiB-aligned and, on Linux, backed by transparent huge pages when it is big
// enough, so that first touching a fresh buffer of tens of MB does not cost a page fault every 4 KiB
// (numpy does the same for its large arrays). Uninitialised.
template <class T>
class Buffer {
public:
    explicit Buffer(std::size_t count) : size_(count) {
        const std::size_t bytes = std::max<std::size_t>(count * sizeof(T), 64);
        const std::size_t align = bytes >= (std::size_t(4) << 20) ? (std::size_t(2) << 20) : 64;
        void* p = nullptr;
#if defined(_WIN32)
        p = _aligned_malloc(bytes, align);
#else
        if (posix_memalign(&p, align, bytes) != 0) p = nullptr;
#endif
        if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        if (align > 64) madvise(p, bytes, MADV_HUGEPAGE);
#endif
        data_ = static_cast<T*>(p);
    }
    ~Buffer() {
#if defined(_WIN32)
        _aligned_free(data_);
#else
        std::free(data_);
#endif
    }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    T* data() { return data_; }
    const T* data() const { return data_; }
    std::size_t size() const { return size_; }

private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace reprsim
