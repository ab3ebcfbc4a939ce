"""Input checks shared by every public function.

A representation is a 2-D array of shape (n, p): rows are samples, aligned between the inputs.
float32 and float64 arrays are used in place (any positive strides); other numeric dtypes are promoted
to float64 (float32 in the other byte order is read as native float32); arrays with negative strides or
unaligned data are copied. Every mistake raises ValueError or TypeError naming the argument and the fix.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._memory import require_memory

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

_COPY_FIX = (
    "reduce the data first (fewer samples or features), or feed it in batches to reprsim.StreamingSimilarity, "
    "which converts one batch at a time"
)


def _require_copy(nbytes: float, name: str, what: str) -> None:
    """The memory check before a copy or conversion of a whole input."""
    require_memory(nbytes, f"{what} of {name}", _COPY_FIX, "a copy of every element")


def as_representation(a: Any, name: str) -> np.ndarray:
    """Return `a` as a 2-D float32/float64 numpy array, without copying when it already is one.

    numpy arrays, CPU torch tensors, pandas DataFrames (numpy or nullable dtypes; ``pd.NA`` becomes NaN,
    which the metrics then refuse with their NaN message) and object arrays of numbers are accepted; every
    conversion or copy is checked against the available memory before it is made.
    """
    if type(a).__module__.startswith("torch") and hasattr(a, "detach"):
        a = _torch_to_numpy(a, name)
    if isinstance(a, (str, bytes)) or a is None:
        raise TypeError(f"{name} must be an array of numbers of shape (n_samples, n_features), got {type(a).__name__}")
    if type(a).__module__.startswith("pandas") and hasattr(a, "to_numpy"):
        a = _pandas_to_numpy(a, name)
    try:
        arr = np.asarray(a)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(
            f"{name} could not be read as a rectangular array ({exc}); pass a 2-D array of shape "
            "(n_samples, n_features)"
        ) from None
    except TypeError as exc:  # e.g. pandas' NA in a nullable column read through __array__
        raise TypeError(f"{name} could not be read as an array of numbers ({exc})") from None
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} has complex dtype {arr.dtype}; pass real-valued activations")
    if arr.dtype.kind == "O":
        arr = _object_to_float(arr, name)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold numbers, got dtype {arr.dtype}; pass a numeric array of shape (n_samples, n_features)"
        )
    if arr.ndim != 2:
        hint = (
            f"use {name}.reshape(-1, 1) for one feature per sample"
            if arr.ndim < 2
            else f"flatten each sample first, e.g. {name}.reshape(len({name}), -1)"
        )
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}; {hint}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); it needs at least one sample and one feature")
    if arr.dtype.kind == "f" and arr.dtype.itemsize == 4 and not arr.dtype.isnative:
        _require_copy(4.0 * arr.size, name, f"a native-order float32 copy of the {arr.shape} {arr.dtype} values")
        arr = arr.astype(np.float32)  # float32 in the other byte order stays float32
    elif arr.dtype not in _FLOATS:
        _require_copy(8.0 * arr.size, name, f"the float64 conversion of the {arr.shape} {arr.dtype} values")
        arr = arr.astype(np.float64)  # ints, bools, float16, longdouble, non-native float64
    # The kernels read elements in place at positive strides from an aligned pointer (an unaligned
    # array can already be contiguous, where ascontiguousarray would not copy it).
    if not arr.flags.aligned:
        _require_copy(float(arr.nbytes), name, f"an aligned copy of the {arr.shape} {arr.dtype} values")
        arr = arr.copy()
    elif any(s < 0 or s % arr.itemsize for s in arr.strides):
        _require_copy(float(arr.nbytes), name, f"a contiguous copy of the {arr.shape} {arr.dtype} values")
        arr = np.ascontiguousarray(arr)
    return arr


def _pandas_to_numpy(a: Any, name: str) -> Any:
    """A pandas DataFrame or Series as numpy, as scikit-learn reads them: one numpy dtype shared by every
    column is read as it is; numeric columns of different or nullable dtypes (Float64, Int64, boolean, mixed
    float and bool) become float64 with missing values (pd.NA) as NaN. Anything else is left to numpy (and
    refused there if it is not numeric)."""
    import pandas as pd

    dtypes = list(a.dtypes) if hasattr(a, "columns") else [a.dtype]
    numpy_kinds = {dt.kind for dt in dtypes if isinstance(dt, np.dtype)}
    if len(set(dtypes)) == 1 and all(isinstance(dt, np.dtype) for dt in dtypes) and numpy_kinds <= set("biuf"):
        return a  # one numpy dtype: read in place by numpy.asarray
    if dtypes and all(pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt) for dt in dtypes):
        if any(getattr(dt, "kind", "") == "c" for dt in dtypes):
            raise TypeError(f"{name} has complex columns; pass real-valued activations")
        _require_copy(8.0 * int(np.prod(a.shape)), name, f"the float64 conversion of the {a.shape} pandas values")
        return a.to_numpy(dtype=np.float64, na_value=np.nan)
    return a


def _object_to_float(arr: np.ndarray, name: str) -> np.ndarray:
    """An object array of real numbers (None and pandas' NA read as NaN) as float64; TypeError naming the
    first element that is not a number."""
    _require_copy(8.0 * arr.size, name, f"the float64 conversion of the {arr.shape} object array")
    out = np.empty(arr.shape, dtype=np.float64)
    flat = out.reshape(-1)
    for k, v in enumerate(arr.flat):
        if isinstance(v, (numbers.Real, np.bool_)):  # int, float, bool and the numpy scalars of those
            flat[k] = float(v)
        elif v is None or type(v).__name__ == "NAType":
            flat[k] = np.nan
        else:
            where = np.unravel_index(k, arr.shape) if arr.ndim else ()
            raise TypeError(
                f"{name} must hold numbers, got dtype object with an element of type {type(v).__name__} "
                f"({v!r:.40}) at index {tuple(int(i) for i in where)}; pass a numeric array of shape "
                "(n_samples, n_features)"
            )
    return out


def is_gpu_tensor(a: Any) -> bool:
    """Whether `a` is a torch tensor on a device other than the CPU (checked without importing torch: if
    torch has not been imported, nothing can be a tensor; subclasses of Tensor count too)."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(a, torch.Tensor):
        return False
    return a.device.type != "cpu"


def _torch_to_numpy(t: Any, name: str) -> np.ndarray:
    """A CPU tensor as a numpy view (no copy for float32/float64); float16/bfloat16 become float32."""
    import torch

    t = t.detach()
    if t.device.type == "meta":
        raise TypeError(f"{name} is a tensor on the meta device (it holds no values); pass a tensor with data")
    if t.device.type != "cpu":
        raise TypeError(
            f"{name} is a tensor on {t.device}; the numpy API takes CPU tensors or arrays (use "
            "reprsim.torch for tensors on a GPU, or move it with .cpu())"
        )
    if t.layout != torch.strided:
        raise TypeError(f"{name} is a {t.layout} tensor; pass a dense tensor ({name}.to_dense())")
    if t.is_complex():
        raise TypeError(f"{name} has complex dtype {t.dtype}; pass real-valued activations")
    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
        _require_copy(4.0 * t.numel(), name, f"the float32 conversion of the {tuple(t.shape)} {t.dtype} tensor")
        t = t.to(torch.float32)  # numpy has no bfloat16
    return t.resolve_conj().resolve_neg().numpy()


def _common_dtype(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    if all(a.dtype == np.float32 for a in arrays):
        return list(arrays)
    converted = sum(a.size for a in arrays if a.dtype != np.float64)
    if converted:
        require_memory(8.0 * converted, "float64 copies of the float32 inputs (mixed with float64 ones)",
                       "pass every input in one dtype (all float32, or all float64)", "one per float32 input")
    return [a if a.dtype == np.float64 else a.astype(np.float64) for a in arrays]


def check_n(n: int, min_n: int, what: str, names: str = "x and y") -> None:
    if n < min_n:
        raise ValueError(f"{names} have n = {n} samples; {what} needs at least {min_n}")


def as_pair(x: Any, y: Any, *, min_n: int = 2, what: str = "this metric") -> tuple[np.ndarray, np.ndarray]:
    """Validate two aligned representations and bring them to one float dtype."""
    xa = as_representation(x, "x")
    ya = as_representation(y, "y")
    if xa.shape[0] != ya.shape[0]:
        raise ValueError(
            f"x and y must have the same number of samples (rows): x has shape {xa.shape}, y has shape {ya.shape}"
        )
    check_n(xa.shape[0], min_n, what)
    xa, ya = _common_dtype([xa, ya])
    return xa, ya


def as_list(xs: Any, name: str, names: list[str] | None = None) -> list[np.ndarray]:
    if isinstance(xs, np.ndarray) or not isinstance(xs, Sequence) or isinstance(xs, (str, bytes)):
        raise TypeError(f"{name} must be a list of 2-D arrays (one per representation), got {type(xs).__name__}")
    if len(xs) == 0:
        raise ValueError(f"{name} is empty; pass at least one representation")
    names = names or [f"{name}[{i}]" for i in range(len(xs))]
    return [as_representation(a, nm) for a, nm in zip(xs, names)]


def as_lists(
    xs: Any, ys: Any, *, min_n: int, what: str, names: tuple[list[str] | None, list[str] | None] = (None, None)
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Validate one or two lists of representations sharing n; bring all to one float dtype.

    ``names`` gives each representation's name for messages (default ``xs[i]``, ``ys[j]``)."""
    xl = as_list(xs, "xs", names[0])
    yl = None if ys is None else as_list(ys, "ys", names[1])
    everything = xl + (yl or [])
    names_x = names[0] or [f"xs[{i}]" for i in range(len(xl))]
    names_y = names[1] or [f"ys[{i}]" for i in range(len(yl or []))]
    all_names = names_x + (names_y if yl is not None else [])
    n = everything[0].shape[0]
    for a, nm in zip(everything, all_names):
        if a.shape[0] != n:
            raise ValueError(
                f"every representation must have the same number of samples: {all_names[0]} has {n} rows, "
                f"{nm} has shape {a.shape}"
            )
    check_n(n, min_n, what, names="the representations")
    everything = _common_dtype(everything)
    return everything[: len(xl)], (everything[len(xl) :] if yl is not None else None)
