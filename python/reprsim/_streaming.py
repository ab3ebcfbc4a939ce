"""Streaming accumulators: exact full-dataset linear metrics in O(p²) memory, and minibatch CKA."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import _core, _metrics
from ._metrics import _NUCLEAR_SLACK, _no_options, pwcca_stat, svcca_mode
from ._registry import check_metric
from ._validation import _common_dtype, as_pair, as_representation, check_n, is_gpu_tensor

ArrayLike = Any

_LAYER_FIELDS_X = ("mean_x", "cxx", "sum_d2", "sum_xd")
_LAYER_FIELDS_Y = ("mean_y", "cyy", "sum_e2", "sum_ye")
_PAIR_FIELDS = ("cxy", "sum_de", "sum_xe", "sum_yd")


def _check_layers(layers_x: Any, layers_y: Any) -> tuple[bool, int, int]:
    if (layers_x is None) != (layers_y is None):
        raise TypeError("pass both layers_x and layers_y (for all pairs of two lists of layers), or neither")
    if layers_x is None:
        return False, 1, 1
    for name, k in (("layers_x", layers_x), ("layers_y", layers_y)):
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"{name} must be a positive integer (the number of layers), got {k!r}")
    return True, int(layers_x), int(layers_y)


def _batch(x: Any, y: Any, multi: bool, k1: int, k2: int) -> tuple[list[np.ndarray], list[np.ndarray], list[str], list[str]]:
    """Validate one batch: lists of 2-D float arrays sharing n, in one dtype."""
    if multi:
        for name, b, k in (("x", x, k1), ("y", y, k2)):
            if isinstance(b, np.ndarray) or not isinstance(b, Sequence) or isinstance(b, (str, bytes)):
                raise TypeError(
                    f"{name} must be a list of {k} arrays (one batch per layer) when the accumulator was made "
                    f"with layers_x/layers_y, got {type(b).__name__}"
                )
            if len(b) != k:
                raise ValueError(f"{name} must hold {k} arrays (one per layer), got {len(b)}")
        names_x = [f"x[{i}]" for i in range(k1)]
        names_y = [f"y[{j}]" for j in range(k2)]
        xs = [as_representation(a, nm) for a, nm in zip(x, names_x)]
        ys = [as_representation(a, nm) for a, nm in zip(y, names_y)]
    else:
        names_x, names_y = ["x"], ["y"]
        xs, ys = [as_representation(x, "x")], [as_representation(y, "y")]
    n = xs[0].shape[0]
    for a, nm in zip(xs + ys, names_x + names_y):
        if a.shape[0] != n:
            raise ValueError(
                f"every array of a batch must have the same number of rows: {names_x[0]} has {n} rows, "
                f"{nm} has shape {a.shape}; pass aligned batches of x and y"
            )
    both = _common_dtype(xs + ys)
    return both[:k1], both[k1:], names_x, names_y


def _has_gpu_tensor(a: Any) -> bool:
    items = a if isinstance(a, (list, tuple)) else [a]
    return any(is_gpu_tensor(t) for t in items)


@contextmanager
def _both_locked(a: Any, b: Any) -> Iterator[None]:
    """Hold the locks of two accumulators, always taken in the same order (no deadlock when two
    threads merge a into b and b into a at once)."""
    first, second = sorted((a, b), key=id)
    with first._lock, second._lock:
        yield


def _stream_memory_bytes(b: int, wx: list[int], wy: list[int]) -> int:
    """Scratch memory of StreamingSimilarity.update for a batch of b rows: float64 centred copies, a
    p×p moment matrix per layer and a p1×p2 one per pair (twice: product and copy), and the row sums."""
    every = wx + wy
    return 8 * (b * sum(every) + sum(p * p for p in every) + 2 * sum(p * q for p in wx for q in wy)
                + len(every) * sum(every) + b * len(every))


def _stream_values_bytes(wx: list[int], wy: list[int]) -> int:
    """Scratch memory of the CCA-family values of a StreamingSimilarity: a pivoted Cholesky copy, R
    factor and triangle per layer (3 p² each), and one pair's M and its SVD at a time."""
    every = wx + wy
    return 8 * (3 * sum(p * p for p in every) + 2 * max(p * q for p in wx for q in wy))


def _minibatch_memory_bytes(b: int, wx: list[int], wy: list[int]) -> int:
    """Scratch memory of one minibatch's HSIC terms in the space the kernel chooses for it."""
    space = _core.choose_space(b, max(wx), max(wy), 8, len(wx), len(wy))
    every = wx + wy
    if space == "feature":
        # Float64 centred copies of every layer, one p×p and one p1×p2 product at a time.
        return 8 * (b * sum(every) + max(every) ** 2 + max(wx) * max(wy))
    # One centred copy at a time and a b×b Gram matrix per layer.
    return 8 * (b * max(every) + len(every) * b * b)


_WIDTH_FIX = (
    "the accumulator's memory does not depend on the number of rows but grows with the square of the "
    "widths: reduce the features first (e.g. a random projection or PCA to a few thousand), or compare "
    "fewer layers per accumulator"
)


def _check_widths(seen: tuple[list[int], list[int]], xs: list[np.ndarray], ys: list[np.ndarray],
                  names_x: list[str], names_y: list[str]) -> None:
    wx, wy = seen
    if not wx:
        return
    for a, w, nm in list(zip(xs, wx, names_x)) + list(zip(ys, wy, names_y)):
        if a.shape[1] != w:
            raise ValueError(
                f"{nm} has shape {a.shape} but earlier batches had {w} features; every batch of a layer must "
                "have the same width (start a new accumulator for a different layer)"
            )


class StreamingSimilarity:
    """Exact linear similarity metrics over data streamed in batches, in memory independent of n.

    Feed aligned batches of two representations with :meth:`update` (and combine accumulators built
    on other processes or machines with :meth:`merge`); every method then returns exactly what the
    in-memory function of the same name returns on all rows seen, concatenated: :meth:`cka` (biased
    and debiased), :meth:`canonical_correlations`, :meth:`mean_cca`, :meth:`mean_sq_cca`,
    :meth:`svcca`, :meth:`pwcca`, :meth:`procrustes_distance`, and :meth:`distance` for every linear
    metric of ``reprsim.METRICS``. The split into batches (even batches of one row) and the order of
    merges change the values only at rounding level.

    With ``layers_x=k1, layers_y=k2`` one accumulator holds every pair of two lists of layers (e.g. two
    models): :meth:`update` takes a list of k1 and a list of k2 arrays, and every method returns a
    k1 × k2 numpy array. Each layer's own moments are stored once, each pair's once.

    The state is a handful of float64 moments about the running mean (Chan et al.'s pairwise update
    merges them exactly; nothing is subtracted from already-summed raw products). For x of width p1
    and y of width p2, with d_i = ‖x_i − x̄‖² and e_i = ‖y_i − ȳ‖², :meth:`state` returns these fields
    (numpy float64 arrays; :meth:`from_state` reads them back):

    ========== ========= =================================================
    field      shape     meaning
    ========== ========= =================================================
    n          ()        rows seen
    rank_eps   ()        machine epsilon of the least precise input dtype seen (CCA's rank rule)
    mean_x     (p1,)     x̄
    mean_y     (p2,)     ȳ
    cxx        (p1, p1)  Σ (x_i − x̄)(x_i − x̄)ᵀ        (Σ d_i = trace)
    cyy        (p2, p2)  Σ (y_i − ȳ)(y_i − ȳ)ᵀ
    cxy        (p1, p2)  Σ (x_i − x̄)(y_i − ȳ)ᵀ
    sum_d2     ()        Σ d_i²
    sum_e2     ()        Σ e_i²
    sum_de     ()        Σ d_i e_i
    sum_xd     (p1,)     Σ (x_i − x̄) d_i
    sum_xe     (p1,)     Σ (x_i − x̄) e_i
    sum_yd     (p2,)     Σ (y_i − ȳ) d_i
    sum_ye     (p2,)     Σ (y_i − ȳ) e_i
    ========== ========= =================================================

    With several layers the per-layer fields are named ``mean_x[i]``, ``cxx[i]``, ``sum_d2[i]``,
    ``sum_xd[i]``, ``mean_y[j]``, ``cyy[j]``, ``sum_e2[j]``, ``sum_ye[j]``, the per-pair fields
    ``cxy[i,j]``, ``sum_de[i,j]``, ``sum_xe[i,j]``, ``sum_yd[i,j]``, and ``layers`` holds (k1, k2).
    Before the first batch only ``n`` (0), ``rank_eps`` (and ``layers``) are present.

    Final values: linear CKA = ‖cxy‖²_F / (‖cxx‖_F ‖cyy‖_F); debiased, n(n−3)·HSIC₁ =
    ‖cxy‖²_F − n/(n−2)·Σde + Σd·Σe/((n−1)(n−2)) (Song et al. 2012, centred features); Procrustes from
    the nuclear norm of cxy over √(tr cxx · tr cyy); the CCA family from a pivoted Cholesky
    factorisation of cxx and cyy (the R factors of the centred inputs, up to row signs) and an SVD of
    Rx⁻ᵀ·cxy·Ry⁻¹ computed by triangular solves.

    Every product is computed and accumulated in float64, for float32 batches too. CCA's rank rule is
    the in-memory one, |R_ii| > tol·|R_11| with tol = max(n, p)·ε₆₄ (+ √p·ε₃₂ for float32 inputs), but never below
    √(max(n, p)·ε₆₄): cross-products resolve directions only down to about √ε of the largest, so
    inputs whose conditioning lies beyond 1e7 or so can get a smaller rank than the in-memory QR.

    Kernel (RBF) CKA needs every pair of samples and cannot stream; for it, see
    :func:`reprsim.cka` with ``kernel="rbf"``, or :func:`minibatch_cka`.

    Parameters
    ----------
    layers_x, layers_y : int, optional
        Numbers of layers on each side for the all-pairs form. Omit both for two representations.

    Raises
    ------
    ValueError
        Only one of ``layers_x``, ``layers_y`` given, or a count that is not a positive integer.

    References
    ----------
    .. [1] T. Chan, G. Golub, R. LeVeque. "Updating Formulae and a Pairwise Algorithm for Computing
       Sample Variances." COMPSTAT 1982.

    Examples
    --------
    >>> acc = StreamingSimilarity()
    >>> for xb, yb in batches:                      # doctest: +SKIP
    ...     acc.update(xb, yb)
    >>> acc.cka(), acc.distance("procrustes")       # doctest: +SKIP
    """

    def __init__(self, *, layers_x: int | None = None, layers_y: int | None = None) -> None:
        self._multi, self._k1, self._k2 = _check_layers(layers_x, layers_y)
        # Guards the state: updates, merges and reads from several threads are serialised here (the
        # heavy part of an update, a batch's own moments, is computed outside it).
        self._lock = threading.RLock()
        self._state = _core.StreamState(self._k1, self._k2)
        self._dev: Any = None  # moments of batches that arrived as GPU tensors, kept on that device
        # Products of GPU batches in float64 (as the C++ path computes them), which the CCA family's rank
        # decisions need; reprsim.torch.compare turns this off for CKA and Procrustes.
        self._dev_float64_products = True
        self._dev_eps = 0.0
        self._names_x = [f"x[{i}]" for i in range(self._k1)] if self._multi else ["x"]
        self._names_y = [f"y[{j}]" for j in range(self._k2)] if self._multi else ["y"]

    # -- accumulation ------------------------------------------------------------------------------

    @property
    def n_seen(self) -> int:
        """Number of rows accumulated so far."""
        with self._lock:
            return int(self._st().n)

    @property
    def layers(self) -> tuple[int, int] | None:
        """(k1, k2) for the all-pairs form, None for two representations."""
        return (self._k1, self._k2) if self._multi else None

    def update(self, x: Any, y: Any) -> StreamingSimilarity:
        """Add one batch of aligned rows (any number ≥ 1).

        A batch that is rejected leaves the accumulator exactly as it was.

        Safe to call from several threads at once: each batch's moments are computed in parallel and
        merged into the accumulator one at a time (the result equals the serial one up to rounding).

        Parameters
        ----------
        x, y : array_like or list of array_like
            Arrays of shapes (b, p1) and (b, p2), or, for the all-pairs form, lists of k1 and k2 such
            arrays (all with the same b). CUDA torch tensors are accumulated on their device.

        Returns
        -------
        StreamingSimilarity
            The accumulator itself, for chaining.

        Raises
        ------
        ValueError
            Widths that differ from earlier batches, arrays that differ in b, NaN/Inf, an empty batch,
            lists of the wrong length, or moments (O(p²) for width p) that would not fit in the available
            memory (raised before anything is allocated).
        TypeError
            An input that is not a real-valued 2-D array (or list of them).
        """
        if _has_gpu_tensor(x) or _has_gpu_tensor(y):
            with self._lock:
                self._update_on_device(x, y)
            return self
        xs, ys, names_x, names_y = _batch(x, y, self._multi, self._k1, self._k2)
        with self._lock:
            _check_widths(self._widths(), xs, ys, names_x, names_y)
        wx, wy = [a.shape[1] for a in xs], [a.shape[1] for a in ys]
        _metrics._require_memory(
            _stream_memory_bytes(xs[0].shape[0], wx, wy),
            f"a StreamingSimilarity over widths {tuple(wx)} and {tuple(wy)}",
            _WIDTH_FIX,
            "float64 moments of size p×p per layer and p1×p2 per pair",
        )
        batch = _core.StreamState(self._k1, self._k2)
        batch.update(xs, ys, names_x, names_y)  # the batch's moments, with the GIL released, unlocked
        with self._lock:
            self._state.absorb(batch)  # checks the widths again, then an O(p²) merge in place
        return self

    def _update_on_device(self, x: Any, y: Any) -> None:
        """A batch of torch tensors on a GPU: its moments are computed and merged there (torch ops,
        float64 products and accumulation), and stay there until a value is asked for."""
        import torch

        from .torch._device import DeviceMoments
        from .torch._gpu import check_tensor

        xs_in, ys_in = (x, y) if self._multi else ([x], [y])
        for name, b, k in (("x", xs_in, self._k1), ("y", ys_in, self._k2)):
            if not isinstance(b, Sequence) or len(b) != k:
                raise ValueError(f"{name} must hold {k} tensors (one per layer)")
        names_x, names_y = self._names_x, self._names_y
        xs = [check_tensor(t, nm) for t, nm in zip(xs_in, names_x)]
        ys = [check_tensor(t, nm) for t, nm in zip(ys_in, names_y)]
        devices = {t.device for t in xs + ys}
        if len(devices) != 1:
            raise ValueError(f"every tensor of a batch must be on one device, got {sorted(map(str, devices))}")
        n = xs[0].shape[0]
        for t, nm in zip(xs + ys, names_x + names_y):
            if t.shape[0] != n:
                raise ValueError(f"every array of a batch must have the same number of rows: {names_x[0]} has {n} "
                                 f"rows, {nm} has shape {tuple(t.shape)}; pass aligned batches of x and y")
        _check_widths(self._widths(), xs, ys, names_x, names_y)
        if len({t.dtype for t in xs + ys}) > 1:
            xs, ys = [t.to(torch.float64) for t in xs], [t.to(torch.float64) for t in ys]
        device = devices.pop()
        if self._dev is None:
            self._dev = DeviceMoments(self._k1, self._k2,
                                      product_dtype=torch.float64 if self._dev_float64_products else None)
        elif self._dev.layer and self._dev.layer[0]["mean"].device != device:
            raise ValueError(f"this accumulator keeps its device moments on {self._dev.layer[0]['mean'].device}; "
                             f"got a batch on {device}")
        self._dev.update(xs, ys)
        eps = np.finfo(np.float32 if xs[0].dtype == torch.float32 else np.float64).eps
        self._dev_eps = max(self._dev_eps, float(eps))

    def _widths(self) -> tuple[list[int], list[int]]:
        """Widths of the x and y layers seen so far (empty before the first batch), read without exporting
        the moments kept on a device (every update checks that both kinds of batches agree on them)."""
        if self._dev is not None and self._dev.n > 0:
            w = [int(s["mean"].shape[0]) for s in self._dev.layer]
            return w[: self._k1], w[self._k1 :]
        wx, wy = self._state.widths()
        return list(wx), list(wy)

    def _st(self) -> Any:
        """The C++ state of every row seen: the CPU moments merged with those kept on a device."""
        if self._dev is None or self._dev.n == 0:
            return self._state
        from .torch._stream import moments_to_state

        on_device = StreamingSimilarity.from_state(moments_to_state(self._dev, self._dev_eps, multi=self._multi))
        return on_device._state if self._state.n == 0 else self._state.merged(on_device._state)

    def merge(self, other: StreamingSimilarity) -> StreamingSimilarity:
        """Absorb the rows of ``other`` (which is not modified).

        The combined state is a pure function of the two states (Chan et al.'s pairwise update), so
        accumulators from any number of processes merge in any order to the same values.

        Parameters
        ----------
        other : StreamingSimilarity
            An accumulator over the same layers and widths.

        Returns
        -------
        StreamingSimilarity
            The accumulator itself, for chaining.

        Raises
        ------
        TypeError
            ``other`` is not a StreamingSimilarity.
        ValueError
            The two accumulators are over different layers or widths.
        """
        if not isinstance(other, StreamingSimilarity):
            raise TypeError(f"other must be a StreamingSimilarity, got {type(other).__name__}")
        if (self._multi, self._k1, self._k2) != (other._multi, other._k1, other._k2):
            raise ValueError(
                f"cannot merge accumulators over different layers: layers {self.layers} and {other.layers}"
            )
        with _both_locked(self, other):
            self._state = self._st().merged(other._st())  # device moments, if any, are merged on the CPU
            self._dev = None
        return self

    def reset(self) -> None:
        """Forget every row seen."""
        with self._lock:
            self._state = _core.StreamState(self._k1, self._k2)
            self._dev = None
            self._dev_eps = 0.0

    # -- state ---------------------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        """The sufficient statistics as a dict of float64 numpy arrays.

        Returns
        -------
        dict of str to numpy.ndarray
            The fields listed in the class docstring; :meth:`from_state` reads them back.
        """
        with self._lock:
            raw = self._st().to_dict()
        out: dict[str, np.ndarray] = {"n": np.float64(raw["n"]), "rank_eps": np.float64(raw["rank_eps"])}
        out = {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
        if self._multi:
            out["layers"] = np.array([self._k1, self._k2], dtype=np.float64)
        if raw["n"] == 0:
            return out
        for fields, k, fmt in ((_LAYER_FIELDS_X, self._k1, "{}[{}]"), (_LAYER_FIELDS_Y, self._k2, "{}[{}]")):
            for f in fields:
                for i in range(k):
                    key = fmt.format(f, i) if self._multi else f
                    out[key] = np.array(raw[f][i], dtype=np.float64)
        for f in _PAIR_FIELDS:
            for i in range(self._k1):
                for j in range(self._k2):
                    key = f"{f}[{i},{j}]" if self._multi else f
                    out[key] = np.array(raw[f][i * self._k2 + j], dtype=np.float64)
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StreamingSimilarity:
        """An accumulator holding the given statistics.

        Parameters
        ----------
        state : dict of str to array_like
            Fields as returned by :meth:`state`.

        Returns
        -------
        StreamingSimilarity
            A new accumulator equal to the one whose state was taken.

        Raises
        ------
        TypeError
            ``state`` is not a dict.
        ValueError
            A missing field, a field of the wrong shape, NaN/Inf, or an invalid count.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict of arrays as returned by state(), got {type(state).__name__}")

        def get(key: str, ndim: int) -> np.ndarray:
            if key not in state:
                raise ValueError(f"state is missing the field {key!r}")
            a = np.asarray(state[key], dtype=np.float64)
            if a.ndim != ndim:
                raise ValueError(f"state field {key!r} must have {ndim} dimensions, got shape {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"state field {key!r} contains NaN or Inf")
            return a

        if "layers" in state:
            layers = get("layers", 1)
            if layers.shape != (2,) or np.any(layers < 1) or np.any(layers != np.round(layers)):
                raise ValueError(f"state field 'layers' must be two positive integers, got {layers}")
            acc = cls(layers_x=int(layers[0]), layers_y=int(layers[1]))
        else:
            acc = cls()
        n = float(get("n", 0))
        if n < 0 or n != round(n):
            raise ValueError(f"state field 'n' must be a non-negative integer count, got {n}")
        rank_eps = float(get("rank_eps", 0))
        raw: dict[str, Any] = {"k1": acc._k1, "k2": acc._k2, "n": n, "rank_eps": rank_eps}
        if n > 0:
            ndims = {"mean_x": 1, "cxx": 2, "sum_d2": 0, "sum_xd": 1, "mean_y": 1, "cyy": 2, "sum_e2": 0,
                     "sum_ye": 1, "cxy": 2, "sum_de": 0, "sum_xe": 1, "sum_yd": 1}
            for fields, k in ((_LAYER_FIELDS_X, acc._k1), (_LAYER_FIELDS_Y, acc._k2)):
                for f in fields:
                    vals = [get(f"{f}[{i}]" if acc._multi else f, ndims[f]) for i in range(k)]
                    raw[f] = [float(v) if ndims[f] == 0 else v for v in vals]
            for f in _PAIR_FIELDS:
                vals = [
                    get(f"{f}[{i},{j}]" if acc._multi else f, ndims[f])
                    for i in range(acc._k1)
                    for j in range(acc._k2)
                ]
                raw[f] = [float(v) if ndims[f] == 0 else v for v in vals]
        acc._state = _core.StreamState.from_dict(raw)
        return acc

    def __getstate__(self) -> dict[str, Any]:
        return self.state()

    def __setstate__(self, state: dict[str, Any]) -> None:
        other = StreamingSimilarity.from_state(state)
        self.__dict__.update(other.__dict__)

    def __repr__(self) -> str:
        layers = f"layers_x={self._k1}, layers_y={self._k2}, " if self._multi else ""
        return f"StreamingSimilarity({layers}n_seen={self.n_seen})"

    # -- values --------------------------------------------------------------------------------------

    def _need(self, min_n: int, what: str) -> None:
        check_n(self.n_seen, min_n, what, names="the rows seen so far")

    def _out(self, values: np.ndarray, what: str) -> Any:
        values = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise FloatingPointError(f"{what} came out non-finite; please report this input")
        return values if self._multi else float(values[0, 0])

    def cka(self, *, debiased: bool = False) -> Any:
        """Linear CKA of all rows seen (see :func:`reprsim.cka`): a similarity in [0, 1].

        Biased (Kornblith et al. 2019) or, with ``debiased=True``, with the U-statistic HSIC
        (Song et al. 2012; needs n ≥ 4).

        Parameters
        ----------
        debiased : bool, default False
            Use the U-statistic HSIC estimator.

        Returns
        -------
        float or numpy.ndarray
            The CKA, or a k1 × k2 float64 array of them for several layers.

        Raises
        ------
        ValueError
            Fewer rows seen than the estimator needs (2, or 4 debiased), or a constant representation.
        """
        with self._lock:
            self._need(4 if debiased else 2, "debiased CKA" if debiased else "CKA")
            return self._out(self._st().cka(bool(debiased), self._names_x, self._names_y), "CKA")

    def _check_values_memory(self, st: Any) -> None:
        wx, wy = st.widths()
        _metrics._require_memory(
            _stream_values_bytes(list(wx), list(wy)),
            f"the CCA family of a StreamingSimilarity over widths {tuple(wx)} and {tuple(wy)}",
            _WIDTH_FIX,
            "a Cholesky factor of every layer's p×p moments",
        )

    def _cca(self, stat: str, keep: float = 0.0, on_variance: bool = True) -> np.ndarray:
        with self._lock:
            self._need(3, "CCA")
            st = self._st()
            self._check_values_memory(st)
            return st.cca_statistic(stat, float(keep), bool(on_variance), self._names_x, self._names_y)

    def canonical_correlations(self) -> Any:
        """Canonical correlations of all rows seen, descending (see :func:`reprsim.canonical_correlations`).

        Returns
        -------
        numpy.ndarray
            The correlations (float64), or for several layers a k1 × k2 object array of such arrays.

        Raises
        ------
        ValueError
            Fewer than 3 rows seen, or a rank reaching n − 1.
        """
        with self._lock:
            self._need(3, "CCA")
            st = self._st()
            self._check_values_memory(st)
            values = st.canonical_correlations(self._names_x, self._names_y)
        out = np.empty((self._k1, self._k2), dtype=object)
        for k, rho in enumerate(values):
            rho = np.asarray(rho, dtype=np.float64)
            if not np.all(np.isfinite(rho)):
                raise FloatingPointError("canonical correlations came out non-finite; please report this input")
            out[divmod(k, self._k2)] = rho
        return out if self._multi else out[0, 0]

    def mean_cca(self) -> Any:
        """Mean canonical correlation ρ̄ of all rows seen: a similarity in [0, 1] (Ding et al. 2021).

        Returns
        -------
        float or numpy.ndarray
            The mean canonical correlation ρ̄ (see :func:`reprsim.mean_cca`), or a k1 × k2 array of them
            for several layers.

        Raises
        ------
        ValueError
            Fewer than 3 rows seen, or a rank reaching n − 1.
        """
        return self._out(self._cca("mean"), "mean CCA")

    def mean_sq_cca(self) -> Any:
        """Mean squared canonical correlation R²_CCA of all rows seen: a similarity in [0, 1].

        Returns
        -------
        float or numpy.ndarray
            The mean squared canonical correlation R²_CCA (see :func:`reprsim.mean_sq_cca`), or a k1 × k2
            array of them for several layers.

        Raises
        ------
        ValueError
            Fewer than 3 rows seen, or a rank reaching n − 1.
        """
        return self._out(self._cca("mean_sq"), "mean squared CCA")

    def svcca(self, *, variance: float = 0.99, convention: str = "variance") -> Any:
        """SVCCA of all rows seen (Raghu et al. 2017): a similarity in [0, 1].

        Parameters
        ----------
        variance : float, default 0.99
            Share of the total to keep, in (0, 1]; see :func:`reprsim.svcca`.
        convention : {"variance", "singular_values"}, default "variance"
            How the share is measured; see :func:`reprsim.svcca`.

        Returns
        -------
        float or numpy.ndarray
            SVCCA, or a k1 × k2 array of them for several layers.

        Raises
        ------
        ValueError
            A bad option, fewer than 3 rows seen, or a rank reaching n − 1.
        """
        return self._out(self._cca("mean", *svcca_mode(variance, convention)), "SVCCA")

    def pwcca(self, *, convention: str = "x") -> Any:
        """Projection-weighted CCA of all rows seen (Morcos et al. 2018): a similarity in [0, 1].

        Parameters
        ----------
        convention : {"x", "y", "smaller"}, default "x"
            Whose canonical variates give the weights; see :func:`reprsim.pwcca`.

        Returns
        -------
        float or numpy.ndarray
            PWCCA, or a k1 × k2 array of them for several layers.

        Raises
        ------
        ValueError
            An unknown convention, fewer than 3 rows seen, or a rank reaching n − 1.
        """
        return self._out(self._cca(pwcca_stat(convention)), "PWCCA")

    def procrustes_distance(self, *, angular: bool = False) -> Any:
        """Orthogonal Procrustes distance of all rows seen (Ding et al. 2021): 2 − 2‖x̂ᵀŷ‖_* in [0, 2].

        Parameters
        ----------
        angular : bool, default False
            Return arccos ‖x̂ᵀŷ‖_* in [0, π/2] (Williams et al. 2021), a metric, instead.

        Returns
        -------
        float or numpy.ndarray
            The distance, or a k1 × k2 array of them for several layers.

        Raises
        ------
        ValueError
            Fewer than 2 rows seen, or a constant representation.
        """
        with self._lock:
            self._need(2, "the Procrustes distance")
            nuc = np.asarray(self._st().procrustes_nuclear(self._names_x, self._names_y), dtype=np.float64)
        if not np.all(np.isfinite(nuc)):
            raise FloatingPointError("Procrustes nuclear norm came out non-finite; please report this input")
        if angular:
            slack = _NUCLEAR_SLACK[np.dtype(np.float64)]
            if np.any(nuc > 1.0 + slack):
                raise FloatingPointError(
                    f"Procrustes nuclear norm {nuc.max()} exceeds 1 beyond rounding; please report"
                )
            out = np.arccos(np.minimum(nuc, 1.0))
        else:
            out = 2.0 - 2.0 * nuc
        return out if self._multi else float(out[0, 0])

    def distance(self, metric: str = "cka", **options: Any) -> Any:
        """Dissimilarity of all rows seen, by metric name: what :func:`reprsim.distance` returns.

        Parameters
        ----------
        metric : str, default "cka"
            Any metric of ``reprsim.METRICS`` (all are linear): "cka", "debiased_cka", "mean_cca",
            "mean_sq_cca", "svcca", "pwcca", "procrustes", "angular_procrustes".
        **options
            ``variance`` and ``convention`` for "svcca", ``convention`` for "pwcca"; no others.

        Returns
        -------
        float or numpy.ndarray
            The dissimilarity, or a k1 × k2 array of them for several layers.

        Raises
        ------
        ValueError
            An unknown metric, or what the metric's method raises.
        TypeError
            A metric that is not a string, or an option the metric does not take.
        """
        check_metric(metric)
        if metric in ("cka", "debiased_cka"):
            _no_options(metric, options)
            return 1.0 - self.cka(debiased=metric == "debiased_cka")
        if metric in ("procrustes", "angular_procrustes"):
            _no_options(metric, options)
            return self.procrustes_distance(angular=metric == "angular_procrustes")
        if metric == "svcca":
            return 1.0 - self.svcca(**options)
        if metric == "pwcca":
            return 1.0 - self.pwcca(**options)
        _no_options(metric, options)
        return 1.0 - (self.mean_cca() if metric == "mean_cca" else self.mean_sq_cca())


def _check_debiased(debiased: Any) -> bool:
    if not isinstance(debiased, (bool, np.bool_)):
        raise TypeError(f"debiased must be True or False, got {debiased!r}")
    return bool(debiased)


class StreamingMinibatchCKA:
    """Minibatch CKA (Nguyen, Raghu & Kornblith 2021), fed one minibatch per :meth:`update`.

    ``CKA_mb = Σ_b HSIC(K_b, L_b) / √(Σ_b HSIC(K_b, K_b) · Σ_b HSIC(L_b, L_b))`` with K_b, L_b the
    linear Gram matrices of minibatch b. With ``debiased=True`` (the default, as in the paper) each
    HSIC is the U-statistic HSIC₁ (Song et al. 2012) and every minibatch needs at least 4 rows; with
    ``debiased=False`` it is the biased HSIC₀ = tr(K H L H)/(b − 1)² and needs at least 2 rows. A
    similarity, an estimator with its own value: it is *not* the CKA of the concatenated data (for
    that, use :class:`StreamingSimilarity`), and it depends on how the rows are grouped into batches.
    A minibatch with too few rows raises ValueError and leaves the accumulator unchanged.

    With ``layers_x=k1, layers_y=k2``, :meth:`update` takes lists of k1 and k2 arrays and
    :meth:`result` returns a k1 × k2 array.

    The state (:meth:`state`, :meth:`from_state`, pickling) is ``n`` (rows), ``batches``, ``hsic_xy``
    (k1×k2), ``hsic_xx`` (k1) and ``hsic_yy`` (k2): the running sums of the per-batch HSIC terms.

    Parameters
    ----------
    debiased : bool, default True
        The U-statistic HSIC₁ (as in the paper); False: the biased HSIC₀.
    layers_x, layers_y : int, optional
        Numbers of layers on each side for the all-pairs form. Omit both for two representations.

    Raises
    ------
    TypeError
        ``debiased`` is not a bool.
    ValueError
        Only one of ``layers_x``, ``layers_y`` given, or a count that is not a positive integer.

    References
    ----------
    .. [1] T. Nguyen, M. Raghu, S. Kornblith. "Do Wide and Deep Networks Learn the Same Things?
       Uncovering How Neural Network Representations Vary with Width and Depth." ICLR 2021.
    .. [2] L. Song, A. Smola, A. Gretton, J. Bedo, K. Borgwardt. "Feature Selection via Dependence
       Maximization." JMLR 13, 2012.
    """

    def __init__(self, *, debiased: bool = True, layers_x: int | None = None, layers_y: int | None = None) -> None:
        self._debiased = _check_debiased(debiased)
        self._multi, self._k1, self._k2 = _check_layers(layers_x, layers_y)
        self._lock = threading.RLock()  # updates, merges and reads from several threads are serialised
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen."""
        with self._lock:
            self._n = 0
            self._batches = 0
            self._xy = np.zeros((self._k1, self._k2))
            self._xx = np.zeros(self._k1)
            self._yy = np.zeros(self._k2)
            self._widths: tuple[list[int], list[int]] = ([], [])

    @property
    def n_seen(self) -> int:
        """Rows seen."""
        return self._n

    @property
    def n_batches(self) -> int:
        """Minibatches seen."""
        return self._batches

    @property
    def debiased(self) -> bool:
        """Whether each minibatch's HSIC is the U-statistic (True) or the biased estimator."""
        return self._debiased

    def update(self, x: Any, y: Any) -> StreamingMinibatchCKA:
        """Add one minibatch; a rejected minibatch leaves the accumulator unchanged.

        Safe to call from several threads at once (the minibatches' terms are computed in parallel and
        added one at a time).

        Parameters
        ----------
        x, y : array_like or list of array_like
            Arrays of shapes (b, p1) and (b, p2), or, for the all-pairs form, lists of k1 and k2 such
            arrays; b ≥ 4 (debiased) or b ≥ 2.

        Returns
        -------
        StreamingMinibatchCKA
            The accumulator itself, for chaining.

        Raises
        ------
        ValueError
            Too few rows, widths that differ from earlier minibatches, arrays that differ in b, NaN/Inf,
            empty input, or Gram or cross-product matrices that would not fit in the available memory
            (raised before anything is allocated).
        TypeError
            An input that is not a real-valued 2-D array (or list of them).
        """
        xs, ys, names_x, names_y = _batch(x, y, self._multi, self._k1, self._k2)
        with self._lock:
            _check_widths(self._widths, xs, ys, names_x, names_y)
        b = xs[0].shape[0]
        need = 4 if self._debiased else 2
        if b < need:
            raise ValueError(
                f"this minibatch has {b} rows; minibatch CKA with debiased={self._debiased} needs at least {need} "
                "rows per minibatch (drop or merge the short batch)"
            )
        _check_minibatch_memory(b, [a.shape[1] for a in xs], [a.shape[1] for a in ys])
        xy, xx, yy = _core.batch_hsic(xs, ys, self._debiased, names_x, names_y)
        with self._lock:
            _check_widths(self._widths, xs, ys, names_x, names_y)  # again: another thread may have set them
            self._xy = self._xy + xy
            self._xx = self._xx + xx
            self._yy = self._yy + yy
            self._n += b
            self._batches += 1
            self._widths = ([a.shape[1] for a in xs], [a.shape[1] for a in ys])
        return self

    def merge(self, other: StreamingMinibatchCKA) -> StreamingMinibatchCKA:
        """Absorb the minibatches of ``other`` (which is not modified).

        Parameters
        ----------
        other : StreamingMinibatchCKA
            An accumulator with the same layers, estimator and widths.

        Returns
        -------
        StreamingMinibatchCKA
            The accumulator itself, for chaining.

        Raises
        ------
        TypeError
            ``other`` is not a StreamingMinibatchCKA.
        ValueError
            Different layers, estimator or widths.
        """
        if not isinstance(other, StreamingMinibatchCKA):
            raise TypeError(f"other must be a StreamingMinibatchCKA, got {type(other).__name__}")
        if (self._multi, self._k1, self._k2, self._debiased) != (
            other._multi, other._k1, other._k2, other._debiased
        ):
            raise ValueError("cannot merge minibatch CKA accumulators with different layers or estimators")
        with _both_locked(self, other):
            if self._widths[0] and other._widths[0] and self._widths != other._widths:
                raise ValueError(
                    f"cannot merge accumulators over different widths: {self._widths} and {other._widths}"
                )
            self._xy = self._xy + other._xy
            self._xx = self._xx + other._xx
            self._yy = self._yy + other._yy
            self._n += other._n
            self._batches += other._batches
            if not self._widths[0]:
                self._widths = other._widths
        return self

    def result(self) -> Any:
        """Minibatch CKA over the minibatches seen: a similarity, usually in [0, 1].

        Returns
        -------
        float or numpy.ndarray
            The minibatch CKA, or a k1 × k2 array of them for several layers.

        Raises
        ------
        ValueError
            No minibatch added yet, or a summed self-HSIC that is not positive (a constant
            representation).
        """
        with self._lock:
            batches, xy, xx, yy = self._batches, self._xy.copy(), self._xx.copy(), self._yy.copy()
        if batches == 0:
            raise ValueError("no minibatch has been added yet; call update first")
        names = ([f"x[{i}]" for i in range(self._k1)] if self._multi else ["x"],
                 [f"y[{j}]" for j in range(self._k2)] if self._multi else ["y"])
        for side, h in ((0, xx), (1, yy)):
            bad = np.flatnonzero(~(h > 0))
            if bad.size:
                raise ValueError(
                    f"the summed HSIC of {names[side][bad[0]]} with itself is {h[bad[0]]} (not positive) over "
                    f"{batches} minibatches: minibatch CKA is undefined (a constant representation, or too "
                    "few rows for the debiased estimator)"
                )
        # Square roots taken apart: the product of the two sums can leave the float64 range.
        out = xy / np.outer(np.sqrt(xx), np.sqrt(yy))
        if not np.all(np.isfinite(out)):
            raise FloatingPointError("minibatch CKA came out non-finite; please report this input")
        return out if self._multi else float(out[0, 0])

    def state(self) -> dict[str, np.ndarray]:
        """The running sums as float64 arrays.

        Returns
        -------
        dict of str to numpy.ndarray
            The fields listed in the class docstring, plus ``debiased``, ``widths_x``, ``widths_y``
            (and ``layers`` for several layers); :meth:`from_state` reads them back.
        """
        with self._lock:
            return self._state_unlocked()

    def _state_unlocked(self) -> dict[str, np.ndarray]:
        out = {
            "n": np.float64(self._n),
            "batches": np.float64(self._batches),
            "debiased": np.float64(self._debiased),
            "hsic_xy": self._xy.copy(),
            "hsic_xx": self._xx.copy(),
            "hsic_yy": self._yy.copy(),
            "widths_x": np.array(self._widths[0], dtype=np.float64),
            "widths_y": np.array(self._widths[1], dtype=np.float64),
        }
        if self._multi:
            out["layers"] = np.array([self._k1, self._k2], dtype=np.float64)
        return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StreamingMinibatchCKA:
        """An accumulator holding the given sums.

        Parameters
        ----------
        state : dict of str to array_like
            Fields as returned by :meth:`state`.

        Returns
        -------
        StreamingMinibatchCKA
            A new accumulator equal to the one whose state was taken.

        Raises
        ------
        ValueError
            ``state`` is not a minibatch CKA state.
        """
        try:
            layers = state.get("layers")
            kw = {} if layers is None else {"layers_x": int(layers[0]), "layers_y": int(layers[1])}
            acc = cls(debiased=bool(float(state["debiased"])), **kw)
            xy = np.asarray(state["hsic_xy"], dtype=np.float64).reshape(acc._k1, acc._k2)
            xx = np.asarray(state["hsic_xx"], dtype=np.float64).reshape(acc._k1)
            yy = np.asarray(state["hsic_yy"], dtype=np.float64).reshape(acc._k2)
            n, batches = int(float(state["n"])), int(float(state["batches"]))
            widths = ([int(w) for w in state["widths_x"]], [int(w) for w in state["widths_y"]])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"state is not a minibatch CKA state as returned by state(): {exc}") from None
        acc._xy, acc._xx, acc._yy, acc._n, acc._batches, acc._widths = xy, xx, yy, n, batches, widths
        return acc

    def __getstate__(self) -> dict[str, Any]:
        return self.state()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(StreamingMinibatchCKA.from_state(state).__dict__)

    def __repr__(self) -> str:
        return f"StreamingMinibatchCKA(debiased={self._debiased}, n_seen={self._n}, n_batches={self._batches})"


def _check_minibatch_memory(b: int, wx: list[int], wy: list[int]) -> None:
    _metrics._require_memory(
        _minibatch_memory_bytes(b, wx, wy),
        f"minibatch CKA over minibatches of {b} rows and widths {tuple(wx)} and {tuple(wy)}",
        "use smaller minibatches (the Gram matrices are b×b) or fewer features",
        "each minibatch's Gram matrices or cross-products",
    )


def minibatch_cka(x: ArrayLike, y: ArrayLike, *, batch_size: int, debiased: bool = True) -> float:
    """Minibatch CKA (Nguyen, Raghu & Kornblith 2021) over consecutive minibatches of the rows.

    ``Σ_b HSIC(K_b, L_b) / √(Σ_b HSIC(K_b, K_b) · Σ_b HSIC(L_b, L_b))`` over the minibatches
    ``x[0:batch_size], x[batch_size:2·batch_size], …`` (no shuffling: shuffle first if the rows are
    ordered). A similarity, usually in [0, 1]; an estimator with its own value, not the CKA of the
    whole data (see :func:`reprsim.cka` and :class:`StreamingSimilarity` for that).

    Parameters
    ----------
    x, y : array_like, shapes (n, p1) and (n, p2)
        Rows are samples, aligned between x and y.
    batch_size : int
        Rows per minibatch. A trailing minibatch shorter than ``batch_size`` is used as it is when it
        has enough rows for the estimator (4 debiased, 2 biased); otherwise ValueError, naming the
        fixes (trim the rows, or a batch size that leaves a longer remainder).
    debiased : bool, default True
        The U-statistic HSIC₁ (Song et al. 2012), as in the paper; False: the biased
        HSIC₀ = tr(K H L H)/(b − 1)².

    Returns
    -------
    float
        The minibatch CKA, a similarity usually in [0, 1].

    Raises
    ------
    ValueError
        A ``batch_size`` below the estimator's minimum, a last minibatch too short for it, or the bad
        inputs listed under :func:`reprsim.cka`.
    TypeError
        ``debiased`` is not a bool, or an input that is not a real-valued 2-D array.

    References
    ----------
    .. [1] T. Nguyen, M. Raghu, S. Kornblith. "Do Wide and Deep Networks Learn the Same Things?
       Uncovering How Neural Network Representations Vary with Width and Depth." ICLR 2021.
    """
    debiased = _check_debiased(debiased)
    need = 4 if debiased else 2
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < need:
        raise ValueError(
            f"batch_size must be an integer of at least {need} (debiased={debiased}), got {batch_size!r}"
        )
    xa, ya = as_pair(x, y, min_n=need, what="minibatch CKA")
    n = xa.shape[0]
    tail = n % batch_size
    if 0 < tail < need:
        raise ValueError(
            f"n = {n} rows in minibatches of {batch_size} leave a last minibatch of {tail} rows, too few for "
            f"minibatch CKA with debiased={debiased} (needs {need}); trim the data to {n - tail} rows "
            "(x[:n - n % batch_size]) or choose another batch_size"
        )
    _check_minibatch_memory(min(batch_size, n), [xa.shape[1]], [ya.shape[1]])
    acc = StreamingMinibatchCKA(debiased=debiased)
    for start in range(0, n, batch_size):
        acc.update(xa[start : start + batch_size], ya[start : start + batch_size])
    value = acc.result()
    if not math.isfinite(value):
        raise FloatingPointError("minibatch CKA came out non-finite; please report this input")
    return value
