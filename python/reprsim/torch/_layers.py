"""Layer discovery: candidate layers of a model with their output shapes, and the model's blocks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ._hooks import first_tensor

_CONTAINERS = (torch.nn.ModuleList, torch.nn.Sequential, torch.nn.ModuleDict)
_KINDS = ("blocks", "leaves", "all")


@dataclass(frozen=True)
class LayerInfo:
    """One candidate layer of a model, as listed by :func:`layers`.

    Attributes
    ----------
    name : str
        The module name, as ``model.named_modules()`` gives it and ``capture``/``compare`` take it.
    type : str
        The module's class name.
    shape : tuple of int or None
        The shape of the layer's output (its first tensor, as captured) on the sample batch; None without a
        sample batch, when the module did not run, or when its output holds no tensor.
    params : int
        Number of parameters of the module (its submodules included).
    calls : int
        How many times the module ran on the sample batch (0 without one; more than 1 for shared modules,
        whose captured rows are the concatenation of their calls).
    """

    name: str
    type: str
    shape: tuple[int, ...] | None
    params: int
    calls: int = 0


class LayerList(list):
    """A list of :class:`LayerInfo` that prints as a table; ``.names`` gives the names to pass to compare."""

    @property
    def names(self) -> list[str]:
        """The layer names, in model order."""
        return [info.name for info in self]

    def __str__(self) -> str:
        rows = [("name", "type", "output shape", "params")]
        for info in self:
            shape = "" if info.shape is None else "(" + ", ".join(str(s) for s in info.shape) + ")"
            if info.calls > 1:
                shape += f" ×{info.calls} calls"
            rows.append((info.name, info.type, shape, f"{info.params:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join(
            f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}".rstrip()
            for r in rows
        )


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def block_names(model: torch.nn.Module) -> list[str]:
    """The names of `model`'s blocks: the largest group of repeated modules (see :func:`layers`)."""
    best: tuple[bool, int, list[str]] | None = None
    for parent_name, parent in model.named_modules():
        children = list(parent.named_children())
        if len(children) < 2:
            continue
        in_container = isinstance(parent, _CONTAINERS)
        by_class: dict[type, list[tuple[str, torch.nn.Module]]] = {}
        for child_name, child in children:
            by_class.setdefault(type(child), []).append((child_name, child))
        for cls, members in by_class.items():
            # Repeated modules in a container (HF's encoder.layer, a Sequential's blocks), or sibling
            # containers of one class (torchvision's and timm's ResNet layer1 … layer4).
            if len(members) < 2 or not (in_container or issubclass(cls, _CONTAINERS)):
                continue
            non_leaf = all(next(m.children(), None) is not None for _, m in members)
            params = sum(_params(m) for _, m in members)
            names = [f"{parent_name}.{c}" if parent_name else c for c, _ in members]
            if params > 0 and (best is None or (non_leaf, params) > best[:2]):
                best = (non_leaf, params, names)
    if best is None:
        raise ValueError(
            f"{type(model).__name__} has no repeated blocks (two or more modules of one class with parameters in a "
            "ModuleList/Sequential); name the layers to compare (reprsim.torch.layers(model, batch, "
            "kind='leaves') lists candidates with their output shapes)"
        )
    return best[2]


def _device(model: torch.nn.Module) -> torch.device | None:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return None


def _feed(model: torch.nn.Module, batch: Any) -> None:
    """One forward pass on a batch, read as compare reads loader batches; tensors go to the model's device."""
    device = _device(model)

    def move(v: Any) -> Any:
        return v.to(device) if device is not None and isinstance(v, torch.Tensor) else v

    if isinstance(batch, Mapping):
        model(**{k: move(v) for k, v in batch.items() if k not in ("labels", "label")})
        return
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("sample_batch is empty")
        batch = batch[0]  # (inputs, labels, ...)
    if not isinstance(batch, torch.Tensor):
        raise TypeError(
            f"sample_batch of type {type(batch).__name__} cannot be fed; pass a tensor, an (inputs, labels) tuple or "
            "a dict of model keyword arguments"
        )
    model(move(batch))


def layers(model: torch.nn.Module, sample_batch: Any = None, *, kind: str | type | tuple[type, ...] = "blocks",
           ) -> LayerList:
    """List the candidate layers of `model`, with their output shapes on one sample batch.

    With a sample batch, the model runs once on it (in ``eval()`` mode under ``torch.no_grad()``; its
    training flag is restored) with forward hooks that are removed afterwards, also after an exception.

    Parameters
    ----------
    model : torch.nn.Module
        The model.
    sample_batch : tensor, tuple or dict, optional
        A batch as a loader for :func:`reprsim.torch.compare` yields it (a tensor, ``(inputs, labels, ...)``,
        or a dict of keyword arguments); its tensors are moved to the model's device. Without it no shapes
        are given.
    kind : {"blocks", "leaves", "all"}, type or tuple of types, default "blocks"
        ``"blocks"``: the model's blocks, what ``compare`` uses when no layers are named. They are the largest
        group (by parameters) of two or more modules of one class that are children of one
        ``ModuleList``/``Sequential``/``ModuleDict``, or sibling containers of one class; groups of modules
        that have submodules are preferred to groups of single layers. This finds the transformer layers of
        Hugging Face encoders and decoders (``encoder.layer.*``, ``h.*``, ``layers.*``, ``encoder.block.*``),
        the stages of ResNet/ConvNeXt/Swin-style networks (``encoder.stages.*``, ``layer1`` … ``layer4``),
        the blocks of MobileNet/EfficientNet, and the Linear layers of a plain ``Sequential`` MLP.
        ``"leaves"``: every module without submodules. ``"all"``: every named module. A type or tuple of
        types: the modules that are instances of it (e.g. ``torch.nn.Conv2d``).

    Returns
    -------
    LayerList
        A list of :class:`LayerInfo` in model order, which prints as a table; its ``names`` property is the
        list of names to pass as ``layers_a``/``layers_b``.

    Raises
    ------
    ValueError
        An unknown `kind`, or ``kind="blocks"`` for a model without repeated blocks.
    TypeError
        A `sample_batch` that cannot be fed.

    Examples
    --------
    >>> print(reprsim.torch.layers(model, next(iter(loader))))  # doctest: +SKIP
    name             type       output shape  params
    encoder.layer.0  BertLayer  (8, 12, 16)    3,360
    encoder.layer.1  BertLayer  (8, 12, 16)    3,360
    """
    named = [(n, m) for n, m in model.named_modules() if n]
    if isinstance(kind, str):
        if kind == "blocks":
            wanted = set(block_names(model))
            chosen = [(n, m) for n, m in named if n in wanted]
        elif kind == "leaves":
            chosen = [(n, m) for n, m in named if next(m.children(), None) is None]
        elif kind == "all":
            chosen = named
        else:
            raise ValueError(f"kind must be one of {_KINDS} or a module type, got {kind!r}")
    elif isinstance(kind, type) or (isinstance(kind, tuple) and kind and all(isinstance(k, type) for k in kind)):
        chosen = [(n, m) for n, m in named if isinstance(m, kind)]
    else:
        raise ValueError(f"kind must be one of {_KINDS} or a module type (or tuple of types), got {kind!r}")

    shapes: dict[str, tuple[int, ...] | None] = {}
    calls: dict[str, int] = {n: 0 for n, _ in chosen}
    if sample_batch is not None:
        def hook(name: str) -> Any:
            def record(module: torch.nn.Module, inputs: Any, output: Any) -> None:
                calls[name] += 1
                if calls[name] == 1:
                    t = first_tensor(output)
                    shapes[name] = tuple(t.shape) if t is not None else None

            return record

        handles = []
        modes = [(m, m.training) for m in model.modules()]
        try:
            for n, m in chosen:
                handles.append(m.register_forward_hook(hook(n)))
            model.eval()
            with torch.no_grad():
                _feed(model, sample_batch)
        finally:
            for h in handles:
                h.remove()
            for m, mode in modes:
                m.training = mode
    return LayerList(LayerInfo(n, type(m).__name__, shapes.get(n), _params(m), calls[n]) for n, m in chosen)


def resolve_layers(model: torch.nn.Module, names: Sequence[str] | None) -> Sequence[str]:
    """`names`, or the model's blocks when None."""
    return block_names(model) if names is None else names
