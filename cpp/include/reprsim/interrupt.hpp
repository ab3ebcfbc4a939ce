// Stopping a long computation early (Ctrl-C).
//
// Kernels call check_interrupt() at points where stopping leaves nothing half-updated: between the
// panels of a long BLAS product, between the pairs of a matrix, between blocks of permutations. It
// does nothing unless the calling thread is inside an InterruptScope (the bindings open one around
// each call that releases the GIL; worker threads and plain C++ callers never are), and even then it
// asks the installed hook at most once every kCheckInterval, so that a check costs a clock read.
//
// The hook is installed by whoever embeds the kernels (the Python bindings install one that runs
// Python's signal handlers); it throws to stop the call, and the exception unwinds through the
// kernel like any other, releasing every buffer on the way.
#pragma once

#include <chrono>

namespace reprsim {

// Throws to stop the current call; returns normally to let it go on.
using InterruptHook = void (*)();

// Installs (or, with nullptr, removes) the process-wide hook.
void set_interrupt_hook(InterruptHook hook);

inline constexpr std::chrono::milliseconds kCheckInterval{100};

// Marks the current thread as running an interruptible call for the scope's lifetime. Nests.
class InterruptScope {
public:
    InterruptScope();
    ~InterruptScope();
    InterruptScope(const InterruptScope&) = delete;
    InterruptScope& operator=(const InterruptScope&) = delete;

private:
    bool outer_;
};

// Calls the hook (which may throw) when the current thread is inside an InterruptScope and
// kCheckInterval has passed since this thread's last call to it.
void check_interrupt();

}  // namespace reprsim
