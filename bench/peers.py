"""Adapters for the other packages the benchmark times reprsim against.

Each adapter computes, with the package's own public (or documented) functions, the same value that
reprsim computes for a workload, on the same data (torch packages get CPU tensors that share the
numpy buffers). None of these packages is a dependency of reprsim: an adapter whose package does not
import is reported as skipped, with the reason.

What each package offers, and so which workloads it takes part in:

- torch-cka (``torch_cka``): only the unbiased HSIC estimator of Nguyen et al. (its ``CKA._HSIC`` on
  zero-diagonal linear Gram matrices), i.e. debiased linear CKA on the full data: W6.
- ckatorch: ``cka_base`` (Kornblith's Gram-space formulation, float64, biased or unbiased): W1, W2,
  W6, and W3 as a per-pair loop (its layer API works per minibatch, a different estimator).
- ckatorch's ``cka_base(kernel="rbf")``: RBF CKA with σ² = the median of all n² squared distances
  (torch.median: the lower of the two middle values): W7; ``cka_batch`` on the minibatches stacked
  (float64 Grams, HSIC₁ summed over the minibatches): W8.
- pytorch-cka (``cka``): ``cka_from_features``, debiased linear CKA from the unbiased HSIC, for one
  pair or a stack of layers: W6 (its values are clamped to [0, 1]); its ``cka.hsic.hsic`` on the float32
  Grams of each minibatch, summed: W8.
- repsim: ``repsim.cka(mats, "linear", estimator)`` returns the matrix over every pair of a list
  (biased "gretton", debiased "song"): W1, W2, W3 (from one list of all 24 layers), W6. Its PWCCA is
  the mean of both weightings and it has no mean canonical correlation, so it cannot compute W4.
- scipy (``scipy.spatial.procrustes``): the disparity after optimal rotation and scaling of the
  standardised inputs, ``1 − ‖XᵀY‖²_*``, which gives Ding et al.'s distance ``2 − 2·sqrt(1 − d)``.
  None of the CKA packages computes a Procrustes distance, so it is the peer for W5.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Prepare = Callable[[dict[str, Any]], Any]
Run = Callable[[Any], Any]


@dataclass
class Peer:
    name: str  # the distribution name, as pip knows it
    module: str  # the import name
    # workload id -> (prepare, run); prepare is not timed (e.g. numpy -> torch tensor views)
    workloads: dict[str, tuple[Prepare, Run]] = field(default_factory=dict)
    # workload id -> why this package cannot compute it
    not_offered: dict[str, str] = field(default_factory=dict)
    # workload id -> how the adapter calls the package
    notes: dict[str, str] = field(default_factory=dict)

    def load(self) -> tuple[types.ModuleType | None, str | None, str | None]:
        """(module, version, reason it could not be imported)."""
        try:
            mod = importlib.import_module(self.module)
        except Exception as exc:  # any import failure is a reason to skip, reported as such
            return None, None, f"import {self.module} failed: {type(exc).__name__}: {exc}"
        try:
            ver = importlib.metadata.version(self.name)
        except importlib.metadata.PackageNotFoundError:
            ver = getattr(mod, "__version__", "unknown")
        return mod, ver, None


def _torch():
    import torch

    return torch


def _tensors(data: dict[str, Any]) -> dict[str, Any]:
    """Zero-copy CPU tensors of every array in a workload's data."""
    torch = _torch()
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, np.ndarray):
            out[k] = torch.from_numpy(v)
        elif isinstance(v, list):
            out[k] = [torch.from_numpy(a) for a in v]
        else:
            out[k] = v
    return out


# ----------------------------------------------------------------------------------------------
# torch-cka


def _torch_cka_debiased(t: dict[str, Any]) -> float:
    import torch_cka

    torch = _torch()
    # _HSIC reads only `self.device`; its compare() builds exactly these zero-diagonal Grams.
    owner = types.SimpleNamespace(device="cpu")
    hsic = torch_cka.CKA._HSIC
    x, y = t["x"], t["y"]
    with torch.no_grad():
        k = x @ x.t()
        k.fill_diagonal_(0.0)
        l = y @ y.t()
        l.fill_diagonal_(0.0)
        return hsic(owner, k, l) / (np.sqrt(hsic(owner, k, k)) * np.sqrt(hsic(owner, l, l)))


# ----------------------------------------------------------------------------------------------
# ckatorch


def _ckatorch_pair(debiased: bool) -> Run:
    def run(t: dict[str, Any]) -> float:
        import ckatorch

        torch = _torch()
        with torch.no_grad():
            return float(ckatorch.cka_base(t["x"], t["y"], kernel="linear", unbiased=debiased))

    return run


def _ckatorch_matrix(t: dict[str, Any]) -> np.ndarray:
    import ckatorch

    torch = _torch()
    with torch.no_grad():
        return np.array([[float(ckatorch.cka_base(a, b, kernel="linear")) for b in t["ys"]] for a in t["xs"]])


def _ckatorch_rbf(t: dict[str, Any]) -> float:
    import ckatorch

    torch = _torch()
    with torch.no_grad():
        return float(ckatorch.cka_base(t["x"], t["y"], kernel="rbf"))


def _ckatorch_batch(t: dict[str, Any]) -> float:
    import ckatorch

    torch = _torch()
    b = t["batch"]
    x, y = t["x"], t["y"]
    with torch.no_grad():
        return float(ckatorch.cka_batch(x.reshape(-1, b, x.shape[1]), y.reshape(-1, b, y.shape[1])))


# ----------------------------------------------------------------------------------------------
# pytorch-cka


def _pytorch_cka_minibatch(t: dict[str, Any]) -> float:
    from cka.hsic import hsic

    torch = _torch()
    b = t["batch"]
    xy = xx = yy = 0.0
    with torch.no_grad():
        for s in range(0, t["x"].shape[0], b):
            xb, yb = t["x"][s : s + b], t["y"][s : s + b]
            h_xy, h_xx, h_yy = hsic((xb @ xb.T)[None], (yb @ yb.T)[None])
            xy += float(h_xy)
            xx += float(h_xx)
            yy += float(h_yy)
    return xy / np.sqrt(xx * yy)



def _pytorch_cka_debiased(t: dict[str, Any]) -> float:
    import cka

    torch = _torch()
    with torch.no_grad():
        return float(cka.cka_from_features(t["x"], t["y"]).reshape(-1)[0])


# ----------------------------------------------------------------------------------------------
# repsim


def _repsim_pair(estimator: str) -> Run:
    def run(d: dict[str, Any]) -> float:
        import repsim

        return float(repsim.cka([d["x"], d["y"]], "linear", estimator)[0, 1])

    return run


def _repsim_matrix(d: dict[str, Any]) -> np.ndarray:
    import repsim

    k = len(d["xs"])
    return np.asarray(repsim.cka(list(d["xs"]) + list(d["ys"]), "linear", "gretton"))[:k, k:]


# ----------------------------------------------------------------------------------------------
# scipy


def _scipy_procrustes(d: dict[str, Any]) -> float:
    from scipy.spatial import procrustes

    _, _, disparity = procrustes(d["x"], d["y"])
    return float(2.0 - 2.0 * np.sqrt(1.0 - disparity))


def _same(d: dict[str, Any]) -> dict[str, Any]:
    return d


_NO_CCA = "no CCA"
_NO_PROCRUSTES = "no Procrustes distance"
_NO_RBF = "no RBF kernel"
_DEBIASED_ONLY = "computes only the unbiased (debiased) HSIC estimator"

PEERS: list[Peer] = [
    Peer(
        "torch-cka",
        "torch_cka",
        {"W6": (_tensors, _torch_cka_debiased)},
        {"W1": _DEBIASED_ONLY, "W2": _DEBIASED_ONLY, "W3": _DEBIASED_ONLY + ", through model hooks",
         "W4": _NO_CCA, "W5": _NO_PROCRUSTES, "W7": _NO_RBF,
         "W8": "its minibatch CKA runs inside model hooks, not on given activations"},
        {"W6": "CKA._HSIC on zero-diagonal float32 Grams"},
    ),
    Peer(
        "ckatorch",
        "ckatorch",
        {
            "W1": (_tensors, _ckatorch_pair(False)),
            "W2": (_tensors, _ckatorch_pair(False)),
            "W3": (_tensors, _ckatorch_matrix),
            "W6": (_tensors, _ckatorch_pair(True)),
            "W7": (_tensors, _ckatorch_rbf),
            "W8": (_tensors, _ckatorch_batch),
        },
        {"W4": _NO_CCA, "W5": _NO_PROCRUSTES},
        {"W1": "cka_base, float64 Grams", "W2": "cka_base, float64 Grams", "W3": "cka_base per pair",
         "W6": "cka_base(unbiased=True)", "W7": "cka_base(kernel='rbf'), lower median",
         "W8": "cka_batch on the stacked minibatches, float64 Grams"},
    ),
    Peer(
        "pytorch-cka",
        "cka",
        {"W6": (_tensors, _pytorch_cka_debiased), "W8": (_tensors, _pytorch_cka_minibatch)},
        {"W1": _DEBIASED_ONLY, "W2": _DEBIASED_ONLY, "W3": _DEBIASED_ONLY, "W4": _NO_CCA, "W5": _NO_PROCRUSTES,
         "W7": _NO_RBF},
        {"W6": "cka_from_features", "W8": "cka.hsic.hsic on the float32 Grams of each minibatch, summed"},
    ),
    Peer(
        "repsim",
        "repsim",
        {
            "W1": (_same, _repsim_pair("gretton")),
            "W2": (_same, _repsim_pair("gretton")),
            "W3": (_same, _repsim_matrix),
            "W6": (_same, _repsim_pair("song")),
        },
        {"W4": "its PWCCA averages both weightings and it has no mean canonical correlation",
         "W5": _NO_PROCRUSTES, "W7": "its RBF bandwidth rule differs", "W8": "no minibatch estimator"},
        {"W3": "one 24 × 24 matrix of all layers"},
    ),
    Peer("scipy", "scipy.spatial", {"W5": (_same, _scipy_procrustes)}, {},
         {"W5": "scipy.spatial.procrustes disparity, converted"}),
]
