"""Where statistics are computed: the array backend, chosen once at the entry of every path.

numpy arrays (and CPU torch tensors, read without a copy) go to the C++ core. Arrays of another library
living on a device (CUDA torch tensors) go to a backend that library's optional layer registers: the numpy
core never imports it. ``reprsim.torch`` registers its backend when imported, and an entry point in the
group ``reprsim.backends`` (declared by the package) loads it the first time a CUDA tensor arrives.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol

import numpy as np

from . import _stats
from ._validation import as_lists, as_pair
from ._validation import is_gpu_tensor as is_device_array


class Backend(Protocol):
    """What a device backend provides."""

    name: str

    def owns(self, a: Any) -> bool:
        """Whether ``a`` is an array this backend computes on (e.g. a tensor on a GPU)."""
        ...

    def pair_set(self, kind: str, xs: Sequence[Any], ys: Sequence[Any] | None, names_x: list[str],
                 names_y: list[str], min_n: int, what: str) -> _stats.PairSet:
        """The statistics of ``kind`` for every pair of xs × ys (ys None: xs × xs), checked like the numpy
        path (shapes, n, finiteness)."""
        ...

    def permute_rows(self, a: Any, index: np.ndarray) -> Any:
        """``a[index]`` on the backend's device."""
        ...

    def knn_lists(self, x: Any, k: Any, center: bool, name: str) -> Any:
        """One representation's exact k-NN lists (see ``reprsim._neighbours.KnnLists``)."""
        ...

    def rdm(self, x: Any, method: str, name: str) -> Any:
        """One representation's condensed RDM, on its device."""
        ...


_BACKENDS: dict[str, Backend] = {}
_entry_points_loaded = False


def register_backend(backend: Backend) -> None:
    """Make a device backend available to every path (called by the optional layer that provides it)."""
    _BACKENDS[backend.name] = backend


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group="reprsim.backends"):
        try:
            ep.load()()
        except ImportError:  # the optional dependency is not installed
            continue


def _flat(items: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for it in items:
        if isinstance(it, (list, tuple)):
            out.extend(it)
        else:
            out.append(it)
    return out


def device_backend(*arrays: Any) -> Backend | None:
    """The backend of the device arrays among ``arrays`` (None when every one is a host array)."""
    if not any(is_device_array(a) for a in _flat(list(arrays))):
        return None
    for backend in list(_BACKENDS.values()):
        if any(backend.owns(a) for a in _flat(list(arrays))):
            return backend
    _load_entry_points()
    for backend in list(_BACKENDS.values()):
        if any(backend.owns(a) for a in _flat(list(arrays))):
            return backend
    raise TypeError(
        "got a tensor on a GPU, but no backend for it is available; install reprsim's torch support "
        "(pip install torch) or move the tensors to the CPU with .cpu()"
    )


def pair_set(kind: str, xs: Sequence[Any], ys: Sequence[Any] | None, *, names_x: list[str] | None = None,
             names_y: list[str] | None = None, min_n: int, what: str) -> _stats.PairSet:
    """The statistics of ``kind`` for every pair of ``xs`` × ``ys`` (``ys`` None: xs against itself),
    computed by the backend the inputs belong to."""
    for arg, v in (("xs", xs), ("ys", ys)):
        if v is not None and (not isinstance(v, Sequence) or isinstance(v, (str, bytes)) or hasattr(v, "shape")):
            raise TypeError(f"{arg} must be a list of 2-D arrays (one per representation), got {type(v).__name__}")
    if len(xs) == 0 or (ys is not None and len(ys) == 0):
        raise ValueError(f"{'xs' if len(xs) == 0 else 'ys'} is empty; pass at least one representation")
    k1 = len(xs)
    names_x = names_x or [f"xs[{i}]" for i in range(k1)]
    if ys is not None:
        names_y = names_y or [f"ys[{j}]" for j in range(len(ys))]
    backend = device_backend(list(xs), list(ys or []))
    if backend is not None:
        return backend.pair_set(kind, xs, ys, names_x, names_y if names_y is not None else names_x, min_n, what)
    try:
        cls = _stats.NUMPY_SETS[kind]
    except KeyError:
        raise ValueError(f"no producer of {kind!r} statistics for numpy input") from None
    if names_x == ["x"] and names_y == ["y"] and ys is not None and len(xs) == len(ys) == 1:
        xa, ya = as_pair(xs[0], ys[0], min_n=min_n, what=what)
        return cls([xa], [ya], ["x"], ["y"])
    xl, yl = as_lists(list(xs), None if ys is None else list(ys), min_n=min_n, what=what, names=(names_x, names_y))
    if yl is None:
        return cls(xl, xl, names_x, names_x, same=True)
    assert names_y is not None
    return cls(xl, yl, names_x, names_y)


def permute_rows(a: Any, index: np.ndarray) -> Any:
    """Rows of ``a`` in the order ``index``, on the device ``a`` lives on."""
    backend = device_backend(a)
    if backend is not None:
        return backend.permute_rows(a, index)
    return a[index]
