"""How compare() groups captured batches: pooling per model side, short minibatches for minibatch CKA, and
the minibatch CKA terms."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .. import _core
from .._backend import device_backend
from .._compute import evaluate
from .._registry import Bound
from .._stats import check_minibatch_memory
from .._streaming import _MinibatchSums
from .._validation import _common_dtype, as_representation
from ._pool import PoolArg, unknown_keys_message

SHORT_BATCH_MODES = ("merge", "drop", "error")

Rows = tuple[list[torch.Tensor], list[torch.Tensor]]


def split_pool(pool: PoolArg, layers_a: Sequence[str], layers_b: Sequence[str]) -> tuple[PoolArg, PoolArg]:
    """The `pool` argument of each model: a mapping is split by layer name (a name may be in both)."""
    if not isinstance(pool, Mapping):
        return pool, pool
    unknown = [k for k in pool if k not in layers_a and k not in layers_b]
    if unknown:
        raise ValueError(unknown_keys_message(unknown, list(dict.fromkeys([*layers_a, *layers_b])), "pool"))
    return ({k: v for k, v in pool.items() if k in layers_a}, {k: v for k, v in pool.items() if k in layers_b})


def check_short_batch(short_batch: str | None, metric: str) -> str | None:
    """The short-batch mode for `metric`: "merge" by default for minibatch CKA, None for other metrics."""
    if metric != "minibatch_cka":
        if short_batch is not None:
            raise ValueError(
                f"short_batch applies to metric='minibatch_cka' only (metric={metric!r} is exact over any batching)"
            )
        return None
    if short_batch is None:
        return "merge"
    if short_batch not in SHORT_BATCH_MODES:
        raise ValueError(f"short_batch must be one of {SHORT_BATCH_MODES}, got {short_batch!r}")
    return short_batch


class ShortBatches:
    """Minibatches for minibatch CKA: a batch with fewer rows than the estimator needs is merged into the
    previous one (the first into the next), dropped, or refused."""

    def __init__(self, mode: str, need: int, debiased: Any):
        self.mode, self.need, self.debiased = mode, need, debiased
        self._pending: Rows | None = None
        self.dropped_rows = 0
        self._used_rows = 0

    def push(self, k: int, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> Iterator[Rows]:
        """Take batch `k`; yield the minibatches that are complete."""
        rows = xs[0].shape[0]
        short = rows < self.need
        if short and self.mode == "error":
            raise ValueError(
                f"batch {k} gives {rows} rows, fewer than minibatch CKA needs (at least {self.need} with "
                f"debiased={self.debiased}); short_batch='merge' merges it into the previous batch and "
                "short_batch='drop' skips it (or use a DataLoader with drop_last=True)"
            )
        if short and self.mode == "drop":
            self.dropped_rows += rows
            return
        if self.mode != "merge":
            self._used_rows += rows
            yield xs, ys
            return
        if self._pending is None:
            self._pending = (xs, ys)
            return
        px, py = self._pending
        if short or px[0].shape[0] < self.need:
            self._pending = ([torch.cat([a, b]) for a, b in zip(px, xs)], [torch.cat([a, b]) for a, b in zip(py, ys)])
            return
        yield self._pending
        self._pending = (xs, ys)

    def finish(self) -> Iterator[Rows]:
        """Yield what is held back (merge mode) at the end of the loader."""
        if self._pending is not None:
            rows = self._pending[0][0].shape[0]
            if rows < self.need and self._used_rows == 0:
                raise ValueError(
                    f"the loader gave {rows} rows in all, fewer than one minibatch of minibatch CKA needs (at least "
                    f"{self.need} with debiased={self.debiased})"
                )
            self._used_rows += rows
            yield self._pending
            self._pending = None
        if self._used_rows == 0 and self.dropped_rows > 0:
            raise ValueError(
                f"short_batch='drop' dropped every batch ({self.dropped_rows} rows in all, each batch under "
                f"{self.need} rows, the least minibatch CKA needs with debiased={self.debiased}); use larger batches"
            )


class MinibatchTerms:
    """Minibatch CKA over compare's minibatches: each one's HSIC terms, summed, and nothing else.

    Memory is that of one minibatch, whatever the number of batches. The terms are those the streaming
    accumulators compute (the C++ kernel for CPU activations, the torch backend on a device), and the value
    is the registry's finaliser over them.
    """

    def __init__(self, names_x: list[str], names_y: list[str], debiased: bool) -> None:
        self.names_x, self.names_y, self.debiased = names_x, names_y, debiased
        k1, k2 = len(names_x), len(names_y)
        self.xy, self.xx, self.yy = np.zeros((k1, k2)), np.zeros(k1), np.zeros(k2)
        self.batches = 0
        self.n_seen = 0
        self._widths: tuple[list[int], list[int]] = ([], [])

    def update(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> None:
        wx, wy = [int(t.shape[1]) for t in xs], [int(t.shape[1]) for t in ys]
        if self._widths[0] and (wx, wy) != self._widths:
            raise ValueError(f"the layers' widths changed between batches: {self._widths} before, {(wx, wy)} now; "
                             "every batch of a layer must give the same number of features")
        b = int(xs[0].shape[0])
        backend: Any = device_backend(xs, ys)  # the torch backend (its batch methods are not in the protocol)
        if backend is not None:
            tx, ty = backend.check_batch(xs, ys, self.names_x, self.names_y)
            terms = backend.minibatch_terms(tx, ty)[self.debiased]
        else:
            ax = [as_representation(t, nm) for t, nm in zip(xs, self.names_x)]
            ay = [as_representation(t, nm) for t, nm in zip(ys, self.names_y)]
            both = _common_dtype(ax + ay)
            ax, ay = both[: len(ax)], both[len(ax):]
            for a, nm in zip(ax + ay, self.names_x + self.names_y):
                if not np.isfinite(a).all():
                    raise ValueError(f"{nm} contains NaN or Inf; remove or replace them before comparing")
            check_minibatch_memory(b, wx, wy)
            terms = _core.batch_hsic(ax, ay, self.debiased, self.names_x, self.names_y)
        if terms is None:  # guarded by ShortBatches: a minibatch too short for the estimator
            raise ValueError(f"a minibatch of {b} rows is too short for debiased minibatch CKA (at least 4)")
        self.xy = self.xy + np.asarray(terms[0])
        self.xx = self.xx + np.asarray(terms[1]).ravel()
        self.yy = self.yy + np.asarray(terms[2]).ravel()
        self.batches += 1
        self.n_seen += b
        self._widths = (wx, wy)

    def merge(self, other: MinibatchTerms) -> None:
        self.xy, self.xx, self.yy = self.xy + other.xy, self.xx + other.xx, self.yy + other.yy
        self.batches += other.batches
        self.n_seen += other.n_seen

    def values(self, bound: Bound) -> np.ndarray:
        if self.batches == 0:
            raise ValueError("the loader gave no batch: minibatch CKA needs at least one minibatch")
        sums = _MinibatchSums((self.xy, self.xx, self.yy, self.batches), self.n_seen, self.names_x, self.names_y)
        return evaluate(bound, sums, "value")
