"""reprsim.torch.layers: candidate layers with output shapes, the blocks compare uses by default."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import reprsim.torch as rt  # noqa: E402


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 3))


class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(c)

    def forward(self, x):
        return x + torch.relu(self.bn(self.conv(x)))


class StagedNet(torch.nn.Module):
    """Stages as attributes (layer1 … layer3), the torchvision/timm ResNet layout."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.layer1 = torch.nn.Sequential(Block(4), Block(4))
        self.layer2 = torch.nn.Sequential(torch.nn.Conv2d(4, 6, 3, stride=2, padding=1), Block(6))
        self.layer3 = torch.nn.Sequential(torch.nn.Conv2d(6, 8, 3, stride=2, padding=1), Block(8))
        self.fc = torch.nn.Linear(8, 2)

    def forward(self, x):
        h = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(h.mean((2, 3)))


class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Linear(3, 8)
        layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.enc = torch.nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=False)

    def forward(self, x, attention_mask=None):
        return self.enc(self.embed(x))


def test_blocks_are_the_largest_group_of_repeated_modules():
    assert rt.layers(mlp()).names == ["0", "2", "4"]
    assert rt.layers(StagedNet()).names == ["layer1", "layer2", "layer3"]
    assert rt.layers(Encoder()).names == ["enc.layers.0", "enc.layers.1", "enc.layers.2"]
    with pytest.raises(ValueError, match=r"Linear has no repeated blocks.*kind='leaves'"):
        rt.layers(torch.nn.Linear(2, 2))


def test_layers_report_output_shapes_and_remove_their_hooks():
    net = StagedNet()
    net.train()
    net.layer1[0].bn.eval()  # a mixed state is restored exactly
    x = torch.randn(5, 1, 8, 8)
    found = rt.layers(net, x)
    assert [(i.name, i.type, i.shape) for i in found] == [
        ("layer1", "Sequential", (5, 4, 8, 8)), ("layer2", "Sequential", (5, 6, 4, 4)),
        ("layer3", "Sequential", (5, 8, 2, 2))]
    assert found[0].params == sum(p.numel() for p in net.layer1.parameters()) and found[0].calls == 1
    assert no_hooks(net) and net.training and not net.layer1[0].bn.training and net.layer1[1].bn.training
    text = str(found)
    assert text.splitlines()[0].split() == ["name", "type", "output", "shape", "params"]
    assert "layer2  Sequential  (5, 6, 4, 4)" in text
    leaves = rt.layers(net, (x, torch.zeros(5)), kind="leaves")
    assert "layer1.0.conv" in leaves.names and "layer1" not in leaves.names
    convs = rt.layers(net, kind=torch.nn.Conv2d)
    assert convs.names[:2] == ["stem", "layer1.0.conv"] and all(i.shape is None for i in convs)
    assert len(rt.layers(net, kind="all")) == len(list(net.named_modules())) - 1
    with pytest.raises(ValueError, match="kind must be one of"):
        rt.layers(net, kind="stages")
    with pytest.raises(TypeError, match="sample_batch of type str"):
        rt.layers(net, "image")


def test_layers_remove_hooks_after_an_exception_mid_forward():
    net = StagedNet()
    with pytest.raises(RuntimeError):
        rt.layers(net, torch.randn(2, 3, 8, 8), kind="all")  # wrong channel count: fails inside stem
    def fail(module, inputs, output):
        raise RuntimeError("fails in layer3, after the earlier layers' hooks ran")

    injected = net.layer3.register_forward_hook(fail)
    with pytest.raises(RuntimeError, match="fails in layer3"):
        rt.layers(net, torch.randn(2, 1, 8, 8), kind="all")
    injected.remove()
    assert no_hooks(net) and net.training


def test_shared_modules_report_their_calls():
    lin = torch.nn.Linear(3, 3)
    model = torch.nn.Sequential(lin, torch.nn.Tanh(), lin)
    found = rt.layers(model, torch.randn(4, 3), kind=torch.nn.Linear)
    assert found.names == ["0"] and found[0].calls == 2 and "×2 calls" in str(found)


def test_compare_without_layers_uses_the_blocks_and_labels_the_models():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(10, 1, 8, 8, generator=g) for _ in range(3)]
    res = rt.compare(StagedNet(), StagedNet(), batches, pool="gap", names=("seed 0", "seed 0 again"),
                     progress=False)
    assert res.layers_a == res.layers_b == ["layer1", "layer2", "layer3"]
    np.testing.assert_allclose(np.diag(res.values), 1.0, rtol=1e-6)
    assert res.names == ("seed 0", "seed 0 again")
    df = pytest.importorskip("pandas") and res.to_pandas()
    assert df.index.name == "seed 0" and df.columns.name == "seed 0 again"
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    ax = res.plot()
    assert ax.get_xlabel() == "seed 0 again" and ax.get_ylabel() == "seed 0"
    with pytest.raises(TypeError, match="names must be a tuple of two strings"):
        rt.compare(StagedNet(), StagedNet(), batches, pool="gap", names="a", progress=False)
    # layers_b named, layers_a found
    res = rt.compare(StagedNet(), StagedNet(), batches, None, ["fc"], pool="gap", progress=False)
    assert res.values.shape == (3, 1)
