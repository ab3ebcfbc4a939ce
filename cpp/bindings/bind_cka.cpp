#include <pybind11/eigen.h>

#include "common.hpp"
#include "reprsim/cka.hpp"

namespace reprsim::bind {

namespace {

Space parse_space(const std::string& s, Index n, Index p1, Index p2, std::size_t itemsize, Index k1, Index k2) {
    if (s == "feature") return Space::Feature;
    if (s == "gram") return Space::Gram;
    if (s == "auto") return choose_space(n, p1, p2, itemsize, k1, k2);
    fail("space must be 'auto', 'feature' or 'gram', got '", s, "'");
}

Index max_width(const ArrayList& a) {
    Index p = 0;
    for (const auto& x : a) p = std::max<Index>(p, x.shape(1));
    return p;
}

template <class T>
std::vector<LinearFactor<T>> factors(const std::vector<View<T>>& views, const std::vector<std::string>& names,
                                     Space s, bool debiased) {
    std::vector<LinearFactor<T>> out;
    GramWork<T> work;  // one set of Gram-space scratch buffers for every factor
    for (std::size_t i = 0; i < views.size(); ++i) {
        out.push_back(linear_factor(views[i], s, debiased, names[i].c_str(), &work));
        check_interrupt();
    }
    return out;
}

}  // namespace

py::dict sums_to_dict(const CKASums& s) {
    py::dict d;
    d["n"] = s.n;
    d["cross"] = s.cross;
    d["sxx"] = s.sxx;
    d["syy"] = s.syy;
    d["tx"] = s.tx;
    d["ty"] = s.ty;
    d["sum_d2"] = s.sum_d2;
    d["sum_e2"] = s.sum_e2;
    d["sum_de"] = s.sum_de;
    d["scale_x"] = s.scale_x;
    d["scale_y"] = s.scale_y;
    d["eps"] = s.eps;
    return d;
}

void bind_cka(py::module_& m) {
    m.def(
        "linear_cka_sums",
        [](const py::array& x, const py::array& y, bool debiased, const std::string& space) {
            return dispatch(ArrayList{x, y}, [&](auto tag) {
                using T = decltype(tag);
                const View<T> vx = view_of<T>(x, "x"), vy = view_of<T>(y, "y");
                CKASums sums;
                {
                    LongCall call;
                    const Space s = parse_space(space, vx.n, vx.p, vy.p, sizeof(T), 1, 1);
                    sums = s == Space::Feature ? linear_cka_sums_joint(vx, vy, debiased)
                                               : linear_cka_sums_gram(vx, vy, debiased);
                }
                return sums_to_dict(sums);
            });
        },
        py::arg("x"), py::arg("y"), py::arg("debiased"), py::arg("space") = "auto");

    // Every pair's sums at once: each representation's factor once, the cross terms of all pairs in
    // one pass. Returns per-representation arrays (sxx, tx, sum_d2, scale_x for xs; syy, ty, sum_e2,
    // scale_y for ys) and per-pair k1×k2 arrays (cross, sum_de).
    m.def(
        "linear_cka_sums_matrix",
        [](const ArrayList& xs, const std::optional<ArrayList>& ys, bool debiased, const std::string& space) {
            ArrayList all = xs;
            if (ys) all.insert(all.end(), ys->begin(), ys->end());
            return dispatch(all, [&](auto tag) {
                using T = decltype(tag);
                const auto nx = names_of("xs", xs.size()), ny = names_of("ys", ys ? ys->size() : 0);
                const std::vector<View<T>> vx = views_of<T>(xs, nx),
                                           vy = ys ? views_of<T>(*ys, ny) : std::vector<View<T>>{};
                const Index k1 = Index(xs.size()), k2 = ys ? Index(ys->size()) : k1;
                const Space s = parse_space(space, vx[0].n, max_width(xs), ys ? max_width(*ys) : max_width(xs),
                                            sizeof(T), k1, k2);
                MatR<double> cross, sum_de(k1, k2);
                VecD sxx(k1), tx(k1), sd2x(k1), scx(k1), syy(k2), ty(k2), sd2y(k2), scy(k2);
                {
                    LongCall call;
                    std::vector<LinearFactor<T>> fx, fy;
                    // In Gram space the blocked route holds a centred copy of every layer (n·p entries) where
                    // the packed Grams hold n(n+1)/2: the blocked route for layers narrower than about n/2
                    // (the wide ones then cost no more memory than their own input), packed Grams beyond.
                    const Index widest = std::max(max_width(xs), ys ? max_width(*ys) : Index(0));
                    if (s == Space::Gram && 2 * widest <= vx[0].n + 1) {
                        cross = linear_cross_matrix_gram_blocked(vx, ys ? &vy : nullptr, nx, ny, debiased, fx, fy);
                    } else {
                        fx = factors(vx, nx, s, debiased);
                        if (ys) fy = factors(vy, ny, s, debiased);
                        cross = linear_cross_matrix(fx, ys ? fy : fx);
                    }
                    const auto& right = ys ? fy : fx;
                    for (Index i = 0; i < k1; ++i) {
                        sxx[i] = fx[i].self_biased;
                        tx[i] = fx[i].sum_d;
                        sd2x[i] = fx[i].d.squaredNorm();
                        scx[i] = fx[i].scale;
                    }
                    for (Index j = 0; j < k2; ++j) {
                        syy[j] = right[j].self_biased;
                        ty[j] = right[j].sum_d;
                        sd2y[j] = right[j].d.squaredNorm();
                        scy[j] = right[j].scale;
                    }
                    for (Index i = 0; i < k1; ++i)
                        for (Index j = 0; j < k2; ++j) sum_de(i, j) = fx[i].d.dot(right[j].d);
                }
                py::dict d;
                d["n"] = double(vx[0].n);
                d["eps"] = double(std::numeric_limits<T>::epsilon());
                d["cross"] = cross;
                d["sum_de"] = sum_de;
                d["sxx"] = sxx;
                d["tx"] = tx;
                d["sum_d2"] = sd2x;
                d["scale_x"] = scx;
                d["syy"] = syy;
                d["ty"] = ty;
                d["sum_e2"] = sd2y;
                d["scale_y"] = scy;
                return d;
            });
        },
        py::arg("xs"), py::arg("ys"), py::arg("debiased"), py::arg("space") = "auto");

    m.def(
        "cka_from_sums",
        [](double n, double cross, double sxx, double syy, double tx, double ty, double sum_d2, double sum_e2,
           double sum_de, bool debiased, const std::string& name_x, const std::string& name_y, double eps) {
            CKASums sums;
            sums.n = n;
            sums.cross = cross;
            sums.sxx = sxx;
            sums.syy = syy;
            sums.tx = tx;
            sums.ty = ty;
            sums.sum_d2 = sum_d2;
            sums.sum_e2 = sum_e2;
            sums.sum_de = sum_de;
            sums.eps = eps;
            return cka_from_sums(sums, debiased, name_x, name_y);
        },
        py::arg("n"), py::arg("cross"), py::arg("sxx"), py::arg("syy"), py::arg("tx"), py::arg("ty"),
        py::arg("sum_d2"), py::arg("sum_e2"), py::arg("sum_de"), py::arg("debiased"), py::arg("name_x") = "x",
        py::arg("name_y") = "y", py::arg("eps") = std::numeric_limits<double>::epsilon());

    m.def(
        "choose_space",
        [](Index n, Index p1, Index p2, std::size_t itemsize, Index k1, Index k2) {
            return choose_space(n, p1, p2, itemsize, k1, k2) == Space::Gram ? "gram" : "feature";
        },
        py::arg("n"), py::arg("p1"), py::arg("p2"), py::arg("itemsize"), py::arg("k1") = 1, py::arg("k2") = 1);
}

}  // namespace reprsim::bind
