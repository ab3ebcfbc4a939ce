"""RDMs and RSA against scipy: pdist for the RDMs, spearmanr/pearsonr for the comparisons, and Kendall's
tau-a counted by hand over all pairs of entries (O(N²), small n) or recovered from scipy's tau-b and the
tie counts (larger n)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import pdist

import reprsim
from reprsim import _core, _memory, _rsa



def _torch():
    """torch and the torch path's module, or a skip when torch is not installed."""
    torch = pytest.importorskip("torch")
    from reprsim.torch import _neighbours as torch_nb

    return torch, torch_nb

SEEDS = st.integers(0, 2**32 - 1)


def ref_rdm(x, method):
    x = np.asarray(x, dtype=np.float64)
    if method == "euclidean":
        return pdist(x, "sqeuclidean") / x.shape[1]
    return pdist(x, method)  # "correlation", "cosine": 1 − r, 1 − cos


def tau_a_by_hand(a, b):
    """(concordant − discordant) / (N(N−1)/2) over every pair of entries; ties count as neither."""
    s = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        s += np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
    return s / (len(a) * (len(a) - 1) / 2)


def tau_a_from_tau_b(a, b):
    """tau-a from scipy's tau-b: C − D = tau_b·√((n0 − n1)(n0 − n2)), tau_a = (C − D)/n0."""
    n0 = len(a) * (len(a) - 1) / 2

    def ties(v):
        _, counts = np.unique(v, return_counts=True)
        return float(np.sum(counts * (counts - 1) / 2))

    tau_b = stats.kendalltau(a, b, variant="b").statistic
    return tau_b * np.sqrt((n0 - ties(a)) * (n0 - ties(b))) / n0


def ref_compare(a, b, compare):
    if compare == "spearman":
        return stats.spearmanr(a, b).statistic
    if compare == "pearson":
        return stats.pearsonr(a, b).statistic
    if compare == "cosine":
        return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return tau_a_by_hand(a, b)


def pair(rng, n=25, p1=6, p2=9):
    x = rng.standard_normal((n, p1)) + rng.standard_normal(p1)
    y = x @ rng.standard_normal((p1, p2)) + rng.standard_normal((n, p2))
    return x, y


@pytest.mark.parametrize("method", ["euclidean", "correlation", "cosine"])
def test_rdm_equals_pdist(rng, method):
    x, _ = pair(rng, n=40)
    np.testing.assert_allclose(reprsim.rdm(x, method=method), ref_rdm(x, method), rtol=0, atol=1e-12)
    np.testing.assert_allclose(reprsim.rdm(x.astype(np.float32), method=method), ref_rdm(x, method), atol=1e-5)


@pytest.mark.parametrize("method", ["euclidean", "correlation", "cosine"])
def test_rdm_over_several_panels(rng, method):
    x = rng.standard_normal((1800, 5))  # panels of fewer rows than n
    np.testing.assert_allclose(reprsim.rdm(x, method=method), ref_rdm(x, method), rtol=0, atol=1e-12)


def test_rdm_equals_rsatoolbox_when_installed(rng):
    rsatoolbox = pytest.importorskip("rsatoolbox")
    x, _ = pair(rng, n=30)
    data = rsatoolbox.data.Dataset(x)
    for method in ("euclidean", "correlation"):
        expected = rsatoolbox.rdm.calc_rdm(data, method=method).get_vectors()[0]
        np.testing.assert_allclose(reprsim.rdm(x, method=method), expected, rtol=0, atol=1e-12)


def test_euclidean_rdm_of_duplicated_rows_is_zero(rng):
    x = rng.standard_normal((20, 4)) * 1e3 + 1e4
    x[5] = x[2]
    d = reprsim.rdm(x, method="euclidean")
    assert np.all(d >= 0)
    assert abs(d[2 * 20 - 3 + (5 - 2 - 1)]) < 1e-9  # entry (2, 5)


@pytest.mark.parametrize("compare", ["spearman", "pearson", "kendall_tau_a", "cosine"])
@pytest.mark.parametrize("method", ["euclidean", "correlation", "cosine"])
def test_rsa_equals_scipy(rng, method, compare):
    x, y = pair(rng)
    expected = ref_compare(ref_rdm(x, method), ref_rdm(y, method), compare)
    assert reprsim.rsa(x, y, rdm=method, compare=compare) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("compare", ["spearman", "kendall_tau_a", "pearson", "cosine"])
def test_rsa_with_many_tied_dissimilarities(rng, compare):
    # Small integer data: squared distances are exact integers (/p), with many ties and duplicates.
    x = rng.integers(0, 3, (30, 3)).astype(float)
    y = rng.integers(0, 3, (30, 2)).astype(float)
    a, b = ref_rdm(x, "euclidean"), ref_rdm(y, "euclidean")
    assert len(np.unique(a)) < 20 and len(np.unique(b)) < 20
    expected = ref_compare(a, b, compare)
    assert reprsim.rsa(x, y, rdm="euclidean", compare=compare) == pytest.approx(expected, abs=1e-12)
    assert _rsa.compare_rdms(a, b, compare) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
def test_rank_comparisons_of_long_vectors_with_ties(rng, threads):
    # N above the parallel sorts' threshold, values with many ties.
    a = rng.integers(0, 50, 150_000).astype(float)
    b = a + rng.integers(0, 30, a.size)
    assert _core.rdm_compare(a, b, "spearman", "a", "b", threads) == pytest.approx(
        stats.spearmanr(a, b).statistic, abs=1e-12)
    assert _core.rdm_compare(a, b, "kendall_tau_a", "a", "b", threads) == pytest.approx(
        tau_a_from_tau_b(a, b), abs=1e-12)


def test_tau_a_routes_agree(rng):
    a = rng.integers(0, 4, 60).astype(float)
    b = rng.integers(0, 4, 60).astype(float)
    assert tau_a_from_tau_b(a, b) == pytest.approx(tau_a_by_hand(a, b), abs=1e-12)


def test_rsa_over_several_panels(rng):
    x, y = pair(rng, n=1600, p1=4, p2=5)
    a, b = ref_rdm(x, "correlation"), ref_rdm(y, "correlation")
    assert reprsim.rsa(x, y) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert reprsim.rsa(x, y, compare="pearson") == pytest.approx(stats.pearsonr(a, b).statistic, abs=1e-12)
    assert reprsim.rsa(x, y, compare="kendall_tau_a") == pytest.approx(tau_a_from_tau_b(a, b), abs=1e-12)


def test_rsa_float32(rng):
    x, y = pair(rng)
    for compare in ("spearman", "pearson", "kendall_tau_a", "cosine"):
        assert reprsim.rsa(x.astype(np.float32), y.astype(np.float32), compare=compare) == pytest.approx(
            reprsim.rsa(x, y, compare=compare), abs=1e-4)


def orthogonal(rng, p):
    q, r = np.linalg.qr(rng.standard_normal((p, p)))
    return q * np.sign(np.diag(r))


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, n=st.integers(4, 30), p1=st.integers(3, 8), p2=st.integers(3, 8))
def test_rsa_invariances_and_symmetry(seed, n, p1, p2):
    # p ≥ 3: with two features every row-centred row is ±(a, −a) and correlation distances are 0 or 2.
    rng = np.random.default_rng(seed)
    x, y = pair(rng, n, p1, p2)
    for method in ("euclidean", "correlation", "cosine"):
        # Correlation distances centre each row across its features: invariant to permuting the features,
        # not to general orthogonal maps.
        qx = orthogonal(rng, p1) if method != "correlation" else np.eye(p1)[rng.permutation(p1)]
        qy = orthogonal(rng, p2) if method != "correlation" else np.eye(p2)[rng.permutation(p2)]
        for compare in ("pearson", "cosine", "spearman"):
            base = reprsim.rsa(x, y, rdm=method, compare=compare)
            assert reprsim.rsa(y, x, rdm=method, compare=compare) == pytest.approx(base, abs=1e-12)
            moved = reprsim.rsa(x @ qx, 3.0 * y @ qy, rdm=method, compare=compare)
            assert moved == pytest.approx(base, abs=1e-9)


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, n=st.integers(4, 30), p=st.integers(3, 8))
def test_correlation_rdm_invariant_to_per_row_affine_maps(seed, n, p):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p))
    moved = x * rng.uniform(0.5, 2.0, (n, 1)) + rng.standard_normal((n, 1))
    np.testing.assert_allclose(reprsim.rdm(moved), reprsim.rdm(x), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------------
# The torch path (on CPU tensors)


@pytest.mark.parametrize("method", ["euclidean", "correlation", "cosine"])
def test_torch_rdm_and_rsa_equal_the_cpu_path(rng, method, monkeypatch):
    torch, torch_nb = _torch()
    x, y = pair(rng, n=50)
    monkeypatch.setattr(torch_nb, "_TILE_ENTRIES", 50 * 7)  # 7 rows per tile
    np.testing.assert_allclose(torch_nb.rdm_torch(torch.from_numpy(x), method).numpy(), reprsim.rdm(x, method=method),
                               rtol=0, atol=1e-12)
    for compare in ("spearman", "pearson", "kendall_tau_a", "cosine"):
        assert torch_nb.rsa_torch(torch.from_numpy(x), torch.from_numpy(y), method, compare) == pytest.approx(
            reprsim.rsa(x, y, rdm=method, compare=compare), abs=1e-12)


def test_torch_ranks_average_ties(rng):
    torch, torch_nb = _torch()
    v = torch.from_numpy(rng.integers(0, 5, 200).astype(float))
    np.testing.assert_array_equal(torch_nb._average_ranks(v).numpy(), stats.rankdata(v.numpy()))


# ----------------------------------------------------------------------------------------------------
# Bad input


def test_bad_rsa_options_and_shapes(rng):
    x, y = pair(rng)
    with pytest.raises(ValueError, match="rdm must be one of 'euclidean', 'correlation', 'cosine'; got 'l2'"):
        reprsim.rsa(x, y, rdm="l2")
    with pytest.raises(ValueError, match="compare must be one of"):
        reprsim.rsa(x, y, compare="kendall")
    with pytest.raises(ValueError, match="method must be one of"):
        reprsim.rdm(x, method="pearson")
    with pytest.raises(ValueError, match="RSA needs at least 3"):
        reprsim.rsa(x[:2], y[:2])
    with pytest.raises(ValueError, match="an RDM needs at least 2"):
        reprsim.rdm(x[:1])
    with pytest.raises(ValueError, match="same number of samples"):
        reprsim.rsa(x, y[:-1])
    bad = x.copy()
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        reprsim.rsa(bad, y)
    with pytest.raises(ValueError, match="y contains NaN or Inf"):
        reprsim.rsa(x, bad, rdm="euclidean")


def test_undefined_rows_are_named(rng):
    x, y = pair(rng)
    x[[4, 9]] = 2.5
    with pytest.raises(ValueError, match=r"x has 2 constant rows \(rows 4, 9\): the correlation"):
        reprsim.rsa(x, y)
    y[7] = 0.0
    with pytest.raises(ValueError, match=r"x has 1 row of zero norm \(row 7\)"):
        reprsim.rdm(y, method="cosine")


def test_rdms_with_all_entries_equal(rng):
    # The corners of a simplex: every distance equal.
    x, y = np.eye(4), pair(rng, n=4)[1]
    for compare in ("spearman", "pearson"):
        with pytest.raises(ValueError, match=r"x's RDM has all 6 dissimilarities equal"):
            reprsim.rsa(x, y, rdm="euclidean", compare=compare)
    assert reprsim.rsa(x, y, rdm="euclidean", compare="kendall_tau_a") == 0.0
    with pytest.raises(ValueError, match="y's RDM is all zeros, so its cosine similarity"):
        reprsim.rsa(y, np.ones((4, 3)), rdm="euclidean", compare="cosine")


def test_rsa_refuses_before_allocating(rng, monkeypatch):
    x, y = pair(rng, n=200)
    monkeypatch.setattr(_memory, "available_memory", lambda: 1_800_000)
    message = (r"rsa with compare='spearman' over n = 200 samples needs about [\d.e+-]+ GiB \(32 bytes for each of "
               r"the N = n\(n-1\)/2 = 19900 RDM entries.*the largest n that fits is about \d+; use fewer samples")
    with pytest.raises(ValueError, match=message):
        reprsim.rsa(x, y)
    assert reprsim.rsa(x, y, compare="pearson") == pytest.approx(reprsim.rsa(x[:, ::-1], y, compare="pearson"))
    monkeypatch.setattr(_memory, "available_memory", lambda: 500_000)
    with pytest.raises(ValueError, match=r"the correlation RDM of n = 200 samples needs about"):
        reprsim.rdm(x)


def test_memory_estimate_largest_n_fits():
    available = 10 * 2**30
    n = _rsa._largest_n(32, 8 * 1000, available)
    assert 32 * n * (n - 1) / 2 + 8000 * n <= available < 32 * (n + 1) * n / 2 + 8000 * (n + 1)
