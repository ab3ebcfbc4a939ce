"""The torch backend: the statistics of every kind for tensors on a device, computed there with torch ops.

Registered with the numpy core when ``reprsim.torch`` is imported (and through the ``reprsim.backends``
entry point the first time a CUDA tensor reaches the core). The finalisers are the registry's, the same as
for numpy input; only the statistics are computed differently:

- ``moments``: float64 column means, rows centred about them, products over row chunks accumulated in
  float64 (:class:`~reprsim.torch._device.DeviceMoments`); CKA-type sums and the Procrustes nuclear norm are
  reduced on the device, only scalars (or, for measures that need them, the p×p blocks) reach the CPU.
  Products run in the input dtype (TF32 left as the user set it).
- ``factor``: the same moments with float64 products (the CCA family's rank decisions need them, as on the
  CPU), finalised by the C++ code of the streaming accumulators.
- ``kernel``: RBF kernel matrices in float64 on the device, the bandwidth rules of the C++ core.
- ``minibatch``: each minibatch's HSIC terms from centred float64 products on the device.
- ``folds``: per-fold moments (float64 products) of the power-of-two scaled, centred tensors on the device;
  only the p×p and p×q blocks reach the CPU, where the registry's finaliser solves the ridge problems.

The p×p blocks that measures with rank decisions read (``blocks()``, ``coordinates()``: shape metrics,
GULP, the matching measures) are formed with float64 products.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .. import _core
from .._backend import register_backend
from .._memory import require_memory
from .._stats import PairSet, angle_from_nuclear, minibatch_rows
from .._streaming import _StateSet, moments_bytes
from ._device import DeviceMoments
from ._tsqr import DeviceFactorState

# Rows per product: float32 sums over at most this many terms inside one matmul, then float64 across chunks.
CHUNK_ROWS = 4096
_EPS32 = float(np.finfo(np.float32).eps)
_EPS64 = float(np.finfo(np.float64).eps)


def check_tensor(t: Any, name: str) -> torch.Tensor:
    """A 2-D, finite, float32/float64 tensor (other real dtypes promoted), detached; raises naming `name`."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor on the same device as the others, got {type(t).__name__}")
    if t.device.type == "meta":
        raise TypeError(f"{name} is a tensor on the meta device (it holds no values); pass a tensor with data")
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


def checked_tensors(xs: Sequence[Any], ys: Sequence[Any] | None, names_x: list[str], names_y: list[str],
                    min_n: int, what: str) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """Tensors of one device, with the same rows, in one dtype (float64 when they differ)."""
    everything = list(xs) + list(ys or [])
    names = names_x + (names_y if ys is not None else [])
    for t, nm in zip(everything, names):
        if isinstance(t, torch.Tensor) and t.device.type == "meta":
            raise TypeError(f"{nm} is a tensor on the meta device (it holds no values); pass a tensor with data")
        if isinstance(t, torch.Tensor) and t.device.type not in ("cpu", "cuda"):
            # The device path accumulates in float64, which not every backend has (MPS has none).
            raise TypeError(f"{nm} is a tensor on {t.device}; reprsim computes on CPU and CUDA tensors: move it with "
                            f"{nm}.cpu() (or to a CUDA device)")
    if not all(isinstance(t, torch.Tensor) for t in everything) or len({t.device for t in everything}) != 1:
        kinds = sorted({f"{type(t).__name__} on {getattr(t, 'device', 'cpu')}" for t in everything})
        raise TypeError(f"the representations must all be tensors on one device for the device path, got {kinds}; "
                        "move them to one device (or all to the CPU)")
    ts = [check_tensor(t, nm) for t, nm in zip(everything, names)]
    n = ts[0].shape[0]
    for t, nm in zip(ts, names):
        if t.shape[0] != n:
            raise ValueError(f"every representation must have the same number of samples (rows): {names[0]} has {n} "
                             f"rows, {nm} has shape {tuple(t.shape)}")
    if n < min_n:
        who = "x and y have" if names[:2] == ["x", "y"] else "the representations have"
        raise ValueError(f"{who} n = {n} samples; {what} needs at least {min_n}")
    if len({t.dtype for t in ts}) > 1:
        ts = [t.to(torch.float64) for t in ts]
    k1 = len(xs)
    return ts[:k1], (ts[k1:] if ys is not None else None)


def _eps(t: torch.Tensor) -> float:
    return _EPS32 if t.dtype == torch.float32 else _EPS64


class DeviceSet(PairSet):
    """A pair set over checked tensors of one device (ys None: xs against itself). ``float64_products`` says
    whether its statistics are formed in float64 (else in the input dtype), which sets the rounding unit."""

    float64_products = True

    def __init__(self, xs: list[torch.Tensor], ys: list[torch.Tensor] | None, names_x: list[str],
                 names_y: list[str]) -> None:
        right = xs if ys is None else ys
        eps = _EPS64 if self.float64_products else _eps(xs[0])
        super().__init__(len(xs), len(right), names_x, names_y if ys is not None else names_x, int(xs[0].shape[0]),
                         eps, same=ys is None)
        self.xs, self.ys = xs, right


class DeviceMomentsSet(DeviceSet):
    """``moments`` statistics of tensors on a device."""

    kind = "moments"

    float64_products = False

    def _moments(self, debiased: bool) -> DeviceMoments:
        if not debiased and ("dm", True) in self._bulk:
            return self._bulk[("dm", True)]
        return self.bulk(("dm", debiased), lambda: DeviceMoments.from_tensors(self.xs, self.ys, CHUNK_ROWS,
                                                                              debiased=debiased))

    def sums(self, debiased: bool) -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            m = self._moments(debiased)
            lx = [m.layer[i] for i in range(self.k1)]
            ly = [m.layer[self.k1 + j] for j in range(self.k2)]
            zero = torch.zeros((), dtype=torch.float64, device=self.xs[0].device)
            vals = torch.stack(
                [m.pair[(i, j)]["c"].pow(2).sum() for i in range(self.k1) for j in range(self.k2)]
                + [m.pair[(i, j)]["sde"] if debiased else zero for i in range(self.k1) for j in range(self.k2)]
                + [s["c"].pow(2).sum() for s in lx + ly] + [s["c"].trace() for s in lx + ly]
                + [s["sdd"] if debiased else zero for s in lx + ly]
            ).cpu().numpy()
            k, kk = self.k1 * self.k2, self.k1 + self.k2
            cross, sde = vals[:k].reshape(self.k1, self.k2), vals[k : 2 * k].reshape(self.k1, self.k2)
            self_terms, traces, sdd = vals[2 * k : 2 * k + kk], vals[2 * k + kk : 2 * k + 2 * kk], vals[2 * k + 2 * kk :]
            return {"n": float(self.n), "eps": self.eps, "cross": cross, "sum_de": sde,
                    "sxx": self_terms[: self.k1], "tx": traces[: self.k1], "sum_d2": sdd[: self.k1],
                    "scale_x": np.ones(self.k1), "syy": self_terms[self.k1 :], "ty": traces[self.k1 :],
                    "sum_e2": sdd[self.k1 :], "scale_y": np.ones(self.k2)}

        if not debiased and ("sums", True) in self._bulk:
            return self._bulk[("sums", True)]
        return self.bulk(("sums", debiased), compute)

    def nuclear(self) -> np.ndarray:
        def compute() -> np.ndarray:
            m = self._moments(False)
            out = np.empty((self.k1, self.k2))
            for i in range(self.k1):
                for j in range(self.k2):
                    tx, ty = m.layer[i]["c"].trace(), m.layer[self.k1 + j]["c"].trace()
                    for name, t in ((self.names_x[i], tx), (self.names_y[j], ty)):
                        if float(t) == 0.0:
                            raise ValueError(f"{name} has zero variance (every column is constant over the {self.n} "
                                             "rows): it cannot be scaled to unit norm, so the Procrustes distance is "
                                             "undefined")
                    nuc = torch.linalg.svdvals(m.pair[(i, j)]["c"]).sum()
                    out[i, j] = float(nuc / (tx.sqrt() * ty.sqrt()))
            return out

        return self.bulk("nuclear", compute)

    def angle(self) -> np.ndarray:
        return self.bulk("angle", lambda: angle_from_nuclear(self.nuclear(), self.eps))

    def _moments64(self) -> DeviceMoments:
        """Moments with float64 products: what measures with rank decisions read, as on the CPU."""
        return self.bulk("dm64", lambda: DeviceMoments.from_tensors(self.xs, self.ys, CHUNK_ROWS, debiased=False,
                                                                    product_dtype=torch.float64))

    def blocks(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p1, p2 = int(self.xs[i].shape[1]), int(self.ys[j].shape[1])
        require_memory(8 * (p1 + p2) ** 2, f"the moments of tensors on {self.xs[0].device} with widths {p1} and {p2}",
                       "reduce the features first", "float64 moment blocks copied to host memory")
        m = self._moments64()

        def host(t: torch.Tensor) -> np.ndarray:
            return t.detach().to("cpu", torch.float64).numpy()

        return host(m.layer[i]["c"]), host(m.layer[self.k1 + j]["c"]), host(m.pair[(i, j)]["c"])

    def coordinates(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        m = self._moments64()
        cxx, cyy, cxy = self.blocks(i, j)
        mx = m.layer[i]["mean"].detach().to("cpu", torch.float64).numpy()
        my = m.layer[self.k1 + j]["mean"].detach().to("cpu", torch.float64).numpy()
        return mx, my, cxx, cyy, cxy


def factor_set(xs: list[torch.Tensor], ys: list[torch.Tensor] | None, names_x: list[str],
               names_y: list[str]) -> PairSet:
    """``factor`` statistics of tensors on a device: the joint QR factor of every layer, computed there in
    float64 (:class:`~reprsim.torch._tsqr.DeviceFactorState`) and finalised by the C++ code of the streaming
    accumulators (a pivoted QR of each layer's block, the in-memory rank rule)."""
    right = xs if ys is None else ys
    wx, wy = [int(t.shape[1]) for t in xs], [int(t.shape[1]) for t in right]
    # The factor comes to host memory twice (the export, and the compiled state made from it).
    require_memory(2 * moments_bytes(wx, wy, factor=True), f"the CCA family of tensors on {xs[0].device} with "
                   f"widths {tuple(wx)} and {tuple(wy)}", "reduce the features first, or pass fewer representations "
                   "per pairwise call", "the joint float64 QR factor of every layer, copied to host memory")
    state = DeviceFactorState(len(xs), len(right))
    state.update(xs, right)
    pset = _StateSet("factor", state.to_core(), names_x, names_y if ys is not None else names_x)
    pset.same = ys is None
    return pset


def _squared_distances(x: torch.Tensor) -> torch.Tensor:
    """Squared distances between the rows, in float64, from the centred rows (no cancellation of a mean)."""
    xc = x.to(torch.float64)
    xc = xc - xc.mean(dim=0)
    sq = (xc * xc).sum(dim=1)
    d = (sq[:, None] + sq[None, :] - 2.0 * (xc @ xc.T)).clamp_min_(0.0)
    d.fill_diagonal_(0.0)
    return d


def _median(v: torch.Tensor) -> torch.Tensor:
    """numpy's median: the mean of the two middle values for an even count."""
    s = torch.sort(v).values
    m = s.numel()
    return s[m // 2] if m % 2 else 0.5 * (s[m // 2 - 1] + s[m // 2])


def _rbf_kernel(x: torch.Tensor, rule: str, threshold: float, sigma: float, name: str) -> torch.Tensor:
    d = _squared_distances(x)
    n = d.shape[0]
    if sigma > 0.0:
        sigma2 = sigma * sigma
    else:
        iu = torch.triu_indices(n, n, offset=1, device=d.device)
        upper = d[iu[0], iu[1]]
        if rule == "mean":
            s = upper.mean()
        elif rule == "median":
            s = _median(upper)
        else:  # median over all n² entries: n zeros and every off-diagonal value twice
            s = _median(torch.cat([torch.zeros(n, dtype=d.dtype, device=d.device), upper, upper]))
        scale = float(s)
        if not scale > 0.0:
            if float(d.max()) == 0.0:
                raise ValueError(f"{name} has zero variance (all {n} samples are identical): the RBF bandwidth and "
                                 "kernel CKA are undefined")
            raise ValueError(f"the {'mean' if rule == 'mean' else 'median'} squared distance between the samples of "
                             f"{name} is 0 (more than half of the pairs are duplicates), so the RBF bandwidth is 0; "
                             "use bandwidth='mean' or a fixed bandwidth")
        sigma2 = threshold * threshold * scale
    factor = -1.0 / (2.0 * sigma2)
    if math.isfinite(factor):
        return torch.exp(d * factor)
    return (d == 0.0).to(d.dtype)


def _hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """n(n−3)·HSIC₁ of two symmetric kernel matrices (Song et al. 2012)."""
    n = k.shape[0]
    kt, lt = k.clone(), l.clone()
    kt.fill_diagonal_(0.0)
    lt.fill_diagonal_(0.0)
    rk, rl = kt.sum(dim=1), lt.sum(dim=1)
    return (kt * lt).sum() + rk.sum() * rl.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (rk @ rl)


def _kernel_cka(k: torch.Tensor, l: torch.Tensor, debiased: bool, names: tuple[str, str]) -> float:
    n = k.shape[0]
    if debiased:
        hx, hy = float(_hsic_unbiased(k, k)), float(_hsic_unbiased(l, l))
        if not (hx > 0.0 and hy > 0.0):
            bad, val = (names[0], hx) if not hx > 0.0 else (names[1], hy)
            raise ValueError(f"the debiased HSIC of {bad} with itself is {val} (not positive) with n = {n} samples, "
                             "so debiased kernel CKA is undefined; use more samples or debiased=False")
        return float(_hsic_unbiased(k, l)) / (math.sqrt(hx) * math.sqrt(hy))

    def centre(g: torch.Tensor) -> torch.Tensor:
        r = g.mean(dim=1)
        return g - r[:, None] - r[None, :] + r.mean()

    kc, lc = centre(k), centre(l)
    sk, sl = float((kc * kc).sum()), float((lc * lc).sum())
    if sk == 0.0 or sl == 0.0:
        raise ValueError(f"{names[0] if sk == 0.0 else names[1]} has a constant kernel matrix after centring, so "
                         "kernel CKA is undefined")
    return float((kc * lc).sum()) / (math.sqrt(sk) * math.sqrt(sl))


class DeviceKernelSet(DeviceSet):
    """``kernel`` statistics of tensors on a device: RBF kernel matrices in float64."""

    kind = "kernel"

    float64_products = True

    def rbf_cka(self, debiased: bool, rule: str, threshold: float, sigma: float) -> np.ndarray:
        def compute() -> np.ndarray:
            kx = [_rbf_kernel(x, rule, threshold, sigma, nm) for x, nm in zip(self.xs, self.names_x)]
            ky = kx if self.same else [_rbf_kernel(y, rule, threshold, sigma, nm) for y, nm in zip(self.ys, self.names_y)]
            out = np.empty((self.k1, self.k2))
            for i in range(self.k1):
                for j in range(self.k2):
                    out[i, j] = _kernel_cka(kx[i], ky[j], debiased, (self.names_x[i], self.names_y[j]))
            return out

        return self.bulk(("rbf", debiased, rule, threshold, sigma), compute)


def batch_hsic(xs: list[torch.Tensor], ys: list[torch.Tensor], debiased: bool) -> tuple[np.ndarray, np.ndarray,
                                                                                            np.ndarray]:
    """One minibatch's HSIC terms (every pair, every layer with itself), from centred float64 products."""
    b = xs[0].shape[0]

    def centred(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = t.to(torch.float64)
        u = u - u.mean(dim=0)
        return u, (u * u).sum(dim=1)

    cx, cy = [centred(t) for t in xs], [centred(t) for t in ys]

    def hsic(a: tuple[torch.Tensor, torch.Tensor], c: tuple[torch.Tensor, torch.Tensor]) -> float:
        cross = float((a[0].T @ c[0]).pow(2).sum())
        if not debiased:
            return cross / ((b - 1.0) ** 2)
        d, e = a[1], c[1]
        num = cross - b / (b - 2.0) * float(d @ e) + float(d.sum()) * float(e.sum()) / ((b - 1.0) * (b - 2.0))
        return num / (b * (b - 3.0))

    xy = np.array([[hsic(a, c) for c in cy] for a in cx])
    return xy, np.array([hsic(a, a) for a in cx]), np.array([hsic(c, c) for c in cy])


class DeviceMinibatchSet(DeviceSet):
    """``minibatch`` statistics of tensors on a device: HSIC terms summed over consecutive minibatches."""

    kind = "minibatch"

    float64_products = True

    def hsic(self, batch_size: int | None, debiased: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
            n = self.n
            b = minibatch_rows(n, batch_size, debiased)
            xy, xx, yy = np.zeros((self.k1, self.k2)), np.zeros(self.k1), np.zeros(self.k2)
            batches = 0
            for s in range(0, n, b):
                t = batch_hsic([a[s : s + b] for a in self.xs], [a[s : s + b] for a in self.ys], debiased)
                xy, xx, yy = xy + t[0], xx + t[1], yy + t[2]
                batches += 1
            return xy, xx, yy, batches

        return self.bulk(("hsic", batch_size, debiased), compute)


class DeviceNeighboursSet(DeviceSet):
    """``neighbours`` statistics of tensors on a device: each representation searched once (torch ops, the CPU
    path's tie rule)."""

    kind = "neighbours"

    float64_products = False

    def knn_lists(self, side: str, index: int, k: int, center: bool) -> Any:
        from .._neighbours import check_k
        from ._neighbours import knn_lists_torch

        cache = (self.cache_x if side == "x" else self.cache_y)[index]
        key = ("knn", check_k(k, self.n), bool(center))
        if key not in cache:
            t = (self.xs if side == "x" else self.ys)[index]
            name = (self.names_x if side == "x" else self.names_y)[index]
            cache[key] = knn_lists_torch(t, key[1], center=key[2], name=name)
        return cache[key]


class DeviceRDMSet(DeviceSet):
    """``rdm`` statistics of tensors on a device: each pair's RDMs computed and compared there."""

    kind = "rdm"

    float64_products = True

    def rsa(self, method: str, compare: str) -> np.ndarray:
        from ._neighbours import rsa_torch

        def compute() -> np.ndarray:
            return np.array([[rsa_torch(x, y, method, compare) for y in self.ys] for x in self.xs])

        return self.bulk(("rsa", method, compare), compute)


class DeviceAccumulator:
    """What an accumulator keeps for batches that arrive on a device (see StreamingSimilarity): the moments
    (float64 accumulation; products in the input dtype) or, where the CCA family is needed, the joint QR
    factor in float64; exported to the C++ state of the same kind when a value is asked for."""

    def __init__(self, k1: int, k2: int, factor: bool, float64_products: bool = False) -> None:
        self.state: Any = (DeviceFactorState(k1, k2) if factor else
                           DeviceMoments(k1, k2, product_dtype=torch.float64 if float64_products else None))
        self.factor = factor

    @property
    def n(self) -> int:
        return int(self.state.n_seen if self.factor else self.state.n)

    def update(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> None:
        if self.n:
            where = self.state.device if self.factor else self.state.layer[0]["mean"].device
            if where is not None and torch.device(where) != xs[0].device:
                raise ValueError(f"this accumulator keeps its device statistics on {where}; got a batch on "
                                 f"{xs[0].device}")
        self.state.update(xs, ys)

    def export(self, rank_eps: float) -> Any:
        """The statistics as a ``reprsim._core`` state (FactorState or StreamState), on the CPU."""
        if self.factor:
            return self.state.to_core()
        return _core.StreamState.from_dict(self.state.to_raw(rank_eps))


def _scaled_centred(t: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The device twin of ``reprsim._stats.scaled_centred``: (2^−e·(t − t̄), 2^−e·t̄, e) in float64, constant
    columns whose mean came out inexact set to exactly 0."""
    x = t.to(torch.float64)
    big = float(x.abs().max())
    pre = 0
    if big > 2.0**500:
        pre = int(math.frexp(big)[1])
        x = torch.ldexp(x, torch.tensor(-pre, dtype=torch.float64, device=x.device))
    mean = x.mean(dim=0)
    xc = x - mean
    flat = (xc.abs() <= 16.0 * _EPS64 * mean.abs()).all(dim=0) & (mean != 0)
    if bool(flat.any()):
        xc[:, flat] = 0.0
    top = float(xc.abs().max())
    e = int(math.frexp(top)[1]) if top > 0.0 else 0
    if e:
        scale = torch.tensor(-e, dtype=torch.float64, device=x.device)
        xc, mean = torch.ldexp(xc, scale), torch.ldexp(mean, scale)
    return xc, mean, e + pre


def _reduced_basis(xc: torch.Tensor) -> torch.Tensor:
    """The device twin of ``reprsim._stats.reduced_basis``: n×r coordinates of the rows in an orthonormal basis
    of the row space (eigendecomposition of the centred Gram, float64)."""
    w, v = torch.linalg.eigh(xc @ xc.T)
    top = float(w[-1])
    keep = w > top * xc.shape[0] * _EPS64 if top > 0 else torch.zeros_like(w, dtype=torch.bool)
    return v[:, keep] * w[keep].sqrt()


class DeviceFoldsSet(PairSet):
    """``folds`` statistics of tensors on a device: per-fold moments formed there in float64 (see
    ``reprsim._folds``), moved to the CPU as float64 blocks."""

    kind = "folds"

    def __init__(self, xs: list[torch.Tensor], ys: list[torch.Tensor] | None, names_x: list[str],
                 names_y: list[str]) -> None:
        right = xs if ys is None else ys
        super().__init__(len(xs), len(right), names_x, names_y if ys is not None else names_x, int(xs[0].shape[0]),
                         _EPS64, same=ys is None)
        self.xs, self.ys = xs, right

    def _x_side(self, i: int, k: int | None) -> dict[str, Any]:
        from .._folds import fold_bounds

        cache = self.cache_x[i]
        key = ("folds_x", k)
        if key not in cache:
            xc, _, e = _scaled_centred(self.xs[i], self.names_x[i])
            f = _reduced_basis(xc) if xc.shape[1] > xc.shape[0] else xc
            bounds = fold_bounds(self.n, k)
            means = torch.stack([f[a:b].mean(dim=0) for a, b in bounds])
            cxx = torch.stack([(f[a:b] - means[g]).T @ (f[a:b] - means[g]) for g, (a, b) in enumerate(bounds)])
            cache[key] = {"f": f, "e": e, "bounds": bounds, "means_t": means,
                          "counts": np.array([b - a for a, b in bounds], dtype=np.float64),
                          "means": means.cpu().numpy(), "cxx": cxx.cpu().numpy()}
        return cache[key]

    def _y_side(self, j: int, k: int | None) -> dict[str, Any]:
        from .._folds import fold_bounds

        cache = self.cache_y[j]
        key = ("folds_y", k)
        if key not in cache:
            g, mean, e = _scaled_centred(self.ys[j], self.names_y[j])
            bounds = fold_bounds(self.n, k)
            means = torch.stack([g[a:b].mean(dim=0) for a, b in bounds])
            vyy = torch.stack([((g[a:b] - means[h]) ** 2).sum(dim=0) for h, (a, b) in enumerate(bounds)])
            cache[key] = {"g": g, "e": e, "means_t": means, "means": means.cpu().numpy(), "vyy": vyy.cpu().numpy(),
                          "level": mean.abs().cpu().numpy()}
        return cache[key]

    def folds(self, i: int, j: int, k: int | None) -> Any:
        from .._folds import FoldMoments

        def compute() -> Any:
            sx, sy = self._x_side(i, k), self._y_side(j, k)
            f, g = sx["f"], sy["g"]
            cxy = torch.stack([(f[a:b] - sx["means_t"][h]).T @ (g[a:b] - sy["means_t"][h])
                               for h, (a, b) in enumerate(sx["bounds"])])
            return FoldMoments(sx["counts"], sx["means"], sx["cxx"], sy["means"], sy["vyy"], cxy.cpu().numpy(),
                               sx["e"], sy["e"], sy["level"])

        return self.bulk(("folds", i, j, k), compute)


class TorchBackend:
    """Statistics of torch tensors on a device. ``include_cpu=True`` also takes CPU tensors through the device
    code (the tests use it to check that code without a GPU)."""

    name = "torch"

    def __init__(self, include_cpu: bool = False) -> None:
        self.include_cpu = include_cpu

    def owns(self, a: Any) -> bool:
        return isinstance(a, torch.Tensor) and (self.include_cpu or a.device.type != "cpu")

    def pair_set(self, kind: str, xs: Sequence[Any], ys: Sequence[Any] | None, names_x: list[str],
                 names_y: list[str], min_n: int, what: str) -> PairSet:
        tx, ty = checked_tensors(xs, ys, names_x, names_y, min_n, what)
        if kind == "moments":
            return DeviceMomentsSet(tx, ty, names_x, names_y)
        if kind == "factor":
            return factor_set(tx, ty, names_x, names_y)
        if kind == "kernel":
            return DeviceKernelSet(tx, ty, names_x, names_y)
        if kind == "minibatch":
            return DeviceMinibatchSet(tx, ty, names_x, names_y)
        if kind == "neighbours":
            return DeviceNeighboursSet(tx, ty, names_x, names_y)
        if kind == "rdm":
            return DeviceRDMSet(tx, ty, names_x, names_y)
        if kind == "folds":
            return DeviceFoldsSet(tx, ty, names_x, names_y)
        raise ValueError(f"no device producer of {kind!r} statistics; move the tensors to the CPU (.cpu())")

    def permute_rows(self, a: Any, index: np.ndarray) -> Any:
        return a[torch.as_tensor(np.asarray(index), dtype=torch.long, device=a.device)]

    def knn_lists(self, x: Any, k: Any, center: bool, name: str) -> Any:
        """One representation's exact k-NN lists, searched on its device."""
        from ._neighbours import knn_lists_torch

        return knn_lists_torch(x, k, center=center, name=name)

    def rdm(self, x: Any, method: str, name: str) -> Any:
        """One representation's condensed RDM, on its device."""
        from ._neighbours import rdm_torch

        return rdm_torch(x, method, name)

    def device_accumulator(self, k1: int, k2: int, factor: bool, float64_products: bool = False) -> DeviceAccumulator:
        return DeviceAccumulator(k1, k2, factor, float64_products)

    def check_batch(self, xs: Sequence[Any], ys: Sequence[Any], names_x: list[str],
                    names_y: list[str]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """One batch of an accumulator: tensors on one device, with the same rows, finite, in one dtype."""
        tx, ty = checked_tensors(xs, ys, names_x, names_y, 1, "an update")
        assert ty is not None
        return tx, ty

    def minibatch_terms(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> dict[bool, Any]:
        """One update's minibatch HSIC terms, biased and (with at least 4 rows) debiased, on the device."""
        b = int(xs[0].shape[0])
        if b < 2:
            raise ValueError(f"this batch has {b} row; minibatch CKA (declared in metrics) needs at least 2 rows per "
                             "update (4 for the debiased estimator): merge short batches or drop them")
        return {False: batch_hsic(xs, ys, False), True: batch_hsic(xs, ys, True) if b >= 4 else None}


def register() -> None:
    """Make the device backend available to the numpy core (the ``reprsim.backends`` entry point)."""
    register_backend(TorchBackend())
