"""Ctrl-C stops a long call within a couple of seconds and leaves nothing half-updated.

Each test runs a long call in a child interpreter, sends it SIGINT about a second after the call starts and
checks that the child raised KeyboardInterrupt and exited soon after. Python handles the signal between
bytecodes of the main thread: between pairs of ``pairwise``, between chunks of permutations or resamples
(sized to take about a quarter of a second), between batches; worker threads are not waited for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX's")

# Seconds from SIGINT to the child's exit beyond which the call counts as not stopping. The calls here stop
# within a fraction of a second on an idle machine; the bound leaves room for a loaded one.
STOP_WITHIN = 3.0


def _interrupt(body: str, setup: str = "", after: float = 1.0) -> tuple[str, float]:
    """Run ``setup``, then ``body`` in a child; SIGINT ``after`` seconds into ``body``. Returns the child's
    output and the seconds from SIGINT to its exit."""
    code = "\n".join([
        "import sys, time, numpy as np, reprsim",
        "rng = np.random.default_rng(0)",
        textwrap.dedent(setup),
        "print('ready', flush=True)",
        "try:",
        textwrap.indent(textwrap.dedent(body), "    "),
        "    print('finished', flush=True)",
        "except KeyboardInterrupt:",
        "    print('interrupted', flush=True)",
        "    after_interrupt()" if "def after_interrupt" in setup else "",
    ])
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OPENBLAS_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "ready", line + child.stderr.read()
        time.sleep(after)
        assert child.poll() is None, "the call finished before it could be interrupted: " + child.stdout.read()
        child.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = child.communicate(timeout=60)
        elapsed = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    return out, elapsed


def test_pairwise_stops_between_pairs():
    out, elapsed = _interrupt(
        "reprsim.pairwise(xs, metric='rbf_cka')",
        "xs = [rng.standard_normal((300, 8)) for _ in range(150)]",  # 11 325 pairs, each its own kernel matrices
    )
    assert "interrupted" in out and elapsed < STOP_WITHIN, (out, elapsed)


def test_permutation_test_stops_between_chunks_of_the_compiled_null():
    out, elapsed = _interrupt(
        "reprsim.permutation_test(x, y, n_resamples=10**8, rng=0)",
        "x = rng.standard_normal((600, 20)); y = x @ rng.standard_normal((20, 10))",
    )
    assert "interrupted" in out and elapsed < STOP_WITHIN, (out, elapsed)


def test_permutation_test_stops_without_waiting_for_its_thread_pool():
    out, elapsed = _interrupt(
        "reprsim.permutation_test(x, y, 'mean_cca', n_resamples=10**6, rng=0, n_jobs=4)",
        "x = rng.standard_normal((400, 30)); y = x @ rng.standard_normal((30, 10))",
    )
    assert "interrupted" in out and elapsed < STOP_WITHIN, (out, elapsed)


def test_bootstrap_stops_without_waiting_for_its_thread_pool():
    out, elapsed = _interrupt(
        "reprsim.bootstrap(x, y, 'pwcca', n_resamples=10**6, rng=0, n_jobs=3, method='percentile')",
        "x = rng.standard_normal((400, 30)); y = x @ rng.standard_normal((30, 10))",
    )
    assert "interrupted" in out and elapsed < STOP_WITHIN, (out, elapsed)


def test_streaming_stops_between_batches_with_a_consistent_state():
    # Whenever the signal lands (in a batch's products, its commit, or between batches), the accumulator holds
    # whole batches only: its state passes from_state's checks and its values are the in-memory ones over the
    # rows it counts.
    setup = """
        x = rng.standard_normal((512, 24)); y = x[:, :12] @ rng.standard_normal((12, 16))
        acc = reprsim.StreamingSimilarity(route="moments", metrics=["cka", "mean_cca", "minibatch_cka"])

        def after_interrupt():
            n = acc.n_seen
            assert n % 512 == 0, n
            reprsim.StreamingSimilarity.from_state(acc.state())
            reps = n // 512
            want = reprsim.cka(np.tile(x, (reps, 1)), np.tile(y, (reps, 1)))
            assert abs(acc.cka() - want) < 1e-9 * want, (acc.cka(), want)
            print("consistent", reps, flush=True)
    """
    out, elapsed = _interrupt("while True:\n    acc.update(x, y)", setup)
    assert "interrupted" in out and "consistent" in out and elapsed < STOP_WITHIN, (out, elapsed)
