"""reprsim.torch.compare with pooling strategies per layer, tokens and positions as samples, and short
minibatches — each against activations collected by hand and the float64 numpy reference."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import reference as ref  # noqa: E402
from reprsim.torch import compare  # noqa: E402


class TinyDecoder(torch.nn.Module):
    """(batch, tokens) ids → (batch, tokens, hidden) states, each token seeing only earlier real tokens."""

    def __init__(self, seed, vocab=30, width=6):
        super().__init__()
        torch.manual_seed(seed)
        self.emb = torch.nn.Embedding(vocab, width)
        self.mix = torch.nn.Linear(width, width)
        self.block = torch.nn.Identity()
        self.pooler = torch.nn.Linear(width, 3)

    def forward(self, input_ids, attention_mask):
        h = torch.tanh(self.mix(self.emb(input_ids))) * attention_mask.unsqueeze(-1)
        h = self.block(torch.cumsum(h, dim=1) + h)  # causal: position t sums the real tokens up to t
        return self.pooler(h[:, -1])


def padded_batches(n=60, steps=7, batch=16, left=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 30, (n, steps), generator=g)
    lengths = torch.randint(1, steps + 1, (n,), generator=g)
    pos = torch.arange(steps)
    mask = (pos >= steps - lengths[:, None]) if left else (pos < lengths[:, None])
    mask = mask.long()
    batches = [{"input_ids": ids[i:i + batch], "attention_mask": mask[i:i + batch]} for i in range(0, n, batch)]
    return batches, ids, mask


def states(model, ids, mask):
    out = {}
    h = model.block.register_forward_hook(lambda m, i, o: out.__setitem__("h", o.detach()))
    with torch.no_grad():
        model(ids, mask)
    h.remove()
    return out["h"].numpy()


def test_last_token_of_left_padded_batches_is_the_last_real_token():
    # Regression: "last" took position sum(mask) - 1, a padding token for left-padded samples.
    batches, ids, mask = padded_batches(left=True)
    a, b = TinyDecoder(0), TinyDecoder(1)
    res = compare(a, b, batches, ["block"], ["block"], pool="last", progress=False)
    ha, hb = states(a, ids, mask), states(b, ids, mask)
    want = ref.cka(ha[:, -1], hb[:, -1])  # left padding: the last real token is at the last position
    assert res.values[0, 0] == pytest.approx(want, rel=1e-6)
    lengths = mask.sum(1).numpy()
    naive = ref.cka(ha[np.arange(60), lengths - 1], hb[np.arange(60), lengths - 1])
    assert abs(naive - want) > 0.01  # the old index gives another number


@pytest.mark.parametrize("left", [True, False])
def test_tokens_as_samples_use_every_unmasked_token_and_no_padding(left):
    batches, ids, mask = padded_batches(left=left)
    a, b = TinyDecoder(0), TinyDecoder(2)
    res = compare(a, b, batches, ["block"], ["block"], pool="tokens", progress=False)
    m = mask.numpy() == 1
    ha, hb = states(a, ids, mask), states(b, ids, mask)
    assert res.n_samples == m.sum()
    assert res.values[0, 0] == pytest.approx(ref.cka(ha[m], hb[m]), rel=1e-6)
    with_padding = ref.cka(ha.reshape(-1, 6), hb.reshape(-1, 6))  # what reshape(-1, d) gave
    assert abs(with_padding - res.values[0, 0]) > 1e-3


def test_tokens_from_models_that_tokenise_differently_are_refused():
    class ExtraToken(torch.nn.Module):  # prepends a learned token, like a [CLS]
        def __init__(self):
            super().__init__()
            self.cls = torch.nn.Parameter(torch.randn(1, 1, 4))
            self.out = torch.nn.Identity()

        def forward(self, x):
            return self.out(torch.cat([self.cls.expand(x.shape[0], 1, 4), x], dim=1))

    plain = torch.nn.Sequential(torch.nn.Identity())
    batches = [torch.randn(5, 6, 4) for _ in range(2)]
    with pytest.raises(ValueError, match=r"batch 0: the layers gave different numbers of rows \(model a '0': 30 "
                                         r"rows .*model b 'out': 35 rows.*must see the same tokens"):
        compare(plain, ExtraToken(), batches, ["0"], ["out"], pool="tokens", progress=False)
    with pytest.raises(ValueError, match=r"make rows in different ways.*one per input sample.*one per token"):
        compare(plain, ExtraToken(), batches, ["0"], ["out"], pool={"0": "tokens", "out": "mean"}, progress=False)


class TwoScaleCNN(torch.nn.Module):
    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = torch.nn.Conv2d(2, 5, 3, padding=1)            # 8 × 8
        self.conv2 = torch.nn.Conv2d(5, 7, 3, padding=1, stride=2)  # 4 × 4
        self.fc = torch.nn.Linear(7, 3)

    def forward(self, x):
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(h.mean((2, 3)))


def maps(model, data, names):
    acts = {}
    hooks = [dict(model.named_modules())[n].register_forward_hook(
        lambda m, i, o, n=n: acts.__setitem__(n, o.detach().numpy())) for n in names]
    with torch.no_grad():
        model(data)
    for h in hooks:
        h.remove()
    return [acts[n] for n in names]


def image_batches(n=48, batch=12):
    g = torch.Generator().manual_seed(5)
    data = torch.randn(n, 2, 8, 8, generator=g)
    return [data[i:i + batch] for i in range(0, n, batch)], data


def test_conv_maps_with_global_average_and_adaptive_pooling_equal_hand_computation():
    # Regression: pool="mean" on (batch, C, H, W) maps raised; the strategies for maps are "gap" and "adaptive".
    batches, data = image_batches()
    a, b = TwoScaleCNN(0), TwoScaleCNN(1)
    names = ["conv1", "conv2", "fc"]
    xa, xb = maps(a, data, names), maps(b, data, names)
    res = compare(a, b, batches, names, names, pool="gap", progress=False)
    gap = [[x.mean((2, 3)) if x.ndim == 4 else x for x in xs] for xs in (xa, xb)]
    want = [[ref.cka(x, y) for y in gap[1]] for x in gap[0]]
    np.testing.assert_allclose(res.values, want, rtol=1e-5)
    # A 2 × 2 grid for both resolutions: 8 × 8 averages 4 × 4 blocks, 4 × 4 averages 2 × 2 blocks.
    res = compare(a, b, batches, ["conv1"], ["conv2"], pool=("adaptive", 2, 2), progress=False)
    x = xa[0].reshape(48, 5, 2, 4, 2, 4).mean((3, 5)).reshape(48, -1)
    y = xb[1].reshape(48, 7, 2, 2, 2, 2).mean((3, 5)).reshape(48, -1)
    assert res.values[0, 0] == pytest.approx(ref.cka(x, y), rel=1e-5)


def test_positions_as_samples_need_one_grid_and_equal_hand_computation():
    batches, data = image_batches()
    a, b = TwoScaleCNN(0), TwoScaleCNN(1)
    res = compare(a, b, batches, ["conv2"], ["conv2"], pool="spatial", progress=False)
    xa, xb = maps(a, data, ["conv2"])[0], maps(b, data, ["conv2"])[0]
    rows = [x.transpose(0, 2, 3, 1).reshape(-1, 7) for x in (xa, xb)]
    assert res.n_samples == 48 * 16
    assert res.values[0, 0] == pytest.approx(ref.cka(*rows), rel=1e-5)
    # A row cap keeps the same positions in both models: the diagonal stays 1.
    res = compare(a, a, batches, ["conv2"], ["conv2"], pool=("spatial", 50), progress=False)
    assert res.n_samples == 4 * 50 and res.values[0, 0] == pytest.approx(1.0, abs=1e-6)
    # The cap must not hide grids of different sizes (64 and 16 positions per image, both capped to 50 rows).
    with pytest.raises(ValueError, match=r"768 rows.*192 rows.*same grid.*\('adaptive', h, w\)"):
        compare(a, b, batches, ["conv1"], ["conv2"], pool=("spatial", 50), progress=False)


def test_pool_per_layer_and_two_dimensional_layers_under_a_sequence_strategy():
    # Regression: pool="mean" with a 2-D pooler among the layers raised; now 2-D outputs pass through and
    # a dict gives each layer its own strategy (names of either model).
    batches, ids, mask = padded_batches(left=False)
    a, b = TinyDecoder(0), TinyDecoder(3)
    res = compare(a, b, batches, ["block", "pooler"], ["block", "pooler"], pool="mean", progress=False)
    ha, hb = states(a, ids, mask), states(b, ids, mask)
    m = mask.numpy()[..., None]
    mean_a, mean_b = (ha * m).sum(1) / m.sum(1), (hb * m).sum(1) / m.sum(1)
    with torch.no_grad():
        pa, pb = a(ids, mask).numpy(), b(ids, mask).numpy()
    want = [[ref.cka(x, y) for y in (mean_b, pb)] for x in (mean_a, pa)]
    np.testing.assert_allclose(res.values, want, rtol=1e-5)
    res = compare(a, b, batches, ["block"], ["block", "pooler"], pool={"block": "first"}, progress=False)
    first_a = np.stack([ha[i][mask[i].numpy() == 1][0] for i in range(60)])
    first_b = np.stack([hb[i][mask[i].numpy() == 1][0] for i in range(60)])
    np.testing.assert_allclose(res.values, [[ref.cka(first_a, first_b), ref.cka(first_a, pb)]], rtol=1e-5)
    with pytest.raises(ValueError, match=r"pool names layers that are not compared: 'blok' \(did you mean 'block'"):
        compare(a, b, batches, ["block"], ["block"], pool={"blok": "mean"}, progress=False)
    with pytest.raises(ValueError, match=r"'block' gave a 3-D output of shape \(16, 7, 6\).*'flatten' would give 42"):
        compare(a, b, batches, ["block"], ["block"], progress=False)


def minibatch_reference(groups_x, groups_y):
    num = sum(ref.hsic_unbiased(x @ x.T, y @ y.T) for x, y in zip(groups_x, groups_y))
    kx = sum(ref.hsic_unbiased(x @ x.T, x @ x.T) for x in groups_x)
    ky = sum(ref.hsic_unbiased(y @ y.T, y @ y.T) for y in groups_y)
    return num / np.sqrt(kx * ky)


def mlp(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 6))


@pytest.mark.parametrize("sizes,mode,groups", [
    ((8, 8, 2), "merge", ((0, 8), (8, 18))),
    ((8, 8, 2), None, ((0, 8), (8, 18))),          # merge is the default
    ((3, 8, 8), "merge", ((0, 11), (11, 19))),     # a short first batch joins the next
    ((8, 2, 1, 8), "merge", ((0, 11), (11, 19))),  # consecutive short batches all join the previous one
    ((8, 8, 2), "drop", ((0, 8), (8, 16))),
    ((8, 5, 8), "error", ((0, 8), (8, 13), (13, 21))),  # 5 rows are enough: used as they are
])
def test_short_minibatches_are_merged_dropped_or_refused(sizes, mode, groups):
    # Regression: minibatch CKA needs 4 rows per minibatch, and a short last batch made compare fail.
    g = torch.Generator().manual_seed(0)
    data = torch.randn(sum(sizes), 5, generator=g)
    starts = np.cumsum((0,) + sizes)
    batches = [data[s:e] for s, e in zip(starts[:-1], starts[1:])]
    a, b = mlp(0), mlp(1)
    res = compare(a, b, batches, ["0"], ["2"], metric="minibatch_cka", short_batch=mode, progress=False)
    with torch.no_grad():
        x, y = a[0](data).numpy().astype(np.float64), b(data).numpy().astype(np.float64)
    want = minibatch_reference([x[s:e] for s, e in groups], [y[s:e] for s, e in groups])
    assert res.values[0, 0] == pytest.approx(want, rel=1e-5)
    assert res.n_samples == groups[-1][1]


def test_short_batch_errors_name_the_fix():
    batches = [torch.randn(8, 5), torch.randn(2, 5)]
    with pytest.raises(ValueError, match=r"batch 1 gives 2 rows, fewer than minibatch CKA needs \(at least 4.*"
                                         r"short_batch='merge'"):
        compare(mlp(0), mlp(1), batches, ["0"], ["2"], metric="minibatch_cka", short_batch="error", progress=False)
    with pytest.raises(ValueError, match=r"short_batch must be one of \('merge', 'drop', 'error'\)"):
        compare(mlp(0), mlp(1), batches, ["0"], ["2"], metric="minibatch_cka", short_batch="pad", progress=False)
    with pytest.raises(ValueError, match=r"short_batch applies to metric='minibatch_cka' only"):
        compare(mlp(0), mlp(1), batches, ["0"], ["2"], short_batch="drop", progress=False)
    tiny = [torch.randn(2, 5), torch.randn(1, 5)]
    with pytest.raises(ValueError, match=r"the loader gave 3 rows in all"):
        compare(mlp(0), mlp(1), tiny, ["0"], ["2"], metric="minibatch_cka", progress=False)
    with pytest.raises(ValueError, match=r"short_batch='drop' dropped every batch \(3 rows in all"):
        compare(mlp(0), mlp(1), tiny, ["0"], ["2"], metric="minibatch_cka", short_batch="drop", progress=False)
    # Biased HSIC needs 2 rows: a 2-row batch is not short there.
    res = compare(mlp(0), mlp(1), batches, ["0"], ["2"], metric="minibatch_cka", short_batch="error",
                  debiased=False, progress=False)
    assert res.n_samples == 10


def test_one_model_given_twice_runs_once_and_shared_modules_record_only_their_own_pass():
    # Hooks of both captures sit on the same modules: each batch must count once, or the debiased
    # estimator (which is not invariant to duplicated rows) and n_samples come out wrong.
    g = torch.Generator().manual_seed(0)
    data = torch.randn(40, 5, generator=g)
    batches = [data[i:i + 10] for i in range(0, 40, 10)]
    a = mlp(0)
    calls = []
    a.register_forward_pre_hook(lambda m, i: calls.append(i[0].shape[0]))
    res = compare(a, a, batches, ["0", "2"], ["0", "2"], metric="debiased_cka", progress=False)
    assert res.n_samples == 40 and calls == [2, 10, 10, 10, 10]  # the memory plan's probe, then each batch once
    with torch.no_grad():
        x, y = a[0](data).numpy(), a(data).numpy()
    assert res.values[0, 1] == pytest.approx(ref.cka(x, y, debiased=True), rel=1e-5)
    # Two models sharing their first layer.
    b = torch.nn.Sequential(a[0], torch.nn.Tanh(), torch.nn.Linear(8, 2))
    res = compare(a, b, batches, ["0"], ["0", "2"], metric="debiased_cka", progress=False)
    assert res.n_samples == 40 and res.values[0, 0] == pytest.approx(1.0, abs=1e-9)
