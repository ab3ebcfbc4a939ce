"""Shape metrics, NBS/Bures, GULP, neuron matching and linear predictivity: values against independent float64
implementations (tests/reference.py), properties, every path (pairwise, streaming, device, inference) and bad input.
"""

import itertools
import math
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reprsim
import reference as ref

SEEDS = st.integers(0, 2**32 - 1)
NEW = ["shape", "nbs", "bures", "gulp", "permutation", "soft_matching", "predictivity"]
# (n, p1, p2): n > p, p1 ≠ p2, widths above n.
SHAPES = [(60, 5, 9), (200, 30, 30), (80, 70, 20), (40, 60, 75), (25, 100, 3)]
DTYPES = [(np.float64, 1e-10), (np.float32, 1e-4)]


def close(actual, expected, rtol):
    assert actual == pytest.approx(expected, rel=rtol, abs=rtol), (actual, expected)


def orthogonal(rng, p):
    q, r = np.linalg.qr(rng.standard_normal((p, p)))
    return q * np.sign(np.diag(r))


def rank_deficient(rng, n=120):
    """Dead units, duplicated units and exactly dependent columns, as trained networks have."""
    x, y = ref.random_pair(rng, n, 8, 10)
    x = np.hstack([x, x[:, :2], np.full((n, 2), 3.0), x[:, :1] - 2.0 * x[:, 3:4]])
    y = np.hstack([y, np.zeros((n, 1)), y[:, :3] + y[:, 3:6]])
    return x, y


# -- values against the references --------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,rtol", DTYPES)
@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("form", ["angular", "euclidean"])
def test_shape_matches_reference(shape, dtype, rtol, alpha, form):
    x, y = ref.random_pair(np.random.default_rng(sum(shape)), *shape, dtype=dtype)
    expected = ref.shape(x.astype(np.float64), y.astype(np.float64), alpha, form)
    got = reprsim.shape_distance(x, y, alpha=alpha, form=form)
    if form == "angular":
        # arccos is steep at 1: a rounding error ε in the cosine moves the angle by √(2ε) (2e-8 in float64, as
        # for angular Procrustes; for float32 products ~5e-4 near 0). Here p > n with α = 0 gives two equal
        # subspaces, an angle of 0.
        assert got == pytest.approx(expected, rel=rtol, abs=2e-7 if dtype == np.float64 else 1e-3)
    else:
        close(got, expected, rtol)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,rtol", DTYPES)
def test_nbs_and_bures_match_reference(shape, dtype, rtol):
    x, y = ref.random_pair(np.random.default_rng(sum(shape) + 1), *shape, dtype=dtype)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    close(reprsim.nbs(x, y), ref.nbs(x64, y64), rtol)
    close(reprsim.bures_distance(x, y), ref.bures(x64, y64), rtol)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,rtol", DTYPES)
@pytest.mark.parametrize("lam", [0.0, 1e-3, 1e-2, 1.0])
def test_gulp_matches_reference(shape, dtype, rtol, lam):
    x, y = ref.random_pair(np.random.default_rng(sum(shape) + 2), *shape, dtype=dtype)
    got, expected = reprsim.gulp_distance(x, y, lam=lam), ref.gulp(x.astype(np.float64), y.astype(np.float64), lam)
    # d² is a difference of terms of the size of the ranks: it is accurate to rounding relative to them, so a
    # distance near 0 (here: λ = 0 with both inputs wider than n, the same row space) only to √ of that.
    terms = min(shape[0] - 1, shape[1]) + min(shape[0] - 1, shape[2])
    assert got**2 == pytest.approx(expected**2, rel=rtol, abs=rtol * terms)
    if expected > 1e-3:
        close(got, expected, rtol)


@pytest.mark.parametrize("shape", [(60, 5, 9), (200, 30, 30), (40, 60, 75), (30, 4, 1)])
@pytest.mark.parametrize("dtype,rtol", DTYPES)
@pytest.mark.parametrize("form", ["angular", "euclidean"])
def test_permutation_distance_matches_reference(shape, dtype, rtol, form):
    x, y = ref.random_pair(np.random.default_rng(sum(shape) + 3), *shape, dtype=dtype)
    expected = ref.permutation(x.astype(np.float64), y.astype(np.float64), form)
    close(reprsim.permutation_distance(x, y, form=form), expected, rtol)


def test_permutation_distance_is_the_best_matching_by_brute_force(rng):
    for p1, p2 in [(4, 4), (3, 5), (5, 2)]:
        x, y = ref.random_pair(rng, 40, p1, p2)
        xc, yc = ref.center(x), ref.center(y)
        c = xc.T @ yc
        small, big = (c, p1) if p1 <= p2 else (c.T, p2)
        best = max(sum(small[i, perm[i]] for i in range(small.shape[0]))
                   for perm in itertools.permutations(range(small.shape[1]), small.shape[0]))
        expected = math.acos(best / (np.linalg.norm(xc) * np.linalg.norm(yc)))
        close(reprsim.permutation_distance(x, y), expected, 1e-12)


@pytest.mark.parametrize("widths", [(6, 6), (4, 6), (9, 6), (3, 7), (12, 8)])
@pytest.mark.parametrize("dtype,rtol", DTYPES)
def test_soft_matching_matches_reference(widths, dtype, rtol):
    x, y = ref.random_pair(np.random.default_rng(sum(widths)), 70, *widths, dtype=dtype)
    cost = ref.soft_matching_cost(x.astype(np.float64), y.astype(np.float64))
    close(reprsim.soft_matching(x, y), 1.0 - cost, rtol)
    close(reprsim.distance(x, y, "soft_matching"), math.sqrt(2.0 * cost), rtol)


@pytest.mark.parametrize("solver", ["pot", "highs"])
def test_soft_matching_solvers_give_the_exact_optimum(rng, monkeypatch, solver):
    if solver == "pot":
        pytest.importorskip("ot")
    from reprsim import _linear_measures

    monkeypatch.setattr(_linear_measures, "_ot_solver", lambda p1, p2: solver)
    for widths in [(4, 6), (9, 6), (7, 7), (5, 3)]:
        x, y = ref.random_pair(rng, 50, *widths)
        close(reprsim.soft_matching(x, y), 1.0 - ref.soft_matching_cost(x, y), 1e-10)


PREDICTIVITY_OPTIONS = [
    {}, {"alpha": 0.0}, {"alpha": 10.0}, {"folds": 2}, {"folds": 3}, {"folds": None}, {"score": "r2"},
    {"aggregate": "mean"}, {"score": "r2", "aggregate": "mean"}, {"alpha": [0.1, 1.0, 30.0]},
    {"alpha": [100.0, 0.01, 3.0], "score": "r2", "aggregate": "mean"},
]


@pytest.mark.parametrize("options", PREDICTIVITY_OPTIONS)
@pytest.mark.parametrize("shape", [(73, 6, 9), (64, 20, 3), (40, 60, 7)])
@pytest.mark.parametrize("dtype,rtol", DTYPES)
def test_linear_predictivity_matches_reference(options, shape, dtype, rtol):
    x, y = ref.random_pair(np.random.default_rng(sum(shape)), *shape, dtype=dtype)
    ref_opts = {k: (list(v) if isinstance(v, list) else v) for k, v in options.items()}
    expected = ref.predictivity(x.astype(np.float64), y.astype(np.float64), **ref_opts)
    # Least squares with more features than training rows interpolates: the held-out predictions depend on the
    # rank decision, and float32 data differ from their float64 reading by more than 1e-4 there.
    tol = rtol if not (options.get("alpha") == 0.0 and shape[1] >= shape[0] // 2) else 1e-6
    close(reprsim.linear_predictivity(x, y, **options), expected, tol)


def test_linear_predictivity_equals_scikit_learn_ridge_and_ridgecv(rng):
    sklearn = pytest.importorskip("sklearn")
    from sklearn.linear_model import Ridge, RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict

    x, y = ref.random_pair(rng, 103, 12, 8)
    folds = KFold(5)
    # Held-out predictions of scikit-learn's Ridge(alpha), scored per target on each fold.
    pred = cross_val_predict(Ridge(alpha=3.0), x, y, cv=folds)
    fold_r = []
    for _, test in folds.split(x):
        r = [np.corrcoef(pred[test, t], y[test, t])[0, 1] for t in range(y.shape[1])]
        fold_r.append(np.median(r))
    close(reprsim.linear_predictivity(x, y, alpha=3.0), float(np.mean(fold_r)), 1e-10)
    fold_r2 = [r2_score(y[test], pred[test]) for _, test in folds.split(x)]  # uniform average over targets
    close(reprsim.linear_predictivity(x, y, alpha=3.0, score="r2", aggregate="mean"), float(np.mean(fold_r2)), 1e-10)
    # A grid: RidgeCV(cv=KFold) chooses the alpha with the best mean held-out R², best_score_ is that mean.
    alphas = [0.01, 0.3, 10.0, 300.0]
    cv = RidgeCV(alphas=alphas, cv=folds).fit(x, y)
    res = reprsim.predictivity_scores(x, y, alpha=alphas, score="r2", aggregate="mean")
    assert res.alpha == cv.alpha_
    close(res.value, cv.best_score_, 1e-10)
    assert sklearn.__version__


def test_predictivity_per_target_alpha_is_nested_cross_validation(rng):
    x, y = ref.random_pair(rng, 90, 7, 5)
    y[:, 3] += 3.0 * rng.standard_normal(90)  # a noisy target prefers a larger penalty
    alphas = [0.01, 1.0, 100.0, 1e4]
    res = reprsim.predictivity_scores(x, y, alpha=alphas, alpha_per_target=True, folds=5)
    bounds = ref.kfold_bounds(90, 5)
    for f, (a, b) in enumerate(bounds):
        train = np.r_[0:a, b:90]
        inner = [(lo, hi) for g, (lo, hi) in enumerate(bounds) if g != f]
        for t in range(5):
            # Inner cross-validation over the other folds, for this target alone.
            crit = []
            for alpha in alphas:
                s = []
                for lo, hi in inner:
                    tr = np.setdiff1d(train, np.arange(lo, hi))
                    p = ref.ridge_fit_predict(x[tr], y[tr], x[lo:hi], alpha)
                    s.append(np.corrcoef(p[:, t], y[lo:hi, t])[0, 1])
                crit.append(np.mean(s))
            best = alphas[int(np.argmax(crit))]
            assert res.alpha[f, t] == best
            p = ref.ridge_fit_predict(x[train], y[train], x[a:b], best)
            close(res.scores[f, t], np.corrcoef(p[:, t], y[a:b, t])[0, 1], 1e-10)
    close(res.value, np.mean(np.median(res.scores, axis=1)), 1e-12)
    assert res.value == reprsim.linear_predictivity(x, y, alpha=alphas, alpha_per_target=True)


def test_predictivity_dual_route_for_wide_x_equals_the_primal_fit(rng):
    # x wider than n: fitted in an n-column basis of its row space, exactly.
    x = rng.standard_normal((30, 200))
    y = x[:, :5] @ rng.standard_normal((5, 4)) + 0.3 * rng.standard_normal((30, 4))
    for alpha in (0.5, 20.0, [0.5, 20.0]):
        close(reprsim.linear_predictivity(x, y, alpha=alpha, folds=3),
              ref.predictivity(x, y, alpha=alpha if not isinstance(alpha, list) else alpha, folds=3), 1e-10)


@pytest.mark.parametrize("metric", ["shape", "gulp", "nbs", "bures", "permutation", "soft_matching", "predictivity"])
def test_rank_deficient_inputs_use_the_numerical_rank(rng, metric):
    x, y = rank_deficient(rng)
    close(reprsim.distance(x, y, metric), ref.distance(x, y, metric), 1e-9)
    if metric == "shape":
        for alpha in (0.0, 0.5):
            close(reprsim.shape_distance(x, y, alpha=alpha), ref.shape(x, y, alpha), 1e-9)
    if metric == "gulp":
        close(reprsim.gulp_distance(x, y, lam=0.0), ref.gulp(x, y, 0.0), 1e-9)


# -- relations between the measures ------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, n=st.integers(12, 70), p1=st.integers(1, 10), p2=st.integers(1, 10))
def test_relations_to_procrustes_and_cca(seed, n, p1, p2):
    x, y = ref.random_pair(np.random.default_rng(seed), n, p1, p2)
    ang = reprsim.procrustes_distance(x, y, angular=True)
    # α = 1 is angular Procrustes; NBS = 1 − procrustes/2 with reprsim's squared procrustes; Bures·√n is the
    # Euclidean shape distance at α = 1.
    assert reprsim.shape_distance(x, y) == pytest.approx(ang, abs=1e-12)
    assert reprsim.nbs(x, y) == pytest.approx(1.0 - reprsim.procrustes_distance(x, y) / 2.0, rel=1e-12, abs=1e-14)
    assert reprsim.distance(x, y, "nbs") == pytest.approx(ang, abs=1e-12)
    assert reprsim.bures_distance(x, y) * math.sqrt(n) == pytest.approx(
        reprsim.shape_distance(x, y, form="euclidean"), rel=1e-10)
    # α = 0 whitens fully: the aligned cosine is Σρ/√(rank x · rank y) over the canonical correlations; GULP with
    # λ = 0 compares the projections: d² = rank x + rank y − 2Σρ².
    if p1 + p2 < n - 2:
        rho = reprsim.canonical_correlations(x, y)
        rx, ry = np.linalg.matrix_rank(ref.center(x)), np.linalg.matrix_rank(ref.center(y))
        assert reprsim.shape_distance(x, y, alpha=0.0) == pytest.approx(
            math.acos(min(rho.sum() / math.sqrt(rx * ry), 1.0)), abs=1e-9)
        assert reprsim.gulp_distance(x, y, lam=0.0) ** 2 == pytest.approx(rx + ry - 2 * np.sum(rho**2), abs=1e-9)
    # Permutations are orthogonal maps: matching neurons can only do worse than the best rotation.
    assert reprsim.permutation_distance(x, y) >= ang - 1e-12
    if p1 == p2:  # equal widths: soft matching's optimal plan is a permutation of the neurons
        from scipy.optimize import linear_sum_assignment

        r = np.corrcoef(x.T, y.T)[:p1, p1:] if p1 > 1 else np.array([[np.corrcoef(x[:, 0], y[:, 0])[0, 1]]])
        i, j = linear_sum_assignment(r, maximize=True)
        assert reprsim.soft_matching(x, y) == pytest.approx(r[i, j].mean(), abs=1e-12)


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, n=st.integers(20, 60), p1=st.integers(1, 8), p2=st.integers(1, 8), scale=st.floats(1e-3, 1e3))
def test_new_measures_have_their_registered_invariances(seed, n, p1, p2, scale):
    rng = np.random.default_rng(seed)
    x, y = ref.random_pair(rng, n, p1, p2)
    for name in NEW:
        info = reprsim.METRICS[name]
        base = reprsim.measure(x, y, name)
        tol = {"rel": 1e-8, "abs": 1e-10}
        if "translation" in info.invariances:
            assert reprsim.measure(x + 7.0, y - 3.0, name) == pytest.approx(base, **tol), name
        if "isotropic_scaling" in info.invariances:
            assert reprsim.measure(scale * x, y / scale, name) == pytest.approx(base, **tol), name
        if "orthogonal" in info.invariances:
            assert reprsim.measure(x @ orthogonal(rng, p1), y @ orthogonal(rng, p2), name) == pytest.approx(base,
                                                                                                         **tol), name
        if "permutation" in info.invariances:
            assert reprsim.measure(x[:, rng.permutation(p1)], y[:, rng.permutation(p2)], name) == pytest.approx(
                base, **tol), name
        if info.symmetric:
            assert reprsim.measure(y, x, name) == pytest.approx(base, **tol), name
    # Predictivity: orthogonal maps of x and scaling of y (not registered, as they hold for one side only).
    assert reprsim.linear_predictivity(x @ orthogonal(rng, p1), scale * y) == pytest.approx(
        reprsim.linear_predictivity(x, y), rel=1e-8, abs=1e-10)


def test_shape_with_partial_whitening_depends_on_the_data_scale_as_in_netrep(rng):
    x, y = ref.random_pair(rng, 80, 6, 6)
    assert abs(reprsim.shape_distance(10.0 * x, y, alpha=0.5) - reprsim.shape_distance(x, y, alpha=0.5)) > 1e-3
    for alpha in (0.0, 1.0):  # the ends are scale-free
        assert reprsim.shape_distance(10.0 * x, y, alpha=alpha) == pytest.approx(
            reprsim.shape_distance(x, y, alpha=alpha), rel=1e-10)


METRIC_FORMS = [("shape", {"alpha": 1.0}), ("shape", {"alpha": 0.5}), ("shape", {"alpha": 0.0}),
                ("shape", {"alpha": 0.5, "form": "euclidean"}), ("permutation", {}),
                ("permutation", {"form": "euclidean"}), ("bures", {}), ("gulp", {}), ("gulp", {"lam": 0.0}),
                ("nbs", {}), ("soft_matching", {})]


@settings(max_examples=15, deadline=None)
@given(seed=SEEDS, n=st.integers(15, 50))
def test_claimed_metrics_satisfy_the_triangle_inequality(seed, n):
    rng = np.random.default_rng(seed)
    widths = rng.integers(1, 7, size=5)
    reps = [rng.standard_normal((n, 3)) @ rng.standard_normal((3, p)) + 0.5 * rng.standard_normal((n, p))
            for p in widths]
    for name, opts in METRIC_FORMS:
        assert reprsim.METRICS[name].is_metric
        d = reprsim.pairwise_distances(reps, metric=name, **opts)
        assert np.allclose(d, d.T, rtol=1e-12, atol=1e-14) and np.all(np.diag(d) == 0.0)
        for i, j, k in itertools.permutations(range(5), 3):
            assert d[i, k] <= d[i, j] + d[j, k] + 1e-9, (name, opts)


def test_predictivity_is_not_symmetric(rng):
    x, y = ref.random_pair(rng, 100, 3, 12)
    assert abs(reprsim.linear_predictivity(x, y) - reprsim.linear_predictivity(y, x)) > 1e-2
    assert not reprsim.METRICS["predictivity"].symmetric


# -- paths: pairwise, streaming, device, inference --------------------------------------------------------


def test_pairwise_computes_each_representations_work_once(rng, monkeypatch):
    xs = [ref.random_pair(rng, 80, p, 3)[0] for p in (4, 7, 9)]
    ys = [ref.random_pair(rng, 80, 3, q)[1] for q in (5, 6)]
    from reprsim import _core

    calls = []
    real = _core.symmetric_eigens
    monkeypatch.setattr(_core, "symmetric_eigens", lambda mats, t: calls.extend(m.shape for m in mats) or real(mats, t))
    got = reprsim.pairwise(xs, ys, metric="shape", alpha=0.5)
    assert len(calls) == 5  # one eigendecomposition per representation, not per pair
    calls.clear()
    pred = reprsim.pairwise(xs, ys, metric="predictivity", folds=4)
    assert len(calls) == 3 * 4  # per x and training set, shared by every y
    monkeypatch.undo()
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            close(got[i, j], ref.shape(x, y, 0.5), 1e-10)
            close(pred[i, j], ref.predictivity(x, y, folds=4), 1e-10)


def test_pairwise_of_float32_layers_matches_the_float64_reference(rng):
    xs = [(rng.standard_normal((300, 8)) @ rng.standard_normal((8, p)) + 0.2 * rng.standard_normal((300, p)))
          .astype(np.float32) for p in (16, 24, 40)]
    for metric, opts, f in [("shape", {"alpha": 0.5}, lambda a, b: ref.shape(a, b, 0.5)),
                            ("gulp", {"lam": 1e-3}, lambda a, b: ref.gulp(a, b, 1e-3))]:
        d = reprsim.pairwise_distances(xs, metric=metric, **opts)
        for i, j in itertools.combinations(range(3), 2):
            close(d[i, j], f(xs[i].astype(np.float64), xs[j].astype(np.float64)), 1e-4)


def streamed_predictivity(x, y, bounds, **kw):
    acc = reprsim.StreamingSimilarity(metrics=["predictivity", "shape", "gulp"], n=len(x), **kw)
    for a, b in zip(bounds[:-1], bounds[1:]):
        acc.update(x[a:b], y[a:b])
    return acc


@pytest.mark.parametrize("route", ["moments", "rows", "auto"])
def test_streamed_predictivity_equals_in_memory(rng, route):
    x, y = ref.random_pair(rng, 97, 6, 4)
    x += 1e3  # an offset: centring about the running means
    acc = streamed_predictivity(x, y, [0, 1, 13, 14, 40, 41, 77, 97], route=route)
    for opts in ({}, {"alpha": [0.1, 10.0]}, {"score": "r2", "aggregate": "mean"}, {"folds": None},
                 {"alpha": [0.1, 3.0, 10.0], "alpha_per_target": True}, {"alpha": 0.0}):
        close(acc.measure("predictivity", **opts), reprsim.linear_predictivity(x, y, **opts), 1e-9)
    close(acc.measure("shape", alpha=0.3), reprsim.shape_distance(x, y, alpha=0.3), 1e-9)
    close(acc.distance("gulp", lam=0.0), reprsim.gulp_distance(x, y, lam=0.0), 1e-9)


def test_streamed_fold_moments_survive_state_round_trip_and_pickle(rng):
    x, y = ref.random_pair(rng, 60, 5, 3)
    acc = reprsim.StreamingSimilarity(layers_x=2, layers_y=1, metrics=["predictivity"], n=60, folds=4,
                                      route="moments")
    for a in range(0, 60, 7):
        acc.update([x[a:a + 7], x[a:a + 7, :2]], [y[a:a + 7]])
    want = reprsim.pairwise([x, x[:, :2]], [y], metric="predictivity", folds=4)
    np.testing.assert_allclose(acc.measure("predictivity", folds=4), want, rtol=1e-9)
    back = reprsim.StreamingSimilarity.from_state(acc.state())
    np.testing.assert_allclose(back.measure("predictivity", folds=4), want, rtol=1e-9)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(acc)).measure("predictivity", folds=4), want, rtol=1e-9)
    np.testing.assert_allclose(back.cka(), reprsim.pairwise([x, x[:, :2]], [y], metric="cka"), rtol=1e-9)


def test_streamed_predictivity_refuses_what_it_cannot_compute(rng):
    x, y = ref.random_pair(rng, 40, 4, 3)
    with pytest.raises(ValueError, match="pass n="):
        reprsim.StreamingSimilarity(metrics=["predictivity"])
    with pytest.raises(ValueError, match="folds= is the number of folds"):
        reprsim.StreamingSimilarity(folds=3)
    acc = reprsim.StreamingSimilarity(metrics=["predictivity"], n=40, folds=4, route="moments")
    acc.update(x[:30], y[:30])
    with pytest.raises(ValueError, match="told n=40 rows but has seen 30"):
        acc.measure("predictivity", folds=4)
    with pytest.raises(ValueError, match="more than the n=40"):
        acc.update(x, y)
    assert acc.n_seen == 30  # the refused batch changed nothing
    acc.update(x[30:], y[30:])
    with pytest.raises(ValueError, match="not folds=5"):
        acc.measure("predictivity")
    close(acc.measure("predictivity", folds=4), reprsim.linear_predictivity(x, y, folds=4), 1e-9)
    other = reprsim.StreamingSimilarity(metrics=["predictivity"], n=40, folds=4, route="moments").update(x[:5], y[:5])
    with pytest.raises(ValueError, match="cannot merge accumulators that keep per-fold moments"):
        acc.merge(other)
    # Without declared fold moments only in-sample predictivity streams (a stream that keeps its rows, as small
    # ones do by default, computes the cross-validated value from them).
    kept = reprsim.StreamingSimilarity().update(x, y)
    close(kept.measure("predictivity"), reprsim.linear_predictivity(x, y), 1e-9)
    plain = reprsim.StreamingSimilarity(route="moments").update(x, y)
    with pytest.raises(ValueError, match="cannot merge accumulators that keep per-fold moments"):
        reprsim.StreamingSimilarity(metrics=["predictivity"], n=40).merge(plain)
    close(plain.measure("predictivity", folds=None), reprsim.linear_predictivity(x, y, folds=None), 1e-9)
    with pytest.raises(ValueError, match="accumulator does not keep"):
        plain.measure("predictivity")


def test_device_path_of_the_new_measures_equals_the_cpu_path(forced_device):
    torch = forced_device
    rng = np.random.default_rng(3)
    x, y = ref.random_pair(rng, 150, 7, 5)
    xw = rng.standard_normal((40, 90))  # wider than n: the dual route on the device
    yw = xw[:, :4] @ rng.standard_normal((4, 3)) + rng.standard_normal((40, 3))
    cases = [("shape", {"alpha": 0.5}), ("shape", {"alpha": 0.0, "form": "euclidean"}), ("gulp", {"lam": 0.0}),
             ("permutation", {"form": "euclidean"}), ("soft_matching", {}), ("bures", {}), ("nbs", {}),
             ("predictivity", {"alpha": [0.1, 10.0], "score": "r2"}), ("predictivity", {"folds": None})]
    for dtype, rtol in ((torch.float64, 1e-9), (torch.float32, 1e-5)):
        tx, ty = torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype)
        xn, yn = tx.numpy(), ty.numpy()
        for name, opts in cases:
            close(reprsim.measure(tx, ty, name, **opts), reprsim.measure(xn, yn, name, **opts), rtol)
        close(reprsim.linear_predictivity(torch.tensor(xw, dtype=dtype), torch.tensor(yw, dtype=dtype), folds=3),
              reprsim.linear_predictivity(xw.astype(tx.numpy().dtype), yw.astype(tx.numpy().dtype), folds=3), rtol)
    xs = [torch.tensor(a) for a in (x, x[:, :3], y)]
    np.testing.assert_allclose(reprsim.pairwise(xs, metric="predictivity"),
                               reprsim.pairwise([t.numpy() for t in xs], metric="predictivity"), rtol=1e-9)
    # Device batches into an accumulator's fold moments.
    acc = reprsim.StreamingSimilarity(metrics=["predictivity", "shape"], n=150, route="moments")
    for a in range(0, 150, 40):
        acc.update(torch.tensor(x[a:a + 40]), torch.tensor(y[a:a + 40]))
    close(acc.measure("predictivity"), reprsim.linear_predictivity(x, y), 1e-9)
    close(acc.measure("shape", alpha=0.5), reprsim.shape_distance(x, y, alpha=0.5), 1e-9)


@pytest.mark.parametrize("metric,options", [("shape", {"alpha": 0.5}), ("gulp", {}), ("predictivity", {}),
                                            ("soft_matching", {}), ("permutation", {})])
def test_permutation_test_and_bootstrap_recompute_the_measure(rng, metric, options):
    x, y = ref.random_pair(rng, 50, 4, 5)
    res = reprsim.permutation_test(x, y, metric, n_permutations=6, seed=1, **options)
    perms = np.random.default_rng(1)
    assert res.statistic == reprsim.measure(x, y, metric, **options)
    null = [reprsim.measure(x, y[perms.permutation(50)], metric, **options) for _ in range(6)]
    np.testing.assert_allclose(np.sort(res.null_distribution), np.sort(null), rtol=1e-10)
    boot = reprsim.bootstrap(x, y, metric, n_resamples=5, seed=0, method="percentile", **options)
    assert boot.bootstrap_distribution.shape[0] + boot.n_degenerate == 5


def test_compare_models_layer_by_layer_with_the_new_measures():
    torch = pytest.importorskip("torch")
    from reprsim.torch import compare

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 5))
    data = torch.randn(120, 6, generator=torch.Generator().manual_seed(1))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=25)
    acts = {}
    hooks = [model[i].register_forward_hook(lambda m, a, o, i=i: acts.__setitem__(i, o.detach().numpy()))
             for i in (0, 2)]
    with torch.no_grad():
        model(data)
    for h in hooks:
        h.remove()
    for metric, opts in [("shape", {"alpha": 0.5}), ("gulp", {}), ("predictivity", {"folds": 4}), ("bures", {})]:
        res = compare(model, model, loader, ["0", "2"], ["0", "2"], metric=metric, progress=False, **opts)
        want = reprsim.pairwise([acts[0], acts[2]], metric=metric, **opts)
        np.testing.assert_allclose(res.values, want, rtol=1e-5, atol=1e-7, err_msg=metric)


# -- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call,exc,match", [
    (lambda x, y: reprsim.shape_distance(x, y, alpha=1.5), ValueError, "alpha must be a number in \\[0, 1\\]"),
    (lambda x, y: reprsim.shape_distance(x, y, alpha=-0.1), ValueError, "alpha"),
    (lambda x, y: reprsim.shape_distance(x, y, alpha=float("nan")), ValueError, "alpha must be a finite"),
    (lambda x, y: reprsim.shape_distance(x, y, alpha="0.5"), TypeError, "alpha"),
    (lambda x, y: reprsim.shape_distance(x, y, form="cosine"), ValueError, "form must be one of"),
    (lambda x, y: reprsim.gulp_distance(x, y, lam=-1.0), ValueError, "lam"),
    (lambda x, y: reprsim.gulp_distance(x, y, lam=float("inf")), ValueError, "lam must be a finite"),
    (lambda x, y: reprsim.linear_predictivity(x, y, alpha=-1.0), ValueError, "alpha"),
    (lambda x, y: reprsim.linear_predictivity(x, y, alpha=[1.0, float("nan")]), ValueError, "alpha must be a finite"),
    (lambda x, y: reprsim.linear_predictivity(x, y, alpha=[]), ValueError, "alpha is an empty list"),
    (lambda x, y: reprsim.linear_predictivity(x, y, alpha=[1.0, 1.0]), ValueError, "twice"),
    (lambda x, y: reprsim.linear_predictivity(x, y, folds=1), ValueError, "folds must be an integer ≥ 2"),
    (lambda x, y: reprsim.linear_predictivity(x, y, folds=2.5), ValueError, "folds must be an integer"),
    (lambda x, y: reprsim.linear_predictivity(x, y, folds=11), ValueError, "folds=11 needs at least 22 rows"),
    (lambda x, y: reprsim.linear_predictivity(x, y, folds=40), ValueError, "folds=40 needs at least 80 rows"),
    (lambda x, y: reprsim.pairwise([x], [y], metric="predictivity", folds=40), ValueError, "folds=40 needs"),
    (lambda x, y: reprsim.StreamingSimilarity(metrics=["predictivity"], n=21, folds=11).update(x, y), ValueError,
     "folds=11 needs at least 22 rows"),
    (lambda x, y: reprsim.linear_predictivity(x, y, score="spearman"), ValueError, "score must be one of"),
    (lambda x, y: reprsim.linear_predictivity(x, y, alpha_per_target=True), ValueError, "pass a list"),
    (lambda x, y: reprsim.linear_predictivity(x, y, alpha=[1.0, 2.0], folds=None), ValueError, "pass folds="),
    (lambda x, y: reprsim.linear_predictivity(x, y, alpha_per_target=1), TypeError, "alpha_per_target must be"),
    (lambda x, y: reprsim.measure(x, y, "predictivity", lam=1.0), TypeError, "does not take the option 'lam'"),
])
def test_bad_options_raise_naming_the_argument(rng, call, exc, match):
    x, y = ref.random_pair(rng, 21, 3, 2)
    with pytest.raises(exc, match=match):
        call(x, y)


def test_constant_targets_are_skipped_with_a_warning_never_nan(rng):
    x, y = ref.random_pair(rng, 60, 4, 5)
    y[:, 2] = 7.25  # constant everywhere
    y[24:36, 4] = -1.0  # constant on the held-out rows of fold 2
    with pytest.warns(reprsim.SkippedTargetsWarning, match="zero variance on a held-out fold"):
        value = reprsim.linear_predictivity(x, y)
    assert math.isfinite(value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = reprsim.predictivity_scores(x, y)
    assert list(res.skipped) == [2, 4]
    assert not res.valid[:, 2].any() and list(res.valid[:, 4]) == [True, True, False, True, True]
    assert np.isnan(res.scores[2, 4]) and np.all(np.isfinite(res.scores[res.valid]))
    expected = ref.predictivity(x, y)  # the reference leaves them out the same way (nanmedian)
    close(value, expected, 1e-10)
    with pytest.raises(ValueError, match="y has zero variance"):
        reprsim.linear_predictivity(x, np.ones((60, 3)))
    with pytest.raises(ValueError, match="x has zero variance"):
        reprsim.linear_predictivity(np.full((60, 3), 2.0), y[:, :2])


def test_soft_matching_of_dead_units_and_oversized_problems(rng, monkeypatch):
    x, y = ref.random_pair(rng, 30, 4, 6)
    x[:, 1] = 3.0
    y[:, 2] = 0.0
    # A dead unit matches a dead unit at no cost, anything else at cost 1 (r = 0).
    close(reprsim.soft_matching(x, y), 1.0 - ref.soft_matching_cost(x, y), 1e-10)
    assert reprsim.distance(x, x, "soft_matching") == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="x has zero variance"):
        reprsim.soft_matching(np.ones((30, 3)), y)
    from reprsim import _memory

    # The transport problem's memory is estimated before it is built (the moments themselves fit).
    from reprsim import _linear_measures

    for solver in ("highs", "pot"):
        monkeypatch.setitem(_linear_measures._OT_BYTES, solver, 2**60)
    with pytest.raises(ValueError, match="soft matching between 4 and 6 neurons .* needs about"):
        reprsim.soft_matching(x, y)
    monkeypatch.setattr(_memory, "available_memory", lambda: 1000)
    with pytest.raises(ValueError, match="needs about"):
        reprsim.shape_distance(x, y, alpha=0.5)


def test_extreme_magnitudes_give_the_moderate_values(rng):
    x, y = ref.random_pair(rng, 50, 4, 6)
    for name in NEW:
        base = reprsim.measure(x, y, name)
        for s in (1e-300, 1e200):
            scale_free = "isotropic_scaling" in reprsim.METRICS[name].invariances
            if name == "predictivity":  # x's scale sets the effective penalty: scale y only
                assert reprsim.measure(x, s * y, name) == pytest.approx(base, rel=1e-9)
            elif scale_free:
                assert reprsim.measure(s * x, s * y, name) == pytest.approx(base, rel=1e-9), name
            else:  # a distance in the data's units scales with it
                assert reprsim.measure(s * x, s * y, name) == pytest.approx(s * base, rel=1e-9), name


def test_measures_bench_quick_run_agrees_with_its_references(tmp_path):
    pytest.importorskip("sklearn")
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "measures.py"
    spec = importlib.util.spec_from_file_location("bench_measures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads_before = reprsim.get_num_threads()  # the bench sets the BLAS threads
    try:
        assert module.main(["--quick", "--rounds", "1", "--pairs", "2", "--out", str(tmp_path)]) == 0
    finally:
        reprsim.set_num_threads(threads_before)
    (result,) = tmp_path.glob("measures-quick-*.json")
    data = json.loads(result.read_text())
    shape, pred = data["workloads"]
    assert all(r["max_rel_dev_vs_f64_loop"] < 1e-5 for r in shape["rows"])
    assert pred["alpha_reprsim"] == pred["alpha_sklearn"] and pred["abs_score_diff"] < 1e-10
    assert pred["max_prediction_diff_over_target_std"] < 1e-8
