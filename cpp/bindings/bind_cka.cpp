#include "common.hpp"
#include "reprsim/cka.hpp"

namespace reprsim::bind {

namespace {

Space parse_space(const std::string& s, Index n, Index p1, Index p2, std::size_t itemsize, double pairs) {
    if (s == "feature") return Space::Feature;
    if (s == "gram") return Space::Gram;
    if (s == "auto") return choose_space(n, p1, p2, itemsize, pairs);
    fail("space must be 'auto', 'feature' or 'gram', got '", s, "'");
}

Index max_width(const ArrayList& a) {
    Index p = 0;
    for (const auto& x : a) p = std::max<Index>(p, x.shape(1));
    return p;
}

}  // namespace

void bind_cka(py::module_& m) {
    m.def(
        "linear_cka",
        [](const py::array& x, const py::array& y, bool debiased, const std::string& space) {
            return dispatch(ArrayList{x, y}, [&](auto tag) {
                using T = decltype(tag);
                const View<T> vx = view_of<T>(x, "x"), vy = view_of<T>(y, "y");
                py::gil_scoped_release release;
                const Space s = parse_space(space, vx.n, vx.p, vy.p, sizeof(T), 1.0);
                const auto fx = linear_factor(vx, s, debiased, "x");
                const auto fy = linear_factor(vy, s, debiased, "y");
                return linear_cka_pair(fx, fy, debiased);
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
                const double k1 = double(xs.size()), k2 = double(ys ? ys->size() : xs.size());
                const Index p2 = ys ? max_width(*ys) : max_width(xs);
                const Space s = parse_space(space, xs[0].shape(0), max_width(xs), p2, sizeof(T), k1 * k2 / (k1 + k2));
                return pair_matrix<T>(
                    xs, ys, true, [&](const View<T>& v, const char* name) { return linear_factor(v, s, debiased, name); },
                    [&](const LinearFactor<T>& a, const LinearFactor<T>& b) { return linear_cka_pair(a, b, debiased); });
            });
        },
        py::arg("xs"), py::arg("ys"), py::arg("debiased"), py::arg("space") = "auto");

    m.def(
        "choose_space",
        [](Index n, Index p1, Index p2, std::size_t itemsize) {
            return choose_space(n, p1, p2, itemsize) == Space::Gram ? "gram" : "feature";
        },
        py::arg("n"), py::arg("p1"), py::arg("p2"), py::arg("itemsize"));
}

}  // namespace reprsim::bind
