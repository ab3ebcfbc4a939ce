"""Float64 moment accumulation on a torch device (the GPU path of the streaming accumulators).

The same sufficient statistics as the C++ streaming accumulator, with the same exact centring: each batch's
moments are taken about the batch mean (centred before the products), then merged into the running state by
shifting both to the combined mean (Chan et al.'s pairwise update, extended to the debiased-HSIC terms).
Products run in the input dtype (float32 stays float32 on the GPU, TF32 off) and are accumulated in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _moments(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Moments of one batch about its own mean: mean, C = UᵀU, d = ‖u_i‖², Σd², Uᵀd (U = x − mean)."""
    mean = x.to(torch.float64).mean(dim=0)
    u = (x.to(torch.float64) - mean).to(x.dtype)  # centred in float64, multiplied in the input dtype
    d = u.to(torch.float64).pow(2).sum(dim=1)
    return {"mean": mean, "u": u, "d": d}


class DeviceMoments:
    """Moments of k1 x-layers and k2 y-layers on one device, for linear CKA (biased and debiased),
    Procrustes and the CCA family; `state()` exports them in float64 on the CPU.

    Per layer: n, mean, C = Σ(x−x̄)(x−x̄)ᵀ, Σd², Σ(x−x̄)d with d = ‖x−x̄‖². Per pair (x_i, y_j):
    C_xy = Σ(x−x̄)(y−ȳ)ᵀ, Σde, Σ(x−x̄)e, Σ(y−ȳ)d.
    """

    def __init__(self, k1: int, k2: int, debiased: bool = True):
        self.k1, self.k2, self.debiased = k1, k2, debiased
        self.n = 0
        self.layer: list[dict[str, torch.Tensor]] = []  # x layers then y layers
        self.pair: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    @torch.no_grad()
    def update(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> None:
        mats = list(xs) + list(ys)
        nb = mats[0].shape[0]
        mom = [_moments(m) for m in mats]
        batch_layer = []
        for m in mom:
            u = m["u"]
            entry = {"mean": m["mean"], "c": (u.T @ u).to(torch.float64), "sd": m["d"].sum()}
            if self.debiased:
                entry["sdd"] = (m["d"] * m["d"]).sum()
                entry["xd"] = (u.to(torch.float64).T @ m["d"])
            batch_layer.append(entry)
        batch_pair = {}
        for i in range(self.k1):
            for j in range(self.k2):
                a, b = mom[i], mom[self.k1 + j]
                entry = {"c": (a["u"].T @ b["u"]).to(torch.float64)}
                if self.debiased:
                    entry["sde"] = (a["d"] * b["d"]).sum()
                    entry["xe"] = a["u"].to(torch.float64).T @ b["d"]
                    entry["yd"] = b["u"].to(torch.float64).T @ a["d"]
                batch_pair[(i, j)] = entry
        if self.n == 0:
            self.layer, self.pair, self.n = batch_layer, batch_pair, nb
            return
        self._merge(nb, batch_layer, batch_pair)

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
            out = None
            for side, (p_s, lx, ly, ns) in enumerate(
                ((pa, self.layer[i], self.layer[self.k1 + j], na), (pb, blayer[i], blayer[self.k1 + j], nb))
            ):
                dx = shifts[i][side]
                dy = shifts[self.k1 + j][side]
                shifted = self._shift_pair(p_s, lx, ly, dx, dy, ns)
                out = shifted if out is None else {k: out[k] + shifted[k] for k in out}
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
