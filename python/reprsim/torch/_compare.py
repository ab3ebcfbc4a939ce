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
from ._feed import ShortBatches, check_short_batch, split_pool
from ._layers import resolve_layers
from ._pool import PoolArg, check_rows


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
        Rows the values were computed over: samples, or tokens / positions with ``pool="tokens"`` /
        ``"spatial"``.
    options : dict
        The metric's options.
    names : tuple of str
        Labels of the two models (the axes of :meth:`plot` and of :meth:`to_pandas`).
    """

    values: np.ndarray
    layers_a: list[str]
    layers_b: list[str]
    metric: str
    n_samples: int
    options: dict[str, Any] = field(default_factory=dict)
    names: tuple[str, str] = ("model a", "model b")

    def to_pandas(self) -> Any:
        """The matrix as a pandas DataFrame indexed by layer names (requires pandas).

        Returns
        -------
        pandas.DataFrame
            ``values`` with ``layers_a`` as the index and ``layers_b`` as the columns, named by ``names``.

        Raises
        ------
        ImportError
            pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("CompareResult.to_pandas needs pandas: pip install pandas") from None
        return pd.DataFrame(self.values, index=pd.Index(self.layers_a, name=self.names[0]),
                            columns=pd.Index(self.layers_b, name=self.names[1]))

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
        ax.set_xlabel(self.names[1])
        ax.set_ylabel(self.names[0])
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
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    *,
    metric: str = "cka",
    device: str | torch.device | None = None,
    max_batches: int | None = None,
    pool: PoolArg = None,
    select: Selector = None,
    short_batch: str | None = None,
    names: tuple[str, str] = ("model a", "model b"),
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
        ``attention_mask`` entry is used by the token strategies of `pool`; ``labels`` is not passed on).
    layers_a, layers_b : list of str, optional
        Module names as in ``named_modules()`` (:func:`reprsim.torch.layers` lists them with their output
        shapes). None: the model's blocks, as ``reprsim.torch.layers(model, kind="blocks")`` finds them
        (transformer layers, CNN stages).
    metric : str, default "cka"
        A name of ``reprsim.METRICS`` or ``"minibatch_cka"`` (Nguyen et al. 2021's estimator over the
        loader's batches). Similarities for CKA and the CCA family, distances for Procrustes.
    device : str or torch.device, optional
        Where to run the models (they are moved there); default: where model_a's parameters are.
        On a CUDA device the accumulators stay on the GPU (torch ops, float64 accumulation).
    max_batches : int, optional
        Stop after this many batches.
    pool : str, tuple, callable or dict, optional
        How each layer's output becomes a (rows, features) matrix: one strategy for every layer, or a dict of
        layer name → strategy (a name of either model; layers left out get None). Token sequences:
        ``"mean"``, ``"last"``, ``"first"``/``"cls"``, ``"max"``, ``"tokens"`` (every unmasked token a
        sample); channel-first maps: ``"gap"``, ``("adaptive", h, w)``, ``"spatial"`` /
        ``("spatial", max_rows_per_batch[, seed])`` (positions as samples); ``"flatten"``; or a callable
        ``f(output, batch)``. None keeps (batch, features) outputs and refuses larger ones. What each keeps
        and is invariant to: :func:`reprsim.torch.capture`. Rows are the aligned samples of every layer pair,
        so every layer of both models must give the same number of rows per batch, made the same way (one
        per sample, per token or per position): checked on every batch.
    select : int, str or callable, optional
        Which tensor of a structured layer output to use; see :func:`reprsim.torch.capture`.
    short_batch : {"merge", "drop", "error"}, optional
        For ``metric="minibatch_cka"`` only, whose every minibatch needs at least 4 rows (2 with
        ``debiased=False``): a batch with fewer is merged into the previous one (``"merge"``, the default; a
        short first batch joins the next), skipped (``"drop"``), or refused (``"error"``). Batches with enough
        rows are used as they are, as :func:`reprsim.minibatch_cka` uses them.
    names : tuple of two str, default ("model a", "model b")
        Labels of the two models in the result (axes of ``CompareResult.plot``).
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
        An unknown metric or layer name, a model without blocks when its layers are None, a strategy that
        does not fit a layer, layers that give different numbers of rows in a batch, a bad ``max_batches``
        or ``short_batch``, an empty batch, or what the metric raises for the activations (e.g. too few
        samples).
    TypeError
        A batch that is neither a tensor, a tuple nor a dict.
    """
    bound = bind(metric, options)  # the name and the options are checked before any forward pass
    minibatch = bound.measure.statistics == "minibatch"
    if minibatch and options.get("batch_size") is not None:
        raise ValueError("compare's minibatches are the loader's batches: drop batch_size (set the loader's)")
    if max_batches is not None and (not isinstance(max_batches, int) or max_batches < 1):
        raise ValueError(f"max_batches must be a positive integer or None, got {max_batches!r}")
    short_mode = check_short_batch(short_batch, metric)
    if not (isinstance(names, (tuple, list)) and len(names) == 2 and all(isinstance(n, str) for n in names)):
        raise TypeError(f"names must be a tuple of two strings (model a, model b), got {names!r}")
    names = (names[0], names[1])
    layers_a = resolve_layers(model_a, layers_a)
    layers_b = resolve_layers(model_b, layers_b)
    pool_a, pool_b = split_pool(pool, layers_a, layers_b)
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
    declared: list[str] | None = [metric]
    fold_kw: dict[str, Any] = {}
    if bound.measure.statistics == "folds":  # cross-validated: the accumulator keeps the moments of each fold
        if bound["folds"] is None:
            declared = None  # in-sample: the moments of every row
        else:
            fold_kw = {"folds": bound["folds"]}
    acc = StreamingSimilarity(layers_x=len(layers_a), layers_y=len(layers_b), metrics=declared, n=n_hint, **fold_kw)
    grouper = None
    if short_mode is not None:
        debiased = bool(bound["debiased"])
        grouper = ShortBatches(short_mode, 4 if debiased else 2, debiased)
    try:
        with capture(model_a, layers_a, pool=pool_a, select=select) as cap_a, \
                capture(model_b, layers_b, pool=pool_b, select=select) as cap_b:
            total = None
            if max_batches is not None:
                total = max_batches
            elif hasattr(loader, "__len__"):
                total = len(loader)  # type: ignore[arg-type]
            for k, batch in enumerate(_progress(loader, progress, total)):
                if max_batches is not None and k >= max_batches:
                    break
                # Each capture records only its own model's forward pass (the models may share modules);
                # the same model given twice runs once.
                cap_b.recording = model_b is model_a
                mask_a = _call(model_a, batch, dev)
                cap_b.recording = True
                if model_b is model_a:
                    mask_b = mask_a
                else:
                    cap_a.recording = False
                    mask_b = _call(model_b, batch, dev)
                    cap_a.recording = True
                acts_a = cap_a.take(attention_mask=mask_a, batch=batch)
                acts_b = cap_b.take(attention_mask=mask_b, batch=batch)
                check_rows(k, [(names[0], cap_a.row_info), (names[1], cap_b.row_info)])
                xs = [acts_a[name] for name in layers_a]
                ys = [acts_b[name] for name in layers_b]
                if grouper is None:
                    acc.update(xs, ys)
                else:
                    for mx, my in grouper.push(k, xs, ys):
                        acc.update(mx, my)
            if grouper is not None:
                for mx, my in grouper.finish():
                    acc.update(mx, my)
    finally:
        model_a.train(modes[0])
        model_b.train(modes[1])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        acc = _gather_and_merge(acc)
    values = np.array(acc.measure(metric, **options), dtype=np.float64)
    if model_b is model_a and bound.measure.identity is not None:
        # The same layer of the same model (run once), pooled alike, gave both sides bit-identical activations:
        # the value is the measure's identity exactly, as on pairwise()'s diagonal (computing it costs only
        # rounding).
        def strategy(p: Any, name: str) -> Any:
            return p.get(name) if isinstance(p, Mapping) else p

        for i, name in enumerate(layers_a):
            for j, other in enumerate(layers_b):
                if name == other and strategy(pool_a, name) == strategy(pool_b, name):
                    values[i, j] = bound.measure.identity
    return CompareResult(values, list(layers_a), list(layers_b), metric, acc.n_seen, dict(options), names)


def _gather_and_merge(acc: StreamingSimilarity) -> StreamingSimilarity:
    """Every rank's accumulator state, gathered and merged in rank order (the same result on every rank)."""
    states: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(states, acc.state())
    merged = StreamingSimilarity.from_state(states[0])
    for state in states[1:]:
        merged.merge(StreamingSimilarity.from_state(state))
    return merged
