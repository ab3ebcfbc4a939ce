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

void bind_cka(py::module_& m) {
    m.def(
        "linear_cka",
        [](const py::array& x, const py::array& y, bool debiased, const std::string& space) {
            return dispatch(ArrayList{x, y}, [&](auto tag) {
                using T = decltype(tag);
                const View<T> vx = view_of<T>(x, "x"), vy = view_of<T>(y, "y");
                LongCall call;
                const Space s = parse_space(space, vx.n, vx.p, vy.p, sizeof(T), 1, 1);
                if (s == Space::Feature) return linear_cka_joint(vx, vy, debiased);
                return linear_cka_gram_pair(vx, vy, debiased);
            });
        },
        py::arg("x"), py::arg("y"), py::arg("debiased"), py::arg("space") = "auto");

    m.def(
        "linear_cka_matrix",
        [](const ArrayList& xs, const std::optional<ArrayList>& ys, bool debiased, const std::string& space) {
            ArrayList all = xs;
            if (ys) all.insert(all.end(), ys->begin(), ys->end());
            return dispatch(all, [&](auto tag) {
                using T = decltype(tag);
                const auto nx = names_of("xs", xs.size()), ny = names_of("ys", ys ? ys->size() : 0);
                std::vector<View<T>> vx, vy;
                for (std::size_t i = 0; i < xs.size(); ++i) vx.push_back(view_of<T>(xs[i], nx[i]));
                if (ys)
                    for (std::size_t i = 0; i < ys->size(); ++i) vy.push_back(view_of<T>((*ys)[i], ny[i]));
                const Index k1 = Index(xs.size()), k2 = ys ? Index(ys->size()) : k1;
                const Space s = parse_space(space, vx[0].n, max_width(xs), ys ? max_width(*ys) : max_width(xs),
                                            sizeof(T), k1, k2);
                py::array_t<double> out({k1, k2});
                double* o = out.mutable_data();
                {
                    LongCall call;
                    std::vector<LinearFactor<T>> fx, fy;
                    MatR<double> cross;
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
                    for (Index i = 0; i < k1; ++i)
                        for (Index j = 0; j < k2; ++j)
                            o[i * k2 + j] = linear_cka_from_cross(cross(i, j), fx[i], right[j], debiased);
                }
                return out;
            });
        },
        py::arg("xs"), py::arg("ys"), py::arg("debiased"), py::arg("space") = "auto");

    m.def(
        "choose_space",
        [](Index n, Index p1, Index p2, std::size_t itemsize, Index k1, Index k2) {
            return choose_space(n, p1, p2, itemsize, k1, k2) == Space::Gram ? "gram" : "feature";
        },
        py::arg("n"), py::arg("p1"), py::arg("p2"), py::arg("itemsize"), py::arg("k1") = 1, py::arg("k2") = 1);
}

}  // namespace reprsim::bind
