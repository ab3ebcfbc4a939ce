"""Capturing the outputs of named modules with forward hooks that are always removed."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from ._pool import SAMPLES, PoolArg, Strategy, batch_mask, parse_per_layer, spatial_rows, to_rows

Selector = int | str | Callable[[Any], torch.Tensor] | None


def resolve_modules(model: torch.nn.Module, layers: Sequence[str], argname: str = "layers") -> list[torch.nn.Module]:
    """The modules named in `layers` (names as in ``model.named_modules()``); unknown names raise with close matches."""
    if isinstance(layers, str) or not isinstance(layers, Sequence) or len(layers) == 0:
        raise TypeError(f"{argname} must be a non-empty list of module names, got {layers!r}")
    named = dict(model.named_modules())
    out = []
    for name in layers:
        if name not in named:
            close = difflib.get_close_matches(str(name), [k for k in named if k], n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(
                f"{argname}: no module named {name!r} in {type(model).__name__}{hint} "
                f"(names come from model.named_modules())"
            )
        out.append(named[name])
    return out


def first_tensor(output: Any) -> torch.Tensor | None:
    """The first tensor in a module output: itself, or the first one found in a tuple, list, dict or ModelOutput."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):  # dicts and HF ModelOutput (an OrderedDict of the fields that are set)
        values: Iterable[Any] = output.values()
    elif isinstance(output, (tuple, list)):
        values = output
    else:
        return None
    for v in values:
        t = first_tensor(v)
        if t is not None:
            return t
    return None


def select_output(output: Any, select: Selector, name: str) -> torch.Tensor:
    if select is None:
        t = first_tensor(output)
    elif callable(select):
        t = select(output)
    elif isinstance(select, int) and isinstance(output, (tuple, list)):
        t = output[select]
    elif isinstance(select, str) and isinstance(output, Mapping):
        t = output[select]
    elif isinstance(select, str) and hasattr(output, select):
        t = getattr(output, select)
    else:
        raise TypeError(f"select={select!r} does not apply to the output of {name!r} ({type(output).__name__})")
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"the output of {name!r} holds no tensor to capture (got {type(output).__name__}); pass select=")
    return t


class Capture:
    """Outputs of named modules recorded by forward hooks; created by :func:`capture`.

    Parameters
    ----------
    model : torch.nn.Module
        The model whose modules are hooked.
    layers : sequence of str
        Module names as in ``model.named_modules()``.
    pool : str, tuple, callable, mapping or None
        How outputs become (rows, features) matrices, for every layer or per layer name; see :func:`capture`.
    select : int, str or callable, optional
        Which tensor of a structured output to record; see :func:`capture`.

    Attributes
    ----------
    layers : list of str
        The hooked module names, in order.
    pools : dict of str to Strategy or None
        The parsed strategy of every layer.
    row_info : dict of str to (str, int)
        For the last :meth:`take`, per layer: how its rows were made (one per input sample, per token, per
        position, or by a callable) and how many there were before any ``spatial`` row cap.
    recording : bool
        Whether the hooks record (default True); ``compare`` turns it off while the other model runs, so that
        modules shared by two models count each pass once.

    Raises
    ------
    ValueError
        An unknown strategy, a mapping key that is not among `layers`, or an unknown module name (with
        close matches).
    TypeError
        A strategy that is neither a name, a tuple nor a callable of (output, batch).
    """

    def __init__(self, model: torch.nn.Module, layers: Sequence[str], pool: PoolArg, select: Selector):
        self._modules = resolve_modules(model, layers)
        self.layers = list(layers)
        self.pools: dict[str, Strategy | None] = parse_per_layer(pool, self.layers)
        self._select = select
        self._raw: dict[str, list[torch.Tensor]] = {name: [] for name in self.layers}
        self._handles: list[Any] = []
        self._taken = 0  # batches taken so far: numbers the "spatial" subsample of each batch
        # Off while another model that shares modules with this one runs (compare feeds two models).
        self.recording = True
        # per layer, for the last take(): (row kind, rows before any row cap)
        self.row_info: dict[str, tuple[str, int]] = {}

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            if self.recording:
                self._raw[name].append(select_output(output, self._select, name).detach())

        return hook

    def _attach(self) -> None:
        for name, module in zip(self.layers, self._modules):
            self._handles.append(module.register_forward_hook(self._hook(name)))

    def remove(self) -> None:
        """Remove every hook (done automatically when the ``with`` block ends)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def take(self, attention_mask: torch.Tensor | None = None, *, batch: Any = None) -> dict[str, torch.Tensor]:
        """Return the activations recorded since the last call, pooled, and clear them.

        A module called several times in one forward pass (weight sharing) contributes the concatenation of
        its calls along the row axis.

        Parameters
        ----------
        attention_mask : torch.Tensor, optional
            (batch, tokens) mask of the inputs (1 or True for real tokens); the token strategies honour it.
            Default: the ``"attention_mask"`` entry of `batch` when it is a dict.
        batch : object, optional
            The batch the model was fed; passed to pooling callables, and the source of the default mask.

        Returns
        -------
        dict of str to torch.Tensor
            One (rows, features) tensor per layer name.

        Raises
        ------
        RuntimeError
            A hooked module did not run since the last call.
        ValueError
            A strategy that does not fit a layer's output (the message names the layer, its shape and the
            strategies that fit), or pooling that is undefined (e.g. a sample with no unmasked token).
        """
        if attention_mask is None:
            attention_mask = batch_mask(batch)
        out = {}
        info = {}
        try:
            for name in self.layers:
                if not self._raw[name]:
                    raise RuntimeError(
                        f"module {name!r} did not run since the last take(); is it used in forward()?"
                    )
            for name in self.layers:
                strategy = self.pools[name]
                mats = [to_rows(c, strategy, attention_mask, batch, name) for c in self._raw[name]]
                rows = mats[0] if len(mats) == 1 else torch.cat(mats, dim=0)
                info[name] = (strategy.rows if strategy is not None else SAMPLES, rows.shape[0])
                if strategy is not None and strategy.max_rows is not None:
                    keep = spatial_rows(rows.shape[0], strategy.max_rows, strategy.seed, self._taken)
                    if keep is not None:
                        rows = rows[keep.to(rows.device)]
                out[name] = rows
        finally:
            # Whatever happens, the next take() starts from the next forward pass.
            for chunks in self._raw.values():
                chunks.clear()
        self._taken += 1
        self.row_info = info
        return out

    def __enter__(self) -> Capture:
        self._attach()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def capture(model: torch.nn.Module, layers: Sequence[str], *, pool: PoolArg = None,
            select: Selector = None) -> Capture:
    """Record the outputs of the named modules of `model` inside a ``with`` block.

    The hooks are removed when the block ends, also after an exception (including one raised in the middle
    of a forward pass).

    Parameters
    ----------
    model : torch.nn.Module
        The model whose modules are hooked.
    layers : list of str
        Module names as in ``model.named_modules()`` (:func:`reprsim.torch.layers` lists them with their
        output shapes). An unknown name raises ValueError listing close matches.
    pool : str, tuple, callable or mapping, optional
        How each output becomes a (rows, features) matrix: one strategy for every layer, or a dict of layer
        name → strategy (layers left out get None). Rows are the aligned samples of every comparison.

        Sequences (batch, tokens, hidden); the mask is the ``attention_mask`` (1 = real token), left or
        right padding alike:

        - ``"mean"``: the mean of the unmasked tokens. Keeps the average token; invariant to token order and
          to padding.
        - ``"last"``: the last unmasked token (the highest position whose mask is 1). What causal decoders
          summarise a sequence in; invariant to padding on either side.
        - ``"first"`` (alias ``"cls"``): the first unmasked token, BERT/ViT's [CLS]; invariant to padding.
        - ``"max"``: the element-wise maximum over unmasked tokens. Invariant to token order and padding.
        - ``"tokens"``: every unmasked token is a row (sample-major). Keeps per-token structure; the two
          models must see the same tokens (same tokeniser, length and mask), which is checked by the row
          counts.
        - ``"flatten"``: tokens × hidden features per sample, padding included; depends on token positions
          and needs one sequence length throughout.

        Channel-first maps (batch, C, H, W) (also (batch, C, D, H, W)):

        - ``"gap"``: global average over positions, C features. Invariant to where a feature fires
          (permutations of positions).
        - ``("adaptive", h, w)``: adaptive average pool to an h × w grid, C·h·w features; keeps coarse layout,
          and compares layers of different resolutions.
        - ``"flatten"``: C·H·W features; keeps the full layout, not invariant to translation.
        - ``"spatial"``: every position of every sample is a row of C features (batch·H·W rows; every layer
          of both models must share the grid). ``("spatial", max_rows_per_batch[, seed])`` keeps a random
          subset of at most that many rows per batch: in the k-th batch (k counted from 0 by
          :meth:`Capture.take`), the rows ``sorted(torch.randperm(rows, generator=torch.Generator()
          .manual_seed(seed + k))[:max_rows_per_batch])`` (seed 0 by default), the same positions for every
          layer and both models.

        Any output: a callable ``f(output, batch)`` gets the layer's output tensor (after `select`) and the
        batch as the loader yielded it (e.g. to read its mask), and returns a (rows, features) tensor.

        Outputs that are already (batch, features) stay as they are under every one-row-per-sample strategy;
        1-D outputs become one feature. None (the default) keeps 1-D and 2-D outputs and raises for 3-D and
        larger ones, naming these strategies and the width a flatten would give: how a sequence or a map
        becomes a vector changes the result, so it is never chosen silently.
    select : int, str or callable, optional
        Which tensor of a tuple/list (index), dict or ModelOutput (key or attribute) output to record;
        default: the first tensor found.

    Returns
    -------
    Capture
        A context manager; :meth:`Capture.take` returns what was recorded.

    Raises
    ------
    ValueError
        An unknown strategy or malformed tuple, a `pool` key that is not among `layers`, or an unknown
        module name (with close matches).
    TypeError
        A strategy of another type, or a callable that does not take (output, batch).

    Examples
    --------
    >>> with capture(model, ["layer1", "fc"], pool={"layer1": "gap"}) as cap:  # doctest: +SKIP
    ...     model(images)
    ...     acts = cap.take()          # {"layer1": (batch, channels), "fc": (batch, classes)}
    """
    return Capture(model, layers, pool, select)
