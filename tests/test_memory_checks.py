"""Requests that would allocate more than the available memory raise ValueError before allocating,
with the figure needed and the fix (as RBF kernel CKA already did; see tests/test_kernel_cka.py).

The available memory is monkeypatched: nothing large is allocated here.
"""

from __future__ import annotations

import numpy as np
import pytest

import reprsim
from reprsim import _core, _memory, _nulls, _stats, _streaming

MESSAGE = r"needs about [\d.e+-]+ GiB \(.*\), but only [\d.e+-]+ GiB of memory is available; "


def _limit(monkeypatch, nbytes):
    monkeypatch.setattr(_memory, "available_memory", lambda: nbytes)


@pytest.fixture
def pair(rng):
    x = rng.standard_normal((50, 8))
    return x, x[:, :6] @ rng.standard_normal((6, 6)) + rng.standard_normal((50, 6))


def test_linear_cka_refuses_before_allocating(pair, monkeypatch):
    x, y = pair
    _limit(monkeypatch, 1000)
    with pytest.raises(ValueError, match=r"linear CKA with n = 50 samples and widths 8 and 6 " + MESSAGE
                       + r"use fewer samples .* or reprsim.minibatch_cka"):
        reprsim.cka(x, y)
    with pytest.raises(ValueError, match=MESSAGE):
        reprsim.distance(x, y, metric="debiased_cka")


def test_linear_cka_takes_the_space_that_fits(rng, monkeypatch):
    # n = 100, widths 60 + 60: Gram space has fewer flops (the kernel's choice), feature space needs
    # less memory (a 120×120 matrix against two 100×100 ones). With room for the feature form only,
    # that one is used, and the value is the same.
    x, y = rng.standard_normal((100, 60)), rng.standard_normal((100, 60))
    assert _core.choose_space(100, 60, 60, 8) == "gram"
    expected = reprsim.cka(x, y)
    feature = _stats._linear_cka_memory_bytes(100, [60, 60], 8, "feature")
    gram = _stats._linear_cka_memory_bytes(100, [60, 60], 8, "gram")
    assert feature < gram
    _limit(monkeypatch, (feature + gram) // 2)
    spaces = []
    real = _core.linear_cka_sums

    def spy(a, b, debiased, space="auto"):
        spaces.append(space)
        return real(a, b, debiased, space)

    monkeypatch.setattr(_stats._core, "linear_cka_sums", spy)
    assert reprsim.cka(x, y) == pytest.approx(expected, rel=1e-12)
    assert spaces == ["feature"]


def test_memory_estimates_count_the_big_matrices():
    n, p = 1000, 300
    assert _stats._linear_cka_memory_bytes(n, [p, p], 4, "gram") >= 2 * 4 * n * n
    assert _stats._linear_cka_memory_bytes(n, [p, p], 4, "feature") >= 4 * (2 * p) ** 2
    assert _stats._pairwise_cka_memory_bytes(n, [p] * 10, None, 8, "gram") >= 10 * 8 * n * n / 2
    assert _nulls._null_memory_bytes(n, p, p, 8, "gram", 1) >= 2 * 8 * n * n
    assert _streaming._stream_memory_bytes(16, [p], [2 * p]) >= 8 * (p * p + 4 * p * p + 2 * p * p)
    assert _stats.minibatch_memory_bytes(64, [5000], [3]) < 8 * 5000 * 5000  # Gram space, b×b


def test_pairwise_refuses_before_allocating(pair, monkeypatch):
    x, y = pair
    _limit(monkeypatch, 2000)
    with pytest.raises(ValueError, match=r"pairwise linear CKA of 3 representations with n = 50 samples "
                       + MESSAGE + r"pass fewer representations per call"):
        reprsim.pairwise([x, y, x], metric="cka")
    with pytest.raises(ValueError, match=r"pairwise linear CKA of 4 representations"):
        reprsim.pairwise([x, y], [y, x], metric="debiased_cka")


@pytest.mark.parametrize("call", [
    lambda x, y: reprsim.permutation_test(x, y, n_permutations=10, seed=0),
    lambda x, y: reprsim.permutation_test(x, y, "debiased_cka", n_permutations=10, seed=0),
    lambda x, y: reprsim.calibrated_cka(x, y, n_permutations=10),
])
def test_permutation_null_refuses_before_allocating(pair, monkeypatch, call):
    x, y = pair
    # Room for the observed CKA, not for the null's factors.
    _limit(monkeypatch, _stats._linear_cka_memory_bytes(50, [8, 6], 8, "feature") + 1)
    with pytest.raises(ValueError, match=r"the permutation null of linear CKA with n = 50 samples and widths "
                       r"8 and 6 " + MESSAGE + r"use fewer samples or features"):
        call(x, y)


def test_streaming_refuses_huge_widths_before_allocating(monkeypatch):
    # p = 200 000: the float64 p×p moments alone would take 320 GB.
    _limit(monkeypatch, 64 * 2**30)
    x = np.zeros((2, 200_000), dtype=np.float32)
    x[1] = 1.0
    for acc in (reprsim.StreamingSimilarity(route="moments"), reprsim.StreamingSimilarity(n=10**6)):
        # Moments (or, for 10**6 rows, the rows, whichever is smaller) would not fit: refused with the figure.
        with pytest.raises(ValueError, match=r"a StreamingSimilarity over widths \(200000,\) and \(3,\) needs "
                           r"about [\d.e+]+ GiB \(.*\), but only 64 GiB .* (reduce|pool or reduce) the features first"):
            acc.update(x, np.ones((2, 3)))
        assert acc.n_seen == 0
    # With the number of rows unknown (or small), the rows are kept instead: 1.6 MB here.
    acc = reprsim.StreamingSimilarity()
    acc.update(x, np.ones((2, 3)) + np.arange(2)[:, None])
    assert acc.route == "rows" and acc.n_seen == 2
    # Kept rows that would not fit are refused before the first batch is kept.
    acc = reprsim.StreamingSimilarity(n=10**7, route="rows")
    with pytest.raises(ValueError, match=r"a StreamingSimilarity over widths \(200000,\) and \(3,\) needs about .* "
                       r"\(the 10000000 rows of every layer"):
        acc.update(x, np.ones((2, 3)))
    assert acc.n_seen == 0


def test_streaming_batches_and_values_refuse_when_memory_is_short(pair, monkeypatch):
    x, y = pair
    acc = reprsim.StreamingSimilarity(route="moments").update(x, y)
    acc.cka()  # the buffered rows are now moments
    _limit(monkeypatch, 500)
    with pytest.raises(ValueError, match=r"a StreamingSimilarity over widths \(8,\) and \(6,\) " + MESSAGE):
        acc.update(x, y)
    assert acc.n_seen == 50
    with pytest.raises(ValueError, match=r"the CCA family of a StreamingSimilarity over widths \(8,\) and \(6,\) "
                       + MESSAGE):
        acc.pwcca()
    with pytest.raises(ValueError, match=MESSAGE):
        acc.canonical_correlations()
    assert np.isfinite(acc.cka())  # CKA needs nothing beyond the state


def test_minibatch_cka_refuses_before_allocating(pair, monkeypatch):
    x, y = pair
    _limit(monkeypatch, 500)
    with pytest.raises(ValueError, match=r"minibatch CKA over minibatches of 10 rows and widths \(8,\) and \(6,\) "
                       + MESSAGE + r"use smaller minibatches"):
        reprsim.minibatch_cka(x, y, batch_size=10)
    acc = reprsim.StreamingMinibatchCKA()
    with pytest.raises(ValueError, match=r"minibatch CKA over minibatches of 50 rows"):
        acc.update(x, y)
    assert acc.n_seen == 0


def _huge(n, p, dtype=np.float32):
    """An (n, p) array that takes no memory (every row is the same view): only the estimates see its size."""
    return np.broadcast_to(np.zeros((1, p), dtype=dtype), (n, p))


@pytest.mark.parametrize("call", [
    reprsim.canonical_correlations, reprsim.mean_cca, reprsim.mean_sq_cca, reprsim.svcca, reprsim.pwcca,
    reprsim.cca_summary, lambda x, y: reprsim.distance(x, y, "pwcca"),
])
def test_cca_family_refuses_before_allocating(call, monkeypatch):
    # 200 000 × 20 000 float32: the float64 QR factors alone are tens of GiB (this was a std::bad_alloc).
    _limit(monkeypatch, 8 * 2**30)
    x = _huge(200_000, 20_000)
    with pytest.raises(ValueError, match=r"CCA with n = 200000 samples and widths 20000 and 20000 " + MESSAGE
                       + r"reduce the features first"):
        call(x, x)


def test_cca_family_estimate_counts_the_factors():
    held = 8 * (1000 * 300 + 300 * 300 + 300 * 300)  # basis n×k, R k×p, triangle k×k for k = p = 300
    assert _stats.cca_memory_bytes(1000, [300], [300]) >= 2 * held + 8 * 1000 * 300
    assert _stats.cca_memory_bytes(1000, [300] * 30, None) >= 30 * held


def test_pairwise_cca_refuses_before_allocating(monkeypatch):
    # 30 inputs of 20 000 × 20 000 (all factors are held at once for the matrix).
    _limit(monkeypatch, 8 * 2**30)
    xs = [_huge(20_000, 20_000)] * 30
    with pytest.raises(ValueError, match=r"the CCA family over 30 representations with n = 20000 samples " + MESSAGE
                       + r".*pass fewer representations per pairwise call"):
        reprsim.pairwise(xs, metric="pwcca")
    with pytest.raises(ValueError, match=r"the CCA family over 30 representations"):
        reprsim.pairwise_distances(xs, metric="svcca")


def test_procrustes_refuses_before_allocating(monkeypatch):
    _limit(monkeypatch, 8 * 2**30)
    x = _huge(100_000, 100_000)
    with pytest.raises(ValueError, match=r"the Procrustes distance with n = 100000 samples and widths 100000 and "
                       r"100000 " + MESSAGE):
        reprsim.procrustes_distance(x, x, angular=True)
    with pytest.raises(ValueError, match=r"computing Procrustes distances over 3 representations"):
        reprsim.pairwise([x, x, x], metric="procrustes")
    assert _stats.procrustes_memory_bytes(100, [50], [50], 4) >= 2 * 4 * 100 * 50


def test_dtype_conversions_refuse_before_allocating(monkeypatch):
    _limit(monkeypatch, 4 * 2**30)
    x = _huge(200_000, 20_000, np.uint8)  # numpy would try a 29.8 GiB float64 copy
    with pytest.raises(ValueError, match=r"the float64 conversion of the \(200000, 20000\) uint8 values of x needs "
                       r"about 29.8 GiB .* feed it in batches to reprsim.StreamingSimilarity"):
        reprsim.cka(x, x)
    with pytest.raises(ValueError, match=r"float64 conversion .* of y"):
        reprsim.StreamingSimilarity().update(np.ones((200_000, 1)), x)
    # float32 next to float64: the float32 input is promoted
    with pytest.raises(ValueError, match=r"float64 copies of the float32 inputs"):
        reprsim.pairwise([_huge(200_000, 20_000), _huge(200_000, 1, np.float64)])


def test_half_precision_tensor_conversion_refuses_before_allocating(monkeypatch):
    torch = pytest.importorskip("torch")
    _limit(monkeypatch, 4 * 2**30)
    t = torch.zeros(1, 20_000, dtype=torch.float16).expand(200_000, 20_000)  # 16 GB once converted
    with pytest.raises(ValueError, match=r"the float32 conversion of the \(200000, 20000\) torch.float16 tensor of x "
                       r"needs about 14.9 GiB"):
        reprsim.cka(t, t)


def test_object_and_pandas_conversions_are_checked(monkeypatch):
    _limit(monkeypatch, 100)
    with pytest.raises(ValueError, match=r"the float64 conversion of the \(50, 8\) object array of x"):
        reprsim.cka(np.ones((50, 8), dtype=object), np.ones((50, 2)))


@pytest.mark.parametrize("call", [
    lambda x, y: reprsim.permutation_test(x, y, n_resamples=10**12, rng=0),
    lambda x, y: reprsim.permutation_test(x, y, "mean_cca", n_permutations=10**9, seed=0),
    lambda x, y: reprsim.calibrated_cka(x, y, n_permutations=10**9),
])
def test_permutation_counts_refuse_before_allocating_the_null(pair, monkeypatch, call):
    # 10**12 permutations tried a 7.28 TiB allocation; 10**9 one of 7.45 GiB, unchecked.
    x, y = pair
    _limit(monkeypatch, 4 * 2**30)
    with pytest.raises(ValueError, match=r"a permutation null of 10+ permutations " + MESSAGE + "ask for fewer"):
        call(x, y)


def test_bootstrap_refuses_before_allocating(pair, monkeypatch):
    x, y = pair
    _limit(monkeypatch, 4 * 2**30)
    with pytest.raises(ValueError, match=r"a bootstrap of 1000000000 resamples " + MESSAGE):
        reprsim.bootstrap(x, y, n_resamples=10**9)
    # every thread holds a resampled copy of x and y
    _limit(monkeypatch, 8 * 50 * 14 * 3)
    with pytest.raises(ValueError, match=r"a bootstrap of 20 resamples"):
        reprsim.bootstrap(x, y, n_resamples=20, n_jobs=8)


def test_streaming_rows_route_refuses_before_keeping_a_batch(pair, monkeypatch):
    x, y = pair
    acc = reprsim.StreamingSimilarity(route="rows").update(x, y)
    before = acc.state()
    _limit(monkeypatch, 1000)
    with pytest.raises(ValueError, match=r"a StreamingSimilarity keeping the rows of widths \(8, 6\) " + MESSAGE
                       + r"pass n=\.\.\."):
        acc.update(x, y)
    assert acc.n_seen == 50
    with pytest.raises(ValueError, match=r"a copy of the 50 rows kept by a StreamingSimilarity " + MESSAGE):
        acc.state()
    monkeypatch.undo()
    after = acc.state()
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)


def test_device_moments_copied_to_the_host_are_checked(pair, monkeypatch, forced_device):
    torch = forced_device
    x, y = (torch.from_numpy(a) for a in pair)
    _limit(monkeypatch, 500)
    with pytest.raises(ValueError, match=r"the CCA family of tensors on cpu with widths \(8,\) and \(6,\) " + MESSAGE):
        reprsim.pwcca(x, y)


def test_out_of_memory_in_the_core_is_a_clear_memory_error():
    # With the address space capped and the estimate bypassed, C++'s std::bad_alloc surfaces as a MemoryError
    # saying what ran out (pybind11 maps std::bad_alloc to MemoryError); the process does not crash.
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import resource, numpy as np, reprsim
        from reprsim import _memory
        x = np.random.default_rng(0).standard_normal((20000, 2))
        reprsim.cka(x[:100], x[:100])
        _memory.available_memory = lambda: None  # the estimate cannot see the cap
        vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, vm + 2**30))
        try:
            reprsim.cka(x, x[:, ::-1] ** 2, kernel="rbf")  # two 20000² float64 matrices: 6.4 GB
        except MemoryError as exc:
            print("MemoryError:", exc)
    """)
    if not sys.platform.startswith("linux"):
        pytest.skip("RLIMIT_AS and /proc are Linux's")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "MemoryError: reprsim: RBF CKA ran out of memory (std::bad_alloc)" in out.stdout
