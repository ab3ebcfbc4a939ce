"""Pooling strategies: how one layer's output becomes a (rows, features) matrix of aligned samples.

A strategy is named by a string (``"mean"``), a tuple (``("adaptive", 2, 2)``, ``("spatial", 4096)``) or a
callable ``f(output, batch)``; ``pool=`` of :func:`reprsim.torch.capture` and :func:`reprsim.torch.compare`
takes one for every layer or a mapping of layer names to strategies. The table of strategies, what each keeps
and what it is invariant to, is in the docstring of :func:`reprsim.torch.capture` and in the README.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch

#: Strategies for (batch, tokens, hidden) sequences.
TOKEN_STRATEGIES = ("mean", "last", "first", "cls", "max", "tokens")
#: Strategies for channel-first maps (batch, channels, H, W) (and (batch, C, D, H, W)).
MAP_STRATEGIES = ("gap", "adaptive", "spatial")
#: Every string a strategy can be named by ("adaptive" and "spatial" also as tuples with sizes).
STRATEGY_NAMES = TOKEN_STRATEGIES + MAP_STRATEGIES + ("flatten",)

PoolSpec = Union[str, tuple, Callable[[torch.Tensor, Any], torch.Tensor], None]
PoolArg = Union[PoolSpec, Mapping[str, PoolSpec]]

# What a row of a strategy's output is: an input sample, a token, a spatial position, or unknown (a callable).
SAMPLES, TOKENS, POSITIONS, CUSTOM = "one per input sample", "one per token", "one per spatial position", "custom"

_HELP = (
    "for (batch, tokens, hidden) outputs 'mean', 'last', 'first'/'cls', 'max' or 'tokens'; for (batch, C, H, W) "
    "maps 'gap', ('adaptive', h, w) or 'spatial' / ('spatial', max_rows_per_batch); 'flatten' for either; or a "
    "callable f(output, batch) returning (rows, features)"
)


@dataclass(frozen=True)
class Strategy:
    """A parsed pooling strategy (see :func:`parse`)."""

    name: str  # canonical name ("cls" becomes "first"); "callable" for a user function
    size: tuple[int, ...] = ()  # output grid of "adaptive"
    max_rows: int | None = None  # row cap per batch of "spatial"
    seed: int = 0  # seed of the "spatial" subsample
    fn: Callable[[torch.Tensor, Any], torch.Tensor] | None = None

    @property
    def rows(self) -> str:
        if self.name == "tokens":
            return TOKENS
        if self.name == "spatial":
            return POSITIONS
        if self.name == "callable":
            return CUSTOM
        return SAMPLES

    def __str__(self) -> str:
        if self.name == "adaptive":
            return repr(("adaptive", *self.size))
        if self.name == "spatial" and self.max_rows is not None:
            return repr(("spatial", self.max_rows, self.seed))
        if self.fn is not None:
            return getattr(self.fn, "__name__", "callable")
        return repr(self.name)


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def parse(spec: PoolSpec, argname: str = "pool") -> Strategy | None:
    """One strategy from its name, tuple or callable; None stays None (the default behaviour)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec == "cls":
            return Strategy("first")
        if spec in ("adaptive",):
            raise ValueError(f"{argname}: 'adaptive' needs an output grid, e.g. ('adaptive', 2, 2)")
        if spec in STRATEGY_NAMES:
            return Strategy(spec)
        close = difflib.get_close_matches(spec, STRATEGY_NAMES, n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise ValueError(f"{argname}: unknown pooling strategy {spec!r}{hint}; the strategies: {_HELP}")
    if isinstance(spec, tuple):
        if not spec or spec[0] not in ("adaptive", "spatial"):
            raise ValueError(
                f"{argname}: a tuple strategy is ('adaptive', h, w) or ('spatial', max_rows_per_batch[, seed]), "
                f"got {spec!r}"
            )
        if spec[0] == "adaptive":
            size = spec[1:]
            if not 1 <= len(size) <= 3 or not all(_positive_int(s) for s in size):
                raise ValueError(
                    f"{argname}: ('adaptive', h, w) takes one to three positive integer output sizes "
                    f"(one per spatial axis, or one for all), got {spec!r}"
                )
            return Strategy("adaptive", size=tuple(size))
        if len(spec) not in (2, 3) or not _positive_int(spec[1]) or (
            len(spec) == 3 and (not isinstance(spec[2], int) or isinstance(spec[2], bool) or spec[2] < 0)
        ):
            raise ValueError(
                f"{argname}: ('spatial', max_rows_per_batch[, seed]) takes a positive integer row cap and an "
                f"optional non-negative integer seed, got {spec!r}"
            )
        return Strategy("spatial", max_rows=spec[1], seed=spec[2] if len(spec) == 3 else 0)
    if callable(spec):
        try:
            inspect.signature(spec).bind(None, None)
        except TypeError:
            raise TypeError(
                f"{argname}: a pooling callable is called as f(output, batch) (the layer's output tensor and the "
                f"batch the loader yielded), but {spec!r} does not take two positional arguments"
            ) from None
        except ValueError:  # no signature (some builtins): call it and see
            pass
        return Strategy("callable", fn=spec)
    raise TypeError(f"{argname}: a pooling strategy is a name, a tuple or a callable, got {type(spec).__name__}")


def parse_per_layer(pool: PoolArg, layers: Sequence[str], argname: str = "pool") -> dict[str, Strategy | None]:
    """A strategy for every layer: one for all, or a mapping of layer names (absent layers get None)."""
    if isinstance(pool, Mapping):
        unknown = [k for k in pool if k not in layers]
        if unknown:
            raise ValueError(unknown_keys_message(unknown, layers, argname))
        return {name: parse(pool.get(name), f"{argname}[{name!r}]") for name in layers}
    strategy = parse(pool, argname)
    return {name: strategy for name in layers}


def unknown_keys_message(unknown: Sequence[Any], layers: Sequence[str], argname: str) -> str:
    hints = []
    for k in unknown:
        close = difflib.get_close_matches(str(k), list(layers), n=3, cutoff=0.5)
        hints.append(f"{k!r}" + (f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""))
    return (
        f"{argname} names layers that are not compared: {', '.join(hints)}; its keys must be among the layers "
        f"{list(layers)}"
    )


def batch_mask(batch: Any) -> torch.Tensor | None:
    """The ``attention_mask`` entry of a dict batch, if any."""
    if isinstance(batch, Mapping):
        m = batch.get("attention_mask")
        return m if isinstance(m, torch.Tensor) else None
    return None


def _mask(mask: torch.Tensor | None, t: torch.Tensor, strategy: Strategy, name: str) -> torch.Tensor | None:
    """The (batch, tokens) boolean mask for `t`, checked against its shape."""
    if mask is None:
        return None
    if mask.shape != t.shape[:2]:
        raise ValueError(
            f"attention_mask has shape {tuple(mask.shape)}, but {name!r} gave (batch, tokens) = {tuple(t.shape[:2])} "
            f"(pool={strategy}); a layer whose output does not follow the input tokens needs a strategy that "
            "does not read the mask, or a callable"
        )
    m = mask.to(device=t.device) != 0
    if strategy.name != "tokens" and not bool(m.any(dim=1).all()):
        raise ValueError(
            f"attention_mask has a sample with no unmasked token; pool={strategy} is undefined for it ({name!r})"
        )
    return m


def _too_many_dims_message(t: torch.Tensor, name: str) -> str:
    per_sample = math.prod(t.shape[1:])
    return (
        f"{name!r} gave a {t.dim()}-D output of shape {tuple(t.shape)}; say how it becomes (rows, features) with "
        f"pool= ({_HELP}); 'flatten' would give {per_sample} features per sample. Per layer: "
        f"pool={{{name!r}: ...}}"
    )


def to_rows(t: torch.Tensor, strategy: Strategy | None, attention_mask: torch.Tensor | None, batch: Any,
            name: str) -> torch.Tensor:
    """Apply `strategy` to one output `t`: a (rows, features) tensor (before any ``spatial`` row cap)."""
    if strategy is not None and strategy.fn is not None:
        return _call_user(strategy.fn, t, batch, name)
    if t.dim() < 1:
        raise ValueError(f"the output of {name!r} is a scalar; it has no per-sample activations")
    if t.dim() == 1:
        if strategy is not None and strategy.rows != SAMPLES:
            raise ValueError(f"pool={strategy} needs per-position outputs, but {name!r} gave shape {tuple(t.shape)}")
        return t.reshape(-1, 1)
    if strategy is None:
        if t.dim() == 2:
            return t
        raise ValueError(_too_many_dims_message(t, name))
    kind = strategy.name
    if t.dim() == 2:
        # Already one vector per sample: every per-sample strategy keeps it as it is.
        if strategy.rows == SAMPLES:
            return t
        raise ValueError(
            f"pool={strategy} makes a row of every {'token' if kind == 'tokens' else 'position'}, but {name!r} gave "
            f"(batch, features) = {tuple(t.shape)}, which has none; give this layer a per-sample strategy "
            f"(e.g. pool={{{name!r}: None}})"
        )
    if kind == "flatten":
        return t.reshape(t.shape[0], -1)
    if kind in TOKEN_STRATEGIES:
        if t.dim() != 3:
            raise ValueError(
                f"pool={strategy} expects (batch, tokens, hidden) activations, but {name!r} gave shape "
                f"{tuple(t.shape)}; for (batch, C, H, W) maps use 'gap', ('adaptive', h, w) or 'spatial'"
            )
        return _tokens(t, strategy, _mask(attention_mask, t, strategy, name))
    # map strategies
    if t.dim() < 4:
        raise ValueError(
            f"pool={strategy} expects channel-first maps (batch, C, H, W), but {name!r} gave shape {tuple(t.shape)}; "
            "for (batch, tokens, hidden) use 'mean', 'last', 'first', 'max' or 'tokens'; for 1-D maps "
            f"(batch, C, L) pass a callable, e.g. pool={{{name!r}: lambda out, batch: out.mean(2)}}"
        )
    spatial = tuple(range(2, t.dim()))
    if kind == "gap":
        return t.mean(dim=spatial)
    if kind == "adaptive":
        size = strategy.size if len(strategy.size) > 1 else strategy.size * len(spatial)
        if len(size) != len(spatial) or len(spatial) > 3:
            raise ValueError(
                f"pool={strategy} gives a {len(size)}-axis grid, but {name!r} has {len(spatial)} spatial axes "
                f"(shape {tuple(t.shape)})"
            )
        pooler = (torch.nn.functional.adaptive_avg_pool1d, torch.nn.functional.adaptive_avg_pool2d,
                  torch.nn.functional.adaptive_avg_pool3d)[len(spatial) - 1]
        return pooler(t, size).reshape(t.shape[0], -1)
    # spatial: every position of every sample is a row, sample-major (sample 0's positions first)
    return t.movedim(1, -1).reshape(-1, t.shape[1])


def _tokens(t: torch.Tensor, strategy: Strategy, m: torch.Tensor | None) -> torch.Tensor:
    kind = strategy.name
    steps = t.shape[1]
    if kind == "tokens":
        return t.reshape(-1, t.shape[2]) if m is None else t[m]
    if kind == "mean":
        if m is None:
            return t.mean(dim=1)
        w = m.to(t.dtype).unsqueeze(-1)
        return (t * w).sum(dim=1) / w.sum(dim=1)
    if kind == "max":
        if m is None:
            return t.amax(dim=1)
        return t.masked_fill(~m.unsqueeze(-1), -math.inf).amax(dim=1)
    if m is None:
        return t[:, 0] if kind == "first" else t[:, -1]
    # The first/last token whose mask is 1: the unique maximum of a position weight over unmasked tokens,
    # whichever side the padding is on.
    positions = torch.arange(1, steps + 1, device=t.device)
    weight = positions if kind == "last" else steps + 1 - positions
    idx = (m.long() * weight).argmax(dim=1)
    return t[torch.arange(t.shape[0], device=t.device), idx]


def _call_user(fn: Callable[[torch.Tensor, Any], torch.Tensor], t: torch.Tensor, batch: Any,
               name: str) -> torch.Tensor:
    out = fn(t, batch)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the pooling callable for {name!r} returned {type(out).__name__}; it must return a tensor")
    if out.dim() == 1:
        return out.reshape(-1, 1)
    if out.dim() != 2:
        raise ValueError(
            f"the pooling callable for {name!r} returned shape {tuple(out.shape)}; it must return (rows, features)"
        )
    return out


def spatial_rows(total: int, max_rows: int, seed: int, batch_index: int) -> torch.Tensor | None:
    """Row indices kept by ``("spatial", max_rows, seed)`` in batch number `batch_index` of `total` rows.

    ``sorted(torch.randperm(total, generator=torch.Generator().manual_seed(seed + batch_index))[:max_rows])``,
    drawn on the CPU so that it is the same on every device; None when nothing needs dropping. Both models
    (and every layer) with the same number of rows in a batch keep the same positions.
    """
    if total <= max_rows:
        return None
    g = torch.Generator().manual_seed(seed + batch_index)
    return torch.randperm(total, generator=g)[:max_rows].sort().values


def check_rows(batch_index: int, sides: Sequence[tuple[str, Mapping[str, tuple[str, int]]]]) -> None:
    """Every layer of both models must give the same number of rows of the same kind in a batch.

    `sides` holds (label, {layer: (row kind, rows before any row cap)}) for each model.
    """
    entries = [(label, layer, kind, n) for label, info in sides for layer, (kind, n) in info.items()]
    kinds = {kind for _, _, kind, _ in entries if kind != CUSTOM}
    listing = ", ".join(f"{label} {layer!r}: {n} rows ({kind})" for label, layer, kind, n in entries)
    if len(kinds) > 1:
        raise ValueError(
            f"batch {batch_index}: the layers make rows in different ways ({listing}); rows are the aligned samples "
            "of every comparison, so every layer of both models must make them alike: one per input sample "
            "('mean', 'last', 'first', 'max', 'flatten', 'gap', 'adaptive'), one per token ('tokens') or one per "
            "position ('spatial')"
        )
    counts = {n for _, _, _, n in entries}
    if len(counts) > 1:
        kind = kinds.pop() if kinds else CUSTOM
        if kind == TOKENS:
            why = ("with pool='tokens' every unmasked token is a sample, so both models must see the same tokens: "
                   "the same tokeniser, sequence length and attention mask, and layers that keep one output per "
                   "input token (a model that adds a [CLS] token or downsamples does not)")
        elif kind == POSITIONS:
            why = ("with pool='spatial' every position is a sample, so every layer must have the same grid "
                   "(batch × H × W); to compare maps of different resolutions use ('adaptive', h, w)")
        elif kind == SAMPLES:
            why = "every layer must give one row per input sample"
        else:
            why = "a pooling callable must give every layer the same number of rows"
        raise ValueError(f"batch {batch_index}: the layers gave different numbers of rows ({listing}); {why}")
