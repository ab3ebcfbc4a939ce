#include "reprsim/interrupt.hpp"

#include <atomic>

namespace reprsim {

namespace {
std::atomic<InterruptHook> g_hook{nullptr};

struct ThreadState {
    int depth = 0;
    std::chrono::steady_clock::time_point last{};
};
thread_local ThreadState t_state;
}  // namespace

void set_interrupt_hook(InterruptHook hook) { g_hook.store(hook); }

InterruptScope::InterruptScope() : outer_(t_state.depth == 0) {
    if (outer_) t_state.last = std::chrono::steady_clock::now();
    ++t_state.depth;
}

InterruptScope::~InterruptScope() { --t_state.depth; }

void check_interrupt() {
    if (t_state.depth == 0) return;
    const InterruptHook hook = g_hook.load(std::memory_order_relaxed);
    if (!hook) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - t_state.last < kCheckInterval) return;
    t_state.last = now;
    hook();
}

}  // namespace reprsim
