"""StreamingSimilarity and minibatch CKA: streamed values equal the in-memory ones, state, bad input."""

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reprsim
from reprsim import StreamingMinibatchCKA, StreamingSimilarity, minibatch_cka

import reference as ref

RTOL = 1e-9
# Every measure an accumulator computes exactly from its moments (minibatch CKA depends on the batches).
LINEAR_METRICS = sorted(m for m, info in reprsim.METRICS.items() if info.statistics in ("moments", "factor"))
ROUTES = ["auto", "moments", "rows"]


def related_pair(rng, n=60, p1=6, p2=5, offset=3.0):
    """x and y sharing a few directions, with nonzero means (so centring matters)."""
    z = rng.standard_normal((n, 3))
    x = z @ rng.standard_normal((3, p1)) + 0.7 * rng.standard_normal((n, p1)) + offset
    y = z @ rng.standard_normal((3, p2)) + 0.7 * rng.standard_normal((n, p2)) - offset
    return x, y


def streamed(x, y, bounds, route="auto"):
    acc = StreamingSimilarity(route=route)
    for a, b in zip(bounds[:-1], bounds[1:]):
        acc.update(x[a:b], y[a:b])
    return acc


def assert_all_metrics_match(acc, x, y):
    for metric in LINEAR_METRICS:
        expected = reprsim.distance(x, y, metric=metric)
        np.testing.assert_allclose(acc.distance(metric), expected, rtol=RTOL, atol=1e-14, err_msg=metric)


# -- equality with the in-memory functions ---------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_uneven_batches_match_in_memory_for_every_linear_metric(rng, route):
    x, y = related_pair(rng)
    acc = streamed(x, y, [0, 1, 2, 9, 10, 33, 34, 59, 60], route)
    assert acc.n_seen == 60
    assert_all_metrics_match(acc, x, y)


def test_batches_of_one_row_match_in_memory(rng):
    x, y = related_pair(rng, n=30, p1=4, p2=3)
    acc = streamed(x, y, list(range(31)))
    assert_all_metrics_match(acc, x, y)


def test_similarity_methods_match_functions_of_the_same_name(rng):
    x, y = related_pair(rng)
    acc = streamed(x, y, [0, 17, 40, 60])
    np.testing.assert_allclose(acc.cka(), reprsim.cka(x, y), rtol=RTOL)
    np.testing.assert_allclose(acc.cka(debiased=True), reprsim.cka(x, y, debiased=True), rtol=RTOL)
    np.testing.assert_allclose(acc.canonical_correlations(), reprsim.canonical_correlations(x, y), rtol=RTOL)
    np.testing.assert_allclose(acc.mean_cca(), reprsim.mean_cca(x, y), rtol=RTOL)
    np.testing.assert_allclose(acc.mean_sq_cca(), reprsim.mean_sq_cca(x, y), rtol=RTOL)
    for conv in ("x", "y", "smaller"):
        np.testing.assert_allclose(acc.pwcca(convention=conv), reprsim.pwcca(x, y, convention=conv), rtol=RTOL)
    for conv in ("variance", "singular_values"):
        for v in (0.5, 0.9, 0.99, 1.0):
            np.testing.assert_allclose(
                acc.svcca(variance=v, convention=conv), reprsim.svcca(x, y, variance=v, convention=conv), rtol=RTOL
            )
    np.testing.assert_allclose(acc.procrustes_distance(), reprsim.procrustes_distance(x, y), rtol=RTOL)
    np.testing.assert_allclose(
        acc.procrustes_distance(angular=True), reprsim.procrustes_distance(x, y, angular=True), rtol=RTOL
    )


def test_streamed_values_match_independent_numpy_formulas(rng):
    x, y = related_pair(rng, n=40)
    acc = streamed(x, y, [0, 5, 6, 23, 40])
    np.testing.assert_allclose(acc.cka(), ref.cka(x, y), rtol=1e-10)
    np.testing.assert_allclose(acc.cka(debiased=True), ref.cka(x, y, debiased=True), rtol=1e-10)
    np.testing.assert_allclose(acc.canonical_correlations(), ref.canonical_correlations(x, y), rtol=1e-10)
    np.testing.assert_allclose(acc.procrustes_distance(), ref.procrustes(x, y), rtol=1e-10)
    np.testing.assert_allclose(acc.pwcca(), ref.pwcca(x, y), rtol=1e-10)
    np.testing.assert_allclose(acc.svcca(variance=0.9), ref.svcca(x, y, keep=0.9), rtol=1e-10)


def test_large_offset_does_not_spoil_centring(rng):
    # Means 1e6 times the spread: summing raw products and subtracting the mean afterwards would lose
    # about 12 digits here.
    x, y = related_pair(rng, n=50, offset=1e6)
    acc = streamed(x, y, [0, 7, 8, 30, 50])
    assert_all_metrics_match(acc, x, y)


def test_float32_batches_are_accumulated_in_float64(rng):
    # The moments and the factor accumulate float32 batches in float64 (the rows route is the in-memory
    # computation on the kept rows: float32 products for CKA there, as reprsim.cka on float32 arrays).
    x, y = related_pair(rng, n=40)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    acc = streamed(x32, y32, [0, 13, 14, 40], route="moments")
    x64, y64 = x32.astype(np.float64), y32.astype(np.float64)
    for metric in ("cka", "debiased_cka", "procrustes", "mean_cca", "pwcca"):
        np.testing.assert_allclose(acc.distance(metric), reprsim.distance(x64, y64, metric=metric), rtol=RTOL)


def test_rank_deficient_input_gets_the_in_memory_rank(rng):
    x, y = related_pair(rng, n=40, p1=4)
    x = np.column_stack([x, x[:, 0] + 2.0 * x[:, 1]])  # an exactly dependent column
    acc = streamed(x, y, [0, 11, 12, 40])
    rho = acc.canonical_correlations()
    expected = reprsim.canonical_correlations(x, y)
    assert rho.shape == expected.shape == (4,)
    np.testing.assert_allclose(rho, expected, rtol=1e-8)
    for metric in ("mean_cca", "mean_sq_cca", "pwcca", "svcca"):
        np.testing.assert_allclose(acc.distance(metric), reprsim.distance(x, y, metric=metric), rtol=1e-8)


def test_directions_below_the_cross_product_resolution_are_kept_by_the_factor(rng):
    # A direction 1e-10 of the largest is kept by the in-memory QR (tol = max(n, p)·ε ≈ 1e-14) and by the
    # streamed QR factor, but is below what float64 cross-products resolve (√(max(n, p)·ε) ≈ 1e-7).
    x, y = related_pair(rng, n=40, p1=4, p2=6)
    x = np.column_stack([x, x[:, 0] + 1e-10 * rng.standard_normal(40)])
    assert reprsim.canonical_correlations(x, y).shape == (5,)
    # The QR factor keeps it, like the in-memory path; float64 moments cannot.
    assert streamed(x, y, [0, 40], route="moments").canonical_correlations().shape == (5,)
    moments = StreamingSimilarity(route="moments", metrics=["cka"]).update(x, y)._st()
    from reprsim._streaming import _StateSet

    rho = _StateSet("factor", moments, ["x"], ["y"]).pair(0, 0).correlations()
    assert rho.shape == (4,)


def test_wide_input_with_rank_reaching_n_minus_1_is_refused_like_in_memory(rng):
    x = rng.standard_normal((8, 10))
    y = rng.standard_normal((8, 3))
    acc = streamed(x, y, [0, 3, 8])
    with pytest.raises(ValueError, match="trivially 1"):
        reprsim.mean_cca(x, y)
    with pytest.raises(ValueError, match="trivially 1"):
        acc.mean_cca()
    # Procrustes and CKA are defined for p > n and still agree.
    np.testing.assert_allclose(acc.distance("procrustes"), reprsim.distance(x, y, "procrustes"), rtol=RTOL)
    np.testing.assert_allclose(acc.cka(), reprsim.cka(x, y), rtol=RTOL)


@st.composite
def splits_and_merge_tree(draw):
    n = draw(st.integers(12, 40))
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=min(8, n - 1))))
    bounds = [0, *cuts, n]
    n_chunks = len(bounds) - 1
    # A random merge tree: repeatedly merge two neighbouring partial results, at a drawn position.
    order = [draw(st.integers(0, k - 2)) for k in range(n_chunks, 1, -1)]
    # Some chunks are built by updates into one accumulator, others each into their own.
    grouped = draw(st.lists(st.booleans(), min_size=n_chunks, max_size=n_chunks))
    p1 = draw(st.integers(1, 5))
    p2 = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    routes = draw(st.lists(st.sampled_from(ROUTES), min_size=n_chunks, max_size=n_chunks))
    return n, bounds, order, grouped, p1, p2, seed, routes


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(splits_and_merge_tree())
def test_any_batch_split_and_merge_tree_matches_in_memory(case):
    n, bounds, order, grouped, p1, p2, seed, routes = case
    rng = np.random.default_rng(seed)
    x, y = related_pair(rng, n=n, p1=p1, p2=p2, offset=rng.uniform(-5, 5))
    parts = []
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        if grouped[k] and parts:
            parts[-1].update(x[a:b], y[a:b])  # keeps row order: the last part ends at a
        else:
            parts.append(StreamingSimilarity(route=routes[k]).update(x[a:b], y[a:b]))
    for pos in order:
        if len(parts) == 1:
            break
        pos = min(pos, len(parts) - 2)
        merged = parts[pos].merge(parts[pos + 1])
        parts[pos : pos + 2] = [merged]
    (acc,) = parts
    assert acc.n_seen == n
    assert_all_metrics_match(acc, x, y)


def test_merge_order_does_not_matter_and_leaves_the_other_unchanged(rng):
    x, y = related_pair(rng)
    a = StreamingSimilarity().update(x[:20], y[:20])
    b = StreamingSimilarity().update(x[20:], y[20:])
    b_before = b.state()
    ab = pickle.loads(pickle.dumps(a)).merge(b)
    ba = pickle.loads(pickle.dumps(b)).merge(a)
    for key, value in b.state().items():
        np.testing.assert_array_equal(value, b_before[key])
    for metric in LINEAR_METRICS:
        np.testing.assert_allclose(ab.distance(metric), ba.distance(metric), rtol=RTOL)
    np.testing.assert_allclose(ab.cka(), reprsim.cka(x, y), rtol=RTOL)


def test_merging_an_empty_accumulator_changes_nothing(rng):
    x, y = related_pair(rng)
    acc = StreamingSimilarity().update(x, y)
    acc.merge(StreamingSimilarity())
    empty = StreamingSimilarity().merge(acc)
    np.testing.assert_allclose(empty.cka(), reprsim.cka(x, y), rtol=RTOL)
    np.testing.assert_allclose(acc.cka(), reprsim.cka(x, y), rtol=RTOL)


# -- several layers ---------------------------------------------------------------------------------


def test_all_pairs_of_layers_match_pairwise_distances(rng):
    x, y = related_pair(rng, n=50, p1=6, p2=5)
    xs = [x, x[:, :3] ** 2, x[:, 2:]]
    ys = [y, np.tanh(y[:, :4])]
    acc = StreamingSimilarity(layers_x=3, layers_y=2)
    for a, b in ((0, 1), (1, 20), (20, 21), (21, 50)):
        acc.update([v[a:b] for v in xs], [v[a:b] for v in ys])
    for metric in LINEAR_METRICS:
        got = acc.distance(metric)
        assert got.shape == (3, 2)
        np.testing.assert_allclose(got, reprsim.pairwise_distances(xs, ys, metric=metric), rtol=RTOL, err_msg=metric)
        np.testing.assert_allclose(acc.measure(metric), reprsim.pairwise(xs, ys, metric=metric), rtol=RTOL,
                                   err_msg=metric)
    rho = acc.canonical_correlations()
    assert rho.shape == (3, 2)
    np.testing.assert_allclose(rho[2, 1], reprsim.canonical_correlations(xs[2], ys[1]), rtol=RTOL)


def test_all_pairs_state_round_trips_and_pickles(rng):
    x, y = related_pair(rng, n=30)
    for metrics, fields in ((["cka", "procrustes"], {"layers", "cxy[1,0]", "mean_x[1]", "sum_ye[1]"}),
                            (None, {"layers", "r", "mean_x[1]", "mean_x_lo[1]", "sum_ye[1]", "sum_de[1,0]"}),
                            (None, {"layers", "rows_x[1]", "rows_y[0]", "route"})):
        route = "rows" if "rows_x[1]" in fields else "moments"
        acc = StreamingSimilarity(layers_x=2, layers_y=2, metrics=metrics, route=route)
        acc.update([x, x[:, :2]], [y, y[:, 1:]])
        state = acc.state()
        assert fields <= set(state), sorted(state)
        again = StreamingSimilarity.from_state(state)
        np.testing.assert_array_equal(again.cka(debiased=True), acc.cka(debiased=True))
        name = "procrustes" if metrics else "pwcca"
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(acc)).distance(name), acc.distance(name))


# -- state ----------------------------------------------------------------------------------------


def test_state_fields_are_the_documented_moments(rng):
    x, y = related_pair(rng, n=25, p1=3, p2=4)
    acc = StreamingSimilarity(metrics=["cka"], route="moments")
    for a, b in ((0, 4), (4, 5), (5, 25)):
        acc.update(x[a:b], y[a:b])
    s = acc.state()
    xc, yc = x - x.mean(0), y - y.mean(0)
    d, e = np.sum(xc**2, axis=1), np.sum(yc**2, axis=1)
    expected = {
        "n": 25.0,
        "mean_x": x.mean(0),
        "mean_y": y.mean(0),
        "cxx": xc.T @ xc,
        "cyy": yc.T @ yc,
        "cxy": xc.T @ yc,
        "sum_d2": d @ d,
        "sum_e2": e @ e,
        "sum_de": d @ e,
        "sum_xd": xc.T @ d,
        "sum_xe": xc.T @ e,
        "sum_yd": yc.T @ d,
        "sum_ye": yc.T @ e,
        "rank_eps": np.finfo(np.float64).eps,
    }
    assert set(s) == set(expected)
    for key, value in expected.items():
        assert s[key].dtype == np.float64
        np.testing.assert_allclose(s[key], value, rtol=1e-10, atol=1e-10 * np.max(np.abs(value)), err_msg=key)


def test_state_round_trip_and_pickle_give_identical_values(rng):
    x, y = related_pair(rng)
    acc = streamed(x, y, [0, 31, 60])
    again = StreamingSimilarity.from_state(acc.state())
    unpickled = pickle.loads(pickle.dumps(acc))
    for metric in LINEAR_METRICS:
        assert again.distance(metric) == acc.distance(metric)
        assert unpickled.distance(metric) == acc.distance(metric)
    # and the restored accumulator keeps accumulating
    more = rng.standard_normal((5, 6)), rng.standard_normal((5, 5))
    unpickled.update(*more)
    acc.update(*more)
    assert unpickled.cka() == acc.cka()


def test_reset_and_empty_state(rng):
    x, y = related_pair(rng)
    acc = streamed(x, y, [0, 60])
    acc.reset()
    assert acc.n_seen == 0
    assert set(acc.state()) == {"n", "rank_eps"}
    assert set(StreamingSimilarity(route="moments").state()) == {"n", "rank_eps"}
    assert StreamingSimilarity.from_state(acc.state()).n_seen == 0
    acc.update(x[:, :2], y[:, :1])  # a reset accumulator accepts new widths
    assert acc.n_seen == 60


def test_from_state_rejects_malformed_states(rng):
    x, y = related_pair(rng)
    state = StreamingSimilarity(metrics=["cka"], route="moments").update(x, y).state()
    with pytest.raises(ValueError, match="missing the field 'cxy'"):
        StreamingSimilarity.from_state({k: v for k, v in state.items() if k != "cxy"})
    with pytest.raises(ValueError, match=r"state field 'cxx' has shape \(3, 3\), but its layer's mean has 6"):
        StreamingSimilarity.from_state({**state, "cxx": np.eye(3)})
    with pytest.raises(ValueError, match="NaN or Inf"):
        StreamingSimilarity.from_state({**state, "sum_de": np.nan})
    with pytest.raises(ValueError, match="non-negative integer"):
        StreamingSimilarity.from_state({**state, "n": 2.5})
    with pytest.raises(TypeError):
        StreamingSimilarity.from_state([1, 2])


def test_from_state_refuses_statistics_no_data_can_have(rng):
    x, y = related_pair(rng)
    state = StreamingSimilarity(metrics=["cka"], route="moments").update(x, y).state()
    assert StreamingSimilarity.from_state(state).cka() == pytest.approx(reprsim.cka(x, y), rel=RTOL)
    cases = {
        # A cross-moment scaled by 1e3 gave CKA = 390 949.66.
        r"'cxy' breaks the Cauchy–Schwarz inequality": {"cxy": state["cxy"] * 1e3},
        r"'cxx' has a negative diagonal entry": {"cxx": state["cxx"] - np.diag(np.diag(state["cxx"])) * 2},
        r"'cxx' is not symmetric": {"cxx": state["cxx"] + np.triu(np.ones_like(state["cxx"]), 1)},
        r"'sum_d2' = .* is below": {"sum_d2": -1.0},
        r"'rank_eps' must be 0, the float32 epsilon": {"rank_eps": 1e-3},
        r"'n' must be a non-negative integer": {"n": -3.0},
        # Every entry within Cauchy–Schwarz, every correlation 0.9 with random signs: no data has these.
        r"are not jointly positive semidefinite": {"cxy": 0.9 * rng.choice([-1.0, 1.0], size=state["cxy"].shape)
                                                    * np.sqrt(np.outer(np.diag(state["cxx"]), np.diag(state["cyy"])))},
    }
    for message, change in cases.items():
        with pytest.raises(ValueError, match=message):
            StreamingSimilarity.from_state({**state, **change})
    # The QR-factor state: R upper triangular with a non-negative diagonal, sums consistent with it.
    state = StreamingSimilarity(route="moments").update(x, y).state()
    assert StreamingSimilarity.from_state(state).pwcca() == pytest.approx(reprsim.pwcca(x, y), rel=RTOL)
    r = state["r"]
    for change in ({"r": r + np.tril(np.ones_like(r), -1)}, {"r": r * np.where(np.eye(len(r)), -1.0, 1.0)},
                   {"sum_d2": -1.0}, {"r": r[:-1, :-1]}, {"n": -3.0}):
        with pytest.raises(ValueError, match=r"state"):
            StreamingSimilarity.from_state({**state, **change})


def test_factor_state_holds_the_moments_as_rtr(rng):
    x, y = related_pair(rng, n=50, p1=3, p2=4)
    acc = StreamingSimilarity(route="moments")
    for a, b in ((0, 7), (7, 8), (8, 50)):
        acc.update(x[a:b], y[a:b])
    s = acc.state()
    xc, yc = x - x.mean(0), y - y.mean(0)
    rtr = s["r"].T @ s["r"]
    np.testing.assert_allclose(rtr, np.block([[xc.T @ xc, xc.T @ yc], [yc.T @ xc, yc.T @ yc]]), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(s["mean_x"] + s["mean_x_lo"], x.mean(0), rtol=1e-14)


# -- bad input ------------------------------------------------------------------------------------


def _bad_batches(rng):
    x, y = rng.standard_normal((5, 6)), rng.standard_normal((5, 5))
    nan_x = x.copy()
    nan_x[2, 3] = np.nan
    inf_y = y.copy()
    inf_y[0, 0] = np.inf
    return {
        "width of x changes": ((x[:, :4], y), "earlier batches had 6 features"),
        "width of y changes": ((x, y[:, :2]), "earlier batches had 5 features"),
        "n differs between x and y": ((x, y[:4]), "same number of rows"),
        "NaN": ((nan_x, y), "NaN or Inf"),
        "Inf": ((x, inf_y), "NaN or Inf"),
        "empty": ((x[:0], y[:0]), "empty"),
        "3-D": ((x[None], y), "2-D"),
    }


@pytest.mark.parametrize(
    "case",
    ["width of x changes", "width of y changes", "n differs between x and y", "NaN", "Inf", "empty", "3-D"],
)
def test_bad_batch_raises_and_leaves_the_state_unchanged(rng, case):
    x, y = related_pair(rng, n=20)
    acc = StreamingSimilarity().update(x, y)
    before = acc.state()
    (bx, by), message = _bad_batches(rng)[case]
    with pytest.raises(ValueError, match=message):
        acc.update(bx, by)
    after = acc.state()
    assert set(after) == set(before)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    np.testing.assert_allclose(acc.cka(), reprsim.cka(x, y), rtol=RTOL)


def test_nan_in_the_last_layer_leaves_every_pair_unchanged(rng):
    x, y = related_pair(rng, n=20)
    acc = StreamingSimilarity(layers_x=2, layers_y=2).update([x, x[:, :2]], [y, y[:, :3]])
    before = acc.state()
    bad = y[:5, :3].copy()
    bad[4, 2] = np.inf
    with pytest.raises(ValueError, match=r"y\[1\] contains NaN or Inf"):
        acc.update([x[:5], x[:5, :2]], [y[:5], bad])
    for key, value in acc.state().items():
        np.testing.assert_array_equal(value, before[key])


def test_bad_layer_lists_raise(rng):
    acc = StreamingSimilarity(layers_x=2, layers_y=1)
    x = rng.standard_normal((5, 3))
    with pytest.raises(TypeError, match="list of 2 arrays"):
        acc.update(x, [x])
    with pytest.raises(ValueError, match="must hold 2 arrays"):
        acc.update([x], [x])
    with pytest.raises(ValueError, match=r"x\[1\] has shape \(4, 3\)"):
        acc.update([x, x[:4]], [x])
    with pytest.raises(TypeError, match="both layers_x and layers_y"):
        StreamingSimilarity(layers_x=2)
    with pytest.raises(ValueError, match="positive integer"):
        StreamingSimilarity(layers_x=0, layers_y=1)
    with pytest.raises(ValueError, match="different layers"):
        acc.merge(StreamingSimilarity())


def test_merge_of_different_widths_raises(rng):
    a = StreamingSimilarity().update(rng.standard_normal((5, 3)), rng.standard_normal((5, 2)))
    b = StreamingSimilarity().update(rng.standard_normal((5, 4)), rng.standard_normal((5, 2)))
    with pytest.raises(ValueError, match="width"):
        a.merge(b)
    with pytest.raises(TypeError, match="StreamingSimilarity"):
        a.merge("b")


@pytest.mark.parametrize(
    ("rows", "call", "message"),
    [
        (0, lambda a: a.cka(), "needs at least 2"),
        (1, lambda a: a.cka(), "needs at least 2"),
        (3, lambda a: a.cka(debiased=True), "needs at least 4"),
        (2, lambda a: a.mean_cca(), "needs at least 3"),
        (1, lambda a: a.procrustes_distance(), "needs at least 2"),
        (3, lambda a: a.distance("debiased_cka"), "needs at least 4"),
    ],
)
def test_too_few_rows_raise(rng, rows, call, message):
    acc = StreamingSimilarity()
    if rows:
        acc.update(rng.standard_normal((rows, 3)), rng.standard_normal((rows, 2)))
    with pytest.raises(ValueError, match=message):
        call(acc)


def test_constant_representation_raises_like_in_memory(rng):
    x = np.ones((10, 3))
    y = rng.standard_normal((10, 2))
    acc = StreamingSimilarity().update(x[:4], y[:4]).update(x[4:], y[4:])
    for call in (acc.cka, acc.mean_cca, acc.procrustes_distance):
        with pytest.raises(ValueError, match="zero variance"):
            call()


def test_unknown_metric_and_options_raise(rng):
    x, y = related_pair(rng)
    acc = streamed(x, y, [0, 60], route="moments")
    with pytest.raises(ValueError, match="unknown metric"):
        acc.distance("kernel_cka")
    with pytest.raises(ValueError, match=r"'rbf_cka' needs every pair of rows .* route='rows'"):
        acc.distance("rbf_cka")
    with pytest.raises(TypeError, match="takes no options"):
        acc.distance("ensd", debiased=True)
    rows = streamed(x, y, [0, 30, 60], route="rows")
    assert rows.measure("rbf_cka") == pytest.approx(reprsim.cka(x, y, kernel="rbf"), rel=1e-12)
    with pytest.raises(ValueError, match="convention"):
        acc.pwcca(convention="z")


# -- minibatch CKA ----------------------------------------------------------------------------------


def np_minibatch_cka(x, y, batch_size, debiased):
    return ref.minibatch_cka(x, y, batch_size, debiased)


@pytest.mark.parametrize("debiased", [True, False])
@pytest.mark.parametrize(("n", "batch_size"), [(60, 12), (65, 12), (67, 7), (30, 40)])
def test_minibatch_cka_matches_numpy_reference(rng, debiased, n, batch_size):
    x, y = related_pair(rng, n=n, p1=6, p2=9)  # widths on both sides of the batch size
    np.testing.assert_allclose(
        minibatch_cka(x, y, batch_size=batch_size, debiased=debiased),
        np_minibatch_cka(x, y, batch_size, debiased),
        rtol=1e-10,
    )


def test_minibatch_cka_with_one_batch_equals_full_data_cka(rng):
    x, y = related_pair(rng, n=40)
    np.testing.assert_allclose(minibatch_cka(x, y, batch_size=40), reprsim.cka(x, y, debiased=True), rtol=1e-10)
    np.testing.assert_allclose(
        minibatch_cka(x, y, batch_size=100, debiased=False), reprsim.cka(x, y), rtol=1e-10
    )


def test_minibatch_cka_differs_from_full_data_cka(rng):
    x, y = related_pair(rng, n=120)
    assert abs(minibatch_cka(x, y, batch_size=10, debiased=False) - reprsim.cka(x, y)) > 1e-3


def test_streaming_minibatch_cka_merges_and_pickles_to_the_function_value(rng):
    x, y = related_pair(rng, n=60)
    a, b = StreamingMinibatchCKA(), StreamingMinibatchCKA()
    for s in range(0, 30, 10):
        a.update(x[s : s + 10], y[s : s + 10])
    for s in range(30, 60, 10):
        b.update(x[s : s + 10], y[s : s + 10])
    merged = pickle.loads(pickle.dumps(b)).merge(a)
    assert merged.n_batches == 6 and merged.n_seen == 60
    np.testing.assert_allclose(merged.result(), minibatch_cka(x, y, batch_size=10), rtol=1e-12)
    np.testing.assert_allclose(
        StreamingMinibatchCKA.from_state(merged.state()).result(), merged.result(), rtol=0
    )


def test_streaming_minibatch_cka_for_all_pairs_of_layers(rng):
    x, y = related_pair(rng, n=40)
    xs, ys = [x, x[:, :2]], [y, y**2, x]
    acc = StreamingMinibatchCKA(layers_x=2, layers_y=3, debiased=False)
    for s in range(0, 40, 8):
        acc.update([v[s : s + 8] for v in xs], [v[s : s + 8] for v in ys])
    got = acc.result()
    assert got.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(got[i, j], np_minibatch_cka(xs[i], ys[j], 8, False), rtol=1e-10)


def test_minibatch_cka_bad_input(rng):
    x, y = related_pair(rng, n=62)
    with pytest.raises(ValueError, match="last minibatch of 2 rows"):
        minibatch_cka(x, y, batch_size=10)
    with pytest.raises(ValueError, match="batch_size must be an integer of at least 4"):
        minibatch_cka(x, y, batch_size=3)
    with pytest.raises(ValueError, match="same number of samples"):
        minibatch_cka(x, y[:-1], batch_size=10)
    acc = StreamingMinibatchCKA().update(x[:10], y[:10])
    before = acc.state()
    with pytest.raises(ValueError, match="needs at least 4 rows"):
        acc.update(x[:3], y[:3])
    with pytest.raises(ValueError, match="earlier batches had 6 features"):
        acc.update(x[:10, :2], y[:10])
    with pytest.raises(ValueError, match="NaN or Inf"):
        acc.update(np.full((5, 6), np.nan), y[:5])
    for key, value in acc.state().items():
        np.testing.assert_array_equal(value, before[key])
    with pytest.raises(ValueError, match="no minibatch"):
        StreamingMinibatchCKA().result()
    with pytest.raises(ValueError, match="not positive"):
        StreamingMinibatchCKA(debiased=False).update(np.ones((5, 2)), y[:5]).result()


# -- minibatch states: every field checked, naming it --------------------------------------------------


def _mb_state(rng, debiased=True):
    x, y = related_pair(rng, n=40)
    acc = StreamingMinibatchCKA(debiased=debiased)
    for s in range(0, 40, 10):
        acc.update(x[s : s + 10], y[s : s + 10])
    return acc.state()


def test_minibatch_from_state_refuses_states_no_minibatches_can_have(rng):
    state = _mb_state(rng)
    assert StreamingMinibatchCKA.from_state(state).result() == StreamingMinibatchCKA.from_state(state).result()
    biased = _mb_state(rng, debiased=False)
    cases = {
        r"state field 'n' must be a non-negative integer count, got -3": (state, {"n": -3.0}),
        r"state field 'n' must be a non-negative integer count, got 2.5": (state, {"n": 2.5}),
        r"state field 'batches' = 4 does not fit n = 12 rows": (state, {"n": 12.0}),
        r"state field 'batches' must be a non-negative integer": (state, {"batches": -1.0}),
        r"state field 'batches' = 0 does not fit n = 40": (state, {"batches": 0.0}),
        r"state field 'hsic_xy' has shape \(2, 1\), expected \(1, 1\)": (state, {"hsic_xy": np.ones((2, 1))}),
        r"state field 'hsic_xx' has shape \(2,\)": (state, {"hsic_xx": np.ones(2)}),
        r"state field 'hsic_yy' contains NaN": (state, {"hsic_yy": np.array([np.nan])}),
        r"state field 'hsic_xx' holds a negative self term": (state, {"hsic_xx": -state["hsic_xx"]}),
        r"state field 'hsic_yy' holds a negative self term": (biased, {"hsic_yy": -biased["hsic_yy"]}),
        r"state field 'hsic_xy' breaks the Cauchy–Schwarz inequality": (state, {"hsic_xy": 10 * state["hsic_xx"][:, None]
                                                                               + 10 * state["hsic_yy"]}),
        r"state field 'debiased' must be 1 \(debiased\) or 0": (state, {"debiased": 0.5}),
        r"state field 'widths_x' must hold 1 positive integer": (state, {"widths_x": np.array([0.0])}),
        r"state field 'widths_y' must hold 1 positive integer": (state, {"widths_y": np.array([2.5])}),
        r"state field 'layers' must be two positive integers": (state, {"layers": np.array([1.0, -1.0])}),
        r"state is missing the field 'hsic_xx'": (state, {"hsic_xx": None}),
    }
    for message, (base, change) in cases.items():
        bad = {k: v for k, v in {**base, **change}.items() if v is not None}
        with pytest.raises(ValueError, match=message):
            StreamingMinibatchCKA.from_state(bad)
    with pytest.raises(TypeError, match="state must be a dict"):
        StreamingMinibatchCKA.from_state([("n", 1)])


def test_declared_minibatch_terms_of_a_streaming_state_are_checked(rng):
    x, y = related_pair(rng, n=40)
    acc = StreamingSimilarity(metrics=["cka", "minibatch_cka"])
    for s in range(0, 40, 10):
        acc.update(x[s : s + 10], y[s : s + 10])
    state = acc.state()
    assert StreamingSimilarity.from_state(state).measure("minibatch_cka") == acc.measure("minibatch_cka")
    cases = {
        r"state field 'mb_n' = 30 must equal the state's n = 40": {"mb_n": 30.0},
        r"state field 'mb_n' must be a non-negative integer count": {"mb_n": -40.0},
        r"state field 'mb0_xx' holds a negative self term": {"mb0_xx": -state["mb0_xx"]},
        r"state field 'mb_yy' holds a negative self term": {"mb_yy": -state["mb_yy"]},
        r"state field 'mb_xy' has shape \(1, 2\)": {"mb_xy": np.ones((1, 2))},
        r"state field 'mb0_batches' = 40 does not fit n = 40": {"mb0_batches": 40.0},
        r"state is missing the field 'mb0_xy'": {"mb0_xy": None},
        r"state field 'route' must be 1 \(rows kept\), 2 \(QR factor\) or 0": {"route": 3.0},
    }
    for message, change in cases.items():
        bad = {k: v for k, v in {**state, **change}.items() if v is not None}
        with pytest.raises(ValueError, match=message):
            StreamingSimilarity.from_state(bad)


def test_minibatch_result_is_in_the_estimators_range(rng):
    x, y = related_pair(rng, n=40)
    for debiased in (True, False):
        acc = StreamingMinibatchCKA(debiased=debiased)
        for s in range(0, 40, 10):
            acc.update(x[s : s + 10], 2.0 * x[s : s + 10])  # equal up to scale: 1 within rounding
        value = acc.result()
        assert value == pytest.approx(1.0, abs=1e-12) and value <= 1.0


# -- an interrupted update, merge or flush leaves the accumulator as it was ----------------------------


def _states_equal(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("case", ["buffer flushed by the update", "large batch", "rows turned into moments"])
def test_update_interrupted_in_its_heavy_part_changes_nothing(rng, monkeypatch, case):
    x, y = related_pair(rng, n=1200, p1=4, p2=3)
    if case == "rows turned into moments":
        y = np.repeat(y, 30, axis=1)  # wide: route "auto" keeps the rows until the moments are smaller
        make, first, extra = (lambda: StreamingSimilarity(metrics=["cka"])), [(0, 20)], (20, 120)
    else:
        # Float64 moments: their batches are turned into moments outside the lock (the QR factor's update runs
        # with Ctrl-C held back, so an interruption arrives after it, with the batch kept whole).
        make = lambda: StreamingSimilarity(route="moments", metrics=["cka", "procrustes", "minibatch_cka"])  # noqa: E731
        first = [(s, s + 100) for s in range(0, 1000, 100)]  # the last 400 rows wait in the buffer
        extra = (1000, 1150) if case == "buffer flushed by the update" else (1000, 1200)

    def feed(acc):
        for a, b in first:
            acc.update(x[a:b], y[a:b])
        return acc

    acc = feed(make())

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(StreamingSimilarity, "_moments_of", interrupted)
    with pytest.raises(KeyboardInterrupt):
        acc.update(x[extra[0] : extra[1]], y[extra[0] : extra[1]])
    monkeypatch.undo()
    assert acc.n_seen == first[-1][1]
    assert _states_equal(acc.state(), feed(make()).state())


def test_merge_interrupted_before_its_commit_changes_nothing(rng, monkeypatch):
    x, y = related_pair(rng, n=200)
    a = StreamingSimilarity(route="moments").update(x[:100], y[:100])
    b = StreamingSimilarity(route="moments").update(x[100:], y[100:])
    a.cka(), b.cka()  # flushed
    before = a.state()
    from reprsim import _streaming

    class Interrupting:
        def __enter__(self):
            raise KeyboardInterrupt

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(_streaming, "deferred_interrupt", lambda: Interrupting())
    with pytest.raises(KeyboardInterrupt):
        a.merge(b)
    monkeypatch.undo()
    assert _states_equal(a.state(), before)
    assert a.merge(b).cka() == pytest.approx(reprsim.cka(x, y), rel=RTOL)


def test_deferred_interrupt_delivers_ctrl_c_after_the_block():
    import os
    import signal

    from reprsim._interrupt import deferred_interrupt

    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the signal is handled here, between bytecodes, and held back
                pass
            done.append(True)
    assert done == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt() as pending:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
            pending.check()  # before committing: raise now
            done.append(False)
    assert done == [True]
