#include "common.hpp"
#include "reprsim/permutation.hpp"

#include <cstdint>
#include <memory>

namespace reprsim::bind {

void bind_inference(py::module_& m) {
    py::class_<LinearCKANull>(m, "LinearCKANull")
        .def(py::init([](const py::array& x, const py::array& y, bool debiased, const std::string& space,
                         double n_permutations) {
                 return dispatch(ArrayList{x, y}, [&](auto tag) -> std::unique_ptr<LinearCKANull> {
                     using T = decltype(tag);
                     const View<T> vx = view_of<T>(x, "x"), vy = view_of<T>(y, "y");
                     Space s;
                     if (space == "feature") {
                         s = Space::Feature;
                     } else if (space == "gram") {
                         s = Space::Gram;
                     } else if (space == "auto") {
                         s = choose_null_space(vx.n, vx.p, vy.p, sizeof(T), n_permutations);
                     } else {
                         fail("space must be 'auto', 'feature' or 'gram', got '", space, "'");
                     }
                     LongCall call;
                     return make_linear_cka_null(vx, vy, s, debiased);
                 });
             }),
             py::arg("x"), py::arg("y"), py::arg("debiased"), py::arg("space") = "auto",
             py::arg("n_permutations") = 1.0)
        .def(
            "evaluate",
            [](const LinearCKANull& self, const py::array& perms, int n_threads) {
                if (!py::isinstance<py::array_t<std::int64_t>>(perms)) {
                    throw py::type_error("permutations must be an int64 array");
                }
                if (perms.ndim() != 2 || perms.shape(1) != self.n()) {
                    std::string shape = "(";
                    for (py::ssize_t d = 0; d < perms.ndim(); ++d) shape += (d ? ", " : "") + std::to_string(perms.shape(d));
                    fail("permutations must have shape (count, ", self.n(), "), one permutation of the ", self.n(),
                         " rows per row; got shape ", shape, perms.ndim() == 1 ? ",)" : ")");
                }
                const auto p = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(perms);
                const Index count = p.shape(0);
                py::array_t<double> out(count);
                double* o = out.mutable_data();
                const std::int64_t* d = p.data();
                {
                    LongCall call;
                    self.evaluate(d, count, o, std::max(1, n_threads));
                }
                return out;
            },
            py::arg("permutations"), py::arg("n_threads") = 1)
        .def_property_readonly("space",
                               [](const LinearCKANull& self) {
                                   return self.space() == Space::Gram ? "gram" : "feature";
                               })
        .def_property_readonly("n", &LinearCKANull::n)
        .def_property_readonly("exact_null_mean", &LinearCKANull::exact_null_mean);

    m.def(
        "choose_null_space",
        [](Index n, Index p1, Index p2, std::size_t itemsize, double n_permutations) {
            return choose_null_space(n, p1, p2, itemsize, n_permutations) == Space::Gram ? "gram" : "feature";
        },
        py::arg("n"), py::arg("p1"), py::arg("p2"), py::arg("itemsize"), py::arg("n_permutations"));
}

}  // namespace reprsim::bind
