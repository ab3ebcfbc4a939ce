import numpy as np
import pytest

import reprsim
import reference as ref


def reps(rng, n, widths, dtype=np.float64):
    z = rng.standard_normal((n, 6))
    return [(z @ rng.standard_normal((6, p)) + 0.5 * rng.standard_normal((n, p))).astype(dtype) for p in widths]


# minibatch CKA's default minibatch (256 rows) covers these n; with n ≥ the widths the CCA family is defined.
METRICS = sorted(reprsim.METRICS)


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_distances_equal_distance_of_each_pair(rng, metric):
    xs = reps(rng, 70, [5, 9, 12])
    ys = reps(rng, 70, [4, 11])
    d = reprsim.pairwise_distances(xs, ys, metric=metric)
    assert d.shape == (3, 2)
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            assert d[i, j] == pytest.approx(ref.distance(x, y, metric), rel=1e-9, abs=1e-11)


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_values_are_what_the_measure_returns(rng, metric):
    xs = reps(rng, 70, [5, 9, 12])
    ys = reps(rng, 70, [4, 11])
    v = reprsim.pairwise(xs, ys, metric=metric)
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            assert v[i, j] == pytest.approx(ref.value(x, y, metric), rel=1e-9, abs=1e-11)
            assert v[i, j] == pytest.approx(reprsim.measure(x, y, metric), rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_of_one_list_against_itself(rng, metric):
    xs = reps(rng, 60, [3, 8, 8, 15])
    d = reprsim.pairwise_distances(xs, metric=metric)
    v = reprsim.pairwise(xs, metric=metric)
    info = reprsim.METRICS[metric]
    for i in range(4):
        if info.zero_diagonal:
            assert d[i, i] == 0.0  # exactly
        else:  # e.g. held-out predictivity of a representation from itself is below 1
            assert d[i, i] == pytest.approx(ref.distance(xs[i], xs[i], metric), rel=1e-9, abs=1e-11)
        if info.identity is not None:
            assert v[i, i] == info.identity
        else:
            assert v[i, i] == pytest.approx(ref.value(xs[i], xs[i], metric), rel=1e-10)
        for j in range(4):
            # arccos is steep at 1: a rounding error ε in the nuclear norm moves the angle by √(2ε).
            atol = 1e-7 if metric == "angular_procrustes" else 1e-10
            if i != j:
                assert d[i, j] == pytest.approx(ref.distance(xs[i], xs[j], metric), rel=1e-9, abs=atol)
            if info.symmetric:
                assert d[i, j] == d[j, i]


@pytest.mark.parametrize("metric", ["cka", "debiased_cka", "procrustes", "ensd"])
def test_pairwise_wide_layers_use_gram_space_with_same_values(rng, metric):
    xs = reps(rng, 30, [40, 90, 7], dtype=np.float32)
    d = reprsim.pairwise_distances(xs, metric=metric)
    for i in range(3):
        for j in range(3):
            if i != j:
                assert d[i, j] == pytest.approx(ref.distance(xs[i], xs[j], metric), rel=1e-4, abs=1e-5)


def test_pairwise_passes_options(rng):
    xs = reps(rng, 80, [6, 10])
    d = reprsim.pairwise_distances(xs, metric="svcca", variance=0.9, convention="singular_values")
    assert d[0, 1] == pytest.approx(1 - ref.svcca(xs[0], xs[1], keep=0.9, on_variance=False), rel=1e-9)
    d = reprsim.pairwise_distances(xs, metric="pwcca", convention="y")
    assert d[0, 1] == pytest.approx(1 - ref.pwcca(xs[1], xs[0]), rel=1e-9)
    v = reprsim.pairwise(xs, metric="cka", debiased=True)
    assert v[0, 1] == pytest.approx(ref.cka(xs[0], xs[1], debiased=True), rel=1e-9)


def test_values_and_distances_never_leave_the_documented_range(rng):
    # x against 2x: CKA is 1 up to rounding (it came out 1 + 1e-16, a distance of −8.9e-16, before values
    # within rounding of a bound were returned as the bound).
    for _ in range(20):
        x = rng.standard_normal((rng.integers(5, 40), rng.integers(1, 12)))
        assert reprsim.distance(x, 2 * x, "cka") >= 0.0
        assert reprsim.cka(x, 2 * x) <= 1.0
        d = reprsim.pairwise_distances([x, 2 * x, -3 * x], metric="cka")
        assert np.all(d >= 0.0) and np.all(d <= 1.0)
        assert np.all(reprsim.pairwise([x, 2 * x], metric="cka") <= 1.0)


# -- the labelled result ---------------------------------------------------------------------------------------


def test_pairwise_of_named_representations_is_labelled(rng):
    xs = dict(zip(["early", "middle", "late"], reps(rng, 50, [4, 7, 9])))
    res = reprsim.pairwise(xs, metric="cka")
    assert isinstance(res, reprsim.Comparison)
    assert res.rows == res.columns == ["early", "middle", "late"]
    assert res.metric == "cka" and res.value_kind == "similarity" and res.n_samples == 50
    np.testing.assert_array_equal(res, reprsim.pairwise(list(xs.values()), metric="cka"))
    assert res.at["early", "late"] == pytest.approx(reprsim.cka(xs["early"], xs["late"]), rel=1e-12)
    ys = {"probe": xs["late"][:, :3]}
    cross = reprsim.pairwise(xs, ys, metric="procrustes")
    assert cross.shape == (3, 1) and cross.columns == ["probe"] and cross.value_kind == "distance"
    d = reprsim.pairwise_distances(xs, metric="cka")
    assert d.value_kind == "distance" and d.label == "cka distance"
    np.testing.assert_allclose(d, 1.0 - res, rtol=1e-12, atol=1e-15)
    with pytest.raises(KeyError, match="no row labelled 'nope'"):
        res.at["nope", "late"]


def test_pairwise_of_a_list_is_still_usable_as_an_array(rng):
    xs = reps(rng, 40, [3, 5, 8])
    res = reprsim.pairwise(xs, metric="cka")
    arr = np.asarray(res)
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float64 and arr.shape == res.shape == (3, 3)
    assert res.rows == [0, 1, 2] and res.names == (None, None)
    assert res[0, 1] == arr[0, 1] and list(res[1]) == list(arr[1]) and len(res) == 3
    assert isinstance(res - 1.0, np.ndarray) and np.all(res <= 1.0) and np.all(1.0 - res >= 0.0)
    np.testing.assert_array_equal(res.T, arr.T)
    assert res.max() == arr.max() and res.ravel().tolist() == arr.ravel().tolist()
    assert np.diag(res).tolist() == [1.0, 1.0, 1.0] and float(np.abs(res).sum()) == float(np.abs(arr).sum())
    np.testing.assert_allclose(res, arr)
    assert (res == arr).all() and [row.tolist() for row in res] == arr.tolist()
    import copy
    import pickle

    again = pickle.loads(pickle.dumps(res))
    np.testing.assert_array_equal(again, res)
    assert again.rows == res.rows and copy.deepcopy(res).metric == "cka"
    with pytest.raises(AttributeError):
        res.nonexistent


def test_pairwise_of_a_dict_names_the_bad_entry(rng):
    xs = dict(zip(["a", "b"], reps(rng, 30, [3, 4])))
    xs["b"] = xs["b"].copy()
    xs["b"][2, 1] = np.nan
    with pytest.raises(ValueError, match=r"xs\['b'\] contains NaN"):
        reprsim.pairwise(xs)
    with pytest.raises(ValueError, match="xs is empty"):
        reprsim.pairwise({})


def test_comparison_prints_a_labelled_table_and_converts_to_pandas(rng):
    x = reps(rng, 30, [4])[0]
    res = reprsim.pairwise({"x": x, "-x": -x, "x+1": x + 1.0}, metric="procrustes")
    text = repr(res)
    assert text.splitlines()[0] == "Comparison(procrustes: distance matrix 3 × 3, n_samples=30)"
    assert "-0.0000" not in text and text.splitlines()[1].split() == ["x", "-x", "x+1"]
    pd = pytest.importorskip("pandas")
    df = res.to_pandas()
    assert list(df.index) == ["x", "-x", "x+1"] and df.attrs["metric"] == "procrustes"
    assert df.attrs["value_kind"] == "distance"


def test_comparison_plot_draws_a_heatmap(rng, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    xs = dict(zip("abc", reps(rng, 30, [3, 4, 5])))
    ax = reprsim.pairwise(xs).plot(annotate=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    ax.figure.savefig(tmp_path / "pairwise.png")
    assert (tmp_path / "pairwise.png").stat().st_size > 1000


def test_the_result_type_imports_neither_torch_pandas_nor_matplotlib():
    import subprocess
    import sys

    code = ("import sys, numpy as np, reprsim; "
            "r = reprsim.pairwise({'a': np.random.rand(9, 2), 'b': np.random.rand(9, 3)}); "
            "repr(r); print(sorted(m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
