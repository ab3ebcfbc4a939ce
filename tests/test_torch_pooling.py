"""Pooling strategies of reprsim.torch.capture, each against a per-sample numpy computation of its definition."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from reprsim.torch import capture  # noqa: E402


def run(t, pool, mask=None, batch=None, takes=1):
    """Capture the output `t` of an identity layer with `pool`; the last take's result."""
    model = torch.nn.Sequential(torch.nn.Identity())
    with capture(model, ["0"], pool=pool) as cap:
        for _ in range(takes):
            model(t)
            out = cap.take(attention_mask=mask, batch=batch)["0"]
    return out.numpy()


def padded(left):
    g = torch.Generator().manual_seed(1)
    h = torch.randn(4, 6, 5, generator=g, dtype=torch.float64)
    lengths = [6, 3, 1, 4]
    mask = torch.zeros(4, 6, dtype=torch.long)
    for i, n in enumerate(lengths):
        if left:
            mask[i, 6 - n:] = 1
        else:
            mask[i, :n] = 1
    return h, mask


def unmasked_tokens(h, mask):
    """Per sample, the (tokens, hidden) array of its unmasked tokens, in order."""
    hn, mn = h.numpy(), mask.numpy()
    return [hn[i][mn[i] == 1] for i in range(hn.shape[0])]


@pytest.mark.parametrize("left", [False, True], ids=["right-padding", "left-padding"])
def test_token_strategies_equal_per_sample_definitions_for_either_padding_side(left):
    h, mask = padded(left)
    toks = unmasked_tokens(h, mask)
    want = {
        "mean": np.stack([t.mean(0) for t in toks]),
        "max": np.stack([t.max(0) for t in toks]),
        "first": np.stack([t[0] for t in toks]),
        "cls": np.stack([t[0] for t in toks]),
        "last": np.stack([t[-1] for t in toks]),
        "tokens": np.concatenate(toks),
    }
    for pool, expected in want.items():
        np.testing.assert_allclose(run(h, pool, mask), expected, rtol=1e-12, err_msg=pool)
    # The mask is read from a dict batch when not given.
    np.testing.assert_allclose(run(h, "last", batch={"attention_mask": mask}), want["last"], rtol=1e-12)
    assert run(h, "flatten", mask).shape == (4, 30)


def test_last_with_left_padding_is_not_the_length_minus_one_position():
    # Regression: the position sum(mask) - 1 is a padding token of every shorter left-padded sample.
    h, mask = padded(left=True)
    got = run(h, "last", mask)
    naive = h.numpy()[np.arange(4), mask.sum(1).numpy() - 1]
    assert np.all(np.abs(got - naive).max(axis=1)[1:] > 0)
    np.testing.assert_allclose(got, h.numpy()[:, -1], rtol=1e-12)  # left padding: the last position is real


def test_token_strategies_without_mask_use_every_token():
    h, _ = padded(left=False)
    hn = h.numpy()
    np.testing.assert_allclose(run(h, "mean"), hn.mean(1), rtol=1e-12)
    np.testing.assert_allclose(run(h, "max"), hn.max(1), rtol=1e-12)
    np.testing.assert_allclose(run(h, "first"), hn[:, 0])
    np.testing.assert_allclose(run(h, "last"), hn[:, -1])
    np.testing.assert_allclose(run(h, "tokens"), hn.reshape(-1, 5))


def test_a_sample_without_tokens_is_refused_by_pooling_and_contributes_no_rows_as_tokens():
    h, mask = padded(left=False)
    mask[2] = 0
    for pool in ("mean", "max", "first", "last"):
        with pytest.raises(ValueError, match="no unmasked token"):
            run(h, pool, mask)
    assert run(h, "tokens", mask).shape == (6 + 3 + 4, 5)


def adaptive_reference(x, size):
    """Adaptive average pooling by its bin rule: bin i of n over length L covers [floor(iL/n), ceil((i+1)L/n))."""
    b, c, hh, ww = x.shape
    oh, ow = size
    out = np.empty((b, c, oh, ow))
    for i in range(oh):
        r0, r1 = (i * hh) // oh, -((-(i + 1) * hh) // oh)
        for j in range(ow):
            c0, c1 = (j * ww) // ow, -((-(j + 1) * ww) // ow)
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out.reshape(b, -1)


def test_map_strategies_equal_their_definitions():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 5, 7, generator=g, dtype=torch.float64)
    xn = x.numpy()
    np.testing.assert_allclose(run(x, "gap"), xn.mean(axis=(2, 3)), rtol=1e-12)
    np.testing.assert_allclose(run(x, "flatten"), xn.reshape(3, -1))
    for size in ((2, 3), (1, 1), (5, 7), (3, 2)):
        np.testing.assert_allclose(run(x, ("adaptive", *size)), adaptive_reference(xn, size), rtol=1e-12)
    np.testing.assert_allclose(run(x, ("adaptive", 2)), adaptive_reference(xn, (2, 2)), rtol=1e-12)
    # Positions as samples: sample-major, row-major positions, channels as features.
    spatial = run(x, "spatial")
    assert spatial.shape == (3 * 35, 4)
    np.testing.assert_allclose(spatial[35 * 2 + 7 * 1 + 3], xn[2, :, 1, 3])
    # gap is the mean of the spatial rows of each sample
    np.testing.assert_allclose(spatial.reshape(3, 35, 4).mean(1), run(x, "gap"), rtol=1e-12)


def test_spatial_row_cap_keeps_the_documented_seeded_positions_for_every_batch():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    full = run(x, "spatial")
    for k in range(3):  # the k-th take of a capture
        got = run(x, ("spatial", 10, 7), takes=k + 1)
        keep = np.sort(torch.randperm(32, generator=torch.Generator().manual_seed(7 + k))[:10].numpy())
        np.testing.assert_allclose(got, full[keep])
    assert not np.allclose(run(x, ("spatial", 10), takes=1), run(x, ("spatial", 10), takes=2))
    np.testing.assert_allclose(run(x, ("spatial", 100)), full)  # under the cap: every row


def test_two_captures_keep_the_same_spatial_positions():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 2, 4, 4, generator=g)
    a = torch.nn.Sequential(torch.nn.Conv2d(2, 5, 3, padding=1))
    b = torch.nn.Sequential(torch.nn.Conv2d(2, 6, 1))
    with capture(a, ["0"], pool=("spatial", 20)) as ca, capture(b, ["0"], pool=("spatial", 20)) as cb:
        for _ in range(2):
            a(x)
            b(x)
            ra, rb = ca.take()["0"], cb.take()["0"]
    # Both rows are the same positions: b is a 1x1 conv, so its rows are an affine map of the input rows.
    inputs = x.movedim(1, -1).reshape(-1, 2)
    keep = torch.randperm(48, generator=torch.Generator().manual_seed(1))[:20].sort().values
    w, bias = b[0].weight.detach().reshape(6, 2), b[0].bias.detach()
    np.testing.assert_allclose(rb.detach().numpy(), (inputs[keep] @ w.T + bias).numpy(), rtol=1e-5, atol=1e-6)
    assert ra.shape == (20, 5)


def test_per_layer_pool_and_two_dimensional_outputs_pass_through():
    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 4)
            self.pooler = torch.nn.Linear(4, 3)

        def forward(self, x):
            h = self.layer(x)
            return self.pooler(h[:, 0])

    torch.manual_seed(0)
    enc = Enc()
    x = torch.randn(5, 6, 4)
    with capture(enc, ["layer", "pooler"], pool="mean") as cap:  # the 2-D pooler output stays as it is
        enc(x)
        acts = cap.take()
    h = enc.layer(x).detach()
    np.testing.assert_allclose(acts["layer"].numpy(), h.mean(1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(acts["pooler"].numpy(), enc.pooler(h[:, 0]).detach().numpy(), rtol=1e-6)
    with capture(enc, ["layer", "pooler"], pool={"layer": "first"}) as cap:
        enc(x)
        acts = cap.take()
    np.testing.assert_allclose(acts["layer"].numpy(), h[:, 0].numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"pool names layers that are not compared: 'layr' \(did you mean 'layer'"):
        capture(enc, ["layer", "pooler"], pool={"layr": "mean"})
    with capture(enc, ["pooler"], pool="tokens") as cap:
        enc(x)
        with pytest.raises(ValueError, match=r"makes a row of every token, but 'pooler' gave \(batch, features\)"):
            cap.take()


def test_callable_receives_the_output_and_the_batch():
    h, mask = padded(left=True)
    seen = []

    def masked_sum(out, batch):
        seen.append(batch)
        return (out * batch["attention_mask"].unsqueeze(-1)).sum(1)

    batch = {"attention_mask": mask, "other": 1}
    got = run(h, masked_sum, batch=batch)
    np.testing.assert_allclose(got, np.stack([t.sum(0) for t in unmasked_tokens(h, mask)]), rtol=1e-12)
    assert seen == [batch]
    assert run(h, lambda out, batch: out[:, 0, 0]).shape == (4, 1)  # 1-D: one feature
    with pytest.raises(TypeError, match=r"called as f\(output, batch\)"):
        capture(torch.nn.Sequential(torch.nn.Identity()), ["0"], pool=lambda out: out.mean(1))
    with pytest.raises(ValueError, match=r"returned shape \(4, 6, 5\); it must return \(rows, features\)"):
        run(h, lambda out, batch: out)
    with pytest.raises(TypeError, match="returned list"):
        run(h, lambda out, batch: [out])


def test_default_keeps_matrices_and_refuses_sequences_and_maps_with_the_flatten_width():
    x2 = torch.randn(4, 3)
    np.testing.assert_array_equal(run(x2, None), x2.numpy())
    assert run(torch.randn(4), None).shape == (4, 1)
    with pytest.raises(ValueError, match=r"3-D output of shape \(4, 6, 5\).*'mean', 'last'.*'flatten' would give 30 "
                                         r"features per sample"):
        run(torch.randn(4, 6, 5), None)
    with pytest.raises(ValueError, match=r"'gap', \('adaptive', h, w\).*would give 768 features"):
        run(torch.randn(2, 3, 16, 16), None)


def test_strategies_refuse_outputs_of_the_wrong_kind():
    with pytest.raises(ValueError, match=r"expects \(batch, tokens, hidden\).*for \(batch, C, H, W\) maps use 'gap'"):
        run(torch.randn(2, 3, 4, 4), "mean")
    with pytest.raises(ValueError, match=r"expects channel-first maps.*use 'mean'.*lambda out, batch: out.mean\(2\)"):
        run(torch.randn(2, 3, 4), "gap")
    with pytest.raises(ValueError, match=r"3-axis grid, but '0' has 2 spatial axes"):
        run(torch.randn(2, 3, 4, 4), ("adaptive", 2, 2, 2))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(3, 4\), but '0' gave \(batch, tokens\) = "
                                         r"\(3, 5\)"):
        run(torch.randn(3, 5, 2), "mean", torch.ones(3, 4))


@pytest.mark.parametrize("pool,err,match", [
    ("avg", ValueError, r"unknown pooling strategy 'avg'"),
    ("maxx", ValueError, r"did you mean 'max'"),
    ("adaptive", ValueError, r"needs an output grid"),
    (("adaptive", 0, 2), ValueError, r"positive integer output sizes"),
    (("spatial", -1), ValueError, r"positive integer row cap"),
    (("spatial", 4, 1.5), ValueError, r"non-negative integer seed"),
    (("gap", 2), ValueError, r"a tuple strategy is"),
    (3, TypeError, r"a name, a tuple or a callable, got int"),
])
def test_bad_strategies_are_refused_when_the_capture_is_made(pool, err, match):
    with pytest.raises(err, match=match):
        capture(torch.nn.Sequential(torch.nn.Identity()), ["0"], pool=pool)
    with pytest.raises(err, match=match.replace("unknown pooling", r"pool\['0'\]: unknown pooling")):
        capture(torch.nn.Sequential(torch.nn.Identity()), ["0"], pool={"0": pool})


def test_max_pooling_ignores_large_padding_values():
    h, mask = padded(left=False)
    h = h.clone()
    h[mask == 0] = math.inf  # padding positions must never win the maximum
    got = run(h, "max", mask)
    assert np.isfinite(got).all()
