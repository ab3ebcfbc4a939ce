"""The streaming QR-factor state (reprsim._core.FactorState): the CCA family as accurate as in memory.

Streamed values are compared with the in-memory functions over random batch splits (batches of one row
included) and random merge trees, on inputs whose conditioning comes from column scaling and from
mixing (up to 1e10), with and without exactly rank-deficient layers, in float32 and float64; where the
problem itself is that ill-conditioned, both routes are compared with an extended-precision (numpy long
double) reference written here. CKA and Procrustes from the factor are compared with the moments
accumulator (StreamState) and with plain float64 numpy.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import reprsim
from reprsim import _core

NX, NY = ["x"], ["y"]
LD = np.longdouble
HAVE_LONG_DOUBLE = np.finfo(LD).eps < 1e-18


# -- inputs -----------------------------------------------------------------------------------------


def orthogonal(p, rng):
    q, r = np.linalg.qr(rng.standard_normal((p, p)))
    return q * np.sign(np.diag(r))


def conditioned(n, p, cond, kind, rng):
    """(n, p) with condition number ~cond from column scaling ("scaled"), from mixing U·diag(σ)·Vᵀ with a
    random orthogonal V ("mixed"), or both."""
    s = np.logspace(0, -np.log10(cond), p)
    if kind == "scaled":
        return rng.standard_normal((n, p)) * s
    u, _ = np.linalg.qr(rng.standard_normal((n, p)))
    a = (u * s) @ orthogonal(p, rng).T
    if kind == "both":
        a = a / np.sqrt(cond) * np.logspace(0, np.log10(cond) / 2, p)
    return a / np.abs(a).max()


def related(n, p1, p2, cond, kind, rng, deficient=False, dtype=np.float64):
    """x ill-conditioned, y = x·B + noise (generic, distinct correlations), offsets of a few column scales
    (so centring matters), optionally columns copied (exactly rank-deficient layers)."""
    x = conditioned(n, p1, cond, kind, rng)
    x = x + 3.0 * np.abs(x).max(axis=0)
    t = x @ rng.standard_normal((p1, p2))
    y = t + rng.standard_normal((n, p2)) * np.abs(t - t.mean(axis=0)).mean(axis=0)
    y = y - 2.0 * np.abs(y).max(axis=0)
    if deficient:
        x[:, -3:] = x[:, :3]
        y[:, -2:] = y[:, 1:3]
    return x.astype(dtype), y.astype(dtype)


def random_bounds(n, rng, pieces=8):
    """Cut points of a random split of n rows: a few batches of one row, then random sizes."""
    cuts = {0, 1, 2, 3, n} | set(rng.integers(4, max(n, 5), size=pieces).tolist())
    cuts = {c for c in cuts if c <= n}
    return sorted(cuts)


def feed(state, xs, ys, a, b, names_x, names_y):
    state.update([v[a:b] for v in xs], [v[a:b] for v in ys], names_x, names_y)


def names(k, base):
    return [f"{base}[{i}]" for i in range(k)]


def streamed(xs, ys, rng, shards=3, cls=None):
    """A state built from `shards` disjoint row ranges, each fed in random batches, merged by a random tree."""
    cls = cls or _core.FactorState
    xs, ys = list(xs), list(ys)
    n = xs[0].shape[0]
    nx, ny = names(len(xs), "x"), names(len(ys), "y")
    edges = sorted({0, n} | set(rng.choice(np.arange(10, n - 10), size=shards - 1, replace=False).tolist()))
    parts = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        s = cls(len(xs), len(ys))
        bounds = [lo + c for c in random_bounds(hi - lo, rng, pieces=4)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            feed(s, xs, ys, a, b, nx, ny)
        parts.append(s)
    while len(parts) > 1:  # a random binary tree: merge two random neighbours
        k = int(rng.integers(0, len(parts) - 1))
        parts[k:k + 2] = [parts[k].merged(parts[k + 1])]
    return parts[0]


def single(x, y, rng):
    return streamed([x], [y], rng)


# -- extended-precision reference ----------------------------------------------------------------------


def ld_basis(a, rank):
    """Orthonormal basis (long double) of the first `rank` pivoted columns of the centred a: Householder QR
    with column pivoting written out in numpy's long double."""
    a = np.asarray(a, dtype=LD)
    a = a - a.mean(axis=0)
    m, p = a.shape
    vs = []
    for j in range(rank):
        k = j + int(np.argmax((a[j:, j:] ** 2).sum(axis=0)))
        a[:, [j, k]] = a[:, [k, j]]
        x = a[j:, j].copy()
        nx = np.sqrt((x * x).sum())
        v = x.copy()
        v[0] += nx if x[0] >= 0 else -nx
        v /= np.sqrt((v * v).sum())
        a[j:, j:] -= 2 * np.outer(v, v @ a[j:, j:])
        vs.append(v)
    q = np.zeros((m, rank), dtype=LD)
    q[:rank, :rank] = np.eye(rank, dtype=LD)
    for j in reversed(range(rank)):
        q[j:, :] -= 2 * np.outer(vs[j], vs[j] @ q[j:, :])
    return q


def reference_correlations(x, y, rank_x, rank_y):
    return np.linalg.svd((ld_basis(x, rank_x).T @ ld_basis(y, rank_y)).astype(np.float64), compute_uv=False)


# -- streamed == in memory ---------------------------------------------------------------------------

STATS = ("mean", "mean_sq", "pwcca_x", "pwcca_y", "pwcca_smaller", "mean_padded", "mean_sq_padded", "pwcca_padded")


def assert_cca_family_matches(state, x, y, rtol, i=0, j=0, nx=NX, ny=NY):
    """Every CCA-family value of pair (i, j) of `state` against the in-memory functions."""
    mem = reprsim.canonical_correlations(x, y)
    rho = state.canonical_correlations(nx, ny)[i * len(ny) + j]
    assert rho.size == mem.size, "the streamed and in-memory rank decisions differ"
    np.testing.assert_allclose(rho, mem, rtol=0, atol=rtol)
    np.testing.assert_allclose(state.cca_statistic("mean", 0.0, True, nx, ny)[i, j], reprsim.mean_cca(x, y), rtol=rtol)
    np.testing.assert_allclose(state.cca_statistic("mean_sq", 0.0, True, nx, ny)[i, j], reprsim.mean_sq_cca(x, y),
                               rtol=rtol)
    for conv, stat in (("x", "pwcca_x"), ("y", "pwcca_y"), ("smaller", "pwcca_smaller")):
        np.testing.assert_allclose(state.cca_statistic(stat, 0.0, True, nx, ny)[i, j],
                                   reprsim.pwcca(x, y, convention=conv), rtol=rtol, err_msg=conv)
    for stat in ("mean_padded", "mean_sq_padded", "pwcca_padded"):
        np.testing.assert_allclose(state.cca_statistic(stat, 0.0, True, nx, ny)[i, j], _core.cca_statistic(x, y, stat),
                                   rtol=rtol, err_msg=stat)
    for keep, conv, on_var in ((0.99, "variance", True), (0.9, "singular_values", False)):
        np.testing.assert_allclose(state.cca_statistic("mean", keep, on_var, nx, ny)[i, j],
                                   reprsim.svcca(x, y, variance=keep, convention=conv), rtol=rtol)


@pytest.mark.parametrize("cond", [1e2, 1e7, 1e10])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("deficient", [False, True])
def test_streamed_cca_equals_in_memory_under_column_scaling(cond, dtype, deficient):
    rng = np.random.default_rng(int(cond) % 97 + 3 * deficient + (dtype == np.float32))
    x, y = related(240, 12, 9, cond, "scaled", rng, deficient, dtype)
    assert_cca_family_matches(single(x, y, rng), x, y, rtol=1e-9)


@pytest.mark.parametrize("cond", [1e2, 1e5, 1e7])
@pytest.mark.parametrize("kind", ["mixed", "both"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_streamed_cca_equals_in_memory_under_mixing(cond, kind, dtype):
    rng = np.random.default_rng(int(np.log10(cond)) + 10 * (kind == "both") + (dtype == np.float32))
    for deficient in (False, True):
        x, y = related(240, 12, 9, cond, kind, rng, deficient, dtype)
        assert_cca_family_matches(single(x, y, rng), x, y, rtol=1e-9)


@pytest.mark.skipif(not HAVE_LONG_DOUBLE, reason="numpy's long double is float64 on this platform")
@pytest.mark.parametrize("kind", ["mixed", "both"])
@pytest.mark.parametrize("deficient", [False, True])
def test_streamed_cca_as_accurate_as_in_memory_at_condition_1e10(kind, deficient):
    """At condition number 1e10 from mixing, float64 itself resolves the small directions' correlations only
    to ~ε·κ: both routes are compared with a long-double reference, and the streamed one must be as close as
    the in-memory one (within a factor 10), with the same rank decisions."""
    rng = np.random.default_rng(7 + deficient + 2 * (kind == "both"))
    x, y = related(300, 12, 9, 1e10, kind, rng, deficient)
    state = single(x, y, rng)
    _, rank_x, rank_y = _core.cca_statistic(x, y, "mean", with_ranks=True)
    ranks = state.cca_ranks(NX, NY)
    assert (ranks[0][0], ranks[1][0]) == (rank_x, rank_y)
    truth = reference_correlations(x, y, rank_x, rank_y)
    mem = reprsim.canonical_correlations(x, y)
    rho = state.canonical_correlations(NX, NY)[0]
    err_mem, err_factor = np.abs(mem - truth).max(), np.abs(rho - truth).max()
    assert err_factor <= 10 * err_mem + 1e-13, (err_factor, err_mem)
    assert abs(rho.mean() - truth.mean()) <= 10 * err_mem + 1e-13


@pytest.mark.skipif(not HAVE_LONG_DOUBLE, reason="numpy's long double is float64 on this platform")
def test_offsets_far_beyond_the_spread_keep_full_accuracy():
    """Columns of spread 1e-10 around an offset of 5 (the means are kept as float64 pairs, so a merge's
    mean-shift row is exact to its own rounding): the streamed correlations stay within 1e-9 of the
    long-double reference, whatever the batch split."""
    rng = np.random.default_rng(3)
    n = 400
    x = rng.standard_normal((n, 10)) * np.logspace(0, -10, 10) + 5.0
    y = x[:, :6] @ rng.standard_normal((6, 8)) + 0.3 * rng.standard_normal((n, 8)) * np.logspace(0, -10, 8) - 2.0
    _, rank_x, rank_y = _core.cca_statistic(x, y, "mean", with_ranks=True)
    truth = reference_correlations(x, y, rank_x, rank_y)
    for _ in range(3):
        rho = single(x, y, rng).canonical_correlations(NX, NY)[0]
        assert rho.size == truth.size
        np.testing.assert_allclose(rho, truth, rtol=0, atol=1e-9)


def test_rank_decisions_equal_in_memory_for_rank_deficient_layers():
    rng = np.random.default_rng(11)
    for dtype in (np.float64, np.float32):
        x, y = related(200, 10, 8, 1e6, "mixed", rng, deficient=True, dtype=dtype)
        x[:, 4] = 2.0 * x[:, 5] - x[:, 6]  # an exact linear combination besides the copies
        state = single(x, y, rng)
        _, rank_x, rank_y = _core.cca_statistic(x, y, "mean", with_ranks=True)
        assert state.cca_ranks(NX, NY) == ([rank_x], [rank_y])
        assert rank_x < 10 and rank_y < 8
        assert state.canonical_correlations(NX, NY)[0].size == reprsim.canonical_correlations(x, y).size


def test_batches_of_one_row_match_in_memory():
    rng = np.random.default_rng(5)
    x, y = related(80, 6, 5, 1e6, "both", rng)
    state = _core.FactorState(1, 1)
    for i in range(80):
        state.update([x[i:i + 1]], [y[i:i + 1]], NX, NY)
    assert_cca_family_matches(state, x, y, rtol=1e-9)


def test_every_pair_of_several_layers_matches_in_memory():
    rng = np.random.default_rng(21)
    n = 260
    xs = [related(n, p, 3, 1e6, "mixed", rng)[0] for p in (5, 9)]
    ys = [xs[0] @ rng.standard_normal((5, q)) + rng.standard_normal((n, q)) for q in (4, 7, 6)]
    t = xs[1] @ rng.standard_normal((9, 6))
    ys[2] = (t + rng.standard_normal((n, 6)) * t.std(axis=0)) * np.logspace(0, -8, 6) + 1.0  # column-scaled
    state = streamed(xs, ys, rng, shards=4)
    nx, ny = names(2, "x"), names(3, "y")
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            assert_cca_family_matches(state, x, y, rtol=1e-9, i=i, j=j, nx=nx, ny=ny)


# -- the factor itself ----------------------------------------------------------------------------------


def test_r_is_the_unique_factor_of_the_centred_rows_whatever_the_merge_order():
    rng = np.random.default_rng(2)
    n = 500
    x, y = related(n, 7, 6, 1e3, "mixed", rng)
    z = np.hstack([x, y])
    zc = z - z.mean(axis=0)
    r_ref = np.linalg.qr(zc, mode="r")
    r_ref *= np.sign(np.diag(r_ref))[:, None]
    scale = np.abs(r_ref).max()
    chain = _core.FactorState(1, 1)
    for a in range(0, n, 37):
        chain.update([x[a:a + 37]], [y[a:a + 37]], NX, NY)
    for state in (chain, single(x, y, rng), single(x, y, rng)):
        r = state.to_dict()["r"]
        assert np.all(np.diag(r) >= 0) and np.all(np.tril(r, -1) == 0)
        np.testing.assert_allclose(r, r_ref, rtol=0, atol=1e-12 * scale)


def test_wide_layers_take_the_recursive_qr_and_stay_exact():
    """A total width of 450 (≥ 384 columns: the recursive, panelled structured QR) over batches that fill and
    split the 450-row buffer: R equals numpy's, and the CCA family the in-memory values."""
    rng = np.random.default_rng(6)
    n = 1100
    x = rng.standard_normal((n, 250)) @ rng.standard_normal((250, 250)) * 0.1 + 1.0
    y = x[:, :120] @ rng.standard_normal((120, 200)) + 2.0 * rng.standard_normal((n, 200))
    state = _core.FactorState(1, 1)
    for a, b in ((0, 1), (1, 300), (300, 777), (777, n)):
        state.update([x[a:b]], [y[a:b]], NX, NY)
    assert state.flush_rows == 450
    zc = np.hstack([x, y]) - np.hstack([x, y]).mean(axis=0)
    r_ref = np.linalg.qr(zc, mode="r")
    r_ref *= np.sign(np.diag(r_ref))[:, None]
    r = state.to_dict()["r"]
    np.testing.assert_allclose(r, r_ref, rtol=0, atol=1e-11 * np.abs(r_ref).max())
    np.testing.assert_allclose(state.canonical_correlations(NX, NY)[0], reprsim.canonical_correlations(x, y), atol=1e-10)
    np.testing.assert_allclose(state.cca_statistic("pwcca_x", 0.0, True, NX, NY)[0, 0], reprsim.pwcca(x, y),
                               rtol=1e-10)


def test_merge_is_a_pure_function_of_the_two_states():
    rng = np.random.default_rng(4)
    x, y = related(300, 5, 4, 1e3, "scaled", rng)
    a, b = _core.FactorState(1, 1), _core.FactorState(1, 1)
    a.update([x[:130]], [y[:130]], NX, NY)
    b.update([x[130:]], [y[130:]], NX, NY)
    before_a, before_b = a.to_dict(), b.to_dict()
    ab, ba = a.merged(b), b.merged(a)
    assert a.n == 130 and b.n == 170 and ab.n == ba.n == 300
    for k in ("r", "n"):
        np.testing.assert_array_equal(a.to_dict()[k], before_a[k])
        np.testing.assert_array_equal(b.to_dict()[k], before_b[k])
    np.testing.assert_allclose(ab.to_dict()["r"], ba.to_dict()["r"], rtol=0, atol=1e-12 * np.abs(ab.to_dict()["r"]).max())
    empty = _core.FactorState(1, 1)
    np.testing.assert_array_equal(empty.merged(ab).to_dict()["r"], ab.to_dict()["r"])
    np.testing.assert_array_equal(ab.merged(empty).to_dict()["r"], ab.to_dict()["r"])


def test_buffered_rows_are_flushed_before_every_read():
    rng = np.random.default_rng(8)
    x, y = related(100, 4, 3, 10, "scaled", rng)
    state = _core.FactorState(1, 1)
    state.update([x[:40]], [y[:40]], NX, NY)
    assert state.pending_rows == 40 and state.n == 40
    np.testing.assert_allclose(state.cca_statistic("mean", 0.0, True, NX, NY)[0, 0], reprsim.mean_cca(x[:40], y[:40]),
                               rtol=1e-12)
    assert state.pending_rows == 0
    assert state.flush_rows == 256  # the total width 7 is below the floor of 256 rows


# -- CKA, moments, Procrustes: equal to the moments accumulator ---------------------------------------------


def centred_sums(x, y):
    """Plain float64 numpy: the debiased sums from their definitions."""
    u, v = x - x.mean(axis=0), y - y.mean(axis=0)
    d, e = (u * u).sum(axis=1), (v * v).sum(axis=1)
    return {"sum_d2": d @ d, "sum_e2": e @ e, "sum_de": d @ e, "sum_xd": u.T @ d, "sum_ye": v.T @ e,
            "sum_xe": u.T @ e, "sum_yd": v.T @ d}


def test_cka_moments_and_sums_equal_the_moments_accumulator_and_numpy():
    rng = np.random.default_rng(13)
    n = 400
    xs = [rng.standard_normal((n, 6)) + 4.0, rng.standard_normal((n, 3)) * 10]
    ys = [xs[0][:, :4] @ rng.standard_normal((4, 5)) + rng.standard_normal((n, 5)), rng.standard_normal((n, 2))]
    fs = streamed(xs, ys, rng, shards=3)
    ss = streamed(xs, ys, rng, shards=2, cls=_core.StreamState)
    nx, ny = names(2, "x"), names(2, "y")
    for debiased in (False, True):
        np.testing.assert_allclose(fs.cka(debiased, nx, ny), ss.cka(debiased, nx, ny), rtol=1e-12)
    np.testing.assert_allclose(fs.procrustes_nuclear(nx, ny), ss.procrustes_nuclear(nx, ny), rtol=1e-12)
    sd, fd = ss.to_dict(), fs.to_dict()
    sums = fs.cka_sums()
    for i, x in enumerate(xs):
        np.testing.assert_allclose(fs.cxx(i), sd["cxx"][i], rtol=1e-12, atol=1e-12 * np.abs(sd["cxx"][i]).max())
        for j, y in enumerate(ys):
            k = i * 2 + j
            np.testing.assert_allclose(fs.cxy(i, j), sd["cxy"][k], rtol=0, atol=1e-12 * np.abs(sd["cxy"][k]).max())
            ref = centred_sums(x, y)
            np.testing.assert_allclose(fd["sum_d2"][i], ref["sum_d2"], rtol=1e-10)
            np.testing.assert_allclose(fd["sum_e2"][j], ref["sum_e2"], rtol=1e-10)
            np.testing.assert_allclose(fd["sum_de"][k], ref["sum_de"], rtol=1e-10)
            for key, got in (("sum_xd", fd["sum_xd"][i]), ("sum_ye", fd["sum_ye"][j]), ("sum_xe", fd["sum_xe"][k]),
                             ("sum_yd", fd["sum_yd"][k])):
                np.testing.assert_allclose(got, ref[key], rtol=0, atol=1e-10 * np.abs(ref[key]).max(), err_msg=key)
            u, v = x - x.mean(axis=0), y - y.mean(axis=0)
            cxx, cyy, cxy = u.T @ u, v.T @ v, u.T @ v
            expect = [n, (cxy**2).sum(), (cxx**2).sum(), (cyy**2).sum(), np.trace(cxx), np.trace(cyy), ref["sum_d2"],
                      ref["sum_e2"], ref["sum_de"]]
            np.testing.assert_allclose(sums[i, j], expect, rtol=1e-10)
            np.testing.assert_allclose(fs.cka(True, nx, ny)[i, j], reprsim.cka(x, y, debiased=True), rtol=1e-10)
    np.testing.assert_allclose(fs.cyy(1), sd["cyy"][1], rtol=1e-12)


def test_procrustes_distance_from_the_factor_is_exact_near_zero():
    rng = np.random.default_rng(17)
    x = rng.standard_normal((300, 8)) + 2.0
    q = orthogonal(8, rng)
    y = 3.0 * x @ q - 1.0  # the same shape: distance 0
    state = single(x, y, rng)
    for angular in (False, True):
        d = state.procrustes_distance(angular, NX, NY)[0, 0]
        assert 0.0 <= d <= 1e-12
    assert state.procrustes_chord(NX, NY)[0, 0] <= 1e-12
    z = y + 0.5 * rng.standard_normal(y.shape)  # away from 0: the nuclear-norm formula
    state = single(x, z, rng)
    for angular in (False, True):
        np.testing.assert_allclose(state.procrustes_distance(angular, NX, NY)[0, 0],
                                   reprsim.procrustes_distance(x, z, angular=angular), rtol=1e-10)


# -- export and import ------------------------------------------------------------------------------------


def test_dict_round_trip_and_pickling_through_dicts():
    rng = np.random.default_rng(19)
    x, y = related(150, 5, 4, 1e4, "both", rng)
    state = single(x, y, rng)
    back = _core.FactorState.from_dict(pickle.loads(pickle.dumps(state.to_dict())))
    for stat in STATS:
        assert back.cca_statistic(stat, 0.0, True, NX, NY)[0, 0] == state.cca_statistic(stat, 0.0, True, NX, NY)[0, 0]
    assert back.cka(True, NX, NY)[0, 0] == state.cka(True, NX, NY)[0, 0]
    more = _core.FactorState(1, 1)
    more.update([x[:20]], [y[:20]], NX, NY)
    np.testing.assert_allclose(back.merged(more).cka(False, NX, NY), state.merged(more).cka(False, NX, NY), rtol=1e-15)
    empty = _core.FactorState.from_dict(_core.FactorState(2, 3).to_dict())
    assert (empty.k1, empty.k2, empty.n) == (2, 3, 0)


def good_dict():
    rng = np.random.default_rng(23)
    x, y = related(60, 4, 3, 10, "scaled", rng)
    s = _core.FactorState(1, 1)
    s.update([x], [y], NX, NY)
    return s.to_dict()


def corrupt(field, how):
    d = good_dict()
    if how == "missing":
        del d[field]
    elif how == "nan":
        v = d[field]
        if isinstance(v, list):
            v[0] = np.full_like(np.asarray(v[0], dtype=float), np.nan)
        else:
            d[field] = np.full_like(v, np.nan)
    else:
        how(d)
    return d


def _set(key, value):
    def f(d):
        d[key] = value
    return f


def _scale_list(key, factor):
    def f(d):
        d[key] = [np.asarray(v) * factor for v in d[key]]
    return f


BAD_DICTS = [
    ("r", corrupt("r", "missing")),
    ("r", corrupt("r", "nan")),
    ("r", corrupt("r", _set("r", np.zeros((3, 3))))),
    ("r", corrupt("r", lambda d: d["r"].__setitem__((3, 0), 1e-3))),
    ("r", corrupt("r", lambda d: d["r"].__setitem__((2, 2), -d["r"][2, 2]))),
    ("mean_x", corrupt("mean_x", "nan")),
    ("mean_y", corrupt("mean_y", _set("mean_y", [np.zeros(5)]))),
    ("mean_x_lo", corrupt("mean_x_lo", _set("mean_x_lo", [np.ones(4)]))),
    ("'n'", corrupt("n", _set("n", -1.0))),
    ("'n'", corrupt("n", _set("n", 2.5))),
    ("rank_eps", corrupt("rank_eps", _set("rank_eps", 0.5))),
    ("rank_eps", corrupt("rank_eps", _set("rank_eps", 0.0))),
    ("widths_x", corrupt("widths_x", _set("widths_x", [0]))),
    ("widths_y", corrupt("widths_y", _set("widths_y", [3, 1]))),
    ("sum_d2", corrupt("sum_d2", _set("sum_d2", [1e-3]))),
    ("sum_e2", corrupt("sum_e2", _set("sum_e2", [np.nan]))),
    ("sum_de", corrupt("sum_de", _scale_list("sum_de", 1e6))),
    ("sum_de", corrupt("sum_de", _set("sum_de", [-1.0]))),
    ("sum_xd", corrupt("sum_xd", _scale_list("sum_xd", 1e6))),
    ("sum_xe", corrupt("sum_xe", _scale_list("sum_xe", 1e6))),
    ("sum_yd", corrupt("sum_yd", "missing")),
    ("sum_ye", corrupt("sum_ye", _set("sum_ye", "text"))),
]


@pytest.mark.parametrize("field,state", BAD_DICTS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_DICTS)])
def test_from_dict_rejects_inconsistent_states_naming_the_field(field, state):
    with pytest.raises(ValueError, match=field):
        _core.FactorState.from_dict(state)


def test_from_dict_accepts_the_good_state():
    _core.FactorState.from_dict(good_dict())


# -- bad batches ------------------------------------------------------------------------------------------


def test_a_bad_batch_leaves_the_state_unchanged():
    rng = np.random.default_rng(29)
    x, y = related(100, 4, 3, 10, "scaled", rng)
    state = _core.FactorState(1, 1)
    state.update([x[:50]], [y[:50]], NX, NY)
    before = state.to_dict()
    bad_x = x[50:].copy()
    bad_x[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        state.update([bad_x], [y[50:]], NX, NY)
    with pytest.raises(ValueError, match="width"):
        state.update([x[50:, :3]], [y[50:]], NX, NY)
    with pytest.raises(ValueError, match="expects 1 x arrays"):
        state.update([x[50:], x[50:]], [y[50:]], NX, NY)
    with pytest.raises(ValueError, match="magnitude"):
        state.update([x[50:] * 1e70], [y[50:]], NX, NY)
    with pytest.raises(ValueError, match="same n"):
        state.update([x[50:]], [y[51:]], NX, NY)
    after = state.to_dict()
    assert after["n"] == 50
    np.testing.assert_array_equal(after["r"], before["r"])
    other = _core.FactorState(1, 2)
    with pytest.raises(ValueError, match="different numbers of layers"):
        state.merged(other)
    wide = _core.FactorState(1, 1)
    wide.update([x[:, :2]], [y], NX, NY)
    with pytest.raises(ValueError, match="width"):
        state.merged(wide)


def test_absorb_empties_the_other_state_and_a_refused_absorb_changes_neither():
    rng = np.random.default_rng(41)
    x, y = related(120, 4, 3, 10, "scaled", rng)
    a, b = _core.FactorState(1, 1), _core.FactorState(1, 1)
    a.update([x[:50]], [y[:50]], NX, NY)
    b.update([x[50:]], [y[50:]], NX, NY)
    wrong = _core.FactorState(1, 1)
    wrong.update([x[:, :2]], [y], NX, NY)
    with pytest.raises(ValueError, match="width"):
        a.absorb(wrong)
    assert wrong.n == 120 and wrong.widths() == ([2], [3]) and a.n == 50
    a.absorb(b)
    assert a.n == 120 and b.n == 0
    np.testing.assert_allclose(a.cca_statistic("mean", 0.0, True, NX, NY)[0, 0], reprsim.mean_cca(x, y), rtol=1e-12)


def test_memory_estimate_matches_the_state():
    rng = np.random.default_rng(43)
    widths_x, widths_y = [30, 7], [12, 5, 9]
    state = _core.FactorState(2, 3)
    state.update([rng.standard_normal((40, w)) for w in widths_x], [rng.standard_normal((40, w)) for w in widths_y],
                 names(2, "x"), names(3, "y"))
    held, workspace = _core.FactorState.estimate_bytes(widths_x, widths_y)
    p = sum(widths_x) + sum(widths_y)
    assert held == pytest.approx(state.memory_bytes(), rel=0.05)
    assert held >= 8 * p * p and workspace > 0


def test_too_few_rows_and_constant_layers_raise():
    rng = np.random.default_rng(31)
    state = _core.FactorState(1, 1)
    state.update([rng.standard_normal((2, 3))], [rng.standard_normal((2, 2))], NX, NY)
    with pytest.raises(ValueError, match="CCA needs at least 3"):
        state.canonical_correlations(NX, NY)
    with pytest.raises(ValueError, match="debiased CKA needs at least 4"):
        state.cka(True, NX, NY)
    const = _core.FactorState(1, 1)
    const.update([np.ones((20, 3))], [rng.standard_normal((20, 2))], NX, NY)
    with pytest.raises(ValueError, match="zero variance"):
        const.cca_statistic("mean", 0.0, True, NX, NY)
    with pytest.raises(ValueError, match="zero variance"):
        const.procrustes_distance(False, NX, NY)
    wide = _core.FactorState(1, 1)
    wide.update([rng.standard_normal((10, 12))], [rng.standard_normal((10, 2))], NX, NY)
    with pytest.raises(ValueError, match="trivially 1"):
        wide.cca_statistic("mean", 0.0, True, NX, NY)


# -- the torch state --------------------------------------------------------------------------------------


def test_torch_state_on_cpu_tensors_equals_the_cpp_state():
    torch = pytest.importorskip("torch")
    from reprsim.torch._tsqr import DeviceFactorState

    rng = np.random.default_rng(37)
    n = 700
    xs = [related(n, 6, 2, 1e6, "mixed", rng)[0], rng.standard_normal((n, 3)) * 1e-3 + 7.0]
    ys = [xs[0][:, :4] @ rng.standard_normal((4, 5)) + rng.standard_normal((n, 5))]
    bounds = random_bounds(n, rng)
    cpp = _core.FactorState(2, 1)
    dev = DeviceFactorState(2, 1, flush_rows=64)  # several flushes and merges on the torch side
    nx, ny = names(2, "x"), names(1, "y")
    for a, b in zip(bounds[:-1], bounds[1:]):
        feed(cpp, xs, ys, a, b, nx, ny)
        dev.update([torch.from_numpy(v[a:b]) for v in xs], [torch.from_numpy(v[a:b]) for v in ys])
    d_cpp, d_dev = cpp.to_dict(), dev.to_dict()
    assert d_dev["rank_eps"] == d_cpp["rank_eps"] == np.finfo(np.float64).eps and d_cpp["n"] == d_dev["n"] == n
    # R's lower rows are determined only to ε·κ for an ill-conditioned layer: compare the Gram matrices.
    g_dev, g_cpp = d_dev["r"].T @ d_dev["r"], d_cpp["r"].T @ d_cpp["r"]
    scale = np.sqrt(np.outer(np.diag(g_cpp), np.diag(g_cpp)))
    np.testing.assert_allclose(g_dev / scale, g_cpp / scale, rtol=0, atol=1e-12)
    for key in ("mean_x", "mean_y"):
        for hi, lo, hi2, lo2 in zip(d_dev[key], d_dev[key + "_lo"], d_cpp[key], d_cpp[key + "_lo"]):
            np.testing.assert_allclose((hi - hi2) + (lo - lo2), 0.0, atol=1e-13 * np.abs(hi).max())
    for key in ("sum_d2", "sum_e2", "sum_de"):
        np.testing.assert_allclose(d_dev[key], d_cpp[key], rtol=1e-11, err_msg=key)
    core = dev.to_core()
    for stat in STATS:
        np.testing.assert_allclose(core.cca_statistic(stat, 0.0, True, nx, ny), cpp.cca_statistic(stat, 0.0, True, nx, ny),
                                   rtol=1e-9, err_msg=stat)
    for debiased in (False, True):
        np.testing.assert_allclose(core.cka(debiased, nx, ny), cpp.cka(debiased, nx, ny), rtol=1e-11)
    merged = dev.merged(dev)
    assert merged.n_seen == 2 * n
    np.testing.assert_allclose(merged.to_core().cka(True, nx, ny), cpp.merged(cpp).cka(True, nx, ny), rtol=1e-11)
    with pytest.raises(ValueError, match="NaN"):
        dev.update([torch.full((3, 6), float("nan"), dtype=torch.float64), torch.zeros(3, 3)],
                   [torch.zeros(3, 5)])
    # float32 batches: the float32 rank rule on both sides.
    cpp32, dev32 = _core.FactorState(2, 1), DeviceFactorState(2, 1)
    x32 = [v.astype(np.float32) for v in xs]
    y32 = [v.astype(np.float32) for v in ys]
    feed(cpp32, x32, y32, 0, n, nx, ny)
    dev32.update([torch.from_numpy(v) for v in x32], [torch.from_numpy(v) for v in y32])
    assert dev32.to_dict()["rank_eps"] == cpp32.to_dict()["rank_eps"] == np.finfo(np.float32).eps
    np.testing.assert_allclose(dev32.to_core().canonical_correlations(nx, ny)[1],
                               cpp32.canonical_correlations(nx, ny)[1], rtol=0, atol=1e-10)
