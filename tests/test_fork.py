"""os.fork() while another thread runs reprsim does not hang (the fork waits for reprsim's call to finish).

OpenBLAS's thread pool is not fork-safe: without reprsim's fork hooks, ``os.fork()`` during a threaded BLAS call
in another thread hung in OpenBLAS's pre-fork handler (numpy's own ``x.T @ y`` hangs the same way; see the
README, Reliability). The tests run in a child interpreter with a timeout, so a hang fails instead of blocking.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin",
                                reason="os.fork is POSIX's (and unsafe with threads on macOS)")


def _run(*parts: str) -> str:
    code = "\n".join(textwrap.dedent(part) for part in parts)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "2", "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0, out.stderr
    return out.stdout


FORK_AND_WAIT = """
    def fork_and_wait():
        pid = os.fork()
        if pid == 0:
            reprsim.cka(x[:300], y[:300])  # reprsim's BLAS still works in the child
            os._exit(0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.02)
        os.kill(pid, 9)
        return "child hung"
"""


def test_fork_while_another_thread_computes_does_not_hang():
    out = _run("""
        import os, threading, time, numpy as np, reprsim
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2000, 400)).astype(np.float32); y = rng.standard_normal((2000, 400)).astype(np.float32)
        stop = threading.Event()

        def work():
            while not stop.is_set():
                reprsim.cka(x, y)
                reprsim.permutation_test(x[:200], y[:200], n_resamples=20, rng=0)
                acc = reprsim.StreamingSimilarity(route="moments")
                acc.update(x[:1000], y[:1000]); acc.cka()

    """, FORK_AND_WAIT, """
        thread = threading.Thread(target=work)
        thread.start()
        time.sleep(0.3)
        codes = [fork_and_wait() for _ in range(3)]
        stop.set(); thread.join()
        print(codes)
    """)
    assert out.strip() == "[0, 0, 0]"


def test_fork_after_reprsim_work_does_not_hang():
    out = _run("""
        import os, time, numpy as np, reprsim
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2000, 400)); y = rng.standard_normal((2000, 400))
        reprsim.cka(x, y); reprsim.pairwise([x, y, x[:, :50]], metric="pwcca")
    """, FORK_AND_WAIT, """
        print(fork_and_wait())
    """)
    assert out.strip() == "0"


def test_fork_waits_for_a_section_in_another_thread_and_holds_new_ones_back():
    from reprsim import _fork

    events = []

    def section():
        with _fork.busy():
            events.append("enter")
            time.sleep(0.3)
            events.append("leave")

    thread = threading.Thread(target=section)
    thread.start()
    while not events:
        time.sleep(0.001)
    _fork._before_fork()  # what os.fork() runs first
    events.append("fork")
    started = []
    blocked = threading.Thread(target=lambda: _fork.busy().__enter__() and None or started.append(True))
    blocked.start()
    time.sleep(0.1)
    assert not started  # a new section waits while the fork is under way
    _fork._after_fork_in_parent()
    blocked.join(5)
    thread.join()
    assert events == ["enter", "leave", "fork"] and started == [True]
    _fork._busy -= 1  # the section entered by hand above
