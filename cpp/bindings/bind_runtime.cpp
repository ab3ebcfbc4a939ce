#include "common.hpp"
#include "reprsim/blas.hpp"
#include "reprsim/interrupt.hpp"

#include <atomic>
#include <chrono>
#include <thread>

namespace reprsim::bind {

namespace {

// Runs Python's signal handlers (the GIL taken for the moment): a pending Ctrl-C raises
// KeyboardInterrupt there, which is carried out of the kernel as py::error_already_set and restored
// when the call returns to Python.
std::atomic<long> g_interrupted_calls{0};

void python_interrupt_hook() {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) {
        ++g_interrupted_calls;
        throw py::error_already_set();
    }
}

}  // namespace

void bind_runtime(py::module_& m) {
    set_interrupt_hook(&python_interrupt_hook);

    m.def("set_num_threads", &blas::set_num_threads, py::arg("n"));
    m.def("get_num_threads", &blas::get_num_threads);
    m.def("library_num_threads", &blas::library_num_threads);
    m.def(
        "use_blas_library",
        [](const std::string& path) {
            std::string why;
            const bool ok = blas::use_library(path, &why);
            return py::make_tuple(ok, why);
        },
        py::arg("path"));
    m.def("blas_library", []() {
        const blas::LibraryInfo info = blas::library_info();
        py::dict out;
        out["external"] = info.external;
        out["path"] = info.path;
        out["config"] = info.config;
        return out;
    });
    // How many calls a signal handler's exception stopped inside the kernels (a diagnostic: the
    // exception came from a check between panels or pairs, not from after the call returned).
    m.def("interrupted_calls", []() { return g_interrupted_calls.load(); });
    // A test aid: waits `seconds` with the GIL released, checking for Ctrl-C like a kernel does.
    m.def(
        "interruptible_sleep",
        [](double seconds) {
            LongCall call;
            const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
            while (std::chrono::steady_clock::now() < end) {
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
                check_interrupt();
            }
        },
        py::arg("seconds"));
}

}  // namespace reprsim::bind
