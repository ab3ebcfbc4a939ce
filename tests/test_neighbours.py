"""The k-NN measures (mutual, Jaccard, cycle k-NN, CKNNA) against full-matrix float64 numpy references.

The references build the whole n×n similarity matrix and take each row's neighbours with a *stable*
argsort of the negated similarities (so equal similarities go to the smaller row index, the library's
tie rule); the measures are transcribed literally from their definitions (platonic-rep's metrics.py
for cycle k-NN and CKNNA). Data with duplicated rows check the tie rule.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
import reprsim
from reprsim import _core, _memory, _neighbours
from reprsim._neighbours import KnnLists, knn_lists, knn_permutation_null



def _torch():
    """torch and the torch path's module, or a skip when torch is not installed."""
    torch = pytest.importorskip("torch")
    from reprsim.torch import _neighbours as torch_nb

    return torch, torch_nb

SEEDS = st.integers(0, 2**32 - 1)


# ----------------------------------------------------------------------------------------------------
# Independent references


ref_kernel = ref.knn_kernel
ref_lists = ref.knn_lists
ref_mutual = ref.mutual_knn
ref_jaccard = ref.jaccard_knn
ref_cycle = ref.cycle_knn
hsic_unbiased_literal = ref.hsic_unbiased_literal
ref_cknna = ref.cknna
ref_cknna_row = ref.cknna_row_anchored


def data(rng, n=120, p=12, dup=True):
    """Two related representations; with dup, rows duplicated so that similarities tie."""
    x = rng.standard_normal((n, p))
    y = x @ rng.standard_normal((p, p + 3)) + 0.7 * rng.standard_normal((n, p + 3))
    if dup:
        for src, dst in ((0, n // 2), (0, n // 2 + 1), (7, 3), (20, n - 2), (20, n - 1), (20, 5)):
            x[dst] = x[src]
            y[dst] = y[src]
        y[n // 2 + 4] = y[n // 2 + 5]  # a tie in y only
    return x, y


# ----------------------------------------------------------------------------------------------------
# The lists


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("k", [1, 3, 10, 119])
def test_knn_lists_equal_stable_argsort_reference_with_ties(rng, k, center):
    x, _ = data(rng)
    lists = knn_lists(x, k, center=center)
    expected, _, kern = ref_lists(x, k, center)
    np.testing.assert_array_equal(lists.indices, expected)
    np.testing.assert_allclose(lists.similarities, np.take_along_axis(kern, expected, axis=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(lists.row_means, kern.mean(axis=1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("blocks", [(1, 1), (7, 13), (13, 7), (64, 5), (1024, 4096)])
def test_knn_lists_do_not_depend_on_the_block_shape(rng, blocks):
    x, _ = data(rng, n=100, p=6)
    expected, _, kern = ref_lists(x, 4)
    idx, sim, _ = _core.knn_lists(x, 4, False, "x", *blocks)
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(sim, np.take_along_axis(kern, expected, axis=1), rtol=0, atol=1e-12)


def test_knn_lists_on_several_threads_and_blocks(rng):
    # n > 1024 rows: several row panels, with the selection split over threads (as many as the BLAS has).
    x = rng.standard_normal((1500, 9))
    x[1400:1450] = x[:50]
    expected, _, _ = ref_lists(x, 6)
    previous = reprsim.get_num_threads()
    try:
        for threads in (1, 2):
            reprsim.set_num_threads(threads)
            np.testing.assert_array_equal(knn_lists(x, 6).indices, expected)
    finally:
        reprsim.set_num_threads(previous)


def test_ties_go_to_the_smaller_row_index():
    # Rows 1, 2 and 4 are the same direction as row 0 (row 4 scaled): all tie at similarity 1.
    x = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.6, 0.8]])
    lists = knn_lists(x, 2)
    np.testing.assert_array_equal(lists.indices[0], [1, 2])
    np.testing.assert_array_equal(lists.indices[2], [0, 1])
    np.testing.assert_array_equal(lists.indices[4], [0, 1])
    np.testing.assert_array_equal(lists.indices[3], [0, 5])  # 0.8 to row 5, then 0 to rows 0, 1, 2, 4: row 0


def test_float32_lists_agree_where_the_boundary_is_clear(rng):
    x = rng.standard_normal((400, 24))
    expected, _, kern = ref_lists(x, 8)
    got = knn_lists(x.astype(np.float32), 8)
    masked = kern.copy()
    np.fill_diagonal(masked, -np.inf)
    top = -np.sort(-masked, axis=1)
    clear = (top[:, 7] - top[:, 8]) > 1e-5  # rows whose k-th and (k+1)-th similarities are apart
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(got.indices[clear], expected[clear])
    np.testing.assert_allclose(got.similarities, np.take_along_axis(kern, got.indices, axis=1), atol=1e-6)


def test_lists_are_frozen_and_read_only(rng):
    lists = knn_lists(rng.standard_normal((30, 4)), 3)
    assert isinstance(lists, KnnLists) and lists.n == 30 and lists.k == 3 and not lists.center
    with pytest.raises(ValueError):
        lists.indices[0, 0] = 5
    with pytest.raises(AttributeError):
        lists.k = 4  # type: ignore[misc]


# ----------------------------------------------------------------------------------------------------
# The measures


@pytest.mark.parametrize("k", [1, 4, 10])
def test_measures_equal_references(rng, k):
    x, y = data(rng)
    assert reprsim.mutual_knn(x, y, k=k) == pytest.approx(ref_mutual(x, y, k), abs=1e-12)
    assert reprsim.jaccard_knn(x, y, k=k) == pytest.approx(ref_jaccard(x, y, k), abs=1e-12)
    assert reprsim.cycle_knn(x, y, k=k) == pytest.approx(ref_cycle(x, y, k), abs=1e-12)
    assert reprsim.cycle_knn(y, x, k=k) == pytest.approx(ref_cycle(y, x, k), abs=1e-12)
    assert reprsim.cknna(x, y, k=k) == pytest.approx(ref_cknna(x, y, k), abs=1e-12)
    assert reprsim.cknna(x, y, k=k, variant="row_anchored") == pytest.approx(ref_cknna_row(x, y, k), abs=1e-12)


@pytest.mark.parametrize("center", [False, True])
def test_cknna_with_centring_and_large_k(rng, center):
    x, y = data(rng, n=60, p=5)
    for k in (2, 30, 59):
        assert reprsim.cknna(x, y, k=k, center=center) == pytest.approx(ref_cknna(x, y, k, center), abs=1e-12)
        assert reprsim.cknna(x, y, k=k, center=center, variant="row_anchored") == pytest.approx(
            ref_cknna_row(x, y, k, center), abs=1e-12)


def test_measures_of_a_representation_with_itself(rng):
    x, _ = data(rng)
    assert reprsim.mutual_knn(x, x, k=5) == 1.0
    assert reprsim.jaccard_knn(x, x, k=5) == 1.0
    assert reprsim.cknna(x, x, k=5) == pytest.approx(1.0, abs=1e-12)
    assert reprsim.cknna(x, x, k=5, variant="row_anchored") == pytest.approx(1.0, abs=1e-12)


def test_cycle_knn_direction(rng):
    # Not symmetric: each direction equals its own reference and the two differ on this data.
    x, y = data(rng, dup=False)
    xy, yx = reprsim.cycle_knn(x, y, k=3), reprsim.cycle_knn(y, x, k=3)
    assert xy == pytest.approx(ref_cycle(x, y, 3), abs=1e-12)
    assert yx == pytest.approx(ref_cycle(y, x, 3), abs=1e-12)
    assert xy != yx


def test_float32_inputs_give_float32_accurate_scores(rng):
    x, y = data(rng, dup=False)
    for f in (reprsim.mutual_knn, reprsim.jaccard_knn, reprsim.cycle_knn, reprsim.cknna):
        assert f(x.astype(np.float32), y.astype(np.float32), k=5) == pytest.approx(f(x, y, k=5), abs=1e-5)


def test_pairwise_from_lists_costs_one_search_per_representation(rng, monkeypatch):
    x, y = data(rng, dup=False)
    reps = [x, y, x[:, :5], y[:, ::2]]
    calls = []
    real = _core.knn_lists

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_neighbours._core, "knn_lists", spy)
    lists = [knn_lists(r, 6) for r in reps]
    matrices = {name: np.array([[finalise(a, b) for b in lists] for a in lists])
                for name, finalise in _neighbours.FINALISERS.items()}
    assert len(calls) == len(reps)  # 4 searches for 4 × 4 pairs of 4 measures
    for name, matrix in matrices.items():
        direct = getattr(reprsim, name)
        for i, j in [(0, 1), (1, 0), (2, 3), (3, 3)]:
            assert matrix[i, j] == pytest.approx(direct(reps[i], reps[j], k=6), abs=1e-12)


# ----------------------------------------------------------------------------------------------------
# The permutation null from the lists


@pytest.mark.parametrize("measure", ["mutual_knn", "jaccard_knn", "cycle_knn", "cknna"])
def test_permutation_null_equals_measure_of_permuted_y(rng, measure):
    x, y = data(rng, dup=False)
    a, b = knn_lists(x, 5), knn_lists(y, 5)
    perms = np.stack([rng.permutation(len(x)) for _ in range(6)])
    for threads in (1, 3):
        null = knn_permutation_null(a, b, perms, measure, n_threads=threads)
        direct = [getattr(reprsim, measure)(x, y[p], k=5) for p in perms]
        np.testing.assert_allclose(null, direct, rtol=0, atol=1e-12)
    if measure == "cknna":
        null = knn_permutation_null(a, b, perms, measure, variant="row_anchored")
        direct = [reprsim.cknna(x, y[p], k=5, variant="row_anchored") for p in perms]
        np.testing.assert_allclose(null, direct, rtol=0, atol=1e-12)


def test_permutation_null_rejects_bad_permutations(rng):
    x, y = data(rng, n=20, p=3, dup=False)
    a, b = knn_lists(x, 3), knn_lists(y, 3)
    with pytest.raises(ValueError, match=r"permutations\[1\] is not a permutation of 0..19"):
        knn_permutation_null(a, b, np.stack([np.arange(20), np.zeros(20, dtype=int)]), "mutual_knn")
    with pytest.raises(ValueError, match=r"shape \(count, 20\)"):
        knn_permutation_null(a, b, np.arange(20), "mutual_knn")
    with pytest.raises(TypeError, match="integers"):
        knn_permutation_null(a, b, np.zeros((2, 20)), "mutual_knn")
    with pytest.raises(ValueError, match="measure must be one of"):
        knn_permutation_null(a, b, np.arange(20)[None], "cka")


# ----------------------------------------------------------------------------------------------------
# Properties


def orthogonal(rng, p):
    q, r = np.linalg.qr(rng.standard_normal((p, p)))
    return q * np.sign(np.diag(r))


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, n=st.integers(6, 50), p1=st.integers(2, 12), p2=st.integers(2, 12), k=st.integers(1, 5))
def test_knn_measures_invariant_to_row_scaling_and_orthogonal_maps(seed, n, p1, p2, k):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, p1)), rng.standard_normal((n, p2))
    k = min(k, n - 1)
    moved_x = (x * rng.uniform(0.1, 10.0, (n, 1))) @ orthogonal(rng, p1)
    moved_y = (y * rng.uniform(0.1, 10.0, (n, 1))) @ orthogonal(rng, p2)
    assert np.array_equal(knn_lists(x, k).indices, knn_lists(moved_x, k).indices)
    for f in (reprsim.mutual_knn, reprsim.jaccard_knn, reprsim.cycle_knn):
        assert f(moved_x, moved_y, k=k) == f(x, y, k=k)
    try:
        base = reprsim.cknna(x, y, k=k)
    except ValueError:  # a self term that is not positive on this draw: CKNNA undefined
        return
    assert reprsim.cknna(moved_x, moved_y, k=k) == pytest.approx(base, abs=1e-10)


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, n=st.integers(6, 50), p1=st.integers(1, 12), p2=st.integers(1, 12), k=st.integers(1, 5))
def test_symmetric_knn_measures_are_symmetric(seed, n, p1, p2, k):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, p1)), rng.standard_normal((n, p2))
    k = min(k, n - 1)
    assert reprsim.mutual_knn(x, y, k=k) == reprsim.mutual_knn(y, x, k=k)
    assert reprsim.jaccard_knn(x, y, k=k) == reprsim.jaccard_knn(y, x, k=k)
    # The row-anchored CKNNA is symmetric; platonic-rep's form is not (its term 1ᵀAB1 on the
    # non-symmetric masked kernels differs from 1ᵀBA1).
    a, b = knn_lists(x, k), knn_lists(y, k)
    if a.cknna_self_row > 0 and b.cknna_self_row > 0:
        assert _neighbours._cknna_from_lists(a, b, "row_anchored") == pytest.approx(
            _neighbours._cknna_from_lists(b, a, "row_anchored"), abs=1e-12)
    assert 0.0 <= reprsim.mutual_knn(x, y, k=k) <= 1.0


# ----------------------------------------------------------------------------------------------------
# The torch path (run on CPU tensors)


@pytest.mark.parametrize("center", [False, True])
def test_torch_path_gives_the_cpu_lists_and_values(rng, center):
    torch, torch_nb = _torch()
    x, y = data(rng)
    for k in (1, 5, 119):
        cpu = knn_lists(x, k, center=center)
        dev = torch_nb.knn_lists_torch(torch.from_numpy(x), k, center=center)
        np.testing.assert_array_equal(dev.indices, cpu.indices)
        np.testing.assert_allclose(dev.similarities, cpu.similarities, rtol=0, atol=1e-12)
        np.testing.assert_allclose(dev.row_means, cpu.row_means, rtol=0, atol=1e-12)
        assert dev.cknna_self == pytest.approx(cpu.cknna_self, abs=1e-12)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    a, b = torch_nb.knn_lists_pair_torch(tx, ty, 5, center, "CKNNA", 4)
    assert _neighbours._cknna_from_lists(a, b) == pytest.approx(reprsim.cknna(x, y, k=5, center=center), abs=1e-12)
    assert _neighbours._cycle_from_lists(a, b) == reprsim.cycle_knn(x, y, k=5, center=center)


def test_torch_path_float32_and_tiles(rng, monkeypatch):
    torch, torch_nb = _torch()
    x, _ = data(rng, n=90, p=7)
    monkeypatch.setattr(torch_nb, "_TILE_ENTRIES", 90 * 7)  # 7 rows per tile
    dev = torch_nb.knn_lists_torch(torch.from_numpy(x), 4)
    np.testing.assert_array_equal(dev.indices, knn_lists(x, 4).indices)
    x32 = x.astype(np.float32)
    dev32 = torch_nb.knn_lists_torch(torch.from_numpy(x32), 4)
    np.testing.assert_allclose(dev32.similarities, knn_lists(x32, 4).similarities, atol=1e-6)


def test_torch_path_names_zero_rows(rng):
    torch, torch_nb = _torch()
    x = rng.standard_normal((10, 3))
    x[4] = 0.0
    with pytest.raises(ValueError, match=r"x has 1 row of zero norm \(row 4\)"):
        torch_nb.knn_lists_torch(torch.from_numpy(x), 2)


# ----------------------------------------------------------------------------------------------------
# Bad input


def test_bad_k(rng):
    x, y = data(rng, n=10, p=3, dup=False)
    with pytest.raises(ValueError, match=r"k must be between 1 and n - 1 = 9 .* got 10"):
        reprsim.mutual_knn(x, y, k=10)
    with pytest.raises(ValueError, match=r"k must be an integer ≥ 1, got 0"):
        reprsim.cycle_knn(x, y, k=0)
    with pytest.raises(TypeError, match="k must be an integer"):
        reprsim.jaccard_knn(x, y, k=2.0)
    with pytest.raises(TypeError, match="k must be an integer"):
        reprsim.cknna(x, y, k=True)
    with pytest.raises(ValueError, match=r"k must be between 1 and n - 1"):
        _core.knn_lists(x, 0)


def test_zero_rows_are_named(rng):
    x, y = data(rng, n=30, p=4, dup=False)
    x[[3, 17]] = 0.0
    with pytest.raises(ValueError, match=r"x has 2 rows of zero norm \(rows 3, 17\): the cosine similarity"):
        reprsim.mutual_knn(x, y, k=3)
    # Integer rows ±a_i + c and one row c: the column means are exactly c, so row 30 centres to zero.
    a = rng.integers(-5, 6, (15, 4)).astype(float)
    c = rng.integers(-5, 6, 4).astype(float)
    z = np.vstack([a + c, -a + c, c[None]])
    with pytest.raises(ValueError, match=r"y has 1 row equal to the mean row \(row 30\).*center=False"):
        reprsim.mutual_knn(rng.standard_normal((31, 3)), z, k=3, center=True)


def test_nan_inf_mismatched_and_shapes(rng):
    x, y = data(rng, n=30, p=4, dup=False)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"x contains NaN or Inf \(row 2\)"):
        reprsim.mutual_knn(bad, y)
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"y contains NaN or Inf"):
        reprsim.cknna(x, bad, k=3, center=True)
    with pytest.raises(ValueError, match="same number of samples"):
        reprsim.jaccard_knn(x, y[:-1], k=3)
    with pytest.raises(ValueError, match="must be 2-D"):
        reprsim.cycle_knn(x[None], y, k=3)
    with pytest.raises(ValueError, match="CKNNA needs at least 4"):
        reprsim.cknna(x[:3], y[:3], k=1)
    with pytest.raises(ValueError, match="variant must be one of"):
        reprsim.cknna(x, y, k=3, variant="paper")


def test_huge_values_and_tiny_values_normalise(rng):
    x, y = data(rng, n=40, p=5, dup=False)
    base = reprsim.mutual_knn(x, y, k=4)
    assert reprsim.mutual_knn(x * 1e300, y * 1e-300, k=4) == base
    assert reprsim.mutual_knn((x * 1e30).astype(np.float32), (y * 1e-30).astype(np.float32), k=4) == pytest.approx(
        reprsim.mutual_knn(x.astype(np.float32), y.astype(np.float32), k=4), abs=0.05)


def test_cknna_undefined_self_term_is_an_error():
    # Four points at the corners of a square, k = 1: one mutual pair per point; the self term is not
    # positive for this configuration, so CKNNA is undefined.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    lists = knn_lists(x, 1)
    assert not lists.cknna_self > 0
    with pytest.raises(ValueError, match="CKNNA is undefined: the unbiased HSIC of x's"):
        reprsim.cknna(x, x, k=1)


def test_finalisers_check_their_lists(rng):
    x, y = data(rng, n=30, p=4, dup=False)
    a, b = knn_lists(x, 3), knn_lists(y, 4)
    with pytest.raises(ValueError, match="differ: x has n = 30, k = 3 and y has n = 30, k = 4"):
        _neighbours._mutual_from_lists(a, b)
    with pytest.raises(TypeError, match="pass two KnnLists"):
        _neighbours._mutual_from_lists(a, (a.indices, a.similarities, a.row_means))
    bad = a.indices.copy()
    bad[3] = [3, 4, 5]  # the row itself
    with pytest.raises(ValueError, match=r"x.indices row 3 is not a strictly ascending list of other rows"):
        _core.knn_measure((bad, a.similarities, a.row_means), a._arrays(), "mutual")
    bad[3] = [0, 40, 5]
    with pytest.raises(ValueError, match=r"y.indices row 3"):
        _core.knn_measure(a._arrays(), (bad, a.similarities, a.row_means), "jaccard")


def test_knn_search_refuses_before_allocating(rng, monkeypatch):
    x, y = data(rng, n=50, p=8, dup=False)
    monkeypatch.setattr(_memory, "available_memory", lambda: 1000)
    with pytest.raises(ValueError, match=r"the k-NN search of x with n = 50 samples and 8 features needs about"):
        reprsim.mutual_knn(x, y, k=3)
