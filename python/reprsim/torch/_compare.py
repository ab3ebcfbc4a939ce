"""compare(): two models, one loader, a layer × layer similarity matrix from exact streaming accumulators."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .._progress import Progress, check_progress
from .._registry import bind
from .._result import Comparison
from .._streaming import StreamingSimilarity
from . import _plan
from ._feed import MinibatchTerms, ShortBatches, check_short_batch, split_pool
from ._hooks import Capture, Selector, capture
from ._layers import resolve_layers
from ._placement import BufferValues, ModelState, model_device, resolve_device
from ._pool import PoolArg, check_rows


CompareResult = Comparison  # the name of the result type in reprsim 0.1


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


def _progress(iterable: Iterable[Any], progress: bool | None, total: int | None) -> Iterator[Any]:
    """The batches, with a progress bar as reprsim._progress decides (automatic: on a terminal, after a while)."""
    with Progress(progress, total, "reprsim.compare") as bar:
        for item in iterable:
            yield item
            bar.update(1)


def _forward(model_a: torch.nn.Module, model_b: torch.nn.Module, batch: Any, cap_a: Capture, cap_b: Capture,
             dev_a: torch.device, dev_b: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Feed one batch to both models (each on its device) and take the pooled activations of each."""
    # Each capture records only its own model's forward pass (the models may share modules); the same
    # model given twice runs once.
    cap_b.recording = model_b is model_a
    mask_a = _call(model_a, batch, dev_a)
    cap_b.recording = True
    if model_b is model_a:
        mask_b = mask_a
    else:
        cap_a.recording = False
        mask_b = _call(model_b, batch, dev_b)
        cap_a.recording = True
    return cap_a.take(attention_mask=mask_a, batch=batch), cap_b.take(attention_mask=mask_b, batch=batch)


def _on(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    return t if t.device == device else t.to(device)


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
    progress: bool | None = None,
    **options: Any,
) -> Comparison:
    """Compare every layer of `model_a` with every layer of `model_b` over the samples of `loader`.

    Each batch is fed once to both models (in ``eval()`` mode, under ``torch.no_grad()``), the activations
    of the named layers go into exact streaming accumulators, and the result is the full-dataset value of
    `metric` for every layer pair — the same number the in-memory function gives on all activations at
    once. The models come back exactly as they were, whatever happens during the call (an error in a
    forward pass, a KeyboardInterrupt): every module's training flag, and, when ``device`` moved them, the
    same parameter objects on their original devices, dtypes and storage, with their gradients and
    buffers.

    **Memory is planned before the loader's first batch runs.** A probe forward pass on the first two
    samples of the first batch (its effects on buffers undone) gives every layer's width; with the number
    of samples (``len(loader.dataset)``, ``len(loader)`` × batch size, ``max_batches`` × batch size: the
    smallest known), the accumulators' route is chosen as :class:`reprsim.StreamingSimilarity` chooses it
    — the rows (n × Σ widths) or the float64 moments (Σ width² per layer, width_a × width_b per pair),
    whichever is smaller — and a run whose memory (on the GPU when the activations are there) would not
    fit is refused with ValueError before any batch is fed, naming the widths, n, the figure and what
    would fit: a `pool` that shrinks the widest layers, fewer layers, ``metric="minibatch_cka"`` or
    ``max_batches``. With the number of samples unknown (a loader without ``len()`` and no
    ``max_batches``) the moments must fit.

    When ``torch.distributed`` is initialised, every rank streams its own shard of the data and the
    accumulator states are gathered and merged exactly, so every rank returns the full-data matrix.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        The two models (they may be the same object).
    loader : iterable of batches
        Tensors, ``(inputs, labels, ...)`` tuples, or dicts of model keyword arguments (HF style; an
        ``attention_mask`` entry is used by the token strategies of `pool`; ``labels`` is not passed on).
        Iterated once.
    layers_a, layers_b : list of str, optional
        Module names as in ``named_modules()``. None: the model's blocks, as
        ``reprsim.torch.layers(model)`` lists them (transformer layers, CNN stages). Every leaf module:
        ``reprsim.torch.layers(model, kind="leaves").names``; with a sample batch,
        ``reprsim.torch.layers(model, batch, kind="leaves")`` prints each with its output shape.
    metric : str, default "cka"
        A name of ``reprsim.METRICS`` (including ``"minibatch_cka"``, Nguyen et al. 2021's estimator over
        the loader's batches, whose memory is one batch's whatever the number of samples). The values are
        what the metric's own function returns: similarities for CKA and the CCA family, distances for the
        Procrustes metrics (the result's ``value_kind``).
    device : str or torch.device, optional
        None (default): the models are not moved; each runs where its parameters are (a model without
        parameters or buffers: the CPU), each batch's tensors are moved to that model's device, and the
        accumulators live on model_a's device (model_b's activations are moved there). A device
        (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...): both models are moved there for the call and moved back
        afterwards, restored exactly as described above. A device that cannot be used (``"meta"``, CUDA
        without a CUDA build or device, a malformed string) is a ValueError before anything moves. On a
        CUDA device the accumulators stay on the GPU (torch ops, float64 accumulation).
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
        Labels of the two models in the result (axes of ``Comparison.plot`` and ``to_pandas``).
    progress : bool or None, default None
        A tqdm progress bar over the batches: None (automatic) shows one when stderr is a terminal and the run
        lasts more than a couple of seconds; True whenever tqdm is installed; False never.
    **options
        Passed to the metric (e.g. ``convention=`` for "pwcca", ``variance=`` for "svcca").

    Returns
    -------
    reprsim.Comparison
        The layer × layer matrix: ``values``, ``rows``/``layers_a`` and ``columns``/``layers_b``, the
        metric, ``value_kind`` and the number of rows (``n_samples``).

    Raises
    ------
    ValueError
        An unknown metric or layer name, a device that cannot be used, a model on the meta device, a model
        without blocks when its layers are None, a strategy that does not fit a layer, layers that give
        different numbers of rows in a batch, a run whose memory would not fit (before any batch is fed), a
        bad ``max_batches`` or ``short_batch``, an empty batch, or what the metric raises for the
        activations (e.g. too few samples).
    TypeError
        A batch that is neither a tensor, a tuple nor a dict, or a `device` of another type.
    """
    # Everything that can be checked without running the models is checked before anything moves.
    bound = bind(metric, options)
    progress = check_progress(progress)
    minibatch = bound.measure.statistics == "minibatch"
    if minibatch and options.get("batch_size") is not None:
        raise ValueError("compare's minibatches are the loader's batches: drop batch_size (set the loader's)")
    if max_batches is not None and (isinstance(max_batches, bool) or not isinstance(max_batches, int)
                                    or max_batches < 1):
        raise ValueError(f"max_batches must be a positive integer or None, got {max_batches!r}")
    short_mode = check_short_batch(short_batch, metric)
    if not (isinstance(names, (tuple, list)) and len(names) == 2 and all(isinstance(n, str) for n in names)):
        raise TypeError(f"names must be a tuple of two strings (model a, model b), got {names!r}")
    names = (names[0], names[1])
    layers_a = list(resolve_layers(model_a, layers_a))
    layers_b = list(resolve_layers(model_b, layers_b))
    pool_a, pool_b = split_pool(pool, layers_a, layers_b)
    target = resolve_device(device)
    if target is None:
        dev_a, dev_b = model_device(model_a, "model_a"), model_device(model_b, "model_b")
    else:
        dev_a = dev_b = target

    state = ModelState(model_a, model_b, tensors=target is not None)
    try:
        if target is not None:
            model_a.to(target)
            if model_b is not model_a:
                model_b.to(target)
        model_a.eval()
        model_b.eval()
        return _run(model_a, model_b, loader, layers_a, layers_b, pool_a, pool_b, select, dev_a, dev_b, bound,
                    metric, options, max_batches, short_mode, names, progress)
    finally:
        state.restore()


def _run(model_a: torch.nn.Module, model_b: torch.nn.Module, loader: Iterable[Any], layers_a: list[str],
         layers_b: list[str], pool_a: PoolArg, pool_b: PoolArg, select: Selector, dev_a: torch.device,
         dev_b: torch.device, bound: Any, metric: str, options: dict[str, Any], max_batches: int | None,
         short_mode: str | None, names: tuple[str, str], progress: bool | None) -> Comparison:
    minibatch = bound.measure.statistics == "minibatch"
    batches: Iterator[Any] = iter(loader)
    first = next(batches, _END)
    n_hint = None
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if first is _END and not distributed:  # (a rank's shard may be empty: the others' rows count)
        raise ValueError("the loader yielded no batch; compare needs at least one (with at least 2 samples)")
    if first is not _END:
        batches = itertools.chain([first], batches)

        def feed(sample: Any) -> tuple[Any, ...]:
            saved = BufferValues(model_a, model_b)
            try:
                with capture(model_a, layers_a, pool=pool_a, select=select) as pa, \
                        capture(model_b, layers_b, pool=pool_b, select=select) as pb, \
                        _plan.RawShapes(model_a, layers_a, select) as sa, \
                        _plan.RawShapes(model_b, layers_b, select) as sb:
                    acts_a, acts_b = _forward(model_a, model_b, sample, pa, pb, dev_a, dev_b)
            finally:
                saved.restore()
            return acts_a, acts_b, sa.shapes, sb.shapes, pa, pb

        probed, _ = _plan.probe_layers(feed, first, layers_a, layers_b)
        size = _plan.batch_size(first) or 1
        samples, how = _plan.sample_count(loader, max_batches, size)
        plan = _plan.Plan(probed, samples, how, size, metric, frozenset({bound.measure.statistics}),
                          on_device=dev_a.type == "cuda")
        _plan.check(plan, dev_a if dev_a.type == "cuda" else None, names)
        n_hint = plan.rows

    if minibatch:
        acc: Any = MinibatchTerms([f"{names[0]} {n!r}" for n in layers_a], [f"{names[1]} {n!r}" for n in layers_b],
                                  bool(bound["debiased"]))
    else:
        declared: list[str] | None = [metric]
        fold_kw: dict[str, Any] = {}
        if bound.measure.statistics == "folds":  # cross-validated: the accumulator keeps the moments of each fold
            if bound["folds"] is None:
                declared = None  # in-sample: the moments of every row
            else:
                fold_kw = {"folds": bound["folds"]}
        acc = StreamingSimilarity(layers_x=len(layers_a), layers_y=len(layers_b), metrics=declared, n=n_hint,
                                  **fold_kw)
    grouper = None
    if short_mode is not None:
        debiased = bool(bound["debiased"])
        grouper = ShortBatches(short_mode, 4 if debiased else 2, debiased)
    with capture(model_a, layers_a, pool=pool_a, select=select) as cap_a, \
            capture(model_b, layers_b, pool=pool_b, select=select) as cap_b:
        total = None
        if max_batches is not None:
            total = max_batches
        elif hasattr(loader, "__len__"):
            total = len(loader)  # type: ignore[arg-type]
        for k, batch in enumerate(_progress(batches, progress, total)):
            if max_batches is not None and k >= max_batches:
                break
            acts_a, acts_b = _forward(model_a, model_b, batch, cap_a, cap_b, dev_a, dev_b)
            check_rows(k, [(names[0], cap_a.row_info), (names[1], cap_b.row_info)])
            xs = [acts_a[name] for name in layers_a]
            ys = [_on(acts_b[name], dev_a) for name in layers_b]
            if grouper is None:
                acc.update(xs, ys)
            else:
                for mx, my in grouper.push(k, xs, ys):
                    acc.update(mx, my)
        if grouper is not None:
            for mx, my in grouper.finish():
                acc.update(mx, my)
    if distributed:
        acc = _gather_and_merge(acc)
    if minibatch:
        values = np.array(acc.values(bound), dtype=np.float64)
    else:
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
    return Comparison(values, list(layers_a), list(layers_b), metric, bound.measure.value_kind, acc.n_seen,
                      dict(options), names)


_END = object()


def _gather_and_merge(acc: Any) -> Any:
    """Every rank's accumulator state, gathered and merged in rank order (the same result on every rank)."""
    world = torch.distributed.get_world_size()
    if isinstance(acc, MinibatchTerms):
        parts: list[Any] = [None] * world
        torch.distributed.all_gather_object(parts, acc)
        merged_terms = parts[0]
        for part in parts[1:]:
            merged_terms.merge(part)
        return merged_terms
    states: list[Any] = [None] * world
    torch.distributed.all_gather_object(states, acc.state())
    merged = StreamingSimilarity.from_state(states[0])
    for state in states[1:]:
        merged.merge(StreamingSimilarity.from_state(state))
    return merged
