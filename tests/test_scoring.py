"""The scoring API of reprsim.benchmark against independent float64 computations written from the formulas."""

import itertools
import math

import numpy as np
import pytest

import reprsim
from reprsim.benchmark import (
    PADDED_CCA,
    delete_principal_components,
    detection_threshold,
    first_drop,
    layer_groups,
    layer_identification,
    percentile_ranks,
    protocol,
    replay,
    score,
)
from reprsim.benchmark.models import MLP, probe_accuracy, train_mlp

stats = pytest.importorskip("scipy.stats")


# ---------------------------------------------------------------------------------------------
# Independent references, written from the textbook formulas


def average_ranks(a):
    """Ranks 1..n, ties sharing the mean of the ranks they span (plain numpy, O(n^2))."""
    a = np.asarray(a, dtype=float)
    less = (a[None, :] < a[:, None]).sum(axis=1)
    equal = (a[None, :] == a[:, None]).sum(axis=1)
    return less + (equal + 1) / 2.0


def spearman_reference(x, y):
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float(rx @ ry / math.sqrt((rx @ rx) * (ry @ ry)))


def spearman_one_sided_p_reference(r, n):
    """Student t approximation: t = r sqrt((n-2)/(1-r^2)), p = P(T_{n-2} >= t)."""
    t = r * math.sqrt((n - 2) / (1 - r * r))
    return float(stats.t.sf(t, n - 2))


def kendall_counts(x, y):
    n = len(x)
    con = dis = tx = ty = 0
    for i in range(n):
        for j in range(i + 1, n):
            sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            if sx == 0 and sy == 0:
                continue
            if sx == 0:
                tx += 1
            elif sy == 0:
                ty += 1
            elif sx == sy:
                con += 1
            else:
                dis += 1
    return con, dis, tx, ty


def kendall_tau_b_reference(x, y):
    con, dis, tx, ty = kendall_counts(x, y)
    return (con - dis) / math.sqrt((con + dis + tx) * (con + dis + ty))


def kendall_normal_p_reference(x, y):
    """One-sided p of Kendall's S = con - dis under the normal approximation with the tie-corrected variance."""
    n = len(x)
    con, dis, _, _ = kendall_counts(x, y)
    tie_x = np.unique(x, return_counts=True)[1]
    tie_y = np.unique(y, return_counts=True)[1]

    def v(t):
        return float(np.sum(t * (t - 1) * (2 * t + 5)))

    var = (n * (n - 1) * (2 * n + 5) - v(tie_x) - v(tie_y)) / 18.0
    var += float(np.sum(tie_x * (tie_x - 1) * (tie_x - 2)) * np.sum(tie_y * (tie_y - 1) * (tie_y - 2))) / (
        9.0 * n * (n - 1) * (n - 2)
    )
    var += float(np.sum(tie_x * (tie_x - 1)) * np.sum(tie_y * (tie_y - 1))) / (2.0 * n * (n - 1))
    z = (con - dis) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2))


# ---------------------------------------------------------------------------------------------
# score


def test_spearman_and_its_p_value_match_rank_pearson_and_t_formula(rng):
    d = rng.standard_normal(40)
    f = 0.5 * d + rng.standard_normal(40)
    s = score(d, f)
    assert s.spearman == pytest.approx(spearman_reference(d, f), abs=1e-12)
    assert s.spearman_p == pytest.approx(spearman_one_sided_p_reference(s.spearman, 40), rel=1e-9)
    assert s.p_value == s.spearman_p
    assert s.n_pairs == 40


def test_spearman_with_ties_uses_average_ranks(rng):
    d = rng.integers(0, 5, 30).astype(float)
    f = d + rng.integers(0, 3, 30)
    assert score(d, f).spearman == pytest.approx(spearman_reference(d, f), abs=1e-12)


def test_kendall_tau_b_matches_pair_counting_with_ties(rng):
    d = rng.integers(0, 6, 25).astype(float)
    f = rng.integers(0, 4, 25) + 0.3 * d
    assert score(d, f).kendall == pytest.approx(kendall_tau_b_reference(d, f), abs=1e-12)


def test_kendall_p_is_exact_permutation_tail_for_small_untied_samples(rng):
    n = 7
    d = rng.standard_normal(n)
    f = d + 0.8 * rng.standard_normal(n)
    observed = kendall_tau_b_reference(d, f)
    order = np.argsort(d)
    # Exact null: every permutation of f's ranks against d's ranks is equally likely.
    taus = np.array([kendall_tau_b_reference(np.arange(n), np.array(p)) for p in itertools.permutations(range(n))])
    expected = float(np.mean(taus >= observed - 1e-12))
    assert kendall_tau_b_reference(d[order], f[order]) == pytest.approx(observed)
    assert score(d, f).kendall_p == pytest.approx(expected, abs=1e-12)


def test_kendall_p_with_ties_matches_tie_corrected_normal_approximation(rng):
    d = rng.integers(0, 8, 60).astype(float)
    f = rng.integers(0, 5, 60) + 0.2 * d
    assert score(d, f).kendall_p == pytest.approx(kendall_normal_p_reference(d, f), rel=1e-9)


def test_kendall_p_for_larger_untied_samples_is_normal_approximation(rng):
    d = rng.standard_normal(45)
    f = d + 2.0 * rng.standard_normal(45)
    assert score(d, f).kendall_p == pytest.approx(kendall_normal_p_reference(d, f), rel=1e-9)


def test_p_values_are_one_sided_toward_positive_correlation():
    d = np.arange(12.0)
    up, down = score(d, d**2), score(d, -d)
    assert up.spearman == pytest.approx(1.0) and up.kendall == pytest.approx(1.0)
    assert up.spearman_p < 1e-6 and up.kendall_p < 1e-6
    assert down.spearman == pytest.approx(-1.0)
    assert down.spearman_p > 0.999 and down.kendall_p > 0.999


def test_percentile_ranks_equal_percentileofscore_rank_kind():
    values = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0])
    expected = [stats.percentileofscore(values, v, kind="rank") / 100 for v in values]
    np.testing.assert_allclose(percentile_ranks(values), expected, atol=1e-12)


def test_bad_frac_counts_close_in_metric_far_in_function_pairs():
    # 10 pairs: the smallest dissimilarity (percentile 0.1 < 0.2) has the largest functional difference
    # (percentile 1.0 > 0.8); every other pair is concordant. Exactly 1 of 10 is bad.
    d = np.arange(10.0)
    f = np.array([9.0, 0, 1, 2, 3, 4, 5, 6, 7, 8])
    assert score(d, f).bad_frac == pytest.approx(0.1)
    # The second smallest has percentile 0.2, not below 0.2: not bad.
    f2 = np.array([0.0, 9, 1, 2, 3, 4, 5, 6, 7, 8])
    assert score(d, f2).bad_frac == 0.0


def test_bad_frac_matches_percentileofscore_definition(rng):
    d = rng.integers(0, 10, 50).astype(float)
    f = rng.integers(0, 10, 50).astype(float)
    qd = np.array([stats.percentileofscore(d, v, kind="rank") / 100 for v in d])
    qf = np.array([stats.percentileofscore(f, v, kind="rank") / 100 for v in f])
    assert score(d, f).bad_frac == pytest.approx(float(np.mean((qd < 0.2) & (qf > 0.8))))
    assert score(d, f, quantile=0.3).bad_frac == pytest.approx(float(np.mean((qd < 0.3) & (qf > 0.7))))


@pytest.mark.parametrize(
    "d, f, exc, words",
    [
        ([1, 2, 3], [1, 2], ValueError, "3 values but functional_difference has 2"),
        ([1, 2], [1, 2], ValueError, "at least 3 pairs"),
        ([1, np.nan, 3], [1, 2, 3], ValueError, "non-finite"),
        ([1, 2, 3], [1, np.inf, 3], ValueError, "functional_difference holds a non-finite"),
        ([2, 2, 2], [1, 2, 3], ValueError, "dissimilarity is constant"),
        ([1, 2, 3], [0, 0, 0], ValueError, "functional_difference is constant"),
        ([[1, 2], [3, 4]], [1, 2, 3, 4], ValueError, "must be 1-D"),
        ("abc", [1, 2, 3], TypeError, "1-D sequence of numbers"),
        ([1, 2, 3], None, TypeError, "functional_difference must be"),
    ],
)
def test_score_rejects_bad_input_with_clear_message(d, f, exc, words):
    with pytest.raises(exc, match=words):
        score(d, f)


def test_score_rejects_quantile_out_of_range():
    with pytest.raises(ValueError, match="quantile"):
        score([1, 2, 3], [1, 2, 3], quantile=0.7)


# ---------------------------------------------------------------------------------------------
# protocol and replay


def _toy_representations(rng, n=60, p=6, seeds=4, layers=3):
    base = [rng.standard_normal((n, p)) for _ in range(layers)]
    reps, perf = {}, {}
    for s in range(seeds):
        for layer in range(layers):
            reps[(s, layer)] = base[layer] + 0.3 * (s + 1) * rng.standard_normal((n, p))
            perf[(s, layer)] = 0.9 - 0.05 * layer - 0.01 * s + 0.001 * rng.standard_normal()
    return reps, perf


def test_protocol_picks_best_reference_includes_self_pair_and_averages_groups(rng):
    reps, perf = _toy_representations(rng)
    groups = layer_groups(list(reps))
    res = protocol(reps, perf, groups, metrics=["procrustes", "pwcca"])
    keys = list(reps)
    rhos = []
    for layer, cands in groups.items():
        ref = max(cands, key=lambda k: perf[k])
        assert res.references[layer] == ref
        d = [reprsim.distance(reps[ref], reps[k], metric="procrustes") for k in keys]
        f = [abs(perf[ref] - perf[k]) for k in keys]
        expected = score(d, f)
        got = res.per_group["procrustes"][layer]
        assert got.spearman == pytest.approx(expected.spearman, abs=1e-9)
        assert got.n_pairs == len(keys)  # the reference itself is one of the pairs
        assert min(d) == pytest.approx(0.0, abs=1e-9)
        rhos.append(expected.spearman)
    assert res.scores["procrustes"].spearman == pytest.approx(np.mean(rhos), abs=1e-9)
    assert res.scores["procrustes"].n_pairs == len(keys) * len(groups)


def test_protocol_puts_reference_first_for_pwcca_weights(rng):
    reps, perf = _toy_representations(rng, p=5)
    reps[(0, 1)] = reps[(0, 1)][:, :3]  # unequal widths make PWCCA's weighting side matter
    groups = {"g": [(s, 0) for s in range(4)]}
    res = protocol(reps, perf, groups, metrics=["pwcca"])
    ref = res.references["g"]
    keys = list(reps)
    ref_first = [reprsim.distance(reps[ref], reps[k], metric="pwcca", convention="x") for k in keys]
    ref_second = [reprsim.distance(reps[ref], reps[k], metric="pwcca", convention="y") for k in keys]
    np.testing.assert_allclose(res.dissimilarities["pwcca"]["g"], ref_first, atol=1e-10)
    assert not np.allclose(ref_first, ref_second, atol=1e-6)
    other = protocol(reps, perf, groups, metrics=["pwcca"], conventions={"pwcca": {"convention": "y"}})
    np.testing.assert_allclose(other.dissimilarities["pwcca"]["g"], ref_second, atol=1e-10)


def test_protocol_accepts_callable_metric(rng):
    reps, perf = _toy_representations(rng)

    def frobenius(x, y):
        return float(np.linalg.norm(x - y))

    res = protocol(reps, perf, layer_groups(list(reps)), metrics=[frobenius, "cka"])
    assert set(res.scores) == {"frobenius", "cka"}


def test_protocol_rejects_missing_performance_and_unknown_keys(rng):
    reps, perf = _toy_representations(rng)
    del perf[(0, 0)]
    with pytest.raises(ValueError, match="performance has no value"):
        protocol(reps, perf, layer_groups(list(reps)), metrics=["cka"])
    reps, perf = _toy_representations(rng)
    with pytest.raises(ValueError, match="not a key of representations"):
        protocol(reps, perf, {"g": [("nope", 0)]}, metrics=["cka"])
    with pytest.raises(ValueError, match="unknown metric"):
        protocol(reps, perf, layer_groups(list(reps)), metrics=["nope"])
    with pytest.raises(ValueError, match="comparable has no entry for group 1"):
        protocol(reps, perf, layer_groups(list(reps)), {0: list(reps)}, metrics=["cka"])
    with pytest.raises(TypeError, match="non-empty mapping"):
        protocol({}, perf, layer_groups(list(reps)), metrics=["cka"])


def test_replay_reproduces_protocol_table_from_pairs(rng):
    reps, perf = _toy_representations(rng)
    groups = layer_groups(list(reps))
    res = protocol(reps, perf, groups, metrics=["cka", "procrustes"])
    rows = []
    for layer, ref in res.references.items():
        for i, k in enumerate(reps):
            rows.append({
                "seed1": ref[0], "layer1": ref[1], "seed2": k[0], "layer2": k[1],
                "CKA": 1 - res.dissimilarities["cka"][layer][i],  # released as a similarity
                "Procrustes": res.dissimilarities["procrustes"][layer][i],
                "probe_diff": res.functional_differences[layer][i],
            })
    table = replay(rows, ["CKA", "Procrustes"], ["probe"], groups=["layer1"], similarity_columns=["CKA"])
    for col, name in (("CKA", "cka"), ("Procrustes", "procrustes")):
        assert table["probe"][col].spearman == pytest.approx(res.scores[name].spearman, abs=1e-9)
        assert table["probe"][col].bad_frac == pytest.approx(res.scores[name].bad_frac, abs=1e-12)
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(rows)
    again = replay(frame, ["Procrustes"], ["probe"], groups=["layer1"])
    assert again["probe"]["Procrustes"].kendall == pytest.approx(res.scores["procrustes"].kendall, abs=1e-9)
    only0 = replay(frame, ["Procrustes"], ["probe"], reference=lambda r: r["layer1"] == 0)
    assert only0["probe"]["Procrustes"].spearman == pytest.approx(
        res.per_group["procrustes"][0].spearman, abs=1e-9
    )


def test_replay_rejects_missing_column():
    with pytest.raises(ValueError, match="no column 'task_diff'"):
        replay({"m": [1, 2, 3]}, ["m"], ["task"])
    with pytest.raises(TypeError, match="DataFrame"):
        replay(42, ["m"], ["task"])


# ---------------------------------------------------------------------------------------------
# generators


def test_pc_deletion_is_the_best_low_rank_approximation(rng):
    x = rng.standard_normal((80, 10)) @ rng.standard_normal((10, 10)) + 3.0
    out = delete_principal_components(x, [0, 3, 7], form="projection")
    xc = x - x.mean(axis=0)
    eig = np.sort(np.linalg.eigvalsh(xc.T @ xc))  # ascending
    np.testing.assert_allclose(out[0], xc, atol=1e-10)
    for d in (3, 7):
        assert np.linalg.matrix_rank(out[d]) == 10 - d
        # Eckart–Young: the residual of the best rank-k approximation is the sum of the d smallest eigenvalues.
        assert np.sum((xc - out[d]) ** 2) == pytest.approx(eig[:d].sum(), rel=1e-9)


def test_pc_deletion_scores_are_the_top_components_as_columns(rng):
    x = rng.standard_normal((80, 10)) @ rng.standard_normal((10, 10)) + 3.0
    scores = delete_principal_components(x, [0, 3, 7])
    proj = delete_principal_components(x, [0, 3, 7], form="projection")
    for d in (0, 3, 7):
        assert scores[d].shape == (80, 10 - d)
        # The same subspace: the projection is the scores mapped back by orthonormal rows (Gram matrices agree).
        np.testing.assert_allclose(scores[d] @ scores[d].T, proj[d] @ proj[d].T, atol=1e-9)
        np.testing.assert_allclose(np.linalg.norm(scores[d], axis=0), np.sort(np.linalg.norm(scores[d], axis=0))[::-1])
        for metric in ("cka", "procrustes", "mean_cca"):
            assert reprsim.distance(x, scores[d], metric=metric) == pytest.approx(
                reprsim.distance(x, proj[d], metric=metric), abs=1e-9)
    with pytest.raises(ValueError, match="form must be"):
        delete_principal_components(x, [1], form="columns")


def test_pc_deletion_rejects_out_of_range_counts(rng):
    with pytest.raises(ValueError, match=r"deleted must hold integers in \[0, 4\]"):
        delete_principal_components(rng.standard_normal((20, 5)), [5])


def test_layer_identification_finds_matching_depth_for_rotated_seeds(rng):
    layers = [rng.standard_normal((50, 8)) * np.linspace(3, 0.5, 8) for _ in range(3)]
    by_seed = {}
    for s in range(3):
        by_seed[s] = [h @ np.linalg.qr(rng.standard_normal((8, 8)))[0] + 0.05 * rng.standard_normal((50, 8))
                      for h in layers]
    res = layer_identification(by_seed, "procrustes")
    assert res.accuracy == 1.0
    assert res.n_queries == 3 * 2 * 3
    np.testing.assert_array_equal(res.confusion, np.diag([6, 6, 6]))
    with pytest.raises(ValueError, match="at least 2 seeds"):
        layer_identification({0: layers}, "cka")
    with pytest.raises(ValueError, match="same, non-zero number of layers"):
        layer_identification({0: layers, 1: layers[:2]}, "cka")


def test_detection_flags_first_deletion_beyond_mean_seed_distance(rng):
    ref = rng.standard_normal((60, 6)) * np.array([5, 4, 3, 2, 1, 0.5])
    others = [ref + 0.6 * rng.standard_normal(ref.shape) for _ in range(3)]
    grid = [0, 1, 2, 3, 4, 5]
    deleted = delete_principal_components(ref, grid, form="projection")

    def frob(x, y):
        return float(np.linalg.norm((x - x.mean(0)) - (y - y.mean(0))))

    res = detection_threshold(ref, deleted, others, frob)
    floor = np.mean([frob(ref, o) for o in others])
    expected = next((d for d in grid if frob(ref, deleted[d]) > floor), None)
    assert res.noise_floor == pytest.approx(floor)
    assert res.flags_at == expected
    assert first_drop({0: 0.9, 4: 0.89, 8: 0.7}, 0.9, 0.05) == 8
    assert first_drop({0: 0.9, 4: 0.89}, 0.9, 0.05) is None


# ---------------------------------------------------------------------------------------------
# The padded CCA convention


def test_padded_cca_equals_core_cca_for_full_rank_inputs(rng):
    x = rng.standard_normal((100, 6))
    y = x @ rng.standard_normal((6, 5)) + rng.standard_normal((100, 5))
    y = np.hstack([y, rng.standard_normal((100, 1))])
    assert PADDED_CCA["mean_cca_padded"](x, y) == pytest.approx(reprsim.distance(x, y, metric="mean_cca"), abs=1e-10)
    assert PADDED_CCA["mean_sq_cca_padded"](x, y) == pytest.approx(
        reprsim.distance(x, y, metric="mean_sq_cca"), abs=1e-10
    )
    assert PADDED_CCA["pwcca_padded"](x, y) == pytest.approx(
        reprsim.distance(x, y, metric="pwcca", convention="x"), abs=1e-10
    )


def test_padded_mean_cca_counts_deleted_components_as_zero_correlation(rng):
    x = rng.standard_normal((100, 8)) @ rng.standard_normal((8, 8))
    for d, h in delete_principal_components(x, [0, 2, 5]).items():
        # h spans a (8 - d)-dimensional subspace of x's column space: 8 - d correlations of 1, d of 0.
        assert PADDED_CCA["mean_cca_padded"](x, h) == pytest.approx(d / 8, abs=1e-9)
        assert reprsim.distance(x, h, metric="mean_cca") == pytest.approx(0.0, abs=1e-9)
    m = PADDED_CCA["pwcca_padded"]
    # x against itself: 0 up to rounding, which the one-pair and the factor routes reach differently
    np.testing.assert_allclose(m.pairwise([x], [x, x])[0], [m(x, x), m(x, x)], rtol=0, atol=1e-12)


def test_padded_cca_rejects_constant_and_too_wide_inputs(rng):
    m = PADDED_CCA["mean_cca_padded"]
    with pytest.raises(ValueError, match="x has zero variance"):
        m(np.ones((10, 3)), rng.standard_normal((10, 3)))
    with pytest.raises(ValueError, match="rank 9 .*n = 10"):
        m(rng.standard_normal((10, 12)), rng.standard_normal((10, 3)))
    with pytest.raises(ValueError, match="must be 2-D"):
        m(np.ones(10), rng.standard_normal((10, 3)))


# ---------------------------------------------------------------------------------------------
# models


def test_train_mlp_is_deterministic_given_seed(rng):
    x = rng.standard_normal((64, 5))
    y = (x[:, 0] > 0).astype(int)
    a = train_mlp(x, y, n_classes=2, hidden=(8, 8), seed=3, epochs=3, batch_size=16)
    b = train_mlp(x, y, n_classes=2, hidden=(8, 8), seed=3, epochs=3, batch_size=16)
    c = train_mlp(x, y, n_classes=2, hidden=(8, 8), seed=4, epochs=3, batch_size=16)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.weights[0], c.weights[0])
    assert [h.shape for h in a.hidden(x)] == [(64, 8), (64, 8)]
    assert isinstance(a, MLP)


def test_train_mlp_learns_a_separable_task(rng):
    x = rng.standard_normal((200, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    model = train_mlp(x, y, n_classes=2, hidden=(16,), seed=0, epochs=40, batch_size=32, lr=1e-2)
    assert model.accuracy(x, y) > 0.95


def test_probe_accuracy_is_perfect_on_linearly_separable_classes(rng):
    centres = rng.standard_normal((3, 5)) * 10
    y = np.repeat(np.arange(3), 30)
    x = centres[y] + rng.standard_normal((90, 5))
    assert probe_accuracy(x[::2], y[::2], x[1::2], y[1::2], n_classes=3) == 1.0
