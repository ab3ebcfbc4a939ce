// The private compiled module reprsim._core. The public, documented API is the Python package.
#include "common.hpp"

namespace reprsim::bind {
void bind_cka(py::module_& m);
void bind_cca(py::module_& m);
void bind_procrustes(py::module_& m);
void bind_inference(py::module_& m);
void bind_runtime(py::module_& m);
void bind_stream(py::module_& m);
void bind_kernel(py::module_& m);
void bind_neighbours(py::module_& m);
void bind_factor(py::module_& m);
void bind_linear(py::module_& m);
}  // namespace reprsim::bind

PYBIND11_MODULE(_core, m) {
    m.doc() = "reprsim compiled kernels (private; use the reprsim package)";
    py::register_exception<reprsim::NumericalError>(m, "NumericalError", PyExc_FloatingPointError);
    reprsim::bind::bind_cka(m);
    reprsim::bind::bind_cca(m);
    reprsim::bind::bind_procrustes(m);
    reprsim::bind::bind_inference(m);
    reprsim::bind::bind_runtime(m);
    reprsim::bind::bind_stream(m);
    reprsim::bind::bind_kernel(m);
    reprsim::bind::bind_neighbours(m);
    reprsim::bind::bind_factor(m);
    reprsim::bind::bind_linear(m);
}
