#include "common.hpp"
#include "reprsim/blas.hpp"

namespace reprsim::bind {

void bind_runtime(py::module_& m) {
    m.def("set_num_threads", &blas::set_num_threads, py::arg("n"));
    m.def("get_num_threads", &blas::get_num_threads);
}

}  // namespace reprsim::bind
