"""compare()'s memory plan, made before the loader's first batch runs.

A probe forward pass on the first two samples of the first batch gives every layer's width (features per
row), rows per sample and dtype. With the number of samples the loader will give (``len(loader.dataset)``,
``len(loader)`` × batch size, ``max_batches`` × batch size: the smallest known), the accumulator's route —
the rows (n·Σp) or the float64 moments (Σp² per layer, p1·p2 per pair), whichever is smaller, as
:func:`reprsim._streaming.plan_route` decides for :class:`reprsim.StreamingSimilarity` — and the memory of the
whole run are known, and a run that cannot fit is refused before any batch of the loader is fed, with the
options that would make it fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .. import _memory
from .._stats import _pairwise_cka_memory_bytes, minibatch_memory_bytes
from .._streaming import _stream_memory_bytes, moments_bytes, plan_route
from ._hooks import resolve_modules, select_output
from ._pool import TOKENS, Strategy

PROBE_SAMPLES = 2


@dataclass(frozen=True)
class ProbedLayer:
    """One layer as the probe saw it."""

    side: int  # 0: model a, 1: model b
    name: str
    width: int  # features per row, after pooling
    shape: tuple[int, ...]  # the raw output (after select), before pooling
    rows_per_sample: float  # rows each sample contributes (tokens, positions; 1 for per-sample strategies)
    kind: str  # how rows are made (see _pool)
    strategy: Strategy | None
    itemsize: int  # bytes per element the accumulators keep for it


def batch_size(batch: Any) -> int | None:
    """Samples in a batch as a loader yields it: the first dimension of its (first) input tensor."""
    if isinstance(batch, Mapping):
        for k, v in batch.items():
            if isinstance(v, torch.Tensor) and v.dim() >= 1 and k not in ("labels", "label"):
                return int(v.shape[0])
        return None
    if isinstance(batch, (tuple, list)):
        return batch_size(batch[0]) if batch else None
    if isinstance(batch, torch.Tensor) and batch.dim() >= 1:
        return int(batch.shape[0])
    return None


def head(batch: Any, k: int) -> tuple[Any, int] | None:
    """The first `k` samples of a batch (every tensor whose first dimension is the batch's, sliced; the rest
    as it is), and how many samples that is; None when the batch's size cannot be told."""
    b = batch_size(batch)
    if b is None:
        return None

    def cut(v: Any) -> Any:
        return v[:k] if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == b else v

    if isinstance(batch, Mapping):
        return {key: cut(v) for key, v in batch.items()}, min(k, b)
    if isinstance(batch, (tuple, list)):
        return type(batch)(cut(v) for v in batch) if isinstance(batch, tuple) else [cut(v) for v in batch], min(k, b)
    return cut(batch), min(k, b)


def sample_count(loader: Any, max_batches: int | None, batch: int | None) -> tuple[int | None, str]:
    """How many samples the run will see, at most, and how that was found (for messages)."""
    found: list[tuple[int, str]] = []
    dataset = getattr(loader, "dataset", None)
    if max_batches is None and dataset is not None:
        try:
            found.append((len(dataset), "len(loader.dataset)"))
        except TypeError:  # an iterable dataset without a length
            pass
    if batch is not None:
        try:
            batches = len(loader)
        except TypeError:
            batches = None
        if batches is not None:
            if max_batches is not None:
                batches = min(batches, max_batches)
            found.append((batches * batch, f"{batches} batches × {batch} samples"))
        elif max_batches is not None:
            found.append((max_batches * batch, f"max_batches={max_batches} × {batch} samples"))
    if not found:
        return None, "unknown: the loader has no len() and max_batches is None"
    return min(found, key=lambda f: f[0])  # the first of equal counts: len(loader.dataset) is exact


def rows_per_sample(kind: str, shape: tuple[int, ...], rows: int, samples: int) -> float:
    """Rows a sample contributes: as in the probe, except that with pool="tokens" every position counts as a
    real token (the most a sample of this length can give; the probe's samples may be padded more)."""
    ratio = rows / max(samples, 1)
    if kind == TOKENS and len(shape) >= 2:
        return max(ratio, float(shape[1]))
    return ratio


@dataclass
class Plan:
    """The layers' widths, the rows expected, and the route and memory of the run."""

    layers: list[ProbedLayer]
    samples: int | None
    samples_how: str
    batch: int
    metric: str
    kinds: frozenset[str]
    on_device: bool  # the accumulators live on a GPU

    @property
    def wx(self) -> list[int]:
        return [p.width for p in self.layers if p.side == 0]

    @property
    def wy(self) -> list[int]:
        return [p.width for p in self.layers if p.side == 1]

    @property
    def itemsize(self) -> int:
        return max(p.itemsize for p in self.layers)

    def rows_for(self, samples: int | None) -> int | None:
        """Rows of the accumulators for a number of samples (a row cap of "spatial" counts per batch)."""
        if samples is None:
            return None
        per = max(p.rows_per_sample for p in self.layers)
        caps = [p.strategy.max_rows for p in self.layers if p.strategy is not None and p.strategy.max_rows]
        if caps:
            batches = math.ceil(samples / self.batch)
            return batches * min(min(caps), math.ceil(self.batch * per))
        return max(1, math.ceil(samples * per))

    @property
    def batch_rows(self) -> int:
        return self.rows_for(self.batch) or 1

    @property
    def rows(self) -> int | None:
        return self.rows_for(self.samples)

    def minibatch_need(self) -> int:
        """Memory of minibatch CKA: one batch's activations and its HSIC terms (independent of n)."""
        b, wx, wy = self.batch_rows, self.wx, self.wy
        acts = b * sum(wx + wy) * self.itemsize
        if self.on_device:  # the device kernel forms p1×p2 cross-products in float64
            return acts + 8 * (b * sum(wx + wy) + max(wx + wy) ** 2 + max(wx) * max(wy))
        return acts + minibatch_memory_bytes(b, wx, wy)

    def need(self, rows: int | None) -> tuple[str, int, str]:
        """(route, bytes, what they hold) for a run over `rows` rows (None: unknown)."""
        wx, wy, itemsize = self.wx, self.wy, self.itemsize
        acts = self.batch_rows * sum(wx + wy) * itemsize
        if self.kinds == frozenset({"minibatch"}):
            return "minibatch", self.minibatch_need(), "one batch's activations and Gram matrices"
        route, figure = plan_route(wx, wy, rows, itemsize, self.kinds)
        if route == "rows":
            final = 0
            if "moments" in self.kinds and rows:
                final = min(_pairwise_cka_memory_bytes(rows, wx, wy, itemsize, space) for space in ("gram", "feature"))
            return "rows", figure + final + acts, (
                f"the rows of every layer ({rows} × {sum(wx + wy)} features, kept until the values are computed, "
                "then compared in memory)"
            )
        if "factor" in self.kinds:  # the joint QR factor of every layer, its row buffer and the values' workspace
            return "moments", moments_bytes(wx, wy, factor=True) + 8 * self.batch_rows * sum(wx + wy) + acts, (
                "the joint QR factor of every layer: (Σp)² float64, whatever the number of rows"
            )
        extra = 0 if self.on_device else _stream_memory_bytes(min(self.batch_rows, 4096), wx, wy)
        return "moments", moments_bytes(wx, wy) + extra + acts, (
            "float64 moments: p×p per layer and p1×p2 per pair, whatever the number of rows"
        )


def size(nbytes: float) -> str:
    """A byte count for messages."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{int(nbytes)} bytes"


def available(device: torch.device | None) -> int | None:
    """Bytes free where the accumulators live: the GPU's free memory, or the host's available memory."""
    if device is not None and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return _memory.available_memory()


def _widths_text(plan: Plan, names: tuple[str, str]) -> str:
    parts = []
    for side in (0, 1):
        layers = [p for p in plan.layers if p.side == side]
        shown = ", ".join(f"{p.name!r} {p.width}" for p in layers[:4])
        total = sum(p.width for p in layers)
        more = f", … ({len(layers)} layers, {total} features in all)" if len(layers) > 4 else ""
        parts.append(f"{names[side]}: {shown}{more}")
    return "; ".join(parts)


def _pool_hint(plan: Plan) -> str:
    widest = max(plan.layers, key=lambda p: p.width)
    same = [p for p in plan.layers if p.width == widest.width]
    who = f"{widest.name!r}" + (f" (and {len(same) - 1} more of that width)" if len(same) > 1 else "")
    shape, strategy = widest.shape, widest.strategy
    shown = "(batch, " + ", ".join(str(d) for d in shape[1:]) + ")"  # the probe's batch size says nothing
    name = strategy.name if strategy is not None else None
    if len(shape) == 3 and name in ("flatten", "tokens", None):
        rows = f", {widest.rows_per_sample:g} rows per sample" if widest.rows_per_sample != 1 else ""
        return (f"pool='mean' or 'first' for the token outputs {who} of shape {shown}: {shape[2]} features and one "
                f"row per sample (now {widest.width} features{rows})")
    if len(shape) >= 4:
        c = shape[1]
        now = f"now {widest.width} features" + (f", {widest.rows_per_sample:g} rows per sample"
                                                 if widest.rows_per_sample > 1 else "")
        return (f"pool='gap' ({c} features) or ('adaptive', 2, 2) ({4 * c}) for the maps {who} of shape {shown} "
                f"({now})" + ("; ('spatial', max_rows) caps the rows per batch" if name == "spatial" else ""))
    return (f"a pooling callable that reduces {who} ({widest.width} features), e.g. a fixed random projection "
            f"pool={{{widest.name!r}: lambda out, batch: out @ R}}")


def _largest_fitting_batches(plan: Plan, free: int) -> int | None:
    """The most batches whose run fits in `free` bytes (binary search over the number of samples)."""
    if plan.batch < 1:
        return None

    def fits(k: int) -> bool:
        return plan.need(plan.rows_for(k * plan.batch))[1] <= free

    if not fits(1):
        return None
    hi = 1
    limit = 1 << 40
    while fits(hi * 2) and hi < limit:
        hi *= 2
    lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def check(plan: Plan, device: torch.device | None, names: tuple[str, str]) -> tuple[str, int]:
    """Refuse (ValueError) a run whose memory does not fit where its accumulators live; returns its (route,
    bytes). Nothing of the loader has run when this is called."""
    rows = plan.rows
    route, need, holds = plan.need(rows)
    free = available(device)
    if free is None or need <= free:
        return route, need
    where = f"GPU memory on {device}" if device is not None and device.type == "cuda" else "memory"
    n_text = (f"about {rows} rows ({plan.samples} samples: {plan.samples_how}"
              + (f"; {max(p.rows_per_sample for p in plan.layers):g} rows per sample" if rows != plan.samples else "")
              + ")") if rows is not None else f"an unknown number of rows ({plan.samples_how})"
    fixes = [_pool_hint(plan),
             f"fewer layers: layers_a=/layers_b= name {len(plan.wx)} and {len(plan.wy)} now "
             "(reprsim.torch.layers(model) lists the blocks, layers(model, kind='leaves') every leaf module)"]
    if route != "minibatch":
        mb = plan.minibatch_need()
        fixes.append(f"metric='minibatch_cka' (Nguyen et al.'s estimator over the loader's batches): about "
                     f"{size(mb)} whatever the number of samples"
                     + ("" if mb <= free else ", which does not fit either"))
    if route == "moments" and rows is not None:
        fixes.append("max_batches does not help here: the moments do not grow with the number of rows")
    else:
        k = _largest_fitting_batches(plan, free)
        if k is not None:
            fixes.append(f"max_batches={k} (the first {k * plan.batch} samples fit)")
        else:
            fixes.append("max_batches: not even one batch fits")
    route_text = {"rows": "route 'rows'", "moments": "route 'moments'", "minibatch": "minibatch CKA"}[route]
    raise ValueError(
        f"reprsim.torch.compare with metric={plan.metric!r} needs about {size(need)} for the whole run, but only "
        f"{size(free)} of {where} is available; no batch of the loader has run yet.\n"
        f"  {route_text}: {holds}, for {n_text}\n"
        f"  features per row (from a probe pass on {PROBE_SAMPLES} samples of the first batch): "
        f"{_widths_text(plan, names)}\n"
        "Ways to fit:\n" + "\n".join(f"  {i}. {f}" for i, f in enumerate(fixes, 1))
    )


def probe_layers(feed: Callable[[Any], tuple[Any, Any, Any, Any, Any, Any]], batch: Any, layers_a: Sequence[str],
                 layers_b: Sequence[str]) -> tuple[list[ProbedLayer], int]:
    """Widths and rows per sample of every layer from ``feed(batch)`` on the first samples of `batch` (the
    whole batch if the models fail on the slice); returns them with the number of samples fed.

    ``feed(sample)`` runs both models on a batch and returns (activations of a, of b, raw output shapes of a,
    of b, the Capture of a, of b).
    """
    cut = head(batch, PROBE_SAMPLES)
    attempts = [cut] if cut is not None else []
    size = batch_size(batch)
    if cut is None or (size is not None and size > cut[1]):
        attempts.append((batch, size or 0))
    error: BaseException | None = None
    for sample, count in attempts:
        try:
            acts_a, acts_b, shapes_a, shapes_b, info_a, info_b = feed(sample)
        except (ValueError, TypeError, RuntimeError, IndexError) as exc:
            error = exc
            continue
        out = []
        for side, names, acts, shapes, info in ((0, layers_a, acts_a, shapes_a, info_a),
                                                 (1, layers_b, acts_b, shapes_b, info_b)):
            for name in names:
                t = acts[name]
                strategy = info.pools[name]
                kind, rows = info.row_info[name]
                itemsize = 8 if t.dtype == torch.float64 else 4
                out.append(ProbedLayer(side, name, int(t.shape[1]), shapes[name],
                                       rows_per_sample(kind, shapes[name], rows, max(count, 1)),
                                       kind, strategy, itemsize))
        return out, count
    assert error is not None
    raise error


class RawShapes:
    """The shape of each named layer's output (after `select`, before pooling) at its first call."""

    def __init__(self, model: torch.nn.Module, layers: Sequence[str], select: Any) -> None:
        self.shapes: dict[str, tuple[int, ...]] = {}
        self._modules = list(zip(layers, resolve_modules(model, layers)))
        self._select = select
        self._handles: list[Any] = []

    def __enter__(self) -> RawShapes:
        for name, module in self._modules:
            def hook(module: torch.nn.Module, inputs: Any, output: Any, name: str = name) -> None:
                if name not in self.shapes:
                    self.shapes[name] = tuple(select_output(output, self._select, name).shape)

            self._handles.append(module.register_forward_hook(hook))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
