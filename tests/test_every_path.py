"""Every registered measure, by name, on every path: the same value in memory, in pairwise, streamed (moments,
factor or rows, whichever keeps its statistics), under permutation and bootstrap, through compare, and on the
device path (run on CPU tensors)."""

from __future__ import annotations

import numpy as np
import pytest

import reprsim

NAMES = sorted(reprsim.METRICS)


def data(n=90, p1=7, p2=5, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 4))
    x = z @ rng.standard_normal((4, p1)) + 0.5 * rng.standard_normal((n, p1)) + 2.0
    y = np.tanh(z @ rng.standard_normal((4, p2))) + 0.3 * rng.standard_normal((n, p2)) - 1.0
    return x, y


def _close(a, b, rel=1e-9):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=rel, atol=rel)


@pytest.mark.parametrize("name", NAMES)
def test_measure_distance_pairwise_and_the_public_function_agree(name):
    x, y = data()
    info = reprsim.METRICS[name]
    value = reprsim.measure(x, y, name)
    dist = reprsim.distance(x, y, name)
    lo, hi = info.value_range
    assert lo <= value <= hi and info.range[0] <= dist <= info.range[1]
    if info.value_kind == "distance":
        assert dist == value
    _close(np.asarray(reprsim.pairwise([x, y], [y, x], metric=name))[0, 0], value)
    _close(np.asarray(reprsim.pairwise_distances([x], [y], metric=name))[0, 0], dist)
    fn = getattr(reprsim, info.function)
    options = dict(info.fixed)
    if name == "rbf_cka":
        options = {"kernel": "rbf"}
    if name == "angular_procrustes":
        options = {"angular": True}
    _close(fn(x, y, **options), value)


@pytest.mark.parametrize("name", NAMES)
def test_streamed_value_equals_the_in_memory_value(name):
    x, y = data()
    info = reprsim.METRICS[name]
    route = "moments" if info.streams and info.statistics != "minibatch" else "rows"
    # a cross-validated measure places its folds from the number of rows, declared up front
    n = len(x) if info.statistics == "folds" else None
    acc = reprsim.StreamingSimilarity(metrics=[name], route=route, n=n)
    bounds = [0, 1, 17, 40, 90] if info.statistics != "minibatch" else [0, 30, 60, 90]
    for a, b in zip(bounds[:-1], bounds[1:]):
        acc.update(x[a:b], y[a:b])
    if info.statistics == "minibatch":
        want = reprsim.measure(x, y, name, batch_size=30)
    else:
        want = reprsim.measure(x, y, name)
    _close(acc.measure(name), want)
    _close(reprsim.StreamingSimilarity.from_state(acc.state()).distance(name), reprsim.distance(x, y, name)
           if info.statistics != "minibatch" else 1 - want)


@pytest.mark.parametrize("name", NAMES)
def test_permutation_test_and_bootstrap_take_every_name(name):
    x, y = data(n=40)
    info = reprsim.METRICS[name]
    res = reprsim.permutation_test(x, y, name, n_permutations=9, seed=1)
    _close(res.statistic, reprsim.measure(x, y, name))
    assert res.alternative == ("greater" if info.value_kind == "similarity" else "less")
    assert res.null_distribution.shape == (9,) and 0 < res.pvalue <= 1
    rng = np.random.default_rng(1)
    perm = rng.permutation(40)
    _close(res.null_distribution[0], reprsim.measure(x, y[perm], name))
    boot = reprsim.bootstrap(x, y, name, n_resamples=5, seed=2, method="percentile")
    assert boot.bootstrap_distribution.size + boot.n_degenerate == 5


@pytest.mark.parametrize("name", NAMES)
def test_every_measure_on_the_device_path(forced_device, name):
    torch = forced_device
    x, y = data()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    _close(reprsim.measure(xt, yt, name), reprsim.measure(x, y, name))
    _close(np.asarray(reprsim.pairwise([xt, yt], metric=name)), np.asarray(reprsim.pairwise([x, y], metric=name)))


@pytest.mark.parametrize("name", NAMES)
def test_compare_takes_every_name(name):
    torch = pytest.importorskip("torch")
    from reprsim.torch import compare

    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(6, 9), torch.nn.Tanh(), torch.nn.Linear(9, 5)).double()
    b = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4)).double()
    inputs = torch.randn(90, 6, dtype=torch.float64)
    batches = [inputs[s : s + 30] for s in range(0, 90, 30)]
    res = compare(a, b, batches, ["0", "2"], ["0", "2"], metric=name, progress=False)
    with torch.no_grad():
        acts_a = [a[0](inputs), a(inputs)]
        acts_b = [b[0](inputs), b(inputs)]
    info = reprsim.METRICS[name]
    opts = {"batch_size": 30} if info.statistics == "minibatch" else {}
    want = [[reprsim.measure(p.numpy(), q.numpy(), name, **opts) for q in acts_b] for p in acts_a]
    _close(res.values, want, rel=1e-8)
