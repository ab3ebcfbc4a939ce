#include "common.hpp"
#include "reprsim/procrustes.hpp"

namespace reprsim::bind {

void bind_procrustes(py::module_& m) {
    m.def(
        "procrustes_nuclear",
        [](const py::array& x, const py::array& y) {
            return dispatch(ArrayList{x, y}, [&](auto tag) {
                using T = decltype(tag);
                const View<T> vx = view_of<T>(x, "x"), vy = view_of<T>(y, "y");
                LongCall call;
                return procrustes_nuclear(procrustes_factor(vx, "x"), procrustes_factor(vy, "y"));
            });
        },
        py::arg("x"), py::arg("y"));

    // ‖x̂ − ŷQ*‖_F from the centred rows (the residual of the optimal rotation; see procrustes.hpp).
    m.def(
        "procrustes_chord",
        [](const py::array& x, const py::array& y) {
            return dispatch(ArrayList{x, y}, [&](auto tag) {
                using T = decltype(tag);
                const View<T> vx = view_of<T>(x, "x"), vy = view_of<T>(y, "y");
                py::gil_scoped_release release;
                return procrustes_chord(vx, vy, "x", "y");
            });
        },
        py::arg("x"), py::arg("y"));

    m.def(
        "procrustes_nuclear_matrix",
        [](const ArrayList& xs, const std::optional<ArrayList>& ys) {
            ArrayList all = xs;
            if (ys) all.insert(all.end(), ys->begin(), ys->end());
            return dispatch(all, [&](auto tag) {
                using T = decltype(tag);
                return pair_matrix<T>(
                    xs, ys, true, [](const View<T>& v, const char* name) { return procrustes_factor(v, name); },
                    [](const ProcrustesFactor<T>& a, const ProcrustesFactor<T>& b) {
                        return procrustes_nuclear(a, b);
                    });
            });
        },
        py::arg("xs"), py::arg("ys"));
}

}  // namespace reprsim::bind
