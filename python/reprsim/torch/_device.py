"""Float64 moment accumulation on a torch device (the GPU path of the streaming accumulators).

The same sufficient statistics as the C++ streaming accumulator, with the same exact centring: each batch's
moments are taken about the batch mean (centred before the products), then merged into the running state by
shifting both to the combined mean (Chan et al.'s pairwise update, extended to the debiased-HSIC terms).
Products run in the input dtype (float32 stays float32 on the GPU, TF32 off) or, where the metric makes rank
decisions (the CCA family), in float64, and are accumulated in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def _moments(x: torch.Tensor, product_dtype: torch.dtype | None, mean: torch.Tensor | None = None,
             row_norms: bool = True) -> dict[str, torch.Tensor]:
    """Moments of one batch about `mean` (default: its own mean): mean, U = x − mean in the product dtype,
    and (with `row_norms`) U in float64 and d = ‖u_i‖² in float64."""
    x64 = x.to(torch.float64)
    if mean is None:
        mean = x64.mean(dim=0)
    u64 = x64 - mean  # centred in float64, multiplied in the product dtype
    out = {"mean": mean, "u": u64.to(product_dtype or x.dtype)}
    if row_norms:
        out["u64"], out["d"] = u64, u64.pow(2).sum(dim=1)
    return out


class DeviceMoments:
    """Moments of k1 x-layers and k2 y-layers on one device, for linear CKA (biased and debiased),
    Procrustes and the CCA family; `state()` exports them in float64 on the CPU.

    Per layer: n, mean, C = Σ(x−x̄)(x−x̄)ᵀ, Σd², Σ(x−x̄)d with d = ‖x−x̄‖². Per pair (x_i, y_j):
    C_xy = Σ(x−x̄)(y−ȳ)ᵀ, Σde, Σ(x−x̄)e, Σ(y−ȳ)d.
    """

    def __init__(self, k1: int, k2: int, debiased: bool = True, product_dtype: torch.dtype | None = None):
        self.k1, self.k2, self.debiased, self.product_dtype = k1, k2, debiased, product_dtype
        self.n = 0
        self.layer: list[dict[str, torch.Tensor]] = []  # x layers then y layers
        self.pair: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    @torch.no_grad()
    def update(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> None:
        """Absorb one batch (every tensor with the same rows): its moments about its own mean, merged in."""
        nb = xs[0].shape[0]
        batch_layer, batch_pair = self._sums([_moments(m, self.product_dtype) for m in list(xs) + list(ys)])
        if self.n == 0:
            self.layer, self.pair, self.n = batch_layer, batch_pair, nb
            return
        self._merge(nb, batch_layer, batch_pair)

    def _sums(self, mom: list[dict[str, torch.Tensor]]
              ) -> tuple[list[dict[str, torch.Tensor]], dict[tuple[int, int], dict[str, torch.Tensor]]]:
        """Per-layer and per-pair sums of centred batches (see the class docstring)."""
        layer = []
        for m in mom:
            u = m["u"]
            entry = {"mean": m["mean"], "c": (u.T @ u).to(torch.float64)}
            if "d" in m:
                entry["sd"] = m["d"].sum()
            if self.debiased:
                entry["sdd"] = (m["d"] * m["d"]).sum()
                entry["xd"] = m["u64"].T @ m["d"]
            layer.append(entry)
        pair = {}
        for i in range(self.k1):
            for j in range(self.k2):
                a, b = mom[i], mom[self.k1 + j]
                entry = {"c": (a["u"].T @ b["u"]).to(torch.float64)}
                if self.debiased:
                    entry["sde"] = (a["d"] * b["d"]).sum()
                    entry["xe"] = a["u64"].T @ b["d"]
                    entry["yd"] = b["u64"].T @ a["d"]
                pair[(i, j)] = entry
        return layer, pair

    @classmethod
    @torch.no_grad()
    def from_tensors(cls, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], chunk_rows: int,
                     debiased: bool = True, product_dtype: torch.dtype | None = None) -> DeviceMoments:
        """Moments of whole tensors held in memory: float64 column means first, then the rows in chunks of
        `chunk_rows`, each centred about those means, so the chunk sums add up with no shifts."""
        out = cls(len(xs), len(ys), debiased, product_dtype)
        mats = list(xs) + list(ys)
        n = mats[0].shape[0]
        means = [sum(m[s:s + chunk_rows].to(torch.float64).sum(dim=0) for s in range(0, n, chunk_rows)) / n
                 for m in mats]
        for s in range(0, n, chunk_rows):
            # Row norms serve only the debiased estimator (no shifts are needed here).
            layer, pair = out._sums([_moments(m[s:s + chunk_rows], product_dtype, mean, row_norms=debiased)
                                     for m, mean in zip(mats, means)])
            if out.n == 0:
                out.layer, out.pair = layer, pair
            else:
                for acc, add in zip(out.layer, layer):
                    for key in acc:
                        if key != "mean":
                            acc[key] += add[key]
                for key_ij, add in pair.items():
                    for key in add:
                        out.pair[key_ij][key] += add[key]
            out.n += min(chunk_rows, n - s)
        return out

    def cka_sums(self, i: int, j: int) -> dict[str, float]:
        """The scalars linear CKA of pair (i, j) needs (see reprsim._core.cka_from_sums), reduced on the device."""
        x, y, p = self.layer[i], self.layer[self.k1 + j], self.pair[(i, j)]
        vals = [p["c"].pow(2).sum(), x["c"].pow(2).sum(), y["c"].pow(2).sum(), x["c"].trace(), y["c"].trace()]
        if self.debiased:
            vals += [x["sdd"], y["sdd"], p["sde"]]
        host = torch.stack(vals).cpu().tolist()
        host += [0.0] * (8 - len(host))
        keys = ("cross", "sxx", "syy", "tx", "ty", "sum_d2", "sum_e2", "sum_de")
        return {"n": float(self.n), **dict(zip(keys, host))}

    def _merge(self, nb: int, blayer: list[dict[str, torch.Tensor]],
               bpair: dict[tuple[int, int], dict[str, torch.Tensor]]) -> None:
        na = self.n
        n = na + nb
        # Shift of each side's mean to the combined mean, per layer.
        shifts = []
        for a, b in zip(self.layer, blayer):
            mean = (na * a["mean"] + nb * b["mean"]) / n
            shifts.append((a["mean"] - mean, b["mean"] - mean, mean))
        new_pair = {}
        for (i, j), pa in self.pair.items():
            pb = bpair[(i, j)]
            out: dict[str, torch.Tensor] | None = None
            for side, (p_s, lx, ly, ns) in enumerate(
                ((pa, self.layer[i], self.layer[self.k1 + j], na), (pb, blayer[i], blayer[self.k1 + j], nb))
            ):
                dx = shifts[i][side]
                dy = shifts[self.k1 + j][side]
                shifted = self._shift_pair(p_s, lx, ly, dx, dy, ns)
                out = shifted if out is None else {k: out[k] + shifted[k] for k in out}
            assert out is not None  # both sides were added
            new_pair[(i, j)] = out
        new_layer = []
        for idx, (a, b) in enumerate(zip(self.layer, blayer)):
            da, db, mean = shifts[idx]
            sa = self._shift_layer(a, da, na)
            sb = self._shift_layer(b, db, nb)
            merged = {k: sa[k] + sb[k] for k in sa}
            merged["mean"] = mean
            new_layer.append(merged)
        self.layer, self.pair, self.n = new_layer, new_pair, n

    def _shift_layer(self, s: dict[str, torch.Tensor], delta: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
        """Moments about (mean − delta)'s origin moved by delta: u' = u + δ, d' = d + 2uᵀδ + ‖δ‖²."""
        dd = delta @ delta
        out = {"c": s["c"] + n * torch.outer(delta, delta), "sd": s["sd"] + n * dd}
        if self.debiased:
            cd = s["c"] @ delta
            out["sdd"] = s["sdd"] + 4 * (delta @ s["xd"]) + 2 * dd * s["sd"] + 4 * (delta @ cd) + n * dd * dd
            out["xd"] = s["xd"] + 2 * cd + delta * s["sd"] + n * dd * delta
        return out

    def _shift_pair(self, p: dict[str, torch.Tensor], lx: dict[str, torch.Tensor], ly: dict[str, torch.Tensor],
                    dx: torch.Tensor, dy: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
        out = {"c": p["c"] + n * torch.outer(dx, dy)}
        if self.debiased:
            ddx, ddy = dx @ dx, dy @ dy
            out["sde"] = (p["sde"] + 2 * (dy @ p["yd"]) + ddy * lx["sd"] + 2 * (dx @ p["xe"])
                          + 4 * (dx @ (p["c"] @ dy)) + ddx * ly["sd"] + n * ddx * ddy)
            out["xe"] = p["xe"] + 2 * (p["c"] @ dy) + dx * ly["sd"] + n * ddy * dx
            out["yd"] = p["yd"] + 2 * (p["c"].T @ dx) + dy * lx["sd"] + n * ddx * dy
        return out

    def to_raw(self, rank_eps: float) -> dict[str, Any]:
        """The moments as ``reprsim._core.StreamState.from_dict`` reads them."""
        raw: dict[str, Any] = {"k1": self.k1, "k2": self.k2, "n": float(self.n), "rank_eps": float(rank_eps)}
        if self.n == 0:
            return raw
        xs, ys = self.layer[: self.k1], self.layer[self.k1 :]
        for side, names in ((xs, ("mean_x", "cxx", "sum_d2", "sum_xd")), (ys, ("mean_y", "cyy", "sum_e2", "sum_ye"))):
            for field, name in zip(("mean", "c", "sdd", "xd"), names):
                raw[name] = [float(_host(s[field])) if field == "sdd" else _host(s[field]) for s in side]
        pairs = [self.pair[(i, j)] for i in range(self.k1) for j in range(self.k2)]
        for field, name in zip(("c", "sde", "xe", "yd"), ("cxy", "sum_de", "sum_xe", "sum_yd")):
            raw[name] = [float(_host(p[field])) if field == "sde" else _host(p[field]) for p in pairs]
        return raw


def _host(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()

