"""The kernels release the GIL: many Python threads computing at once must agree with serial calls, the
streaming accumulators must take updates, merges and reads from several threads at once, and changing
the BLAS thread count while others compute must not crash.

(tests/test_dispatch.py already checks a thread pool over different input pairs, one metric after
another; here the threads share their inputs and run different functions at the same moment.)
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import reprsim

N_THREADS = 8


def _run_threads(target, count: int, timeout: float = 60.0) -> list:
    """Run target(k) for k < count on as many threads started together; re-raise their first error."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list = []

    def run(k):
        try:
            barrier.wait()
            results[k] = target(k)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a thread did not finish (deadlock?)"
    if errors:
        raise errors[0]
    return results


def _functions():
    return [
        ("cka", lambda x, y: reprsim.cka(x, y)),
        ("debiased_cka", lambda x, y: reprsim.cka(x, y, debiased=True)),
        ("rbf_cka", lambda x, y: reprsim.cka(x[:80], y[:80], kernel="rbf")),
        ("canonical_correlations", lambda x, y: tuple(reprsim.canonical_correlations(x, y))),
        ("mean_cca", reprsim.mean_cca),
        ("mean_sq_cca", reprsim.mean_sq_cca),
        ("svcca", reprsim.svcca),
        ("pwcca", reprsim.pwcca),
        ("procrustes", reprsim.procrustes_distance),
        ("angular_procrustes", lambda x, y: reprsim.procrustes_distance(x, y, angular=True)),
        ("pairwise", lambda x, y: tuple(reprsim.pairwise([x, y, x[:, :3]], metric="debiased_cka").ravel())),
        ("pairwise_pwcca", lambda x, y: tuple(reprsim.pairwise([x, y], metric="pwcca").ravel())),
        ("minibatch_cka", lambda x, y: reprsim.minibatch_cka(x, y, batch_size=50)),
        ("streaming", lambda x, y: reprsim.StreamingSimilarity().update(x, y).distance("pwcca")),
        ("permutation_test", lambda x, y: tuple(reprsim.permutation_test(x, y, n_permutations=20,
                                                                         seed=3).null_distribution)),
        ("wide_cka", lambda x, y: reprsim.cka(x[:40], np.hstack([y[:40]] * 5))),
    ]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_threads_running_different_metrics_on_shared_inputs_match_serial_calls(dtype):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((200, 12)).astype(dtype)
    y = (x[:, :5] @ rng.standard_normal((5, 9)) + 0.5 * rng.standard_normal((200, 9))).astype(dtype)
    x.setflags(write=False)
    y.setflags(write=False)
    funcs = _functions()
    serial = {name: f(x, y) for name, f in funcs}

    def work(k):
        out = []
        for r in range(3):  # each thread walks the list from its own starting point
            for i in range(len(funcs)):
                name, f = funcs[(i + 2 * k + r) % len(funcs)]
                out.append((name, f(x, y)))
        return out

    for results in _run_threads(work, N_THREADS):
        for name, value in results:
            # Inputs this small run single-threaded in the BLAS: the same arithmetic, the same bits.
            assert value == serial[name], name


def _batches(rng, count, p1, p2, rows=16):
    return [(rng.standard_normal((rows, p1)) + i, rng.standard_normal((rows, p2)) - i) for i in range(count)]


def _assert_states_close(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-9, atol=1e-9, err_msg=key)


@pytest.mark.parametrize("p", [3, 40])
def test_streaming_similarity_updated_from_two_threads_equals_the_serial_result(p):
    # Before: updates from two threads raced inside the shared C++ state (rows were lost, values came
    # out wrong, and with narrow layers the process aborted in malloc). Now each batch's moments are
    # computed in parallel and merged under the accumulator's lock.
    rng = np.random.default_rng(p)
    batches = _batches(rng, 60, p, p + 2)
    serial = reprsim.StreamingSimilarity()
    for xb, yb in batches:
        serial.update(xb, yb)
    for _ in range(5):
        acc = reprsim.StreamingSimilarity()
        writers_left = [2]
        lock = threading.Lock()

        def work(k):
            if k == 2:  # a reader, while the two writers run
                while writers_left[0]:
                    if acc.n_seen >= 4:
                        assert np.isfinite(acc.cka(debiased=True))
                        acc.state()
                    time.sleep(0.001)  # a reader that never pauses would keep the writers waiting
                return
            try:
                for xb, yb in batches[k::2]:
                    acc.update(xb, yb)
            finally:
                with lock:
                    writers_left[0] -= 1

        _run_threads(work, 3)
        assert acc.n_seen == serial.n_seen
        _assert_states_close(acc.state(), serial.state())
        assert acc.cka(debiased=True) == pytest.approx(serial.cka(debiased=True), rel=1e-9)
        assert acc.pwcca() == pytest.approx(serial.pwcca(), rel=1e-9)


def test_streaming_merges_in_both_directions_at_once_do_not_deadlock():
    rng = np.random.default_rng(5)
    batches = _batches(rng, 8, 4, 3)
    for _ in range(20):
        a, b = reprsim.StreamingSimilarity(route="moments"), reprsim.StreamingSimilarity(route="moments")
        for xb, yb in batches[:4]:
            a.update(xb, yb)
        for xb, yb in batches[4:]:
            b.update(xb, yb)
        _run_threads(lambda k: (a.merge(b) if k == 0 else b.merge(a)), 2, timeout=30)
        # Whichever merge went first, the other saw its result: one holds all rows, the other more.
        assert {a.n_seen, b.n_seen} == {128, 192}
    # Many threads merging into one accumulator: every row counted once.
    total = reprsim.StreamingSimilarity(route="moments")
    parts = [reprsim.StreamingSimilarity(route="moments").update(*batch) for batch in batches]
    _run_threads(lambda k: total.merge(parts[k]), len(parts))
    serial = reprsim.StreamingSimilarity(route="moments")
    for part in parts:
        serial.merge(part)
    assert total.n_seen == serial.n_seen == 8 * 16
    _assert_states_close(total.state(), serial.state())


def test_minibatch_cka_updated_from_two_threads_equals_the_serial_result():
    # The running sums are updated by several Python statements (now under the accumulator's lock, so
    # that no thread switch between them can lose a minibatch or count its rows without its terms).
    rng = np.random.default_rng(9)
    batches = _batches(rng, 200, 3, 2, rows=6)
    serial = reprsim.StreamingMinibatchCKA()
    for xb, yb in batches:
        serial.update(xb, yb)
    for _ in range(5):
        acc = reprsim.StreamingMinibatchCKA()
        _run_threads(lambda k: [acc.update(xb, yb) for xb, yb in batches[k::2]], 2)
        assert (acc.n_seen, acc.n_batches) == (serial.n_seen, serial.n_batches)
        _assert_states_close(acc.state(), serial.state())
        assert acc.result() == pytest.approx(serial.result(), rel=1e-9)


def test_set_num_threads_while_other_threads_compute():
    rng = np.random.default_rng(4)
    # Large enough (> 2e7 flops per product) for the BLAS to use its threads.
    x = rng.standard_normal((2000, 100))
    y = x[:, :50] @ rng.standard_normal((50, 80)) + rng.standard_normal((2000, 80))
    expected = [reprsim.cka(x, y), reprsim.mean_cca(x, y), reprsim.procrustes_distance(x, y)]
    before = reprsim.get_num_threads()
    stop = threading.Event()

    def work(k):
        if k == 0:
            i = 0
            while not stop.is_set():
                reprsim.set_num_threads(1 + i % 2)
                i += 1
            return i
        try:
            return [[reprsim.cka(x, y), reprsim.mean_cca(x, y), reprsim.procrustes_distance(x, y)]
                    for _ in range(3)]
        finally:
            if k == 1:
                stop.set()

    try:
        results = _run_threads(work, 3)
    finally:
        reprsim.set_num_threads(before)
    assert results[0] > 0
    for got in results[1] + results[2]:
        np.testing.assert_allclose(got, expected, rtol=1e-10)
    assert reprsim.get_num_threads() == before
