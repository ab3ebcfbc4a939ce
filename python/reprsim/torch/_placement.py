"""Where compare() runs the models, and putting the models back exactly as they were afterwards."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

_FIX = "use device='cpu', or device=None to run each model where its parameters are"


def resolve_device(device: Any) -> torch.device | None:
    """The checked `device` argument of compare (None stays None); ValueError/TypeError before anything moves."""
    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0', a torch.device or None, got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device ({exc}); {_FIX}") from None
    if dev.type == "meta":
        raise ValueError(
            f"device={device!r}: the meta device holds no data, so the models cannot run there (moving them would "
            f"drop their weights); {_FIX}"
        )
    if dev.type == "cuda":
        if torch.version.cuda is None and torch.version.hip is None:
            raise ValueError(
                f"device={device!r}: this torch build has no CUDA support (torch.version.cuda is None); install a "
                f"CUDA build of torch, or {_FIX}"
            )
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r}: torch sees no CUDA device (check the driver and CUDA_VISIBLE_DEVICES); {_FIX}"
            )
        count = torch.cuda.device_count()
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= count:
            raise ValueError(f"device={device!r}: torch sees {count} CUDA device(s), cuda:0 … cuda:{count - 1}")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device={device!r}: the MPS backend is not available on this machine; {_FIX}")
    if dev.type != "cpu":
        try:
            torch.empty(1, device=dev)
        except Exception as exc:  # any backend's own failure to allocate there
            raise ValueError(f"device={device!r} cannot be used here ({type(exc).__name__}: {exc}); {_FIX}") from None
    return dev


def model_device(model: torch.nn.Module, argname: str) -> torch.device:
    """Where `model` runs: the device of its first parameter (or buffer); the CPU for a model with neither."""
    for t in model.parameters():
        dev = t.device
        break
    else:
        dev = next((b.device for b in model.buffers()), torch.device("cpu"))
    if dev.type == "meta":
        raise ValueError(
            f"{argname} has parameters on the meta device (no weights are loaded); load them first (e.g. "
            "model.to_empty(device='cpu') and load_state_dict, or from_pretrained without a meta device context)"
        )
    return dev


def _modules(models: Iterable[torch.nn.Module]) -> list[torch.nn.Module]:
    seen: dict[int, torch.nn.Module] = {}
    for model in models:
        for m in model.modules():
            seen.setdefault(id(m), m)
    return list(seen.values())


class ModelState:
    """What compare changes on the models — training flags and, when it moves them, every parameter and
    buffer — saved so that :meth:`restore` puts back exactly the same objects on the same storage.

    The parameters keep their identity (optimizers and tied weights stay valid); their data, gradients and
    the buffers return to the tensors they were before the call, on their devices and in their dtypes,
    with ``requires_grad`` untouched.
    """

    def __init__(self, *models: torch.nn.Module, tensors: bool) -> None:
        modules = _modules(models)
        self.training = [(m, m.training) for m in modules]
        self.params: list[tuple[torch.nn.Module, str, torch.nn.Parameter, torch.Tensor, Any, Any]] = []
        self.buffers: list[tuple[torch.nn.Module, str, torch.Tensor]] = []
        if tensors:
            for m in modules:
                for name, p in m._parameters.items():
                    if p is not None:
                        # Module.to() may move a gradient by assigning its .data in place: keep that too.
                        grad = p.grad
                        self.params.append((m, name, p, p.data, grad, None if grad is None else grad.data))
                for name, b in m._buffers.items():
                    if b is not None:
                        self.buffers.append((m, name, b))

    def _restore_one(self, item: tuple[str, tuple[Any, ...]]) -> None:
        kind, entry = item
        if kind == "training":
            module, flag = entry
            module.training = flag
        elif kind == "param":
            module, name, p, data, grad, grad_data = entry
            module._parameters[name] = p
            with torch.no_grad():
                p.data = data
                if grad is not None:
                    grad.data = grad_data
                p.grad = grad
        else:
            module, name, b = entry
            module._buffers[name] = b

    def restore(self) -> None:
        """Put everything back; an interruption (KeyboardInterrupt) during the restoration is re-raised
        only once everything is back."""
        pending: list[tuple[str, tuple[Any, ...]]] = (
            [("training", e) for e in self.training] + [("param", e) for e in self.params]
            + [("buffer", e) for e in self.buffers]
        )
        interrupted: BaseException | None = None
        while pending:
            try:
                while pending:
                    self._restore_one(pending[-1])
                    pending.pop()
            except KeyboardInterrupt as exc:  # each step is idempotent: finish, then re-raise
                interrupted = exc
        if interrupted is not None:
            raise interrupted


class BufferValues:
    """The values of every buffer of some models, put back after a probe forward pass (which must leave no
    trace, even in models that update buffers when they run)."""

    def __init__(self, *models: torch.nn.Module) -> None:
        self.saved = [(m, name, b, b.detach().clone()) for m in _modules(models) for name, b in m._buffers.items()
                      if b is not None]

    def restore(self) -> None:
        with torch.no_grad():
            for module, name, b, value in self.saved:
                module._buffers[name] = b
                if b.shape == value.shape:
                    b.copy_(value)
