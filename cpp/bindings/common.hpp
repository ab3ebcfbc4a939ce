// Shared helpers of the binding files: numpy arrays to strided views, dtype dispatch, and the
// layer × layer matrix that computes each representation's factor once.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "reprsim/common.hpp"
#include "reprsim/interrupt.hpp"

namespace py = pybind11;

namespace reprsim::bind {

// The GIL released for a long computation that Ctrl-C can stop: the kernels' check_interrupt()
// calls run Python's signal handlers now and then (see reprsim/interrupt.hpp), and a KeyboardInterrupt
// unwinds the call. Only for calls that keep no state across the call (a result is built or nothing).
class LongCall {
    InterruptScope scope_;
    py::gil_scoped_release release_;
};

using ArrayList = std::vector<py::array>;

template <class T>
View<T> view_of(const py::array& a, const std::string& name) {
    if (a.ndim() != 2) fail(name, " must be a 2-D array, got ", a.ndim(), " dimensions");
    const auto item = static_cast<py::ssize_t>(sizeof(T));
    const py::ssize_t s0 = a.strides(0), s1 = a.strides(1);
    if (s0 < 0 || s1 < 0 || s0 % item != 0 || s1 % item != 0) {
        fail(name, " has negative or unaligned strides; pass numpy.ascontiguousarray(", name, ")");
    }
    return View<T>{static_cast<const T*>(a.data()), a.shape(0), a.shape(1), s0 / item, s1 / item};
}

inline bool is_float32(const py::array& a) { return py::isinstance<py::array_t<float>>(a); }
inline bool is_float64(const py::array& a) { return py::isinstance<py::array_t<double>>(a); }

inline void require_float(const py::array& a, const std::string& name) {
    if (!is_float32(a) && !is_float64(a)) {
        throw py::type_error(name + " must be a float32 or float64 array");
    }
}

// Calls f(T{}) with T = float or double, the dtype shared by every array.
template <class F>
auto dispatch(const ArrayList& arrays, F&& f) {
    bool f32 = true;
    for (std::size_t i = 0; i < arrays.size(); ++i) {
        require_float(arrays[i], "array " + std::to_string(i));
        f32 = f32 && is_float32(arrays[i]);
    }
    for (const auto& a : arrays) {
        if (is_float32(a) != f32) throw py::type_error("all arrays must share one dtype (float32 or float64)");
    }
    return f32 ? f(float{}) : f(double{});
}

inline std::vector<std::string> names_of(const char* base, std::size_t k) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < k; ++i) out.push_back(std::string(base) + "[" + std::to_string(i) + "]");
    return out;
}

// A view of each array, named in errors by the matching entry of `names`.
template <class T>
std::vector<View<T>> views_of(const ArrayList& arrays, const std::vector<std::string>& names) {
    std::vector<View<T>> out;
    for (std::size_t i = 0; i < arrays.size(); ++i) out.push_back(view_of<T>(arrays[i], names[i]));
    return out;
}

// k1×k2 matrix of pair(fx[i], fy[j]); with ys absent, the matrix of xs against itself, whose lower
// triangle mirrors the upper one when the statistic is symmetric. Factors are built once each.
template <class T, class Make, class Pair>
py::array_t<double> pair_matrix(const ArrayList& xs, const std::optional<ArrayList>& ys, bool symmetric, Make make,
                                Pair pair) {
    const auto nx = names_of("xs", xs.size());
    const auto ny = names_of("ys", ys ? ys->size() : 0);
    const std::vector<View<T>> vx = views_of<T>(xs, nx), vy = ys ? views_of<T>(*ys, ny) : std::vector<View<T>>{};
    const std::size_t k1 = vx.size(), k2 = ys ? vy.size() : vx.size();
    py::array_t<double> out({k1, k2});
    double* o = out.mutable_data();
    {
        LongCall call;
        using Factor = decltype(make(vx[0], nx[0].c_str()));
        std::vector<Factor> fx, fy;
        for (std::size_t i = 0; i < k1; ++i) {
            fx.push_back(make(vx[i], nx[i].c_str()));
            check_interrupt();
        }
        if (ys)
            for (std::size_t j = 0; j < k2; ++j) {
                fy.push_back(make(vy[j], ny[j].c_str()));
                check_interrupt();
            }
        const auto& right = ys ? fy : fx;
        for (std::size_t i = 0; i < k1; ++i) {
            for (std::size_t j = 0; j < k2; ++j) {
                if (!ys && symmetric && j < i) {
                    o[i * k2 + j] = o[j * k2 + i];
                } else {
                    o[i * k2 + j] = pair(fx[i], right[j]);
                    check_interrupt();
                }
            }
        }
    }
    return out;
}

}  // namespace reprsim::bind
