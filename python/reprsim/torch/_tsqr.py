"""The streaming QR-factor state (``reprsim._core.FactorState``) on a torch device, in float64.

The same state and the same merge rule as the C++ one, with torch ops so that activations on a GPU never
leave it: per layer the float64 column means (as unevaluated sums ``mean + mean_lo``), the upper-triangular
R (diag ≥ 0) of the centred rows of all layers side by side, and the debiased-CKA sums. Rows are buffered
(minus a reference point: the first buffered batch's mean) and flushed, as one part centred about its own
mean, once ``flush_rows`` wait; two parts merge as

    R = qr([R_a; R_b; √(n_a·n_b/n)·(mean_a − mean_b)]),  signs fixed so that diag(R) ≥ 0,

with the debiased sums moved to the combined mean by Chan's shifts (the formulas of ``stream.cpp``'s
``shift_layer_sums``/``shift_pair_sums``). :meth:`DeviceFactorState.to_dict` exports the C++ dict format,
so ``reprsim._core.FactorState.from_dict`` reads it and the C++ finalisers compute every value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

_F64 = torch.float64
_EPS = {torch.float32: float(np.finfo(np.float32).eps), torch.float64: float(np.finfo(np.float64).eps)}
# Centred magnitudes the float64 sums of up to fourth powers can hold (as kStreamExponent in stream.hpp).
_STREAM_EXPONENT = 200


def _two_sum(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s + e = a + b exactly (Knuth's TwoSum), elementwise."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


class DeviceFactorState:
    """A TSQR factor of k1 x-layers and k2 y-layers on one torch device (see the module docstring).

    Parameters
    ----------
    k1, k2 : int
        Numbers of x and y layers.
    device : torch.device or str, optional
        Where the state lives; default: the device of the first batch.
    flush_rows : int, optional
        Rows buffered before a flush; default as the C++ state: the total width clamped to [256, 4096].
    """

    def __init__(self, k1: int, k2: int, device: torch.device | str | None = None,
                 flush_rows: int | None = None) -> None:
        if k1 < 1 or k2 < 1:
            raise ValueError(f"layer counts must be positive, got {k1} and {k2}")
        self.k1, self.k2 = int(k1), int(k2)
        self.device = None if device is None else torch.device(device)
        self._flush_rows = flush_rows
        self.n = 0  # flushed rows
        self.rank_eps = 0.0
        self.widths: list[int] = []
        self._pending: list[torch.Tensor] = []
        self._pending_rows = 0
        self._reference: torch.Tensor | None = None

    # -- layout ----------------------------------------------------------------------------------------

    @property
    def layers(self) -> int:
        return self.k1 + self.k2

    @property
    def n_seen(self) -> int:
        return self.n + self._pending_rows

    @property
    def flush_rows(self) -> int:
        if self._flush_rows is not None:
            return int(self._flush_rows)
        return int(min(max(sum(self.widths), 256), 4096))

    def _set_widths(self, widths: list[int], device: torch.device) -> None:
        self.widths = list(widths)
        self.device = device
        self.offsets = [0]
        for w in widths:
            self.offsets.append(self.offsets[-1] + w)
        p = self.offsets[-1]
        self.mean = torch.zeros(p, dtype=_F64, device=device)
        self.mean_lo = torch.zeros(p, dtype=_F64, device=device)
        self.r = torch.zeros((p, p), dtype=_F64, device=device)
        # Column c belongs to layer layer_of[c]; member[c, l] = 1 then.
        layer_of = torch.repeat_interleave(torch.arange(self.layers, device=device),
                                           torch.tensor(widths, device=device))
        self._member = torch.nn.functional.one_hot(layer_of, self.layers).to(_F64)
        self._zero_sums()

    def _zero_sums(self) -> None:
        p, dev = self.offsets[-1], self.device
        self.d2 = torch.zeros(self.layers, dtype=_F64, device=dev)
        self.ud = torch.zeros(p, dtype=_F64, device=dev)  # Σu·d, each layer's segment
        self.de = torch.zeros((self.k1, self.k2), dtype=_F64, device=dev)
        self.xe = [[torch.zeros(self.widths[i], dtype=_F64, device=dev) for _ in range(self.k2)] for i in range(self.k1)]
        self.yd = [[torch.zeros(self.widths[self.k1 + j], dtype=_F64, device=dev) for j in range(self.k2)]
                   for _ in range(self.k1)]

    def _cols(self, layer: int) -> slice:
        return slice(self.offsets[layer], self.offsets[layer + 1])

    # -- update ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def update(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> None:
        """Add one batch: k1 and k2 tensors (n, p_l) with the same rows, on one device. Checked in full
        (2-D, finite, widths, magnitudes) before the state changes."""
        mats = list(xs) + list(ys)
        if len(xs) != self.k1 or len(ys) != self.k2:
            raise ValueError(f"update expects {self.k1} x tensors and {self.k2} y tensors, got {len(xs)} and {len(ys)}")
        n = mats[0].shape[0] if mats[0].dim() == 2 else -1
        device = mats[0].device
        for k, t in enumerate(mats):
            name = f"x[{k}]" if k < self.k1 else f"y[{k - self.k1}]"
            if t.dim() != 2 or t.shape[0] != n or n < 1:
                raise ValueError(f"{name}: every batch must be 2-D with the same n >= 1, got shape {tuple(t.shape)}")
            if t.device != device:
                raise ValueError(f"{name} is on {t.device}, the batch's first tensor on {device}")
            if not (t.is_floating_point() and t.dtype in _EPS):
                raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} contains NaN or Inf; remove or replace them before comparing")
        widths = [int(t.shape[1]) for t in mats]
        if self.widths and widths != self.widths:
            raise ValueError(f"batch widths {widths} differ from the widths seen, {self.widths}")
        if self.device is not None and self.widths and device != self.device:
            raise ValueError(f"the batch is on {device}, the state on {self.device}")
        rows = torch.cat([t.to(_F64) for t in mats], dim=1)
        batch_mean = rows.mean(dim=0)
        spread = float((rows - batch_mean).abs().max())
        if spread > 0 and abs(np.frexp(spread)[1] - 1) > _STREAM_EXPONENT:
            raise ValueError(f"the batch has centred values of magnitude up to {spread}; the debiased sums would "
                             "leave the float64 range: rescale the data (the metrics are invariant to scaling)")
        if not self.widths:
            self._set_widths(widths, device)
        self.rank_eps = max(self.rank_eps, max(_EPS[t.dtype] for t in mats))
        start = 0
        while start < n:
            if self._pending_rows == 0:
                self._reference = batch_mean
            take = min(n - start, self.flush_rows - self._pending_rows)
            assert self._reference is not None
            self._pending.append(rows[start:start + take] - self._reference)
            self._pending_rows += take
            start += take
            if self._pending_rows >= self.flush_rows:
                self.flush()

    # -- flush and merge ---------------------------------------------------------------------------

    def _part_sums(self, u: torch.Tensor) -> dict[str, Any]:
        """Debiased sums of centred rows u (m × P) about their own mean."""
        d = (u * u) @ self._member  # m × L squared norms per layer
        w = u.T @ d  # P × L
        k1 = self.k1
        return {
            "d2": (d * d).sum(dim=0),
            "ud": (w * self._member).sum(dim=1),
            "de": d[:, :k1].T @ d[:, k1:],
            "xe": [[w[self._cols(i), k1 + j] for j in range(self.k2)] for i in range(k1)],
            "yd": [[w[self._cols(k1 + j), i] for j in range(self.k2)] for i in range(k1)],
        }

    def _shift_sums(self, sums: dict[str, Any], rows: torch.Tensor, delta: torch.Tensor, n_part: float) -> None:
        """Chan's shift of a part's sums (Gram matrix rowsᵀ·rows) to means moved by delta (P-vector)."""
        g = rows.T @ (rows @ (self._member * delta[:, None]))  # P × L: c_l·δ_l and the cross products
        tr = (rows * rows).sum(dim=0) @ self._member
        k1 = self.k1
        for i in range(k1):
            for j in range(self.k2):
                dx, dy = delta[self._cols(i)], delta[self._cols(k1 + j)]
                c_dy, ct_dx = g[self._cols(i), k1 + j], g[self._cols(k1 + j), i]
                s, t = dx @ dx, dy @ dy
                sum_yd, sum_xe = sums["yd"][i][j], sums["xe"][i][j]
                sums["de"][i, j] = (sums["de"][i, j] + 2 * (dy @ sum_yd) + 2 * (dx @ sum_xe) + 4 * (dx @ c_dy)
                                    + t * tr[i] + s * tr[k1 + j] + n_part * s * t)
                sums["xe"][i][j] = sum_xe + 2 * c_dy + dx * (tr[k1 + j] + n_part * t)
                sums["yd"][i][j] = sum_yd + 2 * ct_dx + dy * (tr[i] + n_part * s)
        for layer in range(self.layers):
            cols = self._cols(layer)
            dl, cd = delta[cols], g[cols, layer]
            s = dl @ dl
            sums["d2"][layer] = (sums["d2"][layer] + 4 * (dl @ cd) + n_part * s * s + 4 * (dl @ sums["ud"][cols])
                                 + 2 * s * tr[layer])
            sums["ud"][cols] = sums["ud"][cols] + 2 * cd + dl * (tr[layer] + n_part * s)

    def _sums(self) -> dict[str, Any]:
        return {"d2": self.d2.clone(), "ud": self.ud.clone(), "de": self.de.clone(),
                "xe": [list(r) for r in self.xe], "yd": [list(r) for r in self.yd]}

    def _set_sums(self, sums: dict[str, Any]) -> None:
        self.d2, self.ud, self.de, self.xe, self.yd = sums["d2"], sums["ud"], sums["de"], sums["xe"], sums["yd"]

    @staticmethod
    def _add_sums(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return {"d2": a["d2"] + b["d2"], "ud": a["ud"] + b["ud"], "de": a["de"] + b["de"],
                "xe": [[u + v for u, v in zip(ra, rb)] for ra, rb in zip(a["xe"], b["xe"])],
                "yd": [[u + v for u, v in zip(ra, rb)] for ra, rb in zip(a["yd"], b["yd"])]}

    @staticmethod
    def _triangular(stacked: torch.Tensor, p: int) -> torch.Tensor:
        """R (p × p, diag ≥ 0) of the rows `stacked`."""
        r = torch.linalg.qr(stacked, mode="r").R
        if r.shape[0] < p:
            r = torch.cat([r, torch.zeros((p - r.shape[0], p), dtype=_F64, device=r.device)])
        sign = torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(_F64)
        return sign[:, None] * r

    def _absorb(self, rows: torch.Tensor, n_b: int, mean_b: torch.Tensor, lo_b: torch.Tensor,
                sums_b: dict[str, Any]) -> None:
        """Merge a part (centred Gram rowsᵀ·rows, n_b rows, mean mean_b + lo_b) into this state."""
        p = self.offsets[-1]
        if self.n == 0:
            self.r = self._triangular(rows, p)
            self.n, self.mean, self.mean_lo = n_b, mean_b, lo_b
            self._set_sums(sums_b)
            return
        na = self.n
        n = na + n_b
        wa, wb = na / n, n_b / n
        diff = (self.mean - mean_b) + (self.mean_lo - lo_b)
        sums_a = self._sums()
        self._shift_sums(sums_a, self.r, wb * diff, float(na))
        self._shift_sums(sums_b, rows, -wa * diff, float(n_b))
        self._set_sums(self._add_sums(sums_a, sums_b))
        shift = (math.sqrt(na * n_b / n) * diff)[None, :]
        self.r = self._triangular(torch.cat([self.r, rows, shift]), p)
        self.n = n
        h, e = _two_sum(self.mean, -wb * diff)
        self.mean, self.mean_lo = _two_sum(h, e + self.mean_lo)

    @torch.no_grad()
    def flush(self) -> None:
        """Fold the buffered rows into R."""
        if self._pending_rows == 0:
            return
        u = torch.cat(self._pending)
        m = u.shape[0]
        self._pending, self._pending_rows = [], 0
        lo, hi = u.min(dim=0).values, u.max(dim=0).values
        constant = lo == hi  # exactly constant columns centre to exact zeros
        mu = torch.where(constant, lo, u.sum(dim=0) / m)
        u = torch.where(constant, torch.zeros_like(u), u - mu)
        assert self._reference is not None
        mean_b, lo_b = _two_sum(self._reference, mu)
        self._absorb(u, m, mean_b, lo_b, self._part_sums(u))

    def merged(self, other: DeviceFactorState) -> DeviceFactorState:
        """The state of the union of both states' rows (both flushed first; neither is changed otherwise)."""
        if (self.k1, self.k2) != (other.k1, other.k2):
            raise ValueError(f"the states hold different numbers of layers ({self.k1} x {self.k2} and "
                             f"{other.k1} x {other.k2})")
        if self.widths and other.widths and self.widths != other.widths:
            raise ValueError(f"the states have different widths ({self.widths} and {other.widths})")
        self.flush()
        other.flush()
        out = DeviceFactorState(self.k1, self.k2, self.device, self._flush_rows)
        for src in (self, other):
            if src.n == 0:
                continue
            if not out.widths:
                out._set_widths(src.widths, src.device)
            out.rank_eps = max(out.rank_eps, src.rank_eps)
            out._absorb(src.r, src.n, src.mean, src.mean_lo, src._sums())
        return out

    # -- export ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def to_dict(self) -> dict[str, Any]:
        """The state in the dict format of ``reprsim._core.FactorState.to_dict`` (float64 numpy, CPU)."""
        self.flush()
        d: dict[str, Any] = {"k1": self.k1, "k2": self.k2, "n": float(self.n), "rank_eps": float(self.rank_eps)}
        if not self.widths:
            return d

        def host(t: torch.Tensor) -> np.ndarray:
            return t.detach().to("cpu", _F64).numpy().copy()

        k1 = self.k1
        layers = range(self.layers)
        d["widths_x"], d["widths_y"] = self.widths[:k1], self.widths[k1:]
        d["mean_x"] = [host(self.mean[self._cols(i)]) for i in layers if i < k1]
        d["mean_y"] = [host(self.mean[self._cols(i)]) for i in layers if i >= k1]
        d["mean_x_lo"] = [host(self.mean_lo[self._cols(i)]) for i in layers if i < k1]
        d["mean_y_lo"] = [host(self.mean_lo[self._cols(i)]) for i in layers if i >= k1]
        d["r"] = host(self.r)
        d["sum_d2"] = [float(v) for v in self.d2[:k1]]
        d["sum_e2"] = [float(v) for v in self.d2[k1:]]
        d["sum_xd"] = [host(self.ud[self._cols(i)]) for i in layers if i < k1]
        d["sum_ye"] = [host(self.ud[self._cols(i)]) for i in layers if i >= k1]
        d["sum_de"] = [float(self.de[i, j]) for i in range(k1) for j in range(self.k2)]
        d["sum_xe"] = [host(self.xe[i][j]) for i in range(k1) for j in range(self.k2)]
        d["sum_yd"] = [host(self.yd[i][j]) for i in range(k1) for j in range(self.k2)]
        return d

    def to_core(self) -> Any:
        """The equivalent ``reprsim._core.FactorState`` (its finalisers compute every value)."""
        from .. import _core

        return _core.FactorState.from_dict(self.to_dict())
