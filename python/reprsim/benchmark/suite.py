"""The local benchmark: Ding et al.'s tests on small ReLU networks trained here on scikit-learn's digits.

Tests (the ``test`` field of each record):

``seed_depth``
    Ten MLPs (4 hidden ReLU layers of 64) trained from different seeds on a coarse task (digit ≥ 5).
    Functional quantity: a 10-way linear probe's test accuracy on each hidden layer. For each reference
    layer, the reference is that layer of the best-probing seed, paired with every layer of every seed.
``pc_deletion``
    Each layer of five seeds with 0…62 of its 64 principal components deleted (a grid), re-probed; as in
    Ding et al.'s pipeline a deleted representation is its top-k principal-component scores, k columns
    (:func:`~reprsim.benchmark.delete_principal_components`). For each layer, the reference is the full
    representation of the best-probing seed, paired with every seed × deletion of that layer.
``specificity``
    Layer identification across seeds: for each ordered pair of seeds and each layer, is the nearest
    layer of the other seed the same depth? Field ``accuracy`` (and ``n_queries``).
``detection``
    For the reference of each layer of ``pc_deletion``: ``flags_at[layer]``, the fewest deleted
    components whose copy lies farther from the reference than the mean distance to the other seeds'
    same layer (``noise_floor[layer]``), null when it never does on the grid; ``probe_drops_at[layer]``,
    the fewest deleted components whose probe accuracy falls below the reference's by more than the mean
    |Δ probe accuracy| to the other seeds (the same rule applied to function).
``ood_finetune``
    "BERTs of a feather": one network pretrained on the clean 10-way task, fine-tuned from 20 seeds on
    the coarse task with a spurious cue (a marker pixel for each class, right 97 % of the time). The
    OOD set always shows the wrong marker; functional quantity: OOD accuracy. Reference: the best OOD
    model, per layer; ``spearman_ci``: a 95 % bootstrap interval over models.
``ood_pretrain_finetune``
    The same with a pretrain-seed × fine-tune-seed grid (5 × 5).

Every metric of ``reprsim.METRICS`` is scored (PWCCA with the reference's weights, as in the paper),
plus the CCA family in the padded convention (:data:`reprsim.benchmark.PADDED_CCA`: the reference's
directions without a canonical correlation count as 0, PWCCA weighting them by their expected projection
weight, a basis-free form of the rule in Ding et al.'s released code). All seeds are fixed, so the same
command gives the same table.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np

from .._registry import METRICS, check_bool
from .generators import delete_principal_components, detection_threshold, first_drop, layer_identification
from .models import MLP, load_digits_data, probe_accuracy, train_mlp
from .scoring import PADDED_CCA, PAPER_CONVENTIONS, Metric, _metric_name, protocol

__all__ = [
    "FULL", "QUICK", "SuiteConfig", "format_table", "plot_records", "quick_or_full", "run_suite", "suite_metrics",
    "write_json",
]

#: Pixels that are 0 in every digits image; they carry the spurious class markers.
MARKER_PIXELS = (0, 39)


@dataclass(frozen=True)
class SuiteConfig:
    """Sizes of the local benchmark. ``FULL`` is ``reprsim benchmark``; ``QUICK`` is ``--quick``.

    Attributes
    ----------
    n_seeds : int
        Seeds of the pretrained MLPs (seed-and-depth and specificity tests).
    hidden : tuple of int
        Widths of the MLP's hidden layers.
    epochs : int
        Pretraining epochs.
    pc_seeds : int
        Seeds whose layers get principal components deleted.
    pc_grid : tuple of int
        Numbers of principal components deleted.
    n_finetune : int
        Fine-tuning seeds of the OOD test.
    finetune_epochs : int
        Fine-tuning epochs.
    finetune_lr : float
        Fine-tuning learning rate.
    grid_pretrain, grid_finetune : int
        Pretraining × fine-tuning seeds of the second OOD test.
    cue_correct : float
        Share of training samples whose spurious cue agrees with the label.
    n_train : int
        Training samples.
    n_bootstrap : int
        Bootstrap resamples of the OOD tests' Spearman intervals.
    seed : int
        Seed of the data and the models.
    """

    n_seeds: int = 10
    hidden: tuple[int, ...] = (64, 64, 64, 64)
    epochs: int = 30
    pc_seeds: int = 5
    pc_grid: tuple[int, ...] = (0, 8, 16, 24, 32, 40, 44, 48, 52, 56, 58, 60, 62)
    n_finetune: int = 20
    finetune_epochs: int = 10
    finetune_lr: float = 1e-3
    grid_pretrain: int = 5
    grid_finetune: int = 5
    cue_correct: float = 0.97
    n_train: int = 900
    n_bootstrap: int = 1000
    seed: int = 0


FULL = SuiteConfig()
QUICK = SuiteConfig(
    n_seeds=5,
    epochs=20,
    pc_seeds=3,
    pc_grid=(0, 16, 32, 48, 56, 60, 62),
    n_finetune=8,
    finetune_epochs=6,
    grid_pretrain=3,
    grid_finetune=3,
    n_bootstrap=500,
)


def suite_metrics() -> list[Metric]:
    """Every metric of ``reprsim.METRICS`` followed by the padded CCA conventions.

    Returns
    -------
    list of str or PaddedCCA
        Metric names, then the :data:`PADDED_CCA` callables.
    """
    return [*METRICS, *PADDED_CCA.values()]


class _Data:
    def __init__(self, cfg: SuiteConfig) -> None:
        x, y = load_digits_data()
        perm = np.random.default_rng(cfg.seed).permutation(len(x))
        train, held = perm[: cfg.n_train], perm[cfg.n_train :]
        self.x_train, self.y_train = x[train], y[train]
        self.x_eval, self.y_eval = x[held], y[held]
        self.coarse_train = (self.y_train >= 5).astype(np.int64)
        self.coarse_eval = (self.y_eval >= 5).astype(np.int64)
        self.half = len(held) // 2
        rng = np.random.default_rng(cfg.seed + 1)
        self.x_train_cue = _with_markers(self.x_train, self.coarse_train, cfg.cue_correct, rng)
        self.x_eval_cue = _with_markers(self.x_eval, self.coarse_eval, cfg.cue_correct, rng)
        self.x_eval_ood = _with_markers(self.x_eval, self.coarse_eval, 0.0, rng)

    def probe(self, h: np.ndarray) -> float:
        """10-way probe: trained on the first half of the evaluation set, tested on the second."""
        k = self.half
        return probe_accuracy(h[:k], self.y_eval[:k], h[k:], self.y_eval[k:], n_classes=10)


def _with_markers(x: np.ndarray, label: np.ndarray, correct: float, rng: np.random.Generator) -> np.ndarray:
    """Light the marker pixel of the label (probability ``correct``) or of the other class."""
    out = x.copy()
    shown = np.where(rng.random(len(x)) < correct, label, 1 - label)
    out[:, MARKER_PIXELS[0]] = (shown == 0).astype(np.float64)
    out[:, MARKER_PIXELS[1]] = (shown == 1).astype(np.float64)
    return out


def _protocol_records(test: str, result: Any, metrics: Sequence[Metric], layer_names: Mapping[int, str]) -> list[dict]:
    out = []
    for m in metrics:
        name = _metric_name(m)
        s = result.scores[name]
        rec = {"test": test, "metric": name, **s.as_dict()}
        rec["per_layer_spearman"] = {
            layer_names[g]: round(result.per_group[name][g].spearman, 6) for g in result.per_group[name]
        }
        out.append(rec)
    return out


def _rank_rows(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, method="average", axis=1)


def _bootstrap_spearman(result: Any, metric: str, n_models: int, n_boot: int, seed: int) -> list[float]:
    """95 % percentile interval of the layer-averaged Spearman ρ when the compared models are resampled."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_models, size=(n_boot, n_models))
    per_layer = []
    for g, f in result.functional_differences.items():
        d = result.dissimilarities[metric][g]
        rd, rf = _rank_rows(d[idx]), _rank_rows(f[idx])
        rd -= rd.mean(axis=1, keepdims=True)
        rf -= rf.mean(axis=1, keepdims=True)
        den = np.sqrt((rd**2).sum(axis=1) * (rf**2).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            per_layer.append(np.where(den > 0, (rd * rf).sum(axis=1) / den, np.nan))
    rho = np.mean(per_layer, axis=0)
    rho = rho[np.isfinite(rho)]  # resamples where every model drew the same value carry no ranking
    lo, hi = np.percentile(rho, [2.5, 97.5])
    return [round(float(lo), 6), round(float(hi), 6)]


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """One BLAS thread for numpy's and reprsim's libraries while the suite runs.

    Its products are small (about 900 × 64); threads only add contention, which on a busy 2-core machine
    made the suite tens of times slower.
    """
    from .. import get_num_threads, set_num_threads

    before = get_num_threads()
    set_num_threads(1)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl comes with the benchmark extra
            yield
        else:
            with threadpool_limits(limits=1):
                yield
    finally:
        set_num_threads(before)


def run_suite(
    config: SuiteConfig = FULL,
    *,
    metrics: Sequence[Metric] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the local benchmark and return its records (one per test × metric).

    Parameters
    ----------
    config : SuiteConfig, default FULL
        :data:`FULL` (the ``reprsim benchmark`` command), :data:`QUICK` (``--quick``), or a
        :class:`SuiteConfig` of your own.
    metrics : sequence of str or callable, optional
        Names from ``reprsim.METRICS`` and/or callables; default :func:`suite_metrics`.
    log : callable, optional
        Called with one line of progress per step (default: write to stderr).

    Returns
    -------
    list of dict
        JSON-ready records with ``test``, ``metric``, ``spearman``, ``kendall``, ``p_value`` (Spearman,
        one-sided), ``kendall_p``, ``bad_frac``, ``n_pairs``, plus the fields of each test described in
        this module's docstring (``None`` where a field does not apply).

    Raises
    ------
    TypeError
        ``config`` is not a :class:`SuiteConfig` (e.g. the string ``"quick"``: pass :data:`QUICK`), or ``log``
        is not callable.
    ImportError
        scikit-learn or scipy is not installed (``pip install ".[benchmark]"`` from the source folder).

    References
    ----------
    .. [1] F. Ding, J.-S. Denain, J. Steinhardt. "Grounding Representation Similarity Through
       Statistical Testing." NeurIPS 2021.
    """
    if not isinstance(config, SuiteConfig):
        hint = (f" (for the reduced run use reprsim.benchmark.QUICK, e.g. run_suite(reprsim.benchmark.QUICK))"
                if isinstance(config, str) else "")
        raise TypeError(f"config must be a reprsim.benchmark.SuiteConfig (FULL, QUICK or one of your own), got "
                        f"{config!r}{hint}")
    if log is not None and not callable(log):
        raise TypeError(f"log must be a callable taking one line of text, or None; got {type(log).__name__}")
    with _single_threaded():
        return _run(config, metrics, log)


def _run(config: SuiteConfig, metrics: Sequence[Metric] | None, log: Callable[[str], None] | None) -> list[dict]:
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    metrics = list(suite_metrics() if metrics is None else metrics)
    names = [_metric_name(m) for m in metrics]
    cfg = config
    data = _Data(cfg)
    n_layers = len(cfg.hidden)
    layer_names = {layer: f"layer{layer + 1}" for layer in range(n_layers)}
    records: list[dict[str, Any]] = []

    def options(m: Metric) -> dict:
        return dict(PAPER_CONVENTIONS.get(m, {})) if isinstance(m, str) else {}

    # --- seeds × depth -------------------------------------------------------------------------
    say(f"training {cfg.n_seeds} MLPs {cfg.hidden} on digit >= 5")
    models = [
        train_mlp(data.x_train, data.coarse_train, n_classes=2, hidden=cfg.hidden, seed=cfg.seed + 1000 + s,
                  epochs=cfg.epochs)
        for s in range(cfg.n_seeds)
    ]
    reps = {(s, layer): h for s, m in enumerate(models) for layer, h in enumerate(m.hidden(data.x_eval))}
    say("probing every hidden layer (10-way)")
    acc = {k: data.probe(h) for k, h in reps.items()}
    by_layer = {layer: [(s, layer) for s in range(cfg.n_seeds)] for layer in range(n_layers)}
    say("scoring seed_depth")
    res = protocol(reps, acc, by_layer, metrics=metrics)
    records += _protocol_records("seed_depth", res, metrics, layer_names)

    # --- principal-component deletion ------------------------------------------------------------
    say(f"deleting principal components {list(cfg.pc_grid)} and re-probing")
    pc_reps: dict[tuple, np.ndarray] = {}
    pc_acc: dict[tuple, float] = {}
    for s in range(cfg.pc_seeds):
        for layer in range(n_layers):
            for d, h in delete_principal_components(reps[(s, layer)], cfg.pc_grid).items():
                pc_reps[(s, layer, d)] = h
                pc_acc[(s, layer, d)] = acc[(s, layer)] if d == 0 else data.probe(h)
    cand = {layer: [(s, layer, 0) for s in range(cfg.pc_seeds)] for layer in range(n_layers)}
    comp = {layer: [(s, layer, d) for s in range(cfg.pc_seeds) for d in cfg.pc_grid] for layer in range(n_layers)}
    say("scoring pc_deletion")
    pc_res = protocol(pc_reps, pc_acc, cand, comp, metrics=metrics)
    records += _protocol_records("pc_deletion", pc_res, metrics, layer_names)

    # --- specificity: layer identification ------------------------------------------------------------
    say("scoring specificity (layer identification across seeds)")
    layers_by_seed = {s: [reps[(s, layer)] for layer in range(n_layers)] for s in range(cfg.n_seeds)}
    for m, name in zip(metrics, names):
        li = layer_identification(layers_by_seed, m, options=options(m))
        records.append({
            "test": "specificity", "metric": name, "spearman": None, "kendall": None, "p_value": None,
            "kendall_p": None, "bad_frac": None, "n_pairs": li.n_queries, "accuracy": round(li.accuracy, 6),
            "confusion": li.confusion.tolist(),
        })

    # --- detection thresholds -----------------------------------------------------------------------
    say("scoring detection thresholds")
    drops: dict[str, int | None] = {}
    for layer in range(n_layers):
        s0 = cast("tuple[int, int, int]", pc_res.references[layer])[0]  # keys are (seed, layer, d)
        noise = float(np.mean([abs(acc[(s, layer)] - acc[(s0, layer)]) for s in range(cfg.n_seeds) if s != s0]))
        series = {d: pc_acc[(s0, layer, d)] for d in cfg.pc_grid}
        drops[layer_names[layer]] = first_drop(series, acc[(s0, layer)], noise)
    for m, name in zip(metrics, names):
        flags, floors = {}, {}
        for layer in range(n_layers):
            s0 = cast("tuple[int, int, int]", pc_res.references[layer])[0]  # keys are (seed, layer, d)
            det = detection_threshold(
                reps[(s0, layer)],
                {d: pc_reps[(s0, layer, d)] for d in cfg.pc_grid},
                [reps[(s, layer)] for s in range(cfg.n_seeds) if s != s0],
                m,
                options=options(m),
            )
            flags[layer_names[layer]] = det.flags_at
            floors[layer_names[layer]] = round(det.noise_floor, 6)
        records.append({
            "test": "detection", "metric": name, "spearman": None, "kendall": None, "p_value": None,
            "kendall_p": None, "bad_frac": None, "n_pairs": n_layers * (len(cfg.pc_grid) + cfg.n_seeds - 1),
            "flags_at": flags, "probe_drops_at": drops, "noise_floor": floors,
            "n_components": int(cfg.hidden[0]),
        })

    # --- OOD: fine-tuning seeds, then pretraining × fine-tuning seeds -----------------------------------
    def pretrain(seed: int) -> MLP:
        return train_mlp(data.x_train, data.y_train, n_classes=10, hidden=cfg.hidden, seed=seed, epochs=cfg.epochs)

    def finetune(trunk: MLP, seed: int) -> MLP:
        return train_mlp(data.x_train_cue, data.coarse_train, n_classes=2, seed=seed, epochs=cfg.finetune_epochs,
                         lr=cfg.finetune_lr, init=trunk)

    def ood_test(test: str, tuned: dict[Any, MLP]) -> None:
        keys = list(tuned)
        ood = {k: tuned[k].accuracy(data.x_eval_ood, data.coarse_eval) for k in keys}
        r = {(k, layer): h for k in keys for layer, h in enumerate(tuned[k].hidden(data.x_eval_cue))}
        perf = {(k, layer): ood[k] for k in keys for layer in range(n_layers)}
        groups = {layer: [(k, layer) for k in keys] for layer in range(n_layers)}
        say(f"scoring {test} (OOD accuracy {min(ood.values()):.3f}..{max(ood.values()):.3f})")
        result = protocol(r, perf, groups, groups, metrics=metrics)
        recs = _protocol_records(test, result, metrics, layer_names)
        for rec in recs:
            rec["spearman_ci"] = _bootstrap_spearman(result, rec["metric"], len(keys), cfg.n_bootstrap, cfg.seed + 7)
            rec["ood_accuracy"] = [round(ood[k], 6) for k in keys]
        records.extend(recs)

    say(f"pretraining on the 10-way task and fine-tuning {cfg.n_finetune} seeds with a spurious cue")
    trunk = pretrain(cfg.seed + 2000)
    ood_test("ood_finetune", {f: finetune(trunk, cfg.seed + 3000 + f) for f in range(cfg.n_finetune)})
    say(f"pretrain x fine-tune grid ({cfg.grid_pretrain} x {cfg.grid_finetune})")
    tuned = {}
    for p in range(cfg.grid_pretrain):
        t = trunk if p == 0 else pretrain(cfg.seed + 2000 + p)
        for f in range(cfg.grid_finetune):
            tuned[(p, f)] = finetune(t, cfg.seed + 3000 + f)
    ood_test("ood_pretrain_finetune", tuned)
    return records


# --------------------------------------------------------------------------------------------------
# Output


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "—" if v is None else format(v, spec)


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """The records as Markdown tables: one for the rank-correlation tests, one for the others.

    Parameters
    ----------
    records : sequence of dict
        As returned by :func:`run_suite`.

    Returns
    -------
    str
        The Markdown text.
    """
    lines = [
        "| test | metric | Spearman ρ | Kendall τ | p (ρ, one-sided) | bad_frac | pairs | ρ 95 % CI |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in records:
        if r["spearman"] is None:
            continue
        ci = r.get("spearman_ci")
        lines.append(
            f"| {r['test']} | {r['metric']} | {r['spearman']:.3f} | {r['kendall']:.3f} | {r['p_value']:.1e} | "
            f"{r['bad_frac']:.3f} | {r['n_pairs']} | {'' if ci is None else f'[{ci[0]:.2f}, {ci[1]:.2f}]'} |"
        )
    spec = [r for r in records if r["test"] == "specificity"]
    det = [r for r in records if r["test"] == "detection"]
    if spec or det:
        layers = list(det[0]["flags_at"]) if det else []
        lines += ["", "| metric | layer-identification accuracy | PCs deleted before the metric flags: "
                  + ", ".join(layers) + " |", "|---|---:|---|"]
        for s in spec:
            d = next((x for x in det if x["metric"] == s["metric"]), None)
            flags = "" if d is None else ", ".join("never" if v is None else str(v) for v in d["flags_at"].values())
            lines.append(f"| {s['metric']} | {s['accuracy']:.3f} | {flags} |")
        if det:
            drops = ", ".join("never" if v is None else str(v) for v in det[0]["probe_drops_at"].values())
            lines.append(f"| *probe accuracy drops* | | {drops} |")
    return "\n".join(lines)


def plot_records(records: Sequence[dict[str, Any]], path: str) -> bool:
    """Save a figure of Spearman ρ per test and metric (and layer-identification accuracy) to ``path``.

    Parameters
    ----------
    records : sequence of dict
        As returned by :func:`run_suite`.
    path : str
        Where to save the figure (the format follows the extension).

    Returns
    -------
    bool
        True when saved; False, after saying so on stderr, when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib is not installed; skipping the figure (pip install ".[benchmark]" in the reprsim '
              'source folder)', file=sys.stderr)
        return False
    tests = [t for t in dict.fromkeys(r["test"] for r in records) if t not in ("specificity", "detection")]
    metrics = list(dict.fromkeys(r["metric"] for r in records))
    fig, axes = plt.subplots(1, len(tests) + 1, figsize=(3.2 * (len(tests) + 1), 4.2), sharey=False)
    colors = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(metrics), 2)))
    for ax, test in zip(axes, tests):
        rows = {r["metric"]: r for r in records if r["test"] == test}
        vals = [rows[m]["spearman"] if m in rows else np.nan for m in metrics]
        ax.bar(range(len(metrics)), vals, color=colors)
        for i, m in enumerate(metrics):
            ci = rows.get(m, {}).get("spearman_ci")
            if ci is not None:
                ax.plot([i, i], ci, color="black", lw=1)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(test, fontsize=9)
        ax.set_xticks(range(len(metrics)))
        ax.set_xticklabels(metrics, rotation=90, fontsize=7)
        ax.set_ylim(-1, 1)
    axes[0].set_ylabel("Spearman ρ: dissimilarity vs |Δ function|")
    spec = {r["metric"]: r["accuracy"] for r in records if r["test"] == "specificity"}
    ax = axes[-1]
    ax.bar(range(len(metrics)), [spec.get(m, np.nan) for m in metrics], color=colors)
    ax.set_title("specificity: layer identification", fontsize=9)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels(metrics, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_json(records: Sequence[dict[str, Any]], path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(list(records), fh, indent=1)
        fh.write("\n")


def quick_or_full(quick: bool, seed: int | None = None) -> SuiteConfig:
    cfg = QUICK if check_bool("quick")(quick) else FULL
    return cfg if seed is None else replace(cfg, seed=int(seed))
