"""How compare() groups captured batches: pooling per model side, and short minibatches for minibatch CKA."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

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
