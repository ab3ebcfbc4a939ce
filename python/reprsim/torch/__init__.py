"""reprsim for PyTorch: capture layer outputs with hooks and compare two models layer by layer.

torch is an optional dependency of reprsim; this subpackage imports it.
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as exc:  # pragma: no cover
    raise ImportError("reprsim.torch needs PyTorch: pip install torch") from exc

from ._backend import register as _register_backend
from .._result import Comparison
from ._compare import CompareResult, compare
from ._hooks import Capture, capture
from ._layers import LayerInfo, layers
from ._pool import STRATEGY_NAMES

_register_backend()

__all__ = ["STRATEGY_NAMES", "Capture", "CompareResult", "Comparison", "LayerInfo", "capture", "compare", "layers"]
