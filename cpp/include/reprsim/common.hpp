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
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

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

namespace detail {

// Freed large scratch blocks kept for the next call (at most kScratchBlocks of them, kScratchBytes in
// all): a fresh block of tens of MB costs the kernel zeroing every page at first touch (~10 % of a
// product-bound call here), and a call's scratch sizes repeat from call to call. numpy gets the same
// from malloc for blocks below 32 MB.
struct ScratchCache {
    static constexpr std::size_t kScratchBytes = std::size_t(128) << 20;
    static constexpr std::size_t kScratchBlocks = 4;
    struct Block {
        void* p;
        std::size_t bytes;
    };
    std::mutex mutex;
    std::vector<Block> blocks;  // oldest first
    std::size_t total = 0;
};

inline ScratchCache& scratch_cache() {
    static ScratchCache* cache = new ScratchCache();  // never destroyed: no exit-order question
    return *cache;
}

inline void free_aligned(void* p) {
#if defined(_WIN32)
    _aligned_free(p);
#else
    std::free(p);
#endif
}

}  // namespace detail

// A large scratch array: 2 MiB-aligned and, on Linux, backed by transparent huge pages when it is big
// enough, so that first touching a fresh buffer of tens of MB does not cost a page fault every 4 KiB
// (numpy does the same for its large arrays). Blocks of 4 MiB and more come from, and return to, a
// small cache of recently freed blocks (see detail::ScratchCache). Uninitialised.
template <class T>
class Buffer {
public:
    explicit Buffer(std::size_t count) : size_(count) {
        bytes_ = std::max<std::size_t>(count * sizeof(T), 64);
        const bool big = bytes_ >= (std::size_t(4) << 20);
        if (big) {
            // The smallest cached block that fits and is at most twice the request.
            auto& c = detail::scratch_cache();
            std::lock_guard<std::mutex> lock(c.mutex);
            std::size_t best = c.blocks.size();
            for (std::size_t i = 0; i < c.blocks.size(); ++i) {
                const std::size_t b = c.blocks[i].bytes;
                if (b >= bytes_ && b <= 2 * bytes_ && (best == c.blocks.size() || b < c.blocks[best].bytes)) best = i;
            }
            if (best < c.blocks.size()) {
                data_ = static_cast<T*>(c.blocks[best].p);
                bytes_ = c.blocks[best].bytes;
                c.total -= bytes_;
                c.blocks.erase(c.blocks.begin() + std::ptrdiff_t(best));
                return;
            }
        }
        const std::size_t align = big ? (std::size_t(2) << 20) : 64;
        void* p = nullptr;
#if defined(_WIN32)
        p = _aligned_malloc(bytes_, align);
#else
        if (posix_memalign(&p, align, bytes_) != 0) p = nullptr;
#endif
        if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        if (big) madvise(p, bytes_, MADV_HUGEPAGE);
#endif
        data_ = static_cast<T*>(p);
    }
    ~Buffer() {
        if (bytes_ >= (std::size_t(4) << 20) && bytes_ <= detail::ScratchCache::kScratchBytes) {
            auto& c = detail::scratch_cache();
            std::vector<void*> evicted;
            {
                std::lock_guard<std::mutex> lock(c.mutex);
                c.blocks.push_back({data_, bytes_});
                c.total += bytes_;
                while (c.total > detail::ScratchCache::kScratchBytes ||
                       c.blocks.size() > detail::ScratchCache::kScratchBlocks) {
                    evicted.push_back(c.blocks.front().p);
                    c.total -= c.blocks.front().bytes;
                    c.blocks.erase(c.blocks.begin());
                }
            }
            for (void* p : evicted) detail::free_aligned(p);
            return;
        }
        detail::free_aligned(data_);
    }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    T* data() { return data_; }
    const T* data() const { return data_; }
    std::size_t size() const { return size_; }

private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t bytes_ = 0;
};

}  // namespace reprsim
