"""The metrics on tensors that live on a GPU: moments accumulated there with torch ops (float64 column means,
rows centred about them, products over row chunks accumulated in float64), finalised by the same code as the
streaming accumulators. Linear CKA needs only a few scalars, reduced on the device; the other metrics move
the p×p statistics to the CPU.

Products run in the input dtype for CKA and Procrustes (continuous functions of the moments: float32
products cost ~1e-7 relative) and in float64 for the CCA family, whose rank decisions need float64 cross-
products exactly as the CPU streaming path computes them (float32 products leave rounding noise of
~√ε₃₂ relative in the null space of rank-deficient activations, which whitening would amplify)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import _core
from .._streaming import StreamingSimilarity
from ._device import DeviceMoments
from ._stream import moments_to_state

# Rows per product: float32 sums over at most this many terms inside one matmul, then float64 across chunks.
CHUNK_ROWS = 4096


def check_tensor(t: Any, name: str) -> torch.Tensor:
    """A 2-D, finite, float32/float64 tensor (other real dtypes promoted), detached; raises naming `name`."""
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); it needs at least one sample and one feature")
    if t.is_complex():
        raise TypeError(f"{name} has complex dtype {t.dtype}; pass real-valued activations")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32 if t.is_floating_point() else torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf; remove or replace them before comparing")
    return t.detach()


def _checked_pair(x: Any, y: Any, min_n: int, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)) or x.device != y.device:
        raise TypeError(
            "x and y must both be tensors on the same device for the GPU path; got "
            f"{type(x).__name__} on {getattr(x, 'device', 'cpu')} and {type(y).__name__} on {getattr(y, 'device', 'cpu')}"
        )
    x, y = check_tensor(x, "x"), check_tensor(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same number of samples (rows): x has shape {tuple(x.shape)}, "
            f"y has shape {tuple(y.shape)}"
        )
    if x.shape[0] < min_n:
        raise ValueError(f"x and y have n = {x.shape[0]} samples; {what} needs at least {min_n}")
    if x.dtype != y.dtype:
        x, y = x.to(torch.float64), y.to(torch.float64)
    return x, y


def device_accumulator(x: Any, y: Any, min_n: int, what: str, float64_products: bool = False) -> StreamingSimilarity:
    """An accumulator holding the full-data moments of two GPU tensors."""
    x, y = _checked_pair(x, y, min_n, what)
    m = DeviceMoments.from_tensors([x], [y], CHUNK_ROWS, product_dtype=torch.float64 if float64_products else None)
    eps = float(np.finfo(np.float32 if x.dtype == torch.float32 else np.float64).eps)
    return StreamingSimilarity.from_state(moments_to_state(m, eps, multi=False))


def device_cka(x: Any, y: Any, debiased: bool) -> float:
    """Linear CKA of two GPU tensors; only the scalars of the estimator leave the device."""
    x, y = _checked_pair(x, y, 4 if debiased else 2, "debiased CKA" if debiased else "CKA")
    m = DeviceMoments.from_tensors([x], [y], CHUNK_ROWS, debiased=debiased)
    return float(_core.cka_from_sums(**m.cka_sums(0, 0), debiased=debiased, name_x="x", name_y="y"))
