import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def forced_device(monkeypatch):
    """Every torch tensor takes the device (GPU) path, run on the CPU: the code CUDA tensors take, without a GPU."""
    torch = pytest.importorskip("torch")
    from reprsim import _backend
    from reprsim.torch import _backend as torch_backend

    monkeypatch.setattr(_backend, "is_device_array", lambda a: isinstance(a, torch.Tensor))
    monkeypatch.setitem(_backend._BACKENDS, "torch", torch_backend.TorchBackend(include_cpu=True))
    return torch
