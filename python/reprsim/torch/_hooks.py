"""Capturing the outputs of named modules with forward hooks that are always removed."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

Selector = int | str | Callable[[Any], torch.Tensor] | None
_POOLS = (None, "mean", "cls", "last")


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


def to_matrix(t: torch.Tensor, pool: str | None, attention_mask: torch.Tensor | None, name: str) -> torch.Tensor:
    """(batch, ...) activations to (batch, features): flattened per sample, or pooled over a sequence axis.

    Sequence activations are (batch, tokens, hidden). ``pool="mean"`` averages the tokens (only those whose
    ``attention_mask`` is 1, when a mask is given), ``"cls"`` takes the first token, ``"last"`` the last
    token (the last unmasked one with a mask).
    """
    if t.dim() < 1:
        raise ValueError(f"the output of {name!r} is a scalar; it has no per-sample activations")
    if t.dim() == 1:
        return t.reshape(-1, 1)
    if pool is None:
        return t.reshape(t.shape[0], -1)
    if t.dim() != 3:
        raise ValueError(
            f"pool={pool!r} expects (batch, tokens, hidden) activations, but {name!r} gave shape {tuple(t.shape)}"
        )
    if attention_mask is not None:
        if attention_mask.shape != t.shape[:2]:
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}, but {name!r} gave (batch, tokens) = "
                f"{tuple(t.shape[:2])}"
            )
        mask = attention_mask.to(device=t.device)
    if pool == "cls":
        return t[:, 0]
    if pool == "last":
        if attention_mask is None:
            return t[:, -1]
        lengths = mask.long().sum(dim=1)
        if torch.any(lengths == 0):
            raise ValueError("attention_mask has a sample with no unmasked token; 'last' pooling is undefined")
        return t[torch.arange(t.shape[0], device=t.device), lengths - 1]
    # mean
    if attention_mask is None:
        return t.mean(dim=1)
    w = mask.to(t.dtype).unsqueeze(-1)
    count = w.sum(dim=1)
    if torch.any(count == 0):
        raise ValueError("attention_mask has a sample with no unmasked token; mean pooling is undefined")
    return (t * w).sum(dim=1) / count


class Capture:
    """Outputs of named modules recorded by forward hooks; created by :func:`capture`.

    Parameters
    ----------
    model : torch.nn.Module
        The model whose modules are hooked.
    layers : sequence of str
        Module names as in ``model.named_modules()``.
    pool : {None, "mean", "cls", "last"}
        How outputs become (batch, features) matrices; see :func:`capture`.
    select : int, str or callable, optional
        Which tensor of a structured output to record; see :func:`capture`.

    Attributes
    ----------
    layers : list of str
        The hooked module names, in order.

    Raises
    ------
    ValueError
        An unknown pool, or an unknown module name (with close matches).
    """

    def __init__(self, model: torch.nn.Module, layers: Sequence[str], pool: str | None, select: Selector):
        if pool not in _POOLS:
            raise ValueError(f"pool must be one of {_POOLS}, got {pool!r}")
        self._modules = resolve_modules(model, layers)
        self.layers = list(layers)
        self._pool = pool
        self._select = select
        self._raw: dict[str, list[torch.Tensor]] = {name: [] for name in self.layers}
        self._handles: list[Any] = []

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
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

    def take(self, attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Return the activations recorded since the last call and clear them.

        A module called several times in one forward pass (weight sharing) contributes the concatenation of
        its calls along the batch axis.

        Parameters
        ----------
        attention_mask : torch.Tensor, optional
            (batch, tokens) mask of the inputs; mean and last-token pooling honour it.

        Returns
        -------
        dict of str to torch.Tensor
            One (batch, features) tensor per layer name.

        Raises
        ------
        RuntimeError
            A hooked module did not run since the last call.
        ValueError
            Pooling is impossible (e.g. a sample with no unmasked token).
        """
        out = {}
        for name in self.layers:
            chunks = self._raw[name]
            if not chunks:
                raise RuntimeError(f"module {name!r} did not run since the last take(); is it used in forward()?")
            mats = [to_matrix(c, self._pool, attention_mask, name) for c in chunks]
            out[name] = mats[0] if len(mats) == 1 else torch.cat(mats, dim=0)
            chunks.clear()
        return out

    def __enter__(self) -> Capture:
        self._attach()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def capture(model: torch.nn.Module, layers: Sequence[str], *, pool: str | None = None,
            select: Selector = None) -> Capture:
    """Record the outputs of the named modules of `model` inside a ``with`` block.

    The hooks are removed when the block ends, also after an exception.

    Parameters
    ----------
    model : torch.nn.Module
        The model whose modules are hooked.
    layers : list of str
        Module names as in ``model.named_modules()``. An unknown name raises ValueError listing close matches.
    pool : {None, "mean", "cls", "last"}, optional
        None flattens each sample's activations; the others pool (batch, tokens, hidden) outputs over tokens
        (mean pooling honours the ``attention_mask`` given to :meth:`Capture.take`).
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
        An unknown pool, or an unknown module name (with close matches).

    Examples
    --------
    >>> with capture(model, ["layer1", "fc"]) as cap:  # doctest: +SKIP
    ...     model(batch)
    ...     acts = cap.take()          # {"layer1": (batch, features), "fc": (batch, classes)}
    """
    return Capture(model, layers, pool, select)
