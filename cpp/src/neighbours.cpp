#include "reprsim/neighbours.hpp"

#include "reprsim/blas.hpp"
#include "reprsim/centering.hpp"
#include "reprsim/permutation.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <thread>
#include <utility>
#include <vector>

namespace reprsim {

namespace {

// "rows 3, 17, 40 and 2 more"
std::string row_list(std::vector<Index> rows) {
    std::sort(rows.begin(), rows.end());
    std::ostringstream os;
    os << (rows.size() == 1 ? "row " : "rows ");
    const std::size_t shown = std::min<std::size_t>(rows.size(), 10);
    for (std::size_t i = 0; i < shown; ++i) os << (i ? ", " : "") << rows[i];
    if (rows.size() > shown) os << " and " << rows.size() - shown << " more";
    return os.str();
}

// Calls f(t, first, end) for `parts` contiguous ranges of [0, count), each on its own thread (the
// first on this one).
template <class F>
void split_range(Index count, int parts, F&& f) {
    parts = static_cast<int>(std::max<Index>(1, std::min<Index>(parts, count)));
    const Index step = (count + parts - 1) / parts;
    std::vector<std::thread> pool;
    for (int t = 1; t < parts; ++t) {
        const Index r0 = std::min(count, t * step), r1 = std::min(count, r0 + step);
        pool.emplace_back([&f, t, r0, r1] { f(t, r0, r1); });
    }
    f(0, Index(0), std::min(count, step));
    for (auto& th : pool) th.join();
}

}  // namespace

template <class T>
void unit_rows(const View<T>& x, RowPrep prep, const char* name, T* out) {
    check_blas_dims(name, x.n, x.p);
    const Index n = x.n, p = x.p;
    VecD mean;
    if (prep == RowPrep::ColumnCentred) mean = column_means(x, name);  // throws on NaN/Inf
    const Index ranges = row_range_count(n, p);
    std::vector<std::vector<Index>> zero(ranges), bad(ranges);
    for_row_ranges(n, p, [&](Index t, Index r0, Index r1) {
        std::vector<double> v(static_cast<std::size_t>(p));
        for (Index i = r0; i < r1; ++i) {
            const T* row = x.data + i * x.row_stride;
            double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0.0;
            for (Index j = 0; j < p; ++j) {
                const double a = static_cast<double>(row[j * x.col_stride]);
                v[j] = a;
                sum += a;
                lo = a < lo ? a : lo;
                hi = a > hi ? a : hi;
            }
            if (!std::isfinite(sum) && prep != RowPrep::ColumnCentred) {
                // NaN/Inf, or a sum that overflows: the rows are scaled below only once finite.
                bool finite = true;
                for (Index j = 0; j < p; ++j) finite = finite && std::isfinite(v[j]);
                if (!finite) {
                    bad[t].push_back(i);
                    continue;
                }
            }
            if (prep == RowPrep::ColumnCentred) {
                for (Index j = 0; j < p; ++j) v[j] -= mean[j];
            } else if (prep == RowPrep::RowCentred) {
                // A row of equal entries centres to exact zeros (a float64 mean of equal values can round).
                const double m = lo == hi ? lo : (std::isfinite(sum) ? sum / double(p) : 0.5 * lo + 0.5 * hi);
                if (lo == hi) {
                    std::fill(v.begin(), v.end(), 0.0);
                } else if (std::isfinite(sum)) {
                    for (Index j = 0; j < p; ++j) v[j] -= m;
                } else {
                    // The row sum overflows: centre a scaled copy (the norm below removes the scale).
                    const double s = std::max(std::abs(lo), std::abs(hi));
                    double ms = 0.0;
                    for (Index j = 0; j < p; ++j) ms += v[j] / s;
                    ms /= double(p);
                    for (Index j = 0; j < p; ++j) v[j] = v[j] / s - ms;
                }
            }
            double ss = 0.0;
            for (Index j = 0; j < p; ++j) ss += v[j] * v[j];
            double norm;
            if (std::isfinite(ss) && ss > 1e-290) {
                norm = std::sqrt(ss);
            } else {
                double amax = 0.0;
                bool finite = true;
                for (Index j = 0; j < p; ++j) {
                    finite = finite && std::isfinite(v[j]);
                    amax = std::max(amax, std::abs(v[j]));
                }
                if (!finite) {
                    bad[t].push_back(i);
                    continue;
                }
                if (amax == 0.0) {
                    zero[t].push_back(i);
                    continue;
                }
                double s2 = 0.0;
                for (Index j = 0; j < p; ++j) s2 += (v[j] / amax) * (v[j] / amax);
                norm = amax * std::sqrt(s2);
                if (!(norm > 0.0) || !std::isfinite(norm)) {
                    // Scale each entry first, then divide (the norm itself is outside float64).
                    for (Index j = 0; j < p; ++j) out[i * p + j] = static_cast<T>((v[j] / amax) / std::sqrt(s2));
                    continue;
                }
            }
            T* dst = out + i * p;
            for (Index j = 0; j < p; ++j) dst[j] = static_cast<T>(v[j] / norm);
        }
    });
    std::vector<Index> zeros, bads;
    for (Index t = 0; t < ranges; ++t) {
        zeros.insert(zeros.end(), zero[t].begin(), zero[t].end());
        bads.insert(bads.end(), bad[t].begin(), bad[t].end());
    }
    if (!bads.empty()) {
        fail(name, " contains NaN or Inf (", row_list(bads),
             "), or values whose sum overflows float64; remove or replace them (e.g. numpy.nan_to_num) before comparing");
    }
    if (!zeros.empty()) {
        const std::size_t c = zeros.size();
        if (prep == RowPrep::None) {
            fail(name, " has ", c, c == 1 ? " row" : " rows", " of zero norm (", row_list(zeros),
                 "): the cosine similarity of a zero row is undefined; drop those samples");
        } else if (prep == RowPrep::ColumnCentred) {
            fail(name, " has ", c, c == 1 ? " row" : " rows", " equal to the mean row (", row_list(zeros),
                 "), which centring turns into zero rows whose cosine similarity is undefined; drop those samples "
                 "or use center=False");
        } else {
            fail(name, " has ", c, c == 1 ? " constant row" : " constant rows", " (", row_list(zeros),
                 "): the correlation between a constant row and any other is undefined; drop those samples or use "
                 "method='euclidean'");
        }
    }
}

namespace {

// Per-row bounded heaps of the k best (value, index) candidates; the root of each is its worst entry.
// `better` is the order of the tie rule: a larger value, or an equal value and a smaller index.
template <class T>
struct TopK {
    Index n, k;
    std::vector<T> val;               // n×k heaps
    std::vector<std::int32_t> idx;    // n×k
    std::vector<std::int32_t> count;  // entries held
    std::vector<T> worst_val;         // the root once full; −∞ before
    std::vector<std::int32_t> worst_idx;

    TopK(Index n_, Index k_)
        : n(n_),
          k(k_),
          val(std::size_t(n_) * std::size_t(k_)),
          idx(std::size_t(n_) * std::size_t(k_)),
          count(std::size_t(n_), 0),
          worst_val(std::size_t(n_), -std::numeric_limits<T>::infinity()),
          worst_idx(std::size_t(n_), std::numeric_limits<std::int32_t>::max()) {}

    static bool better(T v, std::int32_t i, T w, std::int32_t j) { return v > w || (v == w && i < j); }

    // Offers candidate (v, j) to row `row`'s heap.
    void offer(Index row, T v, std::int32_t j) {
        if (!better(v, j, worst_val[row], worst_idx[row])) return;
        T* hv = val.data() + row * k;
        std::int32_t* hi = idx.data() + row * k;
        const Index c = count[row];
        if (c < k) {
            Index pos = c;
            while (pos > 0) {
                const Index par = (pos - 1) / 2;
                if (!better(hv[par], hi[par], v, j)) break;
                hv[pos] = hv[par];
                hi[pos] = hi[par];
                pos = par;
            }
            hv[pos] = v;
            hi[pos] = j;
            count[row] = std::int32_t(c + 1);
            if (c + 1 == k) {
                worst_val[row] = hv[0];
                worst_idx[row] = hi[0];
            }
            return;
        }
        Index pos = 0;
        for (;;) {
            const Index l = 2 * pos + 1;
            if (l >= k) break;
            Index w = l;  // the worse child
            if (l + 1 < k && better(hv[l], hi[l], hv[l + 1], hi[l + 1])) w = l + 1;
            if (better(v, j, hv[w], hi[w])) {  // the new entry sinks below the worse child
                hv[pos] = hv[w];
                hi[pos] = hi[w];
                pos = w;
            } else {
                break;
            }
        }
        hv[pos] = v;
        hi[pos] = j;
        worst_val[row] = hv[0];
        worst_idx[row] = hi[0];
    }
};

constexpr Index kChunk = 64;

// Offers vals[c] with index base + c, c in [c0, c1), to row `row`. A chunk whose values all lie below
// the row's current worst is skipped after one vectorisable pass (the worst only rises, so nothing
// skipped could have entered).
template <class T>
void offer_row(TopK<T>& h, Index row, const T* vals, Index c0, Index c1, Index base) {
    for (Index c = c0; c < c1; c += kChunk) {
        const Index e = std::min(c1, c + kChunk);
        const T w = h.worst_val[row];
        int hit = 0;
        for (Index q = c; q < e; ++q) hit |= vals[q] >= w;
        if (!hit) continue;
        for (Index q = c; q < e; ++q) h.offer(row, vals[q], std::int32_t(base + q));
    }
}

// Offers candidate index `cand` with value vals[c] to row base + c, c in [c0, c1).
template <class T>
void offer_column(TopK<T>& h, std::int32_t cand, const T* vals, Index c0, Index c1, Index base) {
    const T* w = h.worst_val.data() + base;
    for (Index c = c0; c < c1; c += kChunk) {
        const Index e = std::min(c1, c + kChunk);
        int hit = 0;
        for (Index q = c; q < e; ++q) hit |= vals[q] >= w[q];
        if (!hit) continue;
        for (Index q = c; q < e; ++q) h.offer(base + q, vals[q], cand);
    }
}


}  // namespace

template <class T>
void knn_search(const View<T>& x, Index k, bool center, const char* name, std::int64_t* index, double* sim,
                double* row_mean, Index block_rows, Index block_cols) {
    const Index n = x.n, p = x.p;
    if (n >= Index(std::numeric_limits<std::int32_t>::max())) {
        fail(name, " has ", n, " samples; the k-NN search handles fewer than 2**31");
    }
    if (k < 1 || k > n - 1) {
        fail("k must be between 1 and n - 1 = ", n - 1, " (", name, " has n = ", n, " samples), got ", k);
    }
    Buffer<T> z(std::size_t(n) * std::size_t(p));
    unit_rows(x, center ? RowPrep::ColumnCentred : RowPrep::None, name, z.data());

    // row_mean[i] = ẑ_i·(Σ_l ẑ_l) / n, in float64.
    {
        VecD colsum = VecD::Zero(p);
        for (Index i = 0; i < n; ++i) {
            const T* r = z.data() + i * p;
            for (Index j = 0; j < p; ++j) colsum[j] += static_cast<double>(r[j]);
        }
        for (Index i = 0; i < n; ++i) {
            const T* r = z.data() + i * p;
            double s = 0.0;
            for (Index j = 0; j < p; ++j) s += static_cast<double>(r[j]) * colsum[j];
            row_mean[i] = s / double(n);
        }
    }

    TopK<T> heaps(n, k);
    // The block: large enough for the GEMM to run near its peak (each operand's packing is amortised over
    // the other's 1024-4096 rows), small enough to bound the memory whatever n.
    if (block_rows < 1 || block_cols < 1) fail("the k-NN search's block must have positive sides");
    const Index br = std::min<Index>(n, block_rows), bc = std::min<Index>(n, block_cols);
    Buffer<T> block(std::size_t(br) * std::size_t(bc));
    const int threads = std::max(1, blas::get_num_threads());
    for (Index i0 = 0; i0 < n; i0 += br) {
        const Index i1 = std::min(n, i0 + br), rows = i1 - i0;
        // Rows [i0, i1) against rows [i0, n) in blocks of columns: the pairs no earlier panel saw.
        for (Index j0 = i0; j0 < n; j0 += bc) {
            const Index j1 = std::min(n, j0 + bc), cols = j1 - j0;
            T* s = block.data();
            blas::gemm_nt<T>(rows, cols, p, z.data() + i0 * p, p, z.data() + j0 * p, p, s, cols);
            // Columns at or after c_first belong to rows after the panel: they take the panel rows as
            // candidates too.
            const Index c_first = std::max<Index>(0, i1 - j0);
            const int parts =
                double(rows) * double(cols) < double(1 << 18) ? 1 : int(std::min<Index>(threads, rows));
            split_range(rows, parts, [&](int t, Index r0, Index r1) {
                for (Index r = r0; r < r1; ++r) {
                    const T* v = s + r * cols;
                    const Index self = i0 + r - j0;  // the row itself, when inside this block
                    if (self >= 0 && self < cols) {
                        offer_row(heaps, i0 + r, v, 0, self, j0);
                        offer_row(heaps, i0 + r, v, self + 1, cols, j0);
                    } else {
                        offer_row(heaps, i0 + r, v, 0, cols, j0);
                    }
                }
                const Index span = cols - c_first, step = (span + parts - 1) / parts;
                const Index c0 = c_first + std::min(span, t * step), c1 = c_first + std::min(span, (t + 1) * step);
                if (c0 >= c1) return;
                for (Index r = 0; r < rows; ++r) offer_column(heaps, std::int32_t(i0 + r), s + r * cols, c0, c1, j0);
            });
        }
    }

    // Each row's k entries in ascending index order.
    std::vector<std::pair<std::int32_t, T>> row(static_cast<std::size_t>(k));
    for (Index i = 0; i < n; ++i) {
        const T* hv = heaps.val.data() + i * k;
        const std::int32_t* hi = heaps.idx.data() + i * k;
        for (Index t = 0; t < k; ++t) row[t] = {hi[t], hv[t]};
        std::sort(row.begin(), row.end(), [](const auto& a, const auto& c) { return a.first < c.first; });
        for (Index t = 0; t < k; ++t) {
            index[i * k + t] = row[t].first;
            sim[i * k + t] = static_cast<double>(row[t].second);
        }
    }
}

void check_knn_view(const KnnView& v, const char* name) {
    for (Index i = 0; i < v.n; ++i) {
        const std::int64_t* r = v.index + i * v.k;
        for (Index t = 0; t < v.k; ++t) {
            const std::int64_t j = r[t];
            if (j < 0 || j >= v.n || j == i || (t > 0 && j <= r[t - 1])) {
                fail(name, ".indices row ", i, " is not a strictly ascending list of other rows in [0, ", v.n,
                     ") (entry ", t, " is ", j, "); pass lists made by reprsim's knn_lists");
            }
            if (!std::isfinite(v.sim[i * v.k + t])) fail(name, ".similarities row ", i, " is not finite");
        }
        if (!std::isfinite(v.row_mean[i])) fail(name, ".row_means[", i, "] is not finite");
    }
}

namespace {

// Scratch of one pair evaluation (reused across permutations by one thread).
struct PairScratch {
    std::vector<std::int64_t> stamp;  // stamp[j] == i: j is in y's list of row i (current row)
    std::vector<std::int32_t> pos;    // ... at this position of that list
    std::vector<std::int64_t> col;    // n×k: row i's intersection, ascending
    std::vector<double> kv, lv;       // n×k: K_ij and L_ij on it
    std::vector<Index> count;         // n
    std::vector<double> col_a, row_b;
    std::vector<std::int64_t> inverse;

    void reset(Index n, Index k, bool entries) {
        stamp.assign(std::size_t(n), -1);
        pos.resize(std::size_t(n));
        count.assign(std::size_t(n), 0);
        if (entries) {
            col.resize(std::size_t(n) * std::size_t(k));
            kv.resize(col.size());
            lv.resize(col.size());
            col_a.assign(std::size_t(n), 0.0);
            row_b.assign(std::size_t(n), 0.0);
        }
    }
};

// The intersections N_x(i) ∩ N_y'(i) for every i (y' = y[π]): counts always, entries when `entries`.
void intersect(const KnnView& a, const KnnView& b, const std::int64_t* perm, const std::int64_t* inverse,
               bool entries, PairScratch& w) {
    const Index n = a.n, k = a.k;
    for (Index i = 0; i < n; ++i) {
        const Index yi = perm ? perm[i] : i;
        const std::int64_t* br = b.index + yi * k;
        for (Index t = 0; t < k; ++t) {
            const std::int64_t j = inverse ? inverse[br[t]] : br[t];
            w.stamp[j] = i;
            w.pos[j] = std::int32_t(t);
        }
        const std::int64_t* ar = a.index + i * k;
        Index c = 0;
        if (entries) {
            const double* as = a.sim + i * k;
            const double* bs = b.sim + yi * k;
            std::int64_t* oc = w.col.data() + i * k;
            double* ok = w.kv.data() + i * k;
            double* ol = w.lv.data() + i * k;
            for (Index t = 0; t < k; ++t) {
                const std::int64_t j = ar[t];
                if (w.stamp[j] != i) continue;
                oc[c] = j;
                ok[c] = as[t];
                ol[c] = bs[w.pos[j]];
                ++c;
            }
        } else {
            for (Index t = 0; t < k; ++t) c += w.stamp[ar[t]] == i;
        }
        w.count[i] = c;
    }
}

// Position of v in the ascending list row[0..len), or −1.
Index find_sorted(const std::int64_t* row, Index len, std::int64_t v) {
    const std::int64_t* it = std::lower_bound(row, row + len, v);
    return (it != row + len && *it == v) ? Index(it - row) : Index(-1);
}

struct Cross {
    double value = 0.0;
    double magnitude = 0.0;  // the same sum with every term's absolute value (rounding scale)
};

// Unbiased HSIC (Song et al. 2012, eq. 5) of A = M∘K and B = M∘L, M_ij = [j ∈ N_x(i) ∩ N_y(i)], as
// platonic-rep evaluates it on these non-symmetric matrices (zero diagonals):
//   HSIC₁ = [Σ_ij A_ij B_ji + (Σ A)(Σ B)/((n−1)(n−2)) − 2/(n−2)·Σ_l (Σ_i A_il)(Σ_j B_lj)] / (n(n−3)).
Cross cknna_hsic(const KnnView& a, PairScratch& w) {
    const Index n = a.n, k = a.k;
    double t1 = 0.0, t1_abs = 0.0, sa = 0.0, sa_abs = 0.0, sb = 0.0, sb_abs = 0.0;
    for (Index i = 0; i < n; ++i) {
        const Index c = w.count[i];
        const std::int64_t* oc = w.col.data() + i * k;
        const double* ok = w.kv.data() + i * k;
        const double* ol = w.lv.data() + i * k;
        double rb = 0.0;
        for (Index u = 0; u < c; ++u) {
            const std::int64_t j = oc[u];
            sa += ok[u];
            sa_abs += std::abs(ok[u]);
            sb += ol[u];
            sb_abs += std::abs(ol[u]);
            rb += ol[u];
            w.col_a[j] += ok[u];
            // The transposed term: B_ji, present when i is in row j's intersection too.
            const Index v = find_sorted(w.col.data() + j * k, w.count[j], i);
            if (v >= 0) {
                const double prod = ok[u] * w.lv[j * k + v];
                t1 += prod;
                t1_abs += std::abs(prod);
            }
        }
        w.row_b[i] = rb;
    }
    double cross = 0.0, cross_abs = 0.0;
    for (Index l = 0; l < n; ++l) {
        cross += w.col_a[l] * w.row_b[l];
        cross_abs += std::abs(w.col_a[l]) * std::abs(w.row_b[l]);
    }
    const double dn = double(n), scale = 1.0 / (dn * (dn - 3.0));
    Cross out;
    out.value = (t1 + sa * sb / ((dn - 1.0) * (dn - 2.0)) - 2.0 / (dn - 2.0) * cross) * scale;
    out.magnitude = (t1_abs + sa_abs * sb_abs / ((dn - 1.0) * (dn - 2.0)) + 2.0 / (dn - 2.0) * cross_abs) * scale;
    return out;
}

// The paper's form: Σ_i Σ_{j ∈ N_x(i) ∩ N_y(i)} (K_ij − μ^x_i)(L_ij − μ^y_i), μ_i the mean of row i of
// the kernel over all n columns.
Cross cknna_row(const KnnView& a, const KnnView& b, const std::int64_t* perm, PairScratch& w) {
    const Index n = a.n, k = a.k;
    Cross out;
    for (Index i = 0; i < n; ++i) {
        const double ma = a.row_mean[i], mb = b.row_mean[perm ? perm[i] : i];
        const double* ok = w.kv.data() + i * k;
        const double* ol = w.lv.data() + i * k;
        double s = 0.0, s_abs = 0.0;
        for (Index u = 0; u < w.count[i]; ++u) {
            const double d = (ok[u] - ma) * (ol[u] - mb);
            s += d;
            s_abs += (std::abs(ok[u]) + std::abs(ma)) * (std::abs(ol[u]) + std::abs(mb));
        }
        out.value += s;
        out.magnitude += s_abs;
    }
    return out;
}

Cross pair_statistic(const KnnView& a, const KnnView& b, KnnMeasure m, const std::int64_t* perm,
                     const std::int64_t* inverse, PairScratch& w) {
    const Index n = a.n, k = a.k;
    Cross out;
    if (m == KnnMeasure::Cycle) {
        Index hits = 0;
        for (Index i = 0; i < n; ++i) {
            const std::int64_t* br = b.index + (perm ? perm[i] : i) * k;
            for (Index t = 0; t < k; ++t) {
                const std::int64_t j = inverse ? inverse[br[t]] : br[t];
                if (find_sorted(a.index + j * k, k, i) >= 0) {
                    ++hits;
                    break;
                }
            }
        }
        out.value = double(hits) / double(n);
        return out;
    }
    const bool entries = m == KnnMeasure::CknnaHsic || m == KnnMeasure::CknnaRow;
    w.reset(n, k, entries);
    intersect(a, b, perm, inverse, entries, w);
    if (m == KnnMeasure::Mutual) {
        Index total = 0;
        for (Index i = 0; i < n; ++i) total += w.count[i];
        out.value = double(total) / (double(n) * double(k));
    } else if (m == KnnMeasure::Jaccard) {
        double s = 0.0;
        for (Index i = 0; i < n; ++i) s += double(w.count[i]) / double(2 * k - w.count[i]);
        out.value = s / double(n);
    } else if (m == KnnMeasure::CknnaHsic) {
        out = cknna_hsic(a, w);
    } else {
        out = cknna_row(a, b, perm, w);
    }
    return out;
}

}  // namespace

double knn_pair_statistic(const KnnView& a, const KnnView& b, KnnMeasure m, const std::int64_t* perm,
                          const std::int64_t* inverse) {
    PairScratch w;
    return pair_statistic(a, b, m, perm, inverse, w).value;
}

double cknna_self_term(const KnnView& a, KnnMeasure variant) {
    if (variant == KnnMeasure::CknnaHsic && a.n < 4) return std::numeric_limits<double>::quiet_NaN();
    PairScratch w;
    const Cross c = pair_statistic(a, a, variant, nullptr, nullptr, w);
    // A self term within a few units of rounding of the sum of its terms' magnitudes is zero.
    const double floor = 64.0 * std::numeric_limits<double>::epsilon() * c.magnitude;
    return std::abs(c.value) <= floor ? 0.0 : c.value;
}

double knn_finalise(KnnMeasure m, double statistic, double self_x, double self_y) {
    if (m != KnnMeasure::CknnaHsic && m != KnnMeasure::CknnaRow) return statistic;
    const char* form = m == KnnMeasure::CknnaHsic ? "unbiased HSIC" : "row-anchored alignment";
    if (!(self_x > 0.0)) {
        fail("CKNNA is undefined: the ", form, " of x's mutual-neighbour kernel with itself is ", self_x,
             " (not positive beyond rounding); use a larger k or more samples");
    }
    if (!(self_y > 0.0)) {
        fail("CKNNA is undefined: the ", form, " of y's mutual-neighbour kernel with itself is ", self_y,
             " (not positive beyond rounding); use a larger k or more samples");
    }
    return statistic / (std::sqrt(self_x) * std::sqrt(self_y));
}

void knn_permutation_null(const KnnView& a, const KnnView& b, KnnMeasure m, double self_x, double self_y,
                          const std::int64_t* perms, Index count, double* out, int n_threads) {
    const Index n = a.n;
    check_permutations(perms, count, n, "permutations");
    knn_finalise(m, 0.0, self_x, self_y);  // the self terms are checked once, before any work
    split_range(count, std::max(1, n_threads), [&](int, Index r0, Index r1) {
        PairScratch w;
        std::vector<std::int64_t> inverse(static_cast<std::size_t>(n));
        for (Index r = r0; r < r1; ++r) {
            const std::int64_t* p = perms + r * n;
            for (Index i = 0; i < n; ++i) inverse[p[i]] = i;
            out[r] = knn_finalise(m, pair_statistic(a, b, m, p, inverse.data(), w).value, self_x, self_y);
        }
    });
}

#define REPRSIM_INSTANTIATE(T)                                                                                   \
    template void unit_rows<T>(const View<T>&, RowPrep, const char*, T*);                                        \
    template void knn_search<T>(const View<T>&, Index, bool, const char*, std::int64_t*, double*, double*, Index, \
                                Index);
REPRSIM_INSTANTIATE(float)
REPRSIM_INSTANTIATE(double)
#undef REPRSIM_INSTANTIATE

}  // namespace reprsim
