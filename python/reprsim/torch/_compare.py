"""compare(): two models, one loader, a layer × layer similarity matrix from exact streaming accumulators."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._registry import bind
from .._streaming import StreamingSimilarity
from ._hooks import Selector, capture


@dataclass(frozen=True)
class CompareResult:
    """A layer × layer matrix: ``values[i, j]`` compares ``layers_a[i]`` with ``layers_b[j]``.

    The values are what the metric's own function returns (``reprsim.METRICS[metric].value_kind``):
    similarities for CKA, the CCA family, ENSD, ...; distances for "procrustes" and "angular_procrustes".
    Returned by :func:`compare`.

    Attributes
    ----------
    values : numpy.ndarray, shape (len(layers_a), len(layers_b))
        The float64 matrix.
    layers_a, layers_b : list of str
        The compared module names of the two models.
    metric : str
        The metric name.
    n_samples : int
        Samples the values were computed over.
    options : dict
        The metric's options.
    """

    values: np.ndarray
    layers_a: list[str]
    layers_b: list[str]
    metric: str
    n_samples: int
    options: dict[str, Any] = field(default_factory=dict)

    def to_pandas(self) -> Any:
        """The matrix as a pandas DataFrame indexed by layer names (requires pandas).

        Returns
        -------
        pandas.DataFrame
            ``values`` with ``layers_a`` as the index and ``layers_b`` as the columns.

        Raises
        ------
        ImportError
            pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("CompareResult.to_pandas needs pandas: pip install pandas") from None
        return pd.DataFrame(self.values, index=self.layers_a, columns=self.layers_b)

    def plot(self, ax: Any = None, *, cmap: str = "magma", annotate: bool = False) -> Any:
        """Draw the matrix as a heatmap (requires matplotlib).

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; default: a new figure sized to the number of layers.
        cmap : str, default "magma"
            A matplotlib colormap name.
        annotate : bool, default False
            Write each value in its cell.

        Returns
        -------
        matplotlib.axes.Axes
            The Axes drawn on, with a colorbar labelled by the metric.

        Raises
        ------
        ImportError
            matplotlib is not installed.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("CompareResult.plot needs matplotlib: pip install matplotlib") from None
        if ax is None:
            _, ax = plt.subplots(figsize=(max(4.5, 1.8 + 0.5 * len(self.layers_b)),
                                          max(3.8, 1.2 + 0.5 * len(self.layers_a))))
        im = ax.imshow(self.values, cmap=cmap, origin="lower", aspect="auto")
        ax.set_xticks(range(len(self.layers_b)), self.layers_b, rotation=45 if len(self.layers_b) > 6 else 0,
                      ha="right" if len(self.layers_b) > 6 else "center")
        ax.set_yticks(range(len(self.layers_a)), self.layers_a)
        ax.set_xlabel("model b")
        ax.set_ylabel("model a")
        ax.figure.colorbar(im, ax=ax, label=self.metric)
        if annotate:
            lo, hi = float(self.values.min()), float(self.values.max())
            for i in range(self.values.shape[0]):
                for j in range(self.values.shape[1]):
                    v = self.values[i, j]
                    color = "black" if v > (lo + hi) / 2 else "white"  # readable on both ends of the colormap
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color=color)
        return ax


def _call(model: torch.nn.Module, batch: Any, device: torch.device) -> torch.Tensor | None:
    """Feed one batch to a model; returns the attention mask of dict batches, if any."""
    if isinstance(batch, Mapping):
        inputs = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()
                  if k not in ("labels", "label")}
        model(**inputs)
        return inputs.get("attention_mask")
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("the loader yielded an empty batch")
        batch = batch[0]  # (inputs, labels, ...)
    if not isinstance(batch, torch.Tensor):
        raise TypeError(f"cannot feed a batch of type {type(batch).__name__}; yield tensors, tuples or dicts")
    model(batch.to(device))
    return None


def _default_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _progress(iterable: Iterable[Any], enabled: bool, total: int | None) -> Iterable[Any]:
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc="reprsim.compare", unit="batch")


@torch.no_grad()
def compare(
    model_a: torch.nn.Module,
    model_b: torch.nn.Module,
    loader: Iterable[Any],
    layers_a: Sequence[str],
    layers_b: Sequence[str],
    *,
    metric: str = "cka",
    device: str | torch.device | None = None,
    max_batches: int | None = None,
    pool: str | None = None,
    select: Selector = None,
    progress: bool = True,
    **options: Any,
) -> CompareResult:
    """Compare every layer of `model_a` with every layer of `model_b` over the samples of `loader`.

    Each batch is fed once to both models (in ``eval()`` mode, under ``torch.no_grad()``; the models'
    training flags are restored afterwards), the activations of the named layers go into exact streaming
    accumulators, and the result is the full-dataset value of `metric` for every layer pair — the same
    number the in-memory function gives on all activations at once, with memory independent of the number
    of samples.

    When ``torch.distributed`` is initialised, every rank streams its own shard of the data and the
    accumulator states are gathered and merged exactly, so every rank returns the full-data matrix.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        The two models (they may be the same object).
    loader : iterable of batches
        Tensors, ``(inputs, labels, ...)`` tuples, or dicts of model keyword arguments (HF style; an
        ``attention_mask`` entry is used by ``pool="mean"``/``"last"``; ``labels`` is not passed on).
    layers_a, layers_b : list of str
        Module names as in ``named_modules()``.
    metric : str, default "cka"
        A name of ``reprsim.METRICS`` or ``"minibatch_cka"`` (Nguyen et al. 2021's estimator over the
        loader's batches). Similarities for CKA and the CCA family, distances for Procrustes.
    device : str or torch.device, optional
        Where to run the models (they are moved there); default: where model_a's parameters are.
        On a CUDA device the accumulators stay on the GPU (torch ops, float64 accumulation).
    max_batches : int, optional
        Stop after this many batches.
    pool : {None, "mean", "cls", "last"}, optional
        How layer outputs become (batch, features) matrices; see :func:`reprsim.torch.capture`.
    select : int, str or callable, optional
        Which tensor of a structured layer output to use; see :func:`reprsim.torch.capture`.
    progress : bool, default True
        Show a tqdm progress bar when tqdm is installed.
    **options
        Passed to the metric (e.g. ``convention=`` for "pwcca", ``variance=`` for "svcca").

    Returns
    -------
    CompareResult
        The layer × layer matrix with the layer names, the metric and the number of samples.

    Raises
    ------
    ValueError
        An unknown metric or layer name, a bad ``max_batches``, an empty batch, or what the metric
        raises for the activations (e.g. too few samples).
    TypeError
        A batch that is neither a tensor, a tuple nor a dict.
    """
    bound = bind(metric, options)  # the name and the options are checked before any forward pass
    minibatch = bound.measure.statistics == "minibatch"
    if minibatch and options.get("batch_size") is not None:
        raise ValueError("compare's minibatches are the loader's batches: drop batch_size (set the loader's)")
    if max_batches is not None and (not isinstance(max_batches, int) or max_batches < 1):
        raise ValueError(f"max_batches must be a positive integer or None, got {max_batches!r}")
    dev = torch.device(device) if device is not None else _default_device(model_a)
    if device is not None:
        model_a.to(dev)
        model_b.to(dev)
    modes = (model_a.training, model_b.training)
    model_a.eval()
    model_b.eval()
    n_hint = None
    if max_batches is None and hasattr(getattr(loader, "dataset", None), "__len__"):
        n_hint = len(loader.dataset) or None  # type: ignore[attr-defined]
    acc = StreamingSimilarity(layers_x=len(layers_a), layers_y=len(layers_b), metrics=[metric], n=n_hint)
    try:
        with capture(model_a, layers_a, pool=pool, select=select) as cap_a, \
                capture(model_b, layers_b, pool=pool, select=select) as cap_b:
            total = None
            if max_batches is not None:
                total = max_batches
            elif hasattr(loader, "__len__"):
                total = len(loader)  # type: ignore[arg-type]
            for k, batch in enumerate(_progress(loader, progress, total)):
                if max_batches is not None and k >= max_batches:
                    break
                mask_a = _call(model_a, batch, dev)
                mask_b = _call(model_b, batch, dev)
                acts_a = cap_a.take(attention_mask=mask_a)
                acts_b = cap_b.take(attention_mask=mask_b)
                xs = [acts_a[name] for name in layers_a]
                ys = [acts_b[name] for name in layers_b]
                sizes = {t.shape[0] for t in xs + ys}
                if len(sizes) != 1:
                    raise ValueError(
                        f"the captured layers saw different numbers of samples in batch {k}: {sorted(sizes)}; "
                        "every layer must give one row per input sample (check pool= for sequence outputs)"
                    )
                if minibatch:  # minibatch terms are computed on the CPU
                    xs, ys = [_host(t) for t in xs], [_host(t) for t in ys]
                acc.update(xs, ys)
    finally:
        model_a.train(modes[0])
        model_b.train(modes[1])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        acc = _gather_and_merge(acc)
    values = acc.measure(metric, **options)
    return CompareResult(np.asarray(values, dtype=np.float64), list(layers_a), list(layers_b), metric, acc.n_seen,
                         dict(options))


def _host(t: torch.Tensor) -> np.ndarray:
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32 if t.is_floating_point() else torch.float64)
    return t.detach().cpu().numpy()


def _gather_and_merge(acc: StreamingSimilarity) -> StreamingSimilarity:
    """Every rank's accumulator state, gathered and merged in rank order (the same result on every rank)."""
    states: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(states, acc.state())
    merged = StreamingSimilarity.from_state(states[0])
    for state in states[1:]:
        merged.merge(StreamingSimilarity.from_state(state))
    return merged
