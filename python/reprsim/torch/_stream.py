"""Accumulators behind compare(): the C++ streaming accumulators for CPU activations, float64 moments on
the device for GPU activations (finalised through the same code), and minibatch CKA."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._streaming import StreamingMinibatchCKA, StreamingSimilarity
from ._device import DeviceMoments

_SIMILARITY = {
    "cka": ("cka", {}),
    "debiased_cka": ("cka", {"debiased": True}),
    "mean_cca": ("mean_cca", {}),
    "mean_sq_cca": ("mean_sq_cca", {}),
    "svcca": ("svcca", None),
    "pwcca": ("pwcca", None),
    "procrustes": ("procrustes_distance", {}),
    "angular_procrustes": ("procrustes_distance", {"angular": True}),
}


def _numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32 if t.is_floating_point() else torch.float64)
    return t.detach().cpu().numpy()


def moments_to_state(m: DeviceMoments, rank_eps: float, multi: bool = True) -> dict[str, np.ndarray]:
    """DeviceMoments in the field layout of ``StreamingSimilarity.state()`` (float64, CPU)."""
    out: dict[str, np.ndarray] = {"n": np.float64(m.n), "rank_eps": np.float64(rank_eps)}
    if multi:
        out["layers"] = np.array([m.k1, m.k2], dtype=np.float64)
    if m.n == 0:
        return out

    def key(name: str, idx: str) -> str:
        return f"{name}[{idx}]" if multi else name

    def host(t: torch.Tensor) -> np.ndarray:
        return t.detach().to("cpu", torch.float64).numpy()

    for i in range(m.k1):
        s = m.layer[i]
        out[key("mean_x", str(i))] = host(s["mean"])
        out[key("cxx", str(i))] = host(s["c"])
        out[key("sum_d2", str(i))] = host(s["sdd"])
        out[key("sum_xd", str(i))] = host(s["xd"])
    for j in range(m.k2):
        s = m.layer[m.k1 + j]
        out[key("mean_y", str(j))] = host(s["mean"])
        out[key("cyy", str(j))] = host(s["c"])
        out[key("sum_e2", str(j))] = host(s["sdd"])
        out[key("sum_ye", str(j))] = host(s["xd"])
    for (i, j), p in m.pair.items():
        out[key("cxy", f"{i},{j}")] = host(p["c"])
        out[key("sum_de", f"{i},{j}")] = host(p["sde"])
        out[key("sum_xe", f"{i},{j}")] = host(p["xe"])
        out[key("sum_yd", f"{i},{j}")] = host(p["yd"])
    return out


def finalise(acc: StreamingSimilarity, metric: str, options: dict[str, Any]) -> Any:
    """The value of `metric` from an accumulator: similarities for CKA/CCA, distances for Procrustes."""
    method, fixed = _SIMILARITY[metric]
    kwargs = dict(options) if fixed is None else {**fixed, **_no_options(metric, options)}
    return getattr(acc, method)(**kwargs)


def _no_options(metric: str, options: dict[str, Any]) -> dict[str, Any]:
    if options:
        raise TypeError(f"metric {metric!r} takes no options, got {sorted(options)}")
    return {}


def _gather_and_merge(acc: Any) -> Any:
    """Every rank's accumulator state, gathered and merged in rank order (the same result on every rank)."""
    states: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(states, acc.state())
    merged = type(acc).from_state(states[0])
    for s in states[1:]:
        merged.merge(type(acc).from_state(s))
    return merged


class _Moments:
    """Exact full-data moments in a StreamingSimilarity: CPU activations go to the C++ core, GPU
    activations stay on their device (see StreamingSimilarity.update)."""

    def __init__(self, metric: str, k1: int, k2: int, options: dict[str, Any]):
        self.metric, self.options = metric, options
        self.acc = StreamingSimilarity(layers_x=k1, layers_y=k2)
        # GPU activations: float32 products suffice for CKA and Procrustes (no rank decisions).
        self.acc._dev_float64_products = metric not in ("cka", "debiased_cka", "procrustes", "angular_procrustes")

    def update(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> None:
        self.acc.update(list(xs), list(ys))

    def all_reduce(self) -> None:
        self.acc = _gather_and_merge(self.acc)

    def result(self) -> tuple[np.ndarray, int]:
        return finalise(self.acc, self.metric, self.options), self.acc.n_seen


class _Minibatch:
    """Minibatch CKA over the loader's batches (each batch is one minibatch)."""

    def __init__(self, k1: int, k2: int, options: dict[str, Any]):
        debiased = options.pop("debiased", True)
        _no_options("minibatch_cka", options)
        self.acc = StreamingMinibatchCKA(debiased=debiased, layers_x=k1, layers_y=k2)

    def update(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> None:
        self.acc.update([_numpy(t) for t in xs], [_numpy(t) for t in ys])

    def all_reduce(self) -> None:
        self.acc = _gather_and_merge(self.acc)

    def result(self) -> tuple[np.ndarray, int]:
        return self.acc.result(), self.acc.n_seen


def make_accumulator(metric: str, k1: int, k2: int, options: dict[str, Any]) -> Any:
    options = dict(options)
    if metric == "minibatch_cka":
        return _Minibatch(k1, k2, options)
    return _Moments(metric, k1, k2, options)
