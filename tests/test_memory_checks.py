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
