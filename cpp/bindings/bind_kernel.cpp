#include <pybind11/eigen.h>

#include "common.hpp"
#include "reprsim/kernel.hpp"

namespace reprsim::bind {

void bind_kernel(py::module_& m) {
    // sigma > 0 fixes the kernel width; otherwise σ² = threshold²·(the rule's summary).
    m.def(
        "rbf_cka",
        [](const py::array& x, const py::array& y, bool debiased, const std::string& rule, double threshold,
           double sigma) {
            const BandwidthRule r = sigma > 0 ? BandwidthRule::Fixed : parse_bandwidth_rule(rule);
            return dispatch(ArrayList{x, y}, [&](auto tag) {
                using T = decltype(tag);
                const View<T> vx = view_of<T>(x, "x"), vy = view_of<T>(y, "y");
                LongCall call;
                const SymmetricMatrix k = rbf_gram(vx, r, threshold, sigma, "x");
                check_interrupt();
                const SymmetricMatrix l = rbf_gram(vy, r, threshold, sigma, "y");
                check_interrupt();
                return kernel_cka(k, l, debiased);
            });
        },
        py::arg("x"), py::arg("y"), py::arg("debiased"), py::arg("rule"), py::arg("threshold"), py::arg("sigma"));

    m.def(
        "squared_distances",
        [](const py::array& x) {
            return dispatch(ArrayList{x}, [&](auto tag) {
                using T = decltype(tag);
                const View<T> vx = view_of<T>(x, "x");
                MatD d;
                {
                    LongCall call;
                    d = squared_distances(vx, "x");
                }
                return d;
            });
        },
        py::arg("x"));
}

}  // namespace reprsim::bind
