"""reprsim.torch.capture: hooks, output selection, flattening and pooling (CPU, small models)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import reprsim  # noqa: E402
from reprsim.torch import capture  # noqa: E402


class TupleOut(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x):
        h = self.lin(x)
        return (h, {"aux": 2 * h})


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 3, 3, padding=1)
        self.block = TupleOut()
        self.head = torch.nn.Linear(3 * 4 * 4, 4)

    def forward(self, x):
        c = torch.relu(self.conv(x))
        z = self.head(c.flatten(1))
        h, extra = self.block(z)
        return h + extra["aux"]


def test_capture_flattens_conv_maps_and_takes_first_tensor_of_tuples():
    net = Net()
    x = torch.randn(6, 1, 4, 4)
    with capture(net, ["conv", "block"], pool="flatten") as cap:
        net(x)
        acts = cap.take()
    conv = net.conv(x)
    np.testing.assert_allclose(acts["conv"].numpy(), conv.detach().reshape(6, -1).numpy(), rtol=1e-6)
    assert acts["block"].shape == (6, 3)
    np.testing.assert_allclose(acts["block"].numpy(), net.block.lin(net.head(torch.relu(conv).flatten(1))).detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_selector_by_index_and_callable():
    net = Net()
    x = torch.randn(5, 1, 4, 4)
    with capture(net, ["block"], select=lambda out: out[1]["aux"]) as cap:
        net(x)
        aux = cap.take()["block"]
    with capture(net, ["block"], select=0) as cap:
        net(x)
        first = cap.take()["block"]
    np.testing.assert_allclose(aux.numpy(), 2 * first.numpy(), rtol=1e-6)


def test_hooks_are_removed_even_after_an_exception():
    net = Net()
    with pytest.raises(RuntimeError, match="boom"):
        with capture(net, ["conv", "head"]):
            raise RuntimeError("boom")
    assert not net.conv._forward_hooks and not net.head._forward_hooks


def test_unknown_layer_name_suggests_close_matches():
    with pytest.raises(ValueError, match=r"no module named 'haed'.*did you mean 'head'"):
        capture(Net(), ["haed"])
    with pytest.raises(TypeError, match="list of module names"):
        capture(Net(), "head")


def test_take_without_forward_says_which_module_did_not_run():
    model = torch.nn.Sequential(torch.nn.Identity())
    with capture(model, ["0"]) as cap:
        with pytest.raises(RuntimeError, match="'0' did not run"):
            cap.take()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_numpy_api_accepts_cpu_tensors(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g).to(dtype)
    y = torch.randn(40, 5, generator=g).to(dtype) + x[:, :5]
    expected = reprsim.cka(x.to(torch.float32).numpy(), y.to(torch.float32).numpy())
    assert reprsim.cka(x, y) == pytest.approx(expected, rel=1e-6)
    # Tensors that require grad are detached, not rejected.
    assert reprsim.cka(x.clone().requires_grad_(True), y) == pytest.approx(expected, rel=1e-6)


def test_cpu_float32_tensor_is_read_without_copy():
    from reprsim._validation import as_representation

    t = torch.randn(10, 3)
    assert np.shares_memory(as_representation(t, "x"), t.numpy())


def test_a_failed_take_leaves_no_stale_activations():
    model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Flatten(1))
    x = torch.randn(3, 4, 2)
    calls = []

    def fails_once(out, batch):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first call fails")
        return out.mean(1)

    with capture(model, ["0", "1"], pool={"0": fails_once}) as cap:
        model(x)
        with pytest.raises(ValueError, match="first call fails"):
            cap.take()
        model(2 * x)
        acts = cap.take()  # only the second pass: the failed take cleared every layer
    np.testing.assert_allclose(acts["1"].numpy(), (2 * x).flatten(1).numpy())
    np.testing.assert_allclose(acts["0"].numpy(), (2 * x).mean(1).numpy(), rtol=1e-6)
    with capture(model, ["1"]) as cap:
        model(x)
        model(2 * x)  # two passes before one take: both are kept, in order
        assert cap.take()["1"].shape == (6, 8)
