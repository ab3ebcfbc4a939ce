// Batched decompositions for the shape metrics and GULP (reprsim._linear_measures).
#include <pybind11/eigen.h>

#include "common.hpp"
#include "reprsim/batch.hpp"

namespace reprsim::bind {

namespace {

using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;

template <class T, class A>
std::vector<MatC<T>> copies(const std::vector<A>& arrays, const char* what) {
    std::vector<MatC<T>> out;
    out.reserve(arrays.size());
    for (std::size_t i = 0; i < arrays.size(); ++i) {
        const A& a = arrays[i];
        if (a.ndim() != 2) fail(what, "[", i, "] must be a 2-D array, got ", a.ndim(), " dimensions");
        using RowMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
        out.emplace_back(RowMap(a.data(), a.shape(0), a.shape(1)));
        if (!out.back().allFinite()) fail(what, "[", i, "] contains NaN or Inf");
    }
    return out;
}

}  // namespace

void bind_linear(py::module_& m) {
    m.def(
        "nuclear_norms",
        [](const std::vector<F64>& mats, int n_threads) {
            std::vector<MatD> work = copies<double>(mats, "mats");
            py::gil_scoped_release release;
            return nuclear_norms(work, n_threads);
        },
        py::arg("mats"), py::arg("n_threads") = 1,
        "Sum of the singular values of each float64 matrix, the matrices split over n_threads threads (each "
        "LAPACK dgesdd on one BLAS thread).");

    m.def(
        "nuclear_norms_f32",
        [](const std::vector<F32>& mats, int n_threads) {
            std::vector<MatC<float>> work = copies<float>(mats, "mats");
            py::gil_scoped_release release;
            return nuclear_norms(work, n_threads);
        },
        py::arg("mats"), py::arg("n_threads") = 1,
        "Sum of the singular values (in float64) of each float32 matrix, the matrices split over n_threads threads "
        "(each LAPACK sgesdd on one BLAS thread).");

    m.def(
        "symmetric_eigens",
        [](const std::vector<F64>& mats, int n_threads) {
            std::vector<MatD> work = copies<double>(mats, "mats");
            std::vector<VecD> ws;
            {
                py::gil_scoped_release release;
                symmetric_eigens(work, ws, n_threads);
            }
            py::list out;
            for (std::size_t i = 0; i < work.size(); ++i) out.append(py::make_tuple(ws[i], work[i]));
            return out;
        },
        py::arg("mats"), py::arg("n_threads") = 1,
        "(eigenvalues ascending, eigenvectors as columns) of each symmetric float64 matrix (upper triangle read), "
        "the matrices split over n_threads threads (each LAPACK dsyevd on one BLAS thread).");
}

}  // namespace reprsim::bind
