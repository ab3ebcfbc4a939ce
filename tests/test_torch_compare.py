"""reprsim.torch.compare and the device (GPU-path) accumulator, run on the CPU with small models."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import reprsim  # noqa: E402
from reprsim.torch import compare  # noqa: E402


def mlp(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)
    )


class SmallCNN(torch.nn.Module):
    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 6, 3, padding=1)
        self.fc = torch.nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.nn.functional.max_pool2d(torch.relu(self.conv2(h)), 2)
        return self.fc(h.flatten(1))


def loader(n=120, batch=32, shape=(10,), seed=0, labels=True):
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(n, *shape, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return [((data[i:i + batch], y[i:i + batch]) if labels else data[i:i + batch]) for i in range(0, n, batch)], data


def by_hand(model, data, names):
    acts = {}
    hooks = [dict(model.named_modules())[nm].register_forward_hook(
        lambda m, i, o, nm=nm: acts.__setitem__(nm, o.detach().reshape(o.shape[0], -1))) for nm in names]
    with torch.no_grad():
        model.eval()
        model(data)
    for h in hooks:
        h.remove()
    return [acts[nm].numpy() for nm in names]


LAYERS = ["0", "2", "4"]


def test_compare_model_with_itself_gives_one_on_the_diagonal():
    batches, _ = loader()
    res = compare(mlp(0), mlp(0), batches, LAYERS, LAYERS, progress=False)
    np.testing.assert_allclose(np.diag(res.values), 1.0, rtol=1e-10)
    assert res.n_samples == 120 and res.layers_a == LAYERS and res.values.shape == (3, 3)


@pytest.mark.parametrize("metric", ["cka", "debiased_cka", "mean_cca", "mean_sq_cca", "svcca", "pwcca",
                                    "procrustes", "angular_procrustes"])
def test_compare_equals_numpy_api_on_activations_collected_by_hand(metric):
    batches, data = loader(n=150, batch=40)
    a, b = mlp(1), mlp(2)
    res = compare(a, b, batches, LAYERS, LAYERS, metric=metric, progress=False)
    xs, ys = by_hand(a, data, LAYERS), by_hand(b, data, LAYERS)
    expected = np.array([[reprsim.distance(x, y, metric=metric) for y in ys] for x in xs])
    if metric in ("procrustes", "angular_procrustes"):
        want = expected
    else:
        want = 1.0 - expected
    # Activations are float32; the streaming accumulator multiplies in float64, the in-memory path in float32.
    np.testing.assert_allclose(res.values, want, rtol=2e-5, atol=2e-5)


def test_compare_cnn_flattens_conv_maps_and_accepts_unlabelled_batches():
    batches, data = loader(n=64, batch=16, shape=(1, 8, 8), labels=False)
    a, b = SmallCNN(0), SmallCNN(1)
    res = compare(a, b, batches, ["conv1", "conv2"], ["conv2", "fc"], pool="flatten", progress=False)
    xs, ys = by_hand(a, data, ["conv1", "conv2"]), by_hand(b, data, ["conv2", "fc"])
    want = [[reprsim.cka(x, y) for y in ys] for x in xs]
    np.testing.assert_allclose(res.values, want, rtol=2e-5)


def test_compare_transformer_with_mean_pooling_over_a_dict_loader():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, batch_first=True, dropout=0.0)
    enc = torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = enc

        def forward(self, inputs, attention_mask):
            return self.enc(inputs, src_key_padding_mask=attention_mask == 0)

    model = Wrap()
    g = torch.Generator().manual_seed(3)
    inputs = torch.randn(24, 5, 8, generator=g)
    mask = torch.ones(24, 5, dtype=torch.long)
    mask[::3, 3:] = 0
    batches = [{"inputs": inputs[i:i + 8], "attention_mask": mask[i:i + 8], "labels": torch.zeros(8)}
               for i in range(0, 24, 8)]
    names = ["enc.layers.0", "enc.layers.1"]
    res = compare(model, model, batches, names, names, pool="mean", progress=False)
    np.testing.assert_allclose(np.diag(res.values), 1.0, rtol=1e-9)
    # Hand computation of the masked mean of layer 0 and layer 1.
    acts = {}
    hooks = [dict(model.named_modules())[nm].register_forward_hook(
        lambda m, i, o, nm=nm: acts.setdefault(nm, []).append(o.detach())) for nm in names]
    with torch.no_grad():
        model.eval()
        for bt in batches:
            model(bt["inputs"], bt["attention_mask"])
    for h in hooks:
        h.remove()
    pooled = []
    for nm in names:
        h = torch.cat(acts[nm])
        w = mask.unsqueeze(-1).to(h.dtype)
        pooled.append(((h * w).sum(1) / w.sum(1)).numpy())
    assert res.values[0, 1] == pytest.approx(reprsim.cka(pooled[0], pooled[1]), rel=2e-5)


def test_compare_restores_training_mode_and_honours_max_batches():
    batches, data = loader(n=100, batch=20)
    a, b = mlp(0), mlp(1)
    a.train()
    b.eval()
    res = compare(a, b, batches, ["2"], ["2"], max_batches=2, progress=False)
    assert a.training and not b.training
    assert res.n_samples == 40
    xs, ys = by_hand(a, data[:40], ["2"]), by_hand(b, data[:40], ["2"])
    assert res.values[0, 0] == pytest.approx(reprsim.cka(xs[0], ys[0]), rel=2e-5)


def test_compare_minibatch_cka_equals_function_on_same_batches():
    batches, data = loader(n=96, batch=32)
    a, b = mlp(0), mlp(3)
    res = compare(a, b, batches, ["2"], ["4"], metric="minibatch_cka", progress=False)
    x, y = by_hand(a, data, ["2"])[0], by_hand(b, data, ["4"])[0]
    assert res.values[0, 0] == pytest.approx(reprsim.minibatch_cka(x, y, batch_size=32), rel=2e-5)


def test_compare_rejects_unknown_metric_and_layer():
    batches, _ = loader()
    with pytest.raises(ValueError, match="unknown metric 'kca'"):
        compare(mlp(0), mlp(0), batches, LAYERS, LAYERS, metric="kca")
    with pytest.raises(ValueError, match="no module named '9'"):
        compare(mlp(0), mlp(0), batches, ["9"], LAYERS, progress=False)


def test_compare_result_to_pandas_and_plot(tmp_path):
    batches, _ = loader()
    res = compare(mlp(0), mlp(1), batches, LAYERS, LAYERS, progress=False)
    pd = pytest.importorskip("pandas")
    df = res.to_pandas()
    assert isinstance(df, pd.DataFrame) and list(df.index) == LAYERS
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    ax = res.plot()
    ax.figure.savefig(tmp_path / "heatmap.png")
    assert (tmp_path / "heatmap.png").stat().st_size > 1000


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_every_measure_on_the_device_path_matches_the_cpu_path(forced_device, dtype, rtol):
    # The GPU path's torch arithmetic, run here on CPU tensors, against the C++ in-memory path.
    g = torch.Generator().manual_seed(0)
    n = 9000  # more than one row chunk
    x = (torch.randn(n, 12, generator=g, dtype=torch.float64) + 50.0).to(dtype)
    y = (x[:, :7].to(torch.float64) @ torch.randn(7, 9, generator=g, dtype=torch.float64)
         + torch.randn(n, 9, generator=g, dtype=torch.float64)).to(dtype)
    xn, yn = x.numpy(), y.numpy()
    for name, info in reprsim.METRICS.items():
        if info.statistics == "kernel":
            got, want = reprsim.measure(x[:400], y[:400], name), reprsim.measure(xn[:400], yn[:400], name)
        else:
            got, want = reprsim.measure(x, y, name), reprsim.measure(xn, yn, name)
        assert got == pytest.approx(want, rel=rtol, abs=rtol), name
        assert reprsim.distance(x[:500], y[:500], name) == pytest.approx(
            reprsim.distance(xn[:500], yn[:500], name), rel=rtol, abs=rtol), name
    assert reprsim.canonical_correlations(x, y) == pytest.approx(reprsim.canonical_correlations(xn, yn), rel=1e-9)
    s, t = reprsim.cca_summary(x, y), reprsim.cca_summary(xn, yn)
    assert (s.mean_cca, s.pwcca) == pytest.approx((t.mean_cca, t.pwcca), rel=1e-9)


def test_pairwise_and_inference_on_the_device_path_match_the_cpu_path(forced_device):
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(60, p, generator=g, dtype=torch.float64) for p in (5, 8, 3)]
    for metric in ("cka", "ensd", "pwcca", "procrustes", "rbf_cka", "minibatch_cka"):
        got = reprsim.pairwise(xs, metric=metric)
        want = reprsim.pairwise([t.numpy() for t in xs], metric=metric)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=metric)
    res = reprsim.permutation_test(xs[0], xs[1], "ensd", n_permutations=20, seed=3)
    want = reprsim.permutation_test(xs[0].numpy(), xs[1].numpy(), "ensd", n_permutations=20, seed=3)
    np.testing.assert_allclose(res.null_distribution, want.null_distribution, rtol=1e-9)
    boot = reprsim.bootstrap(xs[0], xs[1], "cka", n_resamples=20, seed=3, method="percentile")
    want = reprsim.bootstrap(xs[0].numpy(), xs[1].numpy(), "cka", n_resamples=20, seed=3, method="percentile")
    np.testing.assert_allclose(boot.bootstrap_distribution, want.bootstrap_distribution, rtol=1e-9)
    cal = reprsim.calibrated_cka(xs[0], xs[1], n_permutations=10, seed=0)
    assert cal.calibrated == pytest.approx(reprsim.calibrated_cka(xs[0].numpy(), xs[1].numpy()).calibrated, rel=1e-9)


def test_device_cca_of_rank_deficient_float32_activations_equals_the_cpu_path(forced_device):
    # A 64-wide layer computed from 16 inputs has rank 16. Float32 cross-products leave rounding noise of
    # ~√ε₃₂ relative in its null space, which whitening amplifies: the CCA family's products on the device
    # run in float64, like the C++ path's.
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2048, 16, generator=g)
    x = z @ torch.randn(16, 64, generator=g) + torch.randn(64, generator=g)
    y = z[:, :12] @ torch.randn(12, 32, generator=g) + 0.1 * torch.randn(2048, 32, generator=g)
    xn, yn = x.numpy(), y.numpy()
    assert reprsim.mean_cca(x, y) == pytest.approx(reprsim.mean_cca(xn, yn), rel=1e-9)
    assert reprsim.pwcca(x, y) == pytest.approx(reprsim.pwcca(xn, yn), rel=1e-9)
    assert reprsim.svcca(x, y) == pytest.approx(reprsim.svcca(xn, yn), rel=1e-9)
    # The same data with float32 products is visibly wrong (the reason for the rule above).
    from reprsim.torch._backend import CHUNK_ROWS, DeviceMoments
    from reprsim import _core
    from reprsim._streaming import _StateSet

    m = DeviceMoments.from_tensors([x], [y], CHUNK_ROWS)
    f32 = _StateSet("factor", _core.StreamState.from_dict(m.to_raw(float(np.finfo(np.float32).eps))), ["x"], ["y"])
    assert abs(f32.pair(0, 0).cca("mean") - reprsim.mean_cca(xn, yn)) > 1e-2


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_device_cka_reduces_on_the_device_and_matches_the_cpu_path(forced_device, dtype, rtol):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(9000, 20, generator=g, dtype=torch.float64) + 100.0).to(dtype)  # several row chunks
    y = (x[:, :10].to(torch.float64) @ torch.randn(10, 15, generator=g, dtype=torch.float64)).to(dtype)
    for debiased in (False, True):
        want = reprsim.cka(x.numpy(), y.numpy(), debiased=debiased)
        assert reprsim.cka(x, y, debiased=debiased) == pytest.approx(want, rel=rtol), debiased
    with pytest.raises(ValueError, match="x has zero variance"):
        reprsim.cka(torch.ones(50, 3, dtype=dtype), y[:50])
    with pytest.raises(ValueError, match="needs at least 4"):
        reprsim.cka(x[:3], y[:3], debiased=True)


def test_device_path_rejects_bad_tensors(forced_device):
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match="same number of samples"):
        reprsim.cka(x, torch.randn(9, 3))
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="y contains NaN"):
        reprsim.cka(x, bad)
    with pytest.raises(ValueError, match="2-D"):
        reprsim.cka(x, torch.randn(10))
    with pytest.raises(TypeError, match="meta device"):
        reprsim.cka(x, torch.empty(10, 3, device="meta"))
    with pytest.raises(TypeError, match="tensors on one device"):
        reprsim.cka(x, np.ones((10, 3)))


def _distributed_worker(rank, world, port, path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        batches, _ = loader(n=120, batch=20)
        mine = batches[rank::world]  # each rank streams its own shard
        res = compare(mlp(0), mlp(1), mine, LAYERS, LAYERS, metric="debiased_cka", progress=False)
        np.save(f"{path}/rank{rank}.npy", np.append(res.values.ravel(), res.n_samples))
        mb = compare(mlp(0), mlp(1), mine, LAYERS, LAYERS, metric="minibatch_cka", progress=False)
        np.save(f"{path}/mb{rank}.npy", np.append(mb.values.ravel(), mb.n_samples))
    finally:
        dist.destroy_process_group()


def test_compare_merges_shards_across_torch_distributed_ranks(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_distributed_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    batches, _ = loader(n=120, batch=20)
    full = compare(mlp(0), mlp(1), batches, LAYERS, LAYERS, metric="debiased_cka", progress=False)
    for rank in range(2):
        got = np.load(tmp_path / f"rank{rank}.npy")
        assert got[-1] == 120
        # Each rank's 60 rows are kept as rows (cheaper than moments at this size) and finalised in memory with
        # the activations' float32 products; the full run turns its rows into float64 moments: they agree to
        # float32 rounding.
        np.testing.assert_allclose(got[:-1].reshape(3, 3), full.values, rtol=1e-5)
    # Minibatch CKA: every rank's minibatch terms, summed, are the full run's.
    mb = compare(mlp(0), mlp(1), batches, LAYERS, LAYERS, metric="minibatch_cka", progress=False)
    for rank in range(2):
        got = np.load(tmp_path / f"mb{rank}.npy")
        assert got[-1] == 120
        np.testing.assert_allclose(got[:-1].reshape(3, 3), mb.values, rtol=1e-12)


def test_compare_tiny_bert_with_attention_mask():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16)
    torch.manual_seed(0)
    bert = transformers.BertModel(config)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 50, (24, 8), generator=g)
    mask = torch.ones(24, 8, dtype=torch.long)
    mask[::2, 5:] = 0
    batches = [{"input_ids": ids[i:i + 8], "attention_mask": mask[i:i + 8]} for i in range(0, 24, 8)]
    names = ["encoder.layer.0", "encoder.layer.1"]
    res = compare(bert, bert, batches, names, names, pool="mean", progress=False)
    np.testing.assert_allclose(np.diag(res.values), 1.0, rtol=1e-9)
    assert np.all(np.isfinite(res.values))


def test_streaming_similarity_device_path_equals_cpu_path(forced_device):
    # Tensors on a GPU take the torch path; forcing it here runs the same code on CPU tensors.
    g = torch.Generator().manual_seed(5)
    x = torch.randn(300, 6, generator=g, dtype=torch.float64) + 20.0
    y = x[:, :4] @ torch.randn(4, 5, generator=g, dtype=torch.float64) + torch.randn(300, 5, generator=g,
                                                                                       dtype=torch.float64)
    cpu = reprsim.StreamingSimilarity()
    for s in range(0, 300, 70):
        cpu.update(x[s:s + 70].numpy(), y[s:s + 70].numpy())
    dev = reprsim.StreamingSimilarity(route="moments")
    for s in range(0, 300, 70):
        dev.update(x[s:s + 70], y[s:s + 70])
    assert dev._dev is not None and dev.n_seen == 300
    for metric in sorted(m for m, info in reprsim.METRICS.items() if info.statistics in ("moments", "factor")):
        assert dev.distance(metric) == pytest.approx(cpu.distance(metric), rel=1e-9, abs=1e-12), metric
    bad = y[:10].clone()
    bad[3, 2] = float("inf")
    with pytest.raises(ValueError, match="y contains NaN or Inf"):
        dev.update(x[:10], bad)
    assert dev.n_seen == 300
    with pytest.raises(ValueError, match="earlier batches had 6 features"):
        dev.update(x[:10, :5], y[:10])
    # Device moments merge with CPU moments and survive a state round trip.
    half = reprsim.StreamingSimilarity().update(x[:150].numpy(), y[:150].numpy())
    rest = reprsim.StreamingSimilarity(route="moments").update(x[150:], y[150:])
    merged = reprsim.StreamingSimilarity.from_state(half.merge(rest).state())
    assert merged.cka(debiased=True) == pytest.approx(cpu.cka(debiased=True), rel=1e-9)


@pytest.mark.parametrize("metric", ["pwcca", "mean_cca", "cka", "procrustes"])
def test_compare_device_path_on_rank_deficient_layers_equals_cpu_path(request, metric):
    # Layer "0" maps 10 inputs to 32 units (rank 10): the device path must make the CPU path's rank decisions.
    batches, _ = loader(n=400, batch=50)
    want = compare(mlp(0), mlp(1), batches, LAYERS, LAYERS, metric=metric, progress=False).values
    request.getfixturevalue("forced_device")
    got = compare(mlp(0), mlp(1), batches, LAYERS, LAYERS, metric=metric, progress=False).values
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


# -- devices, restoring the models, and the memory plan ------------------------------------------------------


def _snapshot(model):
    """Everything compare must leave as it found it."""
    return {
        "params": [(name, p, p.data.data_ptr(), p.device, p.dtype, p.requires_grad, p.detach().clone(),
                    None if p.grad is None else p.grad.clone()) for name, p in model.named_parameters()],
        "buffers": [(name, b, b.data_ptr(), b.clone()) for name, b in model.named_buffers()],
        "training": [(name, m.training) for name, m in model.named_modules()],
    }


def _assert_unchanged(model, snap):
    params = dict(model.named_parameters())
    for name, p, ptr, device, dtype, requires_grad, value, grad in snap["params"]:
        assert params[name] is p, name  # the same Parameter object
        assert p.device == device and p.dtype == dtype and p.requires_grad == requires_grad, name
        assert p.data.data_ptr() == ptr, name  # on the same storage
        assert torch.equal(p.detach(), value), name
        assert (p.grad is None) == (grad is None) and (grad is None or torch.equal(p.grad, grad)), name
    buffers = dict(model.named_buffers())
    for name, b, ptr, value in snap["buffers"]:
        assert buffers[name] is b and b.data_ptr() == ptr and torch.equal(b, value), name
    assert [(name, m.training) for name, m in model.named_modules()] == snap["training"]


class Flaky(torch.nn.Module):
    """An MLP with a BatchNorm (buffers), a frozen layer, a gradient, mixed training flags, and a forward pass
    that fails on its `fail_at`-th call."""

    def __init__(self, fail_at=None):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                                        torch.nn.Linear(16, 8))
        self.body[0].weight.requires_grad_(False)
        self.body[3].weight.grad = torch.ones_like(self.body[3].weight)
        self.train()
        self.body[1].eval()  # a frozen BatchNorm inside a model in training mode
        self.calls, self.fail_at = 0, fail_at

    def forward(self, x):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError("failure in the middle of the loader")
        return self.body(x)


@pytest.mark.parametrize("device,error,match", [
    ("meta", ValueError, "meta device holds no data"),
    ("cuda:7", ValueError, "CUDA"),
    ("gpu", ValueError, "is not a torch device"),
    (3.5, TypeError, "device must be a string"),
])
def test_compare_refuses_an_unusable_device_before_moving_anything(device, error, match):
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    a, b = Flaky(), Flaky()
    before = _snapshot(a), _snapshot(b)
    batches, _ = loader(n=40, batch=20)
    with pytest.raises(error, match=match):
        compare(a, b, batches, ["body.0"], ["body.0"], device=device, progress=False)
    assert a.calls == 0 and b.calls == 0
    _assert_unchanged(a, before[0])
    _assert_unchanged(b, before[1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a torch without CUDA")
def test_compare_on_cuda_without_cuda_names_the_fix():
    with pytest.raises(ValueError,
                       match=r"device='cuda'.*(no CUDA support|no CUDA device).*device='cpu', or device=None"):
        compare(mlp(0), mlp(1), loader()[0], LAYERS, LAYERS, device="cuda", progress=False)


@pytest.fixture
def moving_device(monkeypatch):
    """compare's device argument resolved to the meta device: a real move of every parameter (and the loss of
    their values, were they not put back) on a machine without a second device."""
    from reprsim.torch import _compare

    monkeypatch.setattr(_compare, "resolve_device", lambda device: torch.device("meta"))


@pytest.mark.parametrize("fail_at", [1, 3])
def test_compare_puts_moved_models_back_exactly_after_an_error(moving_device, fail_at):
    # The meta reproducer: compare(m, m2, ..., device="meta") once left m on the meta device, its weights gone.
    a, b = Flaky(fail_at=fail_at), Flaky()
    before = _snapshot(a), _snapshot(b)
    batches, _ = loader(n=60, batch=20)
    with pytest.raises((RuntimeError, TypeError, ValueError)):
        compare(a, b, batches, ["body.0", "body.3"], ["body.3"], device="anything", progress=False)
    _assert_unchanged(a, before[0])
    _assert_unchanged(b, before[1])


def test_compare_restores_models_after_an_error_mid_forward_without_moving_them():
    a, b = Flaky(fail_at=3), Flaky()
    before = _snapshot(a), _snapshot(b)
    batches, _ = loader(n=100, batch=20)
    with pytest.raises(RuntimeError, match="failure in the middle"):
        compare(a, b, batches, ["body.0"], ["body.3"], progress=False)
    assert a.calls == 3  # the probe, then two batches
    _assert_unchanged(a, before[0])
    _assert_unchanged(b, before[1])


@pytest.mark.parametrize("move", [False, True])
def test_compare_restores_models_after_keyboard_interrupt(request, move):
    if move:
        request.getfixturevalue("moving_device")
    a, b = Flaky(), Flaky()
    before = _snapshot(a), _snapshot(b)
    batches, _ = loader(n=100, batch=20)

    def interrupted():
        # Batches on the meta device cannot be accumulated: there, the interruption comes with the first batch.
        yield from batches[:0 if move else 2]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compare(a, b, interrupted(), ["body.0"], ["body.3"], device="x" if move else None, progress=False)
    _assert_unchanged(a, before[0])
    _assert_unchanged(b, before[1])


def test_model_state_finishes_restoring_when_interrupted_during_the_restoration():
    from reprsim.torch._placement import ModelState

    model = Flaky()
    before = _snapshot(model)
    state = ModelState(model, tensors=True)
    model.to("meta")
    model.eval()
    original = ModelState._restore_one
    raised = []

    def interrupt_once(self, item):
        if not raised and item[0] == "param":
            raised.append(True)
            raise KeyboardInterrupt
        original(self, item)

    ModelState._restore_one = interrupt_once
    try:
        with pytest.raises(KeyboardInterrupt):
            state.restore()
    finally:
        ModelState._restore_one = original
    assert raised
    _assert_unchanged(model, before)


def test_compare_runs_each_model_where_it_is_and_leaves_it_there():
    a, b = mlp(0), mlp(1)
    before = _snapshot(a), _snapshot(b)
    batches, data = loader(n=60, batch=20)
    res = compare(a, b, batches, ["2"], ["2"], progress=False)
    _assert_unchanged(a, before[0])
    _assert_unchanged(b, before[1])
    want = reprsim.cka(by_hand(a, data, ["2"])[0], by_hand(b, data, ["2"])[0])
    assert res.values[0, 0] == pytest.approx(want, rel=2e-5)


def test_compare_refuses_a_model_on_the_meta_device():
    with torch.device("meta"):
        ghost = mlp(0)
    with pytest.raises(ValueError, match="model_b has parameters on the meta device"):
        compare(mlp(0), ghost, loader()[0], LAYERS, LAYERS, progress=False)


class CountingLoader:
    """A loader that counts the batches taken from it, with a dataset length like a DataLoader's."""

    def __init__(self, batches, n):
        self.batches, self.dataset, self.taken = batches, range(n), 0

    def __iter__(self):
        for b in self.batches:
            self.taken += 1
            yield b

    def __len__(self):
        return len(self.batches)


def test_compare_refuses_a_run_that_cannot_fit_before_any_batch_of_the_loader_runs(monkeypatch):
    from reprsim import _memory

    batches, _ = loader(n=64, batch=16, shape=(1, 8, 8), labels=False)
    counting = CountingLoader(batches, 64)
    a, b = SmallCNN(0), SmallCNN(1)
    sizes = []
    a.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    monkeypatch.setattr(_memory, "available_memory", lambda: 300_000)  # about 0.7 MB would be needed
    with pytest.raises(ValueError) as info:
        compare(a, b, counting, ["conv1", "conv2"], ["conv2"], pool="flatten", progress=False)
    message = str(info.value)
    assert sizes == [2]  # only the probe, on two samples of the first batch
    assert counting.taken == 1  # the first batch, taken to probe it; never fed whole
    assert "no batch of the loader has run yet" in message
    assert "about 64 rows (64 samples: len(loader.dataset))" in message
    assert "'conv1' 256, 'conv2' 384" in message  # the widths: 4 × 8 × 8 and 6 × 8 × 8 flattened
    assert "pool='gap' (6 features)" in message and "minibatch_cka" in message
    assert "max_batches=1 (the first 16 samples fit)" in message
    assert "layers_a=/layers_b=" in message


def test_compare_picks_the_rows_route_for_wide_layers_and_runs_within_its_memory(monkeypatch):
    # Layers wider than the number of rows: the rows (n × Σp) are smaller than the moments (Σp² + Σp_a·p_b);
    # with memory for the rows but not for the moments, compare runs (on the rows route) and gives the
    # in-memory values.
    from reprsim import _memory
    from reprsim.torch import _plan

    batches, data = loader(n=48, batch=16, shape=(1, 8, 8), labels=False)
    a, b = SmallCNN(0), SmallCNN(1)
    plan = _plan.Plan([_plan.ProbedLayer(0, "conv1", 256, (2, 4, 8, 8), 1.0, "one per input sample", None, 4),
                       _plan.ProbedLayer(1, "conv2", 384, (2, 6, 8, 8), 1.0, "one per input sample", None, 4)],
                      48, "len(loader.dataset)", 16, "cka", frozenset({"moments"}), on_device=False)
    route, need, _ = plan.need(plan.rows)
    moments = _plan.moments_bytes([256], [384])
    assert route == "rows" and need < moments
    monkeypatch.setattr(_memory, "available_memory", lambda: (need + moments) // 2)
    res = compare(a, b, CountingLoader(batches, 48), ["conv1"], ["conv2"], pool="flatten", progress=False)
    x, y = by_hand(a, data, ["conv1"])[0], by_hand(b, data, ["conv2"])[0]
    assert res.values[0, 0] == pytest.approx(reprsim.cka(x, y), rel=2e-5)


def test_memory_plan_of_a_flattened_vit_tiny_at_500_samples_keeps_the_rows():
    # ViT-tiny at 128 × 128 (65 tokens × 192 features = 12 480 per layer, 12 blocks per model), n = 500:
    # the rows are 500 × 12 480 × 24 × 4 B ≈ 0.6 GB (twice that while they are concatenated), the moments
    # 195 GiB.
    from reprsim.torch import _plan

    layers = [_plan.ProbedLayer(side, f"encoder.layer.{i}", 12480, (2, 65, 192), 1.0, "one per input sample", None, 4)
              for side in (0, 1) for i in range(12)]
    plan = _plan.Plan(layers, 500, "len(loader.dataset)", 50, "cka", frozenset({"moments"}), on_device=False)
    route, need, _ = plan.need(plan.rows)
    rows_bytes = 500 * 12480 * 24 * 4
    assert route == "rows" and 2 * rows_bytes < need < 2 * rows_bytes + 200e6
    assert plan.need(None)[0] == "moments" and plan.need(None)[1] > 190 * 2**30  # n unknown: moments must fit


def test_probe_leaves_no_trace_in_buffers():
    class Counter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(10, 4)
            self.register_buffer("seen", torch.zeros(()))

        def forward(self, x):
            self.seen += x.shape[0]  # a model that updates a buffer when it runs
            return self.lin(x)

    model = Counter()
    batches, _ = loader(n=60, batch=20)
    compare(model, mlp(1), batches, ["lin"], ["2"], progress=False)
    assert float(model.seen) == 60.0  # the loader's samples, not the probe's two


def test_compare_returns_a_labelled_comparison():
    batches, _ = loader()
    res = compare(mlp(0), mlp(1), batches, LAYERS, ["2", "4"], metric="procrustes", names=("seed 0", "seed 1"),
                  progress=False)
    assert isinstance(res, reprsim.Comparison) and isinstance(res, reprsim.torch.CompareResult)
    assert res.value_kind == "distance" and res.rows == LAYERS and res.columns == ["2", "4"]
    assert res.at["4", "2"] == res.values[2, 0] and np.asarray(res).shape == (3, 2)
    pd = pytest.importorskip("pandas")
    df = res.to_pandas()
    assert isinstance(df, pd.DataFrame) and df.index.name == "seed 0" and df.columns.name == "seed 1"


def test_compare_minibatch_cka_keeps_only_the_terms():
    # The minibatch estimator's memory is one batch's: nothing else is accumulated.
    from reprsim.torch._feed import MinibatchTerms

    batches, data = loader(n=96, batch=32)
    res = compare(mlp(0), mlp(3), batches, ["2", "4"], ["4"], metric="minibatch_cka", debiased=False,
                  progress=False)
    x, y = by_hand(mlp(0), data, ["2", "4"]), by_hand(mlp(3), data, ["4"])[0]
    for i in range(2):
        assert res.values[i, 0] == pytest.approx(reprsim.minibatch_cka(x[i], y, batch_size=32, debiased=False),
                                                 rel=2e-5)
    acc = MinibatchTerms(["a"], ["b"], True)
    assert set(vars(acc)) == {"names_x", "names_y", "debiased", "xy", "xx", "yy", "batches", "n_seen", "_widths"}


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_compare_on_cuda_moves_cpu_models_there_and_back():
    batches, _ = loader(n=200, batch=50)
    a, b = mlp(0), mlp(1)
    want = compare(a, b, batches, LAYERS, LAYERS, metric="debiased_cka", progress=False).values
    before = _snapshot(a), _snapshot(b)
    got = compare(a, b, batches, LAYERS, LAYERS, metric="debiased_cka", device="cuda", progress=False).values
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    _assert_unchanged(a, before[0])
    _assert_unchanged(b, before[1])


@needs_cuda
def test_compare_runs_gpu_models_where_they_are_with_cpu_batches():
    batches, _ = loader(n=200, batch=50)
    want = compare(mlp(0), mlp(1), batches, LAYERS, LAYERS, progress=False).values
    a, b = mlp(0).cuda(), mlp(1).cuda()
    got = compare(a, b, batches, LAYERS, LAYERS, progress=False).values
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert all(p.is_cuda for p in a.parameters())
    mixed = compare(mlp(0), b, batches, LAYERS, LAYERS, progress=False).values  # model b's activations move to a's
    np.testing.assert_allclose(mixed, want, rtol=1e-5, atol=1e-7)


@needs_cuda
def test_compare_checks_gpu_memory_before_the_first_batch(monkeypatch):
    batches, _ = loader(n=64, batch=16, shape=(1, 8, 8), labels=False)
    counting = CountingLoader(batches, 64)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 10**9))
    with pytest.raises(ValueError, match="of GPU memory on cuda"):
        compare(SmallCNN(0).cuda(), SmallCNN(1).cuda(), counting, ["conv1"], ["conv2"], pool="flatten",
                progress=False)
    assert counting.taken == 1


def test_compare_with_an_unknown_number_of_samples_needs_the_moments_to_fit_or_max_batches(monkeypatch):
    from reprsim import _memory

    batches, data = loader(n=64, batch=16, shape=(1, 8, 8), labels=False)
    monkeypatch.setattr(_memory, "available_memory", lambda: 2_000_000)  # the moments need about 11 MiB
    a, b = SmallCNN(0), SmallCNN(1)
    with pytest.raises(ValueError, match=r"(?s)route 'moments'.*unknown number of rows.*max_batches=10 "):
        compare(a, b, (t for t in batches), ["conv1", "conv2"], ["conv2"], pool="flatten", progress=False)
    res = compare(a, b, (t for t in batches), ["conv1", "conv2"], ["conv2"], pool="flatten", max_batches=10,
                  progress=False)
    x, y = by_hand(a, data, ["conv2"])[0], by_hand(b, data, ["conv2"])[0]
    assert res.n_samples == 64 and res.values[1, 0] == pytest.approx(reprsim.cka(x, y), rel=2e-5)


def test_compare_refuses_an_empty_loader():
    with pytest.raises(ValueError, match="the loader yielded no batch"):
        compare(mlp(0), mlp(1), [], LAYERS, LAYERS, progress=False)
