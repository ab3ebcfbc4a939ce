#include "reprsim/rsa.hpp"

#include "reprsim/blas.hpp"
#include "reprsim/centering.hpp"
#include "reprsim/neighbours.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace reprsim {

namespace {

// Compensated (Neumaier) summation: the error stays near one rounding of the sum of magnitudes whatever
// the number of terms (the rank sums reach 10^20 over 10^8 terms).
struct Sum {
    double s = 0.0, c = 0.0;
    void add(double x) {
        const double t = s + x;
        c += std::abs(s) >= std::abs(x) ? (s - t) + x : (x - t) + s;
        s = t;
    }
    double value() const { return s + c; }
};

// Entries of the condensed triangle in rows before row i.
inline std::size_t row_offset(Index n, Index i) {
    return std::size_t(i) * std::size_t(n) - std::size_t(i) * std::size_t(i + 1) / 2;
}

// A condensed RDM delivered in consecutive blocks; the two sides of a comparison share their block
// boundaries (both are vectors, or both are RDMs of the same n).
class Source {
  public:
    virtual ~Source() = default;
    virtual std::size_t size() const = 0;
    virtual Index blocks() const = 0;
    virtual std::size_t begin(Index q) const = 0;  // begin(blocks()) == size()
    // Block q's values: a pointer into the source's own storage or into `scratch` (scratch_size()).
    virtual const double* block(Index q, double* scratch) = 0;
    virtual std::size_t scratch_size() const = 0;
    virtual const std::string& name() const = 0;
    // The whole vector, when the source holds one.
    virtual const double* data() const { return nullptr; }
    // Block q's values written to dst (what block() returns, without the scratch copy where possible).
    virtual void fill(Index q, double* dst) {
        std::vector<double> scratch(scratch_size());
        const double* v = block(q, scratch.data());
        std::copy(v, v + (begin(q + 1) - begin(q)), dst);
    }
};

class VectorSource final : public Source {
  public:
    VectorSource(const double* a, std::size_t count, std::string name) : a_(a), n_(count), name_(std::move(name)) {}
    std::size_t size() const override { return n_; }
    Index blocks() const override { return Index((n_ + kBlock - 1) / kBlock); }
    std::size_t begin(Index q) const override { return std::min(n_, std::size_t(q) * kBlock); }
    const double* block(Index q, double*) override { return a_ + begin(q); }
    std::size_t scratch_size() const override { return 0; }
    const std::string& name() const override { return name_; }
    const double* data() const override { return a_; }

  private:
    static constexpr std::size_t kBlock = std::size_t(1) << 20;
    const double* a_;
    std::size_t n_;
    std::string name_;
};

// Rows per panel: the panel's products (type T) and its condensed entries (float64) take about 32 MB.
Index rdm_panel_rows(Index n, std::size_t itemsize) {
    const double budget = 32.0 * double(1 << 20);
    const Index b = Index(budget / (double(n) * double(itemsize + sizeof(double))));
    return std::max<Index>(1, std::min<Index>(n, std::max<Index>(32, b)));
}

// Exponent of the lowest set bit of v ≠ 0: v is a multiple of 2^e.
inline int lowest_bit(double v) {
    int e = 0;
    const double m = std::frexp(std::abs(v), &e);  // v = m·2^e, m in [0.5, 1)
    auto bits = static_cast<std::uint64_t>(std::ldexp(m, 53));
    int t = 0;
    while ((bits & 1u) == 0u) {
        bits >>= 1;
        ++t;
    }
    return e - 53 + t;
}

// The shifts of the Euclidean RDM's centring, rounded to each column's grid: when the entries of a
// column are all multiples of 2^g (integers, binary or other coarse data), the shift is made one too,
// so that the centred entries, their products and their sums stay exact and equal distances stay
// equal (ties decide rank comparisons); for other data the grid is below the rounding of the mean and
// the shift is the mean. Any shift leaves the distances unchanged.
template <class T>
void snap_to_grid(const View<T>& x, ScaledMeans& sm) {
    const Index p = x.p;
    std::vector<int> grid(static_cast<std::size_t>(p), std::numeric_limits<int>::max());
    for (Index i = 0; i < x.n; ++i) {
        const T* row = x.data + i * x.row_stride;
        for (Index j = 0; j < p; ++j) {
            const double v = static_cast<double>(row[j * x.col_stride]);
            if (v != 0.0) grid[j] = std::min(grid[j], lowest_bit(v));
        }
    }
    for (Index j = 0; j < p; ++j) {
        if (sm.factor[j] == 0.0 || grid[j] == std::numeric_limits<int>::max()) continue;
        const double g = std::ldexp(sm.scale, grid[j]);  // the grid of the scaled column
        const double q = sm.mean[j] / g;
        if (std::isfinite(q) && std::abs(q) < 0x1p52) sm.mean[j] = std::nearbyint(q) * g;
    }
}

// The RDM of one representation, panel by panel (see rsa.hpp for the definitions).
template <class T>
class RdmTiler final : public Source {
  public:
    RdmTiler(const View<T>& x, RdmMethod method, const char* name)
        : n_(x.n), p_(x.p), method_(method), z_(std::size_t(x.n) * std::size_t(x.p)), name_(std::string(name) + "'s RDM") {
        check_blas_dims(name, x.n, x.p);
        if (method == RdmMethod::Euclidean) {
            sq_.resize(n_);
            ScaledMeans sm = scaled_column_means<T>(x, name);
            snap_to_grid(x, sm);
            center_into(x, sm, z_.data(), p_, sq_.data());
            inv_ = 1.0 / (sm.scale * sm.scale * double(p_));
        } else {
            unit_rows(x, method == RdmMethod::Correlation ? RowPrep::RowCentred : RowPrep::None, name, z_.data());
        }
        panel_ = rdm_panel_rows(n_, sizeof(T));
        work_ = std::make_unique<Buffer<T>>(std::size_t(std::min(panel_, n_)) * std::size_t(n_));
    }

    std::size_t size() const override { return row_offset(n_, n_); }
    Index blocks() const override { return (n_ + panel_ - 1) / panel_; }
    std::size_t begin(Index q) const override { return row_offset(n_, std::min(n_, q * panel_)); }
    std::size_t scratch_size() const override { return std::size_t(std::min(panel_, n_)) * std::size_t(n_); }
    const std::string& name() const override { return name_; }
    const double* block(Index q, double* scratch) override {
        rows(q * panel_, std::min(n_, (q + 1) * panel_), scratch);
        return scratch;
    }
    void fill(Index q, double* dst) override { rows(q * panel_, std::min(n_, (q + 1) * panel_), dst); }

    // The condensed entries of rows [i0, i1) into out.
    void rows(Index i0, Index i1, double* out) {
        const Index count = i1 - i0, m = n_ - i0;
        if (count <= 0 || m <= 1) return;
        T* g = work_->data();
        const T* zi = z_.data() + i0 * p_;
        blas::gemm_nt<T>(count, m, p_, zi, p_, zi, p_, g, m);
        const double eps = double(std::numeric_limits<T>::epsilon());
        double* o = out;
        for (Index r = 0; r < count; ++r) {
            const T* gr = g + r * m;
            const Index len = m - r - 1;
            if (method_ == RdmMethod::Euclidean) {
                const double si = sq_[i0 + r];
                const double* sj = sq_.data() + i0;
                for (Index c = r + 1; c < m; ++c) {
                    double d = si + sj[c] - 2.0 * static_cast<double>(gr[c]);
                    if (d < 0.0) {
                        // ‖z_i − z_j‖² ≥ 0; the formula's rounding is below p·ε·(‖z_i‖² + ‖z_j‖²).
                        if (-d > double(p_) * eps * (si + sj[c])) {
                            throw NumericalError("a squared distance came out as " + std::to_string(d) +
                                                 ", beyond the rounding bound of its formula; please report this input");
                        }
                        d = 0.0;
                    }
                    o[c - r - 1] = d * inv_;
                }
            } else {
                for (Index c = r + 1; c < m; ++c) o[c - r - 1] = 1.0 - static_cast<double>(gr[c]);
            }
            o += len;
        }
    }

  private:
    Index n_, p_, panel_ = 1;
    RdmMethod method_;
    Buffer<T> z_;
    VecD sq_;
    double inv_ = 1.0;
    std::unique_ptr<Buffer<T>> work_;
    std::string name_;
};

// Calls f(offset, a_values, b_values, len) for each block of two sources in lockstep.
template <class F>
void for_each_block_pair(Source& a, Source& b, F&& f) {
    std::vector<double> sa(a.scratch_size()), sb(b.scratch_size());
    for (Index q = 0; q < a.blocks(); ++q) {
        const std::size_t off = a.begin(q), len = a.begin(q + 1) - off;
        if (len == 0) continue;
        f(off, a.block(q, sa.data()), b.block(q, sb.data()), len);
    }
}

template <class F>
void for_each_block(Source& a, F&& f) {
    std::vector<double> sa(a.scratch_size());
    for (Index q = 0; q < a.blocks(); ++q) {
        const std::size_t off = a.begin(q), len = a.begin(q + 1) - off;
        if (len == 0) continue;
        f(off, a.block(q, sa.data()), len);
    }
}

[[noreturn]] void all_equal(const Source& s, const char* what) {
    fail(s.name(), " has all ", s.size(), " dissimilarities equal, so its ", what,
         " with another RDM is undefined; compare='kendall_tau_a' or 'cosine' is defined for it");
}

double pearson(Source& a, Source& b) {
    double cnt = 0.0, ma = 0.0, mb = 0.0, saa = 0.0, sbb = 0.0, sab = 0.0;
    double lo_a = std::numeric_limits<double>::infinity(), hi_a = -lo_a, lo_b = lo_a, hi_b = -lo_a;
    for_each_block_pair(a, b, [&](std::size_t, const double* x, const double* y, std::size_t len) {
        // The block's own centred sums (two passes), merged by Chan et al.'s update.
        Sum s1, s2;
        for (std::size_t u = 0; u < len; ++u) {
            s1.add(x[u]);
            s2.add(y[u]);
            lo_a = std::min(lo_a, x[u]);
            hi_a = std::max(hi_a, x[u]);
            lo_b = std::min(lo_b, y[u]);
            hi_b = std::max(hi_b, y[u]);
        }
        const double dl = double(len), ca = s1.value() / dl, cb = s2.value() / dl;
        Sum saa_, sbb_, sab_;
        for (std::size_t u = 0; u < len; ++u) {
            const double da = x[u] - ca, db = y[u] - cb;
            saa_.add(da * da);
            sbb_.add(db * db);
            sab_.add(da * db);
        }
        const double caa = saa_.value(), cbb = sbb_.value(), cab = sab_.value();
        if (cnt == 0.0) {
            cnt = dl, ma = ca, mb = cb, saa = caa, sbb = cbb, sab = cab;
            return;
        }
        const double tot = cnt + dl, da = ca - ma, db = cb - mb, f = cnt * dl / tot;
        saa += caa + da * da * f;
        sbb += cbb + db * db * f;
        sab += cab + da * db * f;
        ma += da * dl / tot;
        mb += db * dl / tot;
        cnt = tot;
    });
    if (lo_a == hi_a) all_equal(a, "Pearson correlation");
    if (lo_b == hi_b) all_equal(b, "Pearson correlation");
    return sab / (std::sqrt(saa) * std::sqrt(sbb));
}

double cosine(Source& a, Source& b) {
    Sum sab, saa, sbb;
    for_each_block_pair(a, b, [&](std::size_t, const double* x, const double* y, std::size_t len) {
        for (std::size_t u = 0; u < len; ++u) {
            sab.add(x[u] * y[u]);
            saa.add(x[u] * x[u]);
            sbb.add(y[u] * y[u]);
        }
    });
    const double ab = sab.value(), aa = saa.value(), bb = sbb.value();
    if (aa == 0.0) fail(a.name(), " is all zeros, so its cosine similarity with another RDM is undefined");
    if (bb == 0.0) fail(b.name(), " is all zeros, so its cosine similarity with another RDM is undefined");
    return ab / (std::sqrt(aa) * std::sqrt(bb));
}

struct ValuePos {
    double v;
    std::int64_t i;
};

struct XY {
    double x, y;
};

inline double first(const ValuePos& p) { return p.v; }
inline double first(const XY& p) { return p.x; }

// An unsigned integer whose order is the order of the doubles (−0 taken as +0).
inline std::uint64_t order_key(double v) {
    if (v == 0.0) v = 0.0;
    std::uint64_t b;
    std::memcpy(&b, &v, sizeof b);
    return (b >> 63) ? ~b : (b | (std::uint64_t(1) << 63));
}

inline int bit_length(std::uint64_t v) {
    int b = 0;
    while (v) {
        v >>= 1;
        ++b;
    }
    return b;
}

// Sorts the `count` items make(0), …, make(count − 1) into out by `less` (which must order by the
// items' first value first). One counting pass distributes them over at most 2^16 buckets by the top
// bits of (key − smallest key), the order-preserving integer key of the first value; each bucket,
// small enough for the cache, is then sorted on its own. Both passes are split over threads.
template <class Item, class Make, class Less>
void bucket_sort(std::size_t count, Make make, Less less, Item* out, int threads) {
    if (count == 0) return;
    const int parts = count < (std::size_t(1) << 16) ? 1 : std::max(1, threads);
    const std::size_t step = (count + parts - 1) / parts;
    auto run = [&](auto&& f) {  // f(t, first, end) on each part, each on its own thread
        std::vector<std::thread> pool;
        for (int t = 1; t < parts; ++t)
            pool.emplace_back([&f, t, step, count] { f(t, std::min(count, t * step), std::min(count, (t + 1) * step)); });
        f(0, std::size_t(0), std::min(count, step));
        for (auto& th : pool) th.join();
    };
    std::vector<std::uint64_t> lo(parts, ~std::uint64_t(0)), hi(parts, 0);
    run([&](int t, std::size_t u0, std::size_t u1) {
        for (std::size_t u = u0; u < u1; ++u) {
            const std::uint64_t k = order_key(first(make(u)));
            lo[t] = std::min(lo[t], k);
            hi[t] = std::max(hi[t], k);
        }
    });
    const std::uint64_t kmin = *std::min_element(lo.begin(), lo.end());
    const std::uint64_t kmax = *std::max_element(hi.begin(), hi.end());
    const int shift = std::max(0, bit_length(kmax - kmin) - 16);
    const std::size_t buckets = std::size_t((kmax - kmin) >> shift) + 1;
    std::vector<std::vector<std::size_t>> hist(parts, std::vector<std::size_t>(buckets, 0));
    run([&](int t, std::size_t u0, std::size_t u1) {
        std::size_t* h = hist[t].data();
        for (std::size_t u = u0; u < u1; ++u) ++h[(order_key(first(make(u))) - kmin) >> shift];
    });
    // Bucket b of part t starts after every earlier bucket and after bucket b of the earlier parts.
    std::vector<std::size_t> start(buckets + 1, 0);
    {
        std::size_t at = 0;
        for (std::size_t b = 0; b < buckets; ++b) {
            start[b] = at;
            for (int t = 0; t < parts; ++t) {
                const std::size_t c = hist[t][b];
                hist[t][b] = at;
                at += c;
            }
        }
        start[buckets] = at;
    }
    run([&](int t, std::size_t u0, std::size_t u1) {
        std::size_t* h = hist[t].data();
        for (std::size_t u = u0; u < u1; ++u) {
            const Item it = make(u);
            out[h[(order_key(first(it)) - kmin) >> shift]++] = it;
        }
    });
    // Buckets in contiguous ranges of about count/parts items per thread.
    std::vector<std::size_t> first_bucket(parts + 1, buckets);
    first_bucket[0] = 0;
    for (int t = 1, b = 0; t < parts; ++t) {
        const std::size_t target = t * step;
        while (std::size_t(b) < buckets && start[b + 1] <= target) ++b;
        first_bucket[t] = std::max(first_bucket[t - 1], std::size_t(b));
    }
    run([&](int t, std::size_t, std::size_t) {
        for (std::size_t b = first_bucket[t]; b < first_bucket[t + 1]; ++b)
            if (start[b + 1] - start[b] > 1) std::sort(out + start[b], out + start[b + 1], less);
    });
}

// A source's values as one array: its own storage when it has one, else `buf` filled from its blocks.
const double* values_of(Source& s, Buffer<double>& buf) {
    if (const double* d = s.data()) return d;
    double* o = buf.data();
    for (Index q = 0; q < s.blocks(); ++q) s.fill(q, o + s.begin(q));
    return o;
}

// The centred average ranks of sorted (value, position) pairs written to ranks[position], in position
// order; returns Σ (r − r̄)². Entries of equal value share the mean of their 1-based positions g0+1 … g1
// (a half-integer: exact). The writes go through position buckets, a chunk of the sorted pairs at a
// time, so that each bucket's writes land in a cache-sized window instead of across the whole array.
double scatter_ranks(const ValuePos* pv, std::size_t count, double* ranks) {
    constexpr int kWindow = 15;                          // 2^15 positions (256 KB of ranks) per bucket
    constexpr std::size_t kChunk = std::size_t(1) << 21; // pairs per chunk (a 32 MB staging buffer)
    const std::size_t buckets = (count >> kWindow) + 1;
    struct PosRank {
        std::int64_t i;
        double r;
    };
    std::vector<PosRank> stage(std::min(count, kChunk));
    std::vector<std::size_t> at(buckets + 1);
    const double mean = (double(count) + 1.0) / 2.0;
    Sum sq;
    std::size_t g0 = 0, g1 = 0;  // the current run of equal values
    double r = 0.0;
    for (std::size_t c0 = 0; c0 < count; c0 += kChunk) {
        const std::size_t c1 = std::min(count, c0 + kChunk);
        std::fill(at.begin(), at.end(), 0);
        for (std::size_t u = c0; u < c1; ++u) ++at[(pv[u].i >> kWindow) + 1];
        for (std::size_t b = 0; b < buckets; ++b) at[b + 1] += at[b];
        for (std::size_t u = c0; u < c1; ++u) {
            if (u >= g1) {
                g0 = u;
                g1 = u + 1;
                while (g1 < count && pv[g1].v == pv[g0].v) ++g1;
                r = 0.5 * (double(g0) + 1.0 + double(g1)) - mean;
                sq.add(double(g1 - g0) * r * r);
            }
            stage[at[pv[u].i >> kWindow]++] = {pv[u].i, r};
        }
        for (std::size_t v = 0; v < c1 - c0; ++v) ranks[stage[v].i] = stage[v].r;
    }
    return sq.value();
}

double spearman(Source& a, Source& b, int threads) {
    const std::size_t count = a.size();
    auto by_value = [](const ValuePos& p, const ValuePos& q) { return p.v < q.v; };
    Buffer<ValuePos> pairs(count);
    // Each side's values, overwritten by their centred ranks once sorted into pairs (a fresh array when
    // the values are the caller's).
    Buffer<double> rx(count);
    const double* va = values_of(a, rx);
    bucket_sort(count, [va](std::size_t u) { return ValuePos{va[u], std::int64_t(u)}; }, by_value, pairs.data(),
                threads);
    const double saa = scatter_ranks(pairs.data(), count, rx.data());
    if (saa == 0.0) all_equal(a, "Spearman correlation");
    Buffer<double> ry(count);
    const double* vb = values_of(b, ry);
    bucket_sort(count, [vb](std::size_t u) { return ValuePos{vb[u], std::int64_t(u)}; }, by_value, pairs.data(),
                threads);
    const double sbb = scatter_ranks(pairs.data(), count, ry.data());
    if (sbb == 0.0) all_equal(b, "Spearman correlation");
    Sum sab;
    const double* px = rx.data();
    const double* py = ry.data();
    for (std::size_t u = 0; u < count; u += 4096) {  // plain partial sums of 4096 terms, compensated across
        double part = 0.0;
        for (std::size_t v = u, e = std::min(count, u + 4096); v < e; ++v) part += px[v] * py[v];
        sab.add(part);
    }
    return sab.value() / (std::sqrt(saa) * std::sqrt(sbb));
}

// Sorts a[0..count) ascending (buf: count scratch entries) and returns the number of pairs i < j with
// a[i] > a[j] (strictly: equal values are not inversions).
std::uint64_t sort_count(double* a, double* buf, std::size_t count) {
    constexpr std::size_t kRun = 16;
    std::uint64_t inv = 0;
    for (std::size_t s = 0; s < count; s += kRun) {
        const std::size_t e = std::min(count, s + kRun);
        for (std::size_t i = s + 1; i < e; ++i) {
            const double v = a[i];
            std::size_t j = i;
            while (j > s && a[j - 1] > v) {
                a[j] = a[j - 1];
                --j;
            }
            inv += i - j;
            a[j] = v;
        }
    }
    double* src = a;
    double* dst = buf;
    for (std::size_t w = kRun; w < count; w *= 2) {
        for (std::size_t lo = 0; lo < count; lo += 2 * w) {
            const std::size_t mid = std::min(count, lo + w), hi = std::min(count, lo + 2 * w);
            std::size_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) {
                if (src[j] < src[i]) {
                    inv += mid - i;
                    dst[o++] = src[j++];
                } else {
                    dst[o++] = src[i++];
                }
            }
            while (i < mid) dst[o++] = src[i++];
            while (j < hi) dst[o++] = src[j++];
        }
        std::swap(src, dst);
    }
    if (src != a) std::copy(src, src + count, a);
    return inv;
}

std::uint64_t parallel_sort_count(double* a, double* buf, std::size_t count, int threads) {
    if (threads < 2 || count < (std::size_t(1) << 16)) return sort_count(a, buf, count);
    const std::size_t h = count / 2;
    std::uint64_t left = 0;
    std::thread t([&] { left = sort_count(a, buf, h); });
    std::uint64_t inv = sort_count(a + h, buf + h, count - h);
    t.join();
    inv += left;
    std::size_t i = 0, j = h, o = 0;
    while (i < h && j < count) {
        if (a[j] < a[i]) {
            inv += h - i;
            buf[o++] = a[j++];
        } else {
            buf[o++] = a[i++];
        }
    }
    while (i < h) buf[o++] = a[i++];
    while (j < count) buf[o++] = a[j++];
    std::copy(buf, buf + count, a);
    return inv;
}

// Σ over runs of equal values of t(t−1)/2.
template <class Eq>
std::uint64_t tied_pairs(std::size_t count, Eq eq) {
    std::uint64_t ties = 0;
    for (std::size_t g0 = 0; g0 < count;) {
        std::size_t g1 = g0 + 1;
        while (g1 < count && eq(g0, g1)) ++g1;
        const std::uint64_t t = g1 - g0;
        ties += t * (t - 1) / 2;
        g0 = g1;
    }
    return ties;
}

double kendall_tau_a(Source& a, Source& b, int threads) {
    const std::size_t count = a.size();
    std::unique_ptr<Buffer<double>> xbuf, ybuf;
    if (!a.data()) xbuf = std::make_unique<Buffer<double>>(count);
    if (!b.data()) ybuf = std::make_unique<Buffer<double>>(count);
    const double* va = a.data() ? a.data() : values_of(a, *xbuf);
    const double* vb = b.data() ? b.data() : values_of(b, *ybuf);
    std::uint64_t xtie = 0, ntie = 0;
    // The y sequence in (x, y) order, and a merge buffer: the value buffers when there are any.
    std::unique_ptr<Buffer<double>> ys_own, buf_own;
    double* ys = xbuf ? xbuf->data() : (ys_own = std::make_unique<Buffer<double>>(count))->data();
    double* buf = ybuf ? ybuf->data() : (buf_own = std::make_unique<Buffer<double>>(count))->data();
    {
        Buffer<XY> pairs(count);
        XY* pv = pairs.data();
        bucket_sort(count, [va, vb](std::size_t u) { return XY{va[u], vb[u]}; },
                    [](const XY& p, const XY& q) { return p.x < q.x || (p.x == q.x && p.y < q.y); }, pv, threads);
        xtie = tied_pairs(count, [&](std::size_t i, std::size_t j) { return pv[i].x == pv[j].x; });
        ntie = tied_pairs(count, [&](std::size_t i, std::size_t j) { return pv[i].x == pv[j].x && pv[i].y == pv[j].y; });
        for (std::size_t u = 0; u < count; ++u) ys[u] = pv[u].y;
    }
    // Sorted by (x, y), a pair u < v is discordant exactly when y_u > y_v (x_u = x_v has y_u ≤ y_v).
    const std::uint64_t dis = parallel_sort_count(ys, buf, count, threads);
    const std::uint64_t ytie = tied_pairs(count, [&](std::size_t i, std::size_t j) { return ys[i] == ys[j]; });
    const std::uint64_t tot = (count % 2 == 0) ? (count / 2) * (count - 1) : count * ((count - 1) / 2);
    // tot = concordant + discordant + (xtie − ntie) + (ytie − ntie) + ntie.
    const double con_minus_dis = double(std::int64_t(tot - xtie - ytie + ntie) - 2 * std::int64_t(dis));
    return con_minus_dis / double(tot);
}

double compare_sources(Source& a, Source& b, RdmCompare c, int threads) {
    switch (c) {
        case RdmCompare::Pearson:
            return pearson(a, b);
        case RdmCompare::Cosine:
            return cosine(a, b);
        case RdmCompare::Spearman:
            return spearman(a, b, threads);
        case RdmCompare::KendallTauA:
            return kendall_tau_a(a, b, threads);
    }
    fail("unknown RDM comparison");
}

}  // namespace

template <class T>
void rdm_condensed(const View<T>& x, RdmMethod method, const char* name, double* out) {
    if (x.n < 2) fail(name, " has n = ", x.n, " samples; an RDM needs at least 2");
    RdmTiler<T> t(x, method, name);
    for (Index q = 0; q < t.blocks(); ++q) {
        const Index i0 = q * rdm_panel_rows(x.n, sizeof(T));
        t.rows(i0, std::min(x.n, i0 + rdm_panel_rows(x.n, sizeof(T))), out + t.begin(q));
    }
}

double compare_condensed(const double* a, const double* b, std::size_t count, RdmCompare compare,
                         const char* name_a, const char* name_b, int n_threads) {
    if (count < 2) fail("the RDMs have ", count, " entries; comparing them needs at least 2 (n >= 3 samples)");
    for (std::size_t u = 0; u < count; ++u) {
        if (!std::isfinite(a[u])) fail(name_a, " contains NaN or Inf (entry ", u, ")");
        if (!std::isfinite(b[u])) fail(name_b, " contains NaN or Inf (entry ", u, ")");
    }
    VectorSource sa(a, count, name_a), sb(b, count, name_b);
    return compare_sources(sa, sb, compare, n_threads);
}

template <class T>
double rsa(const View<T>& x, const View<T>& y, RdmMethod method, RdmCompare compare) {
    if (x.n != y.n) fail("x and y must have the same number of samples, got ", x.n, " and ", y.n);
    if (x.n < 3) fail("x and y have n = ", x.n, " samples; comparing RDMs needs at least 3");
    RdmTiler<T> tx(x, method, "x"), ty(y, method, "y");
    return compare_sources(tx, ty, compare, std::max(1, blas::get_num_threads()));
}

#define REPRSIM_INSTANTIATE(T)                                                              \
    template void rdm_condensed<T>(const View<T>&, RdmMethod, const char*, double*);        \
    template double rsa<T>(const View<T>&, const View<T>&, RdmMethod, RdmCompare);
REPRSIM_INSTANTIATE(float)
REPRSIM_INSTANTIATE(double)
#undef REPRSIM_INSTANTIATE

}  // namespace reprsim
