// Neighbourhood (k-NN lists and their pair measures) and RSA (RDMs and their comparison) kernels.
#include "common.hpp"
#include "reprsim/neighbours.hpp"
#include "reprsim/rsa.hpp"

#include <cstdint>

namespace reprsim::bind {

namespace {

using IndexArray = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

// One representation's lists as arrays kept alive beside the view of them.
struct Lists {
    IndexArray index;
    DoubleArray sim, mean;
    KnnView view;
};

Lists lists_of(const py::tuple& t, const std::string& name) {
    if (t.size() != 3) {
        throw py::type_error(name + " must be a tuple (indices, similarities, row_means) of k-NN lists");
    }
    Lists l{IndexArray::ensure(t[0]), DoubleArray::ensure(t[1]), DoubleArray::ensure(t[2]), KnnView{}};
    if (!l.index || !l.sim || !l.mean) {
        throw py::type_error(name + " must hold numeric arrays (indices, similarities, row_means)");
    }
    if (l.index.ndim() != 2 || l.sim.ndim() != 2 || l.mean.ndim() != 1 || l.sim.shape(0) != l.index.shape(0) ||
        l.sim.shape(1) != l.index.shape(1) || l.mean.shape(0) != l.index.shape(0)) {
        fail(name, ": indices and similarities must have one shape (n, k) and row_means shape (n,)");
    }
    l.view = KnnView{l.index.shape(0), l.index.shape(1), l.index.data(), l.sim.data(), l.mean.data()};
    if (l.view.k < 1 || l.view.k > l.view.n - 1) {
        fail(name, " has k = ", l.view.k, " neighbours for n = ", l.view.n, " samples; k must be in [1, n - 1]");
    }
    check_knn_view(l.view, name.c_str());
    return l;
}

void check_same(const Lists& a, const Lists& b) {
    if (a.view.n != b.view.n || a.view.k != b.view.k) {
        fail("the k-NN lists of x and y differ in shape: x has n = ", a.view.n, ", k = ", a.view.k, " and y has n = ",
             b.view.n, ", k = ", b.view.k, "; compute both with the same k over the same samples");
    }
}

KnnMeasure parse_measure(const std::string& s) {
    if (s == "mutual") return KnnMeasure::Mutual;
    if (s == "jaccard") return KnnMeasure::Jaccard;
    if (s == "cycle") return KnnMeasure::Cycle;
    if (s == "cknna") return KnnMeasure::CknnaHsic;
    if (s == "cknna_row") return KnnMeasure::CknnaRow;
    fail("measure must be 'mutual', 'jaccard', 'cycle', 'cknna' or 'cknna_row', got '", s, "'");
}

RdmMethod parse_rdm(const std::string& s) {
    if (s == "euclidean") return RdmMethod::Euclidean;
    if (s == "correlation") return RdmMethod::Correlation;
    if (s == "cosine") return RdmMethod::Cosine;
    fail("rdm method must be 'euclidean', 'correlation' or 'cosine', got '", s, "'");
}

RdmCompare parse_compare(const std::string& s) {
    if (s == "spearman") return RdmCompare::Spearman;
    if (s == "pearson") return RdmCompare::Pearson;
    if (s == "kendall_tau_a") return RdmCompare::KendallTauA;
    if (s == "cosine") return RdmCompare::Cosine;
    fail("compare must be 'spearman', 'pearson', 'kendall_tau_a' or 'cosine', got '", s, "'");
}

}  // namespace

void bind_neighbours(py::module_& m) {
    m.def(
        "knn_lists",
        [](const py::array& x, Index k, bool center, const std::string& name, Index block_rows, Index block_cols) {
            return dispatch(ArrayList{x}, [&](auto tag) {
                using T = decltype(tag);
                const View<T> v = view_of<T>(x, name);
                if (k < 1 || k > v.n - 1) {
                    fail("k must be between 1 and n - 1 = ", v.n - 1, " (", name, " has n = ", v.n, " samples), got ", k);
                }
                py::array_t<std::int64_t> index({v.n, k});
                py::array_t<double> sim({v.n, k});
                py::array_t<double> mean(v.n);
                std::int64_t* pi = index.mutable_data();
                double* ps = sim.mutable_data();
                double* pm = mean.mutable_data();
                {
                    py::gil_scoped_release release;
                    knn_search(v, k, center, name.c_str(), pi, ps, pm, block_rows, block_cols);
                }
                return py::make_tuple(index, sim, mean);
            });
        },
        py::arg("x"), py::arg("k"), py::arg("center") = false, py::arg("name") = "x",
        py::arg("block_rows") = kKnnBlockRows, py::arg("block_cols") = kKnnBlockCols);

    m.def(
        "knn_self_terms",
        [](const py::tuple& lists, const std::string& name) {
            const Lists l = lists_of(lists, name);
            double hsic, row;
            {
                py::gil_scoped_release release;
                hsic = cknna_self_term(l.view, KnnMeasure::CknnaHsic);
                row = cknna_self_term(l.view, KnnMeasure::CknnaRow);
            }
            return py::make_tuple(hsic, row);
        },
        py::arg("lists"), py::arg("name") = "x");

    m.def(
        "knn_measure",
        [](const py::tuple& lists_x, const py::tuple& lists_y, const std::string& measure, double self_x,
           double self_y) {
            const KnnMeasure mm = parse_measure(measure);
            const Lists a = lists_of(lists_x, "x"), b = lists_of(lists_y, "y");
            check_same(a, b);
            py::gil_scoped_release release;
            return knn_finalise(mm, knn_pair_statistic(a.view, b.view, mm), self_x, self_y);
        },
        py::arg("lists_x"), py::arg("lists_y"), py::arg("measure"), py::arg("self_x") = 0.0, py::arg("self_y") = 0.0);

    m.def(
        "knn_permutation_null",
        [](const py::tuple& lists_x, const py::tuple& lists_y, const py::array& perms, const std::string& measure,
           double self_x, double self_y, int n_threads) {
            const KnnMeasure mm = parse_measure(measure);
            const Lists a = lists_of(lists_x, "x"), b = lists_of(lists_y, "y");
            check_same(a, b);
            if (!py::isinstance<py::array_t<std::int64_t>>(perms)) {
                throw py::type_error("permutations must be an int64 array");
            }
            if (perms.ndim() != 2 || perms.shape(1) != a.view.n) {
                fail("permutations must have shape (count, ", a.view.n, "), one permutation of the ", a.view.n,
                     " rows per row");
            }
            const auto p = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(perms);
            const Index count = p.shape(0);
            py::array_t<double> out(count);
            double* o = out.mutable_data();
            const std::int64_t* d = p.data();
            {
                py::gil_scoped_release release;
                knn_permutation_null(a.view, b.view, mm, self_x, self_y, d, count, o, std::max(1, n_threads));
            }
            return out;
        },
        py::arg("lists_x"), py::arg("lists_y"), py::arg("permutations"), py::arg("measure"), py::arg("self_x") = 0.0,
        py::arg("self_y") = 0.0, py::arg("n_threads") = 1);

    m.def(
        "rdm",
        [](const py::array& x, const std::string& method, const std::string& name) {
            const RdmMethod mm = parse_rdm(method);
            return dispatch(ArrayList{x}, [&](auto tag) {
                using T = decltype(tag);
                const View<T> v = view_of<T>(x, name);
                if (v.n < 2) fail(name, " has n = ", v.n, " samples; an RDM needs at least 2");
                py::array_t<double> out(v.n * (v.n - 1) / 2);
                double* o = out.mutable_data();
                {
                    py::gil_scoped_release release;
                    rdm_condensed(v, mm, name.c_str(), o);
                }
                return out;
            });
        },
        py::arg("x"), py::arg("method"), py::arg("name") = "x");

    m.def(
        "rsa",
        [](const py::array& x, const py::array& y, const std::string& method, const std::string& compare) {
            const RdmMethod mm = parse_rdm(method);
            const RdmCompare cc = parse_compare(compare);
            return dispatch(ArrayList{x, y}, [&](auto tag) {
                using T = decltype(tag);
                const View<T> vx = view_of<T>(x, "x"), vy = view_of<T>(y, "y");
                py::gil_scoped_release release;
                return rsa(vx, vy, mm, cc);
            });
        },
        py::arg("x"), py::arg("y"), py::arg("method"), py::arg("compare"));

    m.def(
        "rdm_compare",
        [](const py::array& a, const py::array& b, const std::string& compare, const std::string& name_a,
           const std::string& name_b, int n_threads) {
            const RdmCompare cc = parse_compare(compare);
            const DoubleArray va = DoubleArray::ensure(a), vb = DoubleArray::ensure(b);
            if (!va || !vb || va.ndim() != 1 || vb.ndim() != 1) {
                throw py::type_error("the RDMs must be 1-D numeric arrays (condensed upper triangles)");
            }
            if (va.shape(0) != vb.shape(0)) {
                fail(name_a, " and ", name_b, " differ in length (", va.shape(0), " and ", vb.shape(0),
                     "): they must be RDMs of the same samples");
            }
            const double* pa = va.data();
            const double* pb = vb.data();
            const std::size_t count = std::size_t(va.shape(0));
            py::gil_scoped_release release;
            return compare_condensed(pa, pb, count, cc, name_a.c_str(), name_b.c_str(), std::max(1, n_threads));
        },
        py::arg("a"), py::arg("b"), py::arg("compare"), py::arg("name_a") = "a", py::arg("name_b") = "b",
        py::arg("n_threads") = 1);
}

}  // namespace reprsim::bind
