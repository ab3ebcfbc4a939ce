#include "reprsim/batch.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

#include "reprsim/blas.hpp"

namespace reprsim {

namespace {

// Runs job(i) for i in [0, count) on up to n_threads threads (the calling one included), with the BLAS on
// one thread meanwhile. The first exception is rethrown after every thread has stopped.
template <class Job>
void for_each_index(std::size_t count, int n_threads, Job job) {
    if (count == 0) return;
    const std::size_t workers = std::max<std::size_t>(1, std::min<std::size_t>(count, std::size_t(std::max(1, n_threads))));
    blas::OneThread one;
    std::atomic<std::size_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto run = [&]() {
        for (std::size_t i = next++; i < count; i = next++) {
            try {
                job(i);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error) error = std::current_exception();
                next = count;
            }
        }
    };
    std::vector<std::thread> pool;
    for (std::size_t t = 1; t < workers; ++t) pool.emplace_back(run);
    run();
    for (auto& th : pool) th.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace

std::vector<double> nuclear_norms(std::vector<MatD>& mats, int n_threads) {
    std::vector<double> out(mats.size(), 0.0);
    for_each_index(mats.size(), n_threads, [&](std::size_t i) {
        MatD& a = mats[i];
        const Index r = std::min(a.rows(), a.cols());
        if (r == 0) return;
        VecD s(r);
        blas::gesdd(a.rows(), a.cols(), a.data(), a.rows(), s.data(), nullptr, nullptr, false);
        out[i] = s.sum();
    });
    return out;
}

std::vector<double> nuclear_norms(std::vector<MatC<float>>& mats, int n_threads) {
    std::vector<double> out(mats.size(), 0.0);
    for_each_index(mats.size(), n_threads, [&](std::size_t i) {
        MatC<float>& a = mats[i];
        const Index r = std::min(a.rows(), a.cols());
        if (r == 0) return;
        Eigen::VectorXf s(r);
        blas::sgesdd_values(a.rows(), a.cols(), a.data(), a.rows(), s.data());
        out[i] = s.cast<double>().sum();
    });
    return out;
}

void symmetric_eigens(std::vector<MatD>& mats, std::vector<VecD>& ws, int n_threads) {
    ws.assign(mats.size(), VecD());
    for_each_index(mats.size(), n_threads, [&](std::size_t i) {
        MatD& a = mats[i];
        if (a.rows() != a.cols()) fail("symmetric_eigens: matrix ", i, " is not square");
        ws[i].resize(a.rows());
        if (a.rows() > 0) blas::syevd(a.rows(), a.data(), a.rows(), ws[i].data(), true);
    });
}

}  // namespace reprsim
