"""Shape metrics and ridge predictivity at scale: reprsim against plain numpy/scipy and scikit-learn, in one run.

    python bench/measures.py                 # S1 and P1 at full size, 2 threads (about 10-20 minutes, loaded)
    python bench/measures.py --only P1       # one workload
    python bench/measures.py --quick         # tiny shapes, seconds: checks the script only

Workloads (synthetic data: layers reading a latent that drifts from layer to layer, plus noise and offsets):

- S1, generalized shape metric (α = 0.5, angular) between the 12 layers of two "models" (their own projections of
  one drifting latent), a 12 × 12 matrix,
  n = 10000, p = 768, float32. Candidates: ``reprsim.pairwise(xs, ys, metric="shape", alpha=0.5)`` (every
  layer's whitening once, the 144 cross-products of whitened rows in float32, one SVD per pair); ``numpy
  loop f64`` (the textbook per-pair code: centre in float64, eigh of XcᵀXc, the partial whitening, φx, φy,
  φxᵀφy and its singular values, for each pair again); ``numpy loop f32`` (the same with float32 products
  and float64 eigendecompositions). The loops cost the same for every pair: each round times them on
  ``--pairs`` pairs and the table reports that time × 144 / pairs (stated in the row). Accuracy: each
  candidate's largest relative deviation from the float64 loop on the pairs the loops computed.
- P1, cross-validated ridge predictivity, n = 5000, p = 1024 → q = 1024 targets, 5 contiguous folds, 10
  alphas, float64, with RidgeCV's criterion (held-out R² averaged over targets, ``score="r2",
  aggregate="mean"``). Candidates: ``reprsim.predictivity_scores`` (per-fold moments, one eigendecomposition
  per fold for all alphas); ``sklearn RidgeCV(alphas, cv=KFold(5))`` (fits every alpha on every fold, then
  refits the chosen alpha on all rows, as its fit does). Accuracy: the chosen alpha and |Δ best score|, and
  the largest difference between reprsim's held-out predictions at the chosen alpha
  (``reprsim._folds.heldout_predictions``) and scikit-learn's ``Ridge(alpha).fit(train).predict(test)``,
  relative to the targets' spread.

Candidates are timed round-robin (one call of each per round, ``--rounds`` rounds, median reported), with
reprsim's BLAS and numpy's BLAS (threadpoolctl) at ``--threads`` threads. The machine's GEMM peak (numpy
sgemm/dgemm, best of three, measured in the same run) and its load average before and after are recorded.
Results go to ``bench/results/measures-<date>-<machine>.json`` and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import reprsim
from reprsim._folds import heldout_predictions

HERE = Path(__file__).resolve().parent


def _threads(k: int) -> Any:
    reprsim.set_num_threads(k)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=k)


def _gemm_peak(dtype: Any, p: int = 1024) -> float:
    rng = np.random.default_rng(5)
    a = rng.standard_normal((4096, p)).astype(dtype)
    b = rng.standard_normal((p, 4096)).astype(dtype)
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * 4096 * 4096 * p / best / 1e9


def _round_robin(candidates: dict[str, Callable[[], Any]], rounds: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {name: {"times": []} for name in candidates}
    for r in range(rounds):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            value = fn()
            dt = time.perf_counter() - t0
            out[name]["times"].append(dt)
            out[name]["value"] = value
            print(f"  round {r + 1}: {name:28s} {dt:9.3f} s", flush=True)
    for v in out.values():
        v["median_s"] = statistics.median(v["times"])
    return out


# -- S1: shape metric layer matrix ----------------------------------------------------------------------


def _latents(n: int, k: int, seed: int = 0) -> list[np.ndarray]:
    """A 64-dimensional latent that drifts from layer to layer (shared by both models)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 64))
    out = []
    for _ in range(k):
        z = 0.8 * z + 0.6 * rng.standard_normal((n, 64))
        out.append(z)
    return out


def _layers(latents: list[np.ndarray], p: int, seed: int, dtype: Any) -> list[np.ndarray]:
    """One model's layers: its own projections of the shared latents, a decaying noise spectrum, offsets."""
    rng = np.random.default_rng(seed)
    n = latents[0].shape[0]
    spectrum = 1.0 / np.sqrt(np.arange(1, p + 1))
    return [np.ascontiguousarray((z @ rng.standard_normal((64, p)) + 1.5 * rng.standard_normal((n, p)) * spectrum
                                  + rng.standard_normal(p)).astype(dtype)) for z in latents]


def _shape_loop_pair(x: np.ndarray, y: np.ndarray, alpha: float, product: Any) -> float:
    """The textbook per-pair computation (as netrep's LinearMetric does it, with the rank-based pseudo-inverse):
    centre, eigh of XcᵀXc, partial whitening, φxᵀφy, its nuclear norm, arccos."""

    def phi(a: np.ndarray) -> np.ndarray:
        a64 = a.astype(np.float64)
        xc = a64 - a64.mean(axis=0)
        w, v = np.linalg.eigh(xc.T @ xc)
        keep = w > w[-1] * max(xc.shape) * np.finfo(np.float64).eps
        d = np.full(w.shape, alpha)
        d[keep] += (1.0 - alpha) / np.sqrt(w[keep])
        z = (v * d) @ v.T
        return xc.astype(product) @ z.astype(product)

    fx, fy = phi(x), phi(y)
    m = (fx.T @ fy).astype(np.float64)
    nuc = np.linalg.svd(m, compute_uv=False).sum()
    nx = np.linalg.norm(fx.astype(np.float64))
    ny = np.linalg.norm(fy.astype(np.float64))
    return float(np.arccos(min(nuc / (nx * ny), 1.0)))


def bench_shape(args: argparse.Namespace) -> dict[str, Any]:
    n, p, k = (400, 48, 4) if args.quick else (10000, 768, 12)
    alpha = 0.5
    latents = _latents(n, k)
    xs, ys = _layers(latents, p, 1, np.float32), _layers(latents, p, 2, np.float32)
    pairs_total = k * k
    rng = np.random.default_rng(9)
    sample = [tuple(int(v) for v in rng.integers(0, k, 2)) for _ in range(args.pairs)]
    cand = {
        "reprsim pairwise": lambda: reprsim.pairwise(xs, ys, metric="shape", alpha=alpha),
        f"numpy loop f64 ({args.pairs} pairs)": lambda: [_shape_loop_pair(xs[i], ys[j], alpha, np.float64)
                                                          for i, j in sample],
        f"numpy loop f32 ({args.pairs} pairs)": lambda: [_shape_loop_pair(xs[i], ys[j], alpha, np.float32)
                                                          for i, j in sample],
    }
    print(f"S1: shape (alpha={alpha}) {k}x{k} layers, n={n}, p={p}, float32; loops on pairs {sample}", flush=True)
    res = _round_robin(cand, args.rounds)
    reference = np.array(res[f"numpy loop f64 ({args.pairs} pairs)"]["value"])
    matrix = res["reprsim pairwise"]["value"]
    rows = []
    for name, r in res.items():
        per_matrix = r["median_s"] * (pairs_total / args.pairs if "loop" in name else 1.0)
        if name == "reprsim pairwise":
            vals = np.array([matrix[i, j] for i, j in sample])
        else:
            vals = np.array(r["value"])
        dev = float(np.max(np.abs(vals - reference) / np.abs(reference)))
        rows.append({"candidate": name, "median_s": r["median_s"], "times": r["times"],
                     "matrix_s": per_matrix, "max_rel_dev_vs_f64_loop": dev,
                     "scaled": "loop" in name})
    base = next(r for r in rows if r["candidate"] == "reprsim pairwise")["matrix_s"]
    for r in rows:
        r["ratio_vs_reprsim"] = r["matrix_s"] / base
    return {"workload": "S1", "n": n, "p": p, "layers": k, "alpha": alpha, "dtype": "float32", "pairs": sample,
            "rows": rows}


# -- P1: cross-validated ridge predictivity ----------------------------------------------------------------


def bench_predictivity(args: argparse.Namespace) -> dict[str, Any]:
    from sklearn.linear_model import Ridge, RidgeCV
    from sklearn.model_selection import KFold

    n, p, q = (300, 40, 30) if args.quick else (5000, 1024, 1024)
    rng = np.random.default_rng(3)
    z = rng.standard_normal((n, 128))
    x = z @ rng.standard_normal((128, p)) + 2.0 * rng.standard_normal((n, p)) + rng.standard_normal(p)
    y = z @ rng.standard_normal((128, q)) + 1.0 * rng.standard_normal((n, q)) - 3.0
    alphas = [float(a) for a in np.logspace(-1, 6, 10)]
    folds = KFold(5)
    cand = {
        "reprsim predictivity_scores": lambda: reprsim.predictivity_scores(x, y, alpha=alphas, folds=5, score="r2",
                                                                            aggregate="mean"),
        "sklearn RidgeCV(cv=KFold(5))": lambda: RidgeCV(alphas=alphas, cv=folds).fit(x, y),
    }
    print(f"P1: ridge predictivity n={n}, p={p} -> q={q}, 5 folds, {len(alphas)} alphas, float64", flush=True)
    res = _round_robin(cand, args.rounds)
    ours, cv = res["reprsim predictivity_scores"]["value"], res["sklearn RidgeCV(cv=KFold(5))"]["value"]
    alpha = ours.alpha
    pred = heldout_predictions(x, y, alpha, 5)
    ref = np.empty_like(pred)
    for train, test in folds.split(x):
        ref[test] = Ridge(alpha=alpha).fit(x[train], y[train]).predict(x[test])
    spread = float(np.max(np.std(y, axis=0)))
    pred_dev = float(np.max(np.abs(pred - ref)) / spread)
    rows = []
    for name, r in res.items():
        rows.append({"candidate": name, "median_s": r["median_s"], "times": r["times"]})
    base = rows[0]["median_s"]
    for r in rows:
        r["ratio_vs_reprsim"] = r["median_s"] / base
    return {"workload": "P1", "n": n, "p": p, "q": q, "folds": 5, "alphas": alphas, "dtype": "float64", "rows": rows,
            "alpha_reprsim": alpha, "alpha_sklearn": float(cv.alpha_), "score_reprsim": ours.value,
            "score_sklearn": float(cv.best_score_), "abs_score_diff": abs(ours.value - float(cv.best_score_)),
            "max_prediction_diff_over_target_std": pred_dev}


def _markdown(result: dict[str, Any]) -> str:
    lines = [f"# bench/measures.py — {result['date']} on {result['machine']}", "",
             f"Threads: {result['threads']} (reprsim BLAS and numpy BLAS). GEMM peak in this run: "
             f"{result['gemm_gflops_f32']:.1f} GFLOP/s float32, {result['gemm_gflops_f64']:.1f} GFLOP/s float64. "
             f"Load average before {result['load_before']}, after {result['load_after']}.", ""]
    if result.get("note"):
        lines += [result["note"], ""]
    for w in result["workloads"]:
        if w["workload"] == "S1":
            lines += [f"## S1 — shape metric (α = {w['alpha']}), {w['layers']} × {w['layers']} layers, n = {w['n']}, "
                      f"p = {w['p']}, {w['dtype']}", "",
                      "| candidate | median per call (s) | whole matrix (s) | × reprsim | max rel. dev. vs f64 loop |",
                      "|---|---|---|---|---|"]
            for r in w["rows"]:
                note = f" (loop × {w['layers'] ** 2} / {len(w['pairs'])} pairs)" if r["scaled"] else ""
                lines.append(f"| {r['candidate']} | {r['median_s']:.2f} | {r['matrix_s']:.1f}{note} | "
                             f"{r['ratio_vs_reprsim']:.1f} | {r['max_rel_dev_vs_f64_loop']:.1e} |")
        else:
            lines += [f"## P1 — ridge predictivity, n = {w['n']}, p = {w['p']} → q = {w['q']}, {w['folds']} folds, "
                      f"{len(w['alphas'])} alphas, {w['dtype']}", "",
                      "| candidate | median (s) | × reprsim |", "|---|---|---|"]
            for r in w["rows"]:
                lines.append(f"| {r['candidate']} | {r['median_s']:.2f} | {r['ratio_vs_reprsim']:.1f} |")
            lines += ["", f"Chosen alpha: reprsim {w['alpha_reprsim']:g}, RidgeCV {w['alpha_sklearn']:g}; best mean "
                      f"held-out R²: {w['score_reprsim']:.12f} vs {w['score_sklearn']:.12f} (|Δ| = "
                      f"{w['abs_score_diff']:.1e}); held-out predictions vs Ridge(alpha) per fold: max |Δ| / max "
                      f"target std = {w['max_prediction_diff_over_target_std']:.1e}."]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="S1,P1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=3, help="pairs the per-pair loops compute per round")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    limits = _threads(args.threads)
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "date": _dt.date.today().isoformat(), "machine": f"{socket.gethostname()} {platform.processor() or ''}".strip(),
        "python": sys.version.split()[0], "numpy": np.__version__, "reprsim": reprsim.__version__,
        "threads": args.threads, "quick": args.quick, "note": args.note,
        "gemm_gflops_f32": _gemm_peak(np.float32), "gemm_gflops_f64": _gemm_peak(np.float64),
        "load_before": [round(v, 2) for v in load_before], "workloads": [],
    }
    print(f"GEMM peak: {result['gemm_gflops_f32']:.1f} GFLOP/s f32, {result['gemm_gflops_f64']:.1f} GFLOP/s f64; "
          f"load {load_before}", flush=True)
    only = set(args.only.split(","))
    if "S1" in only:
        result["workloads"].append(bench_shape(args))
    if "P1" in only:
        result["workloads"].append(bench_predictivity(args))
    result["load_after"] = [round(v, 2) for v in os.getloadavg()]
    if limits is not None:
        limits.restore_original_limits()
    stem = f"measures-{'quick-' if args.quick else ''}{result['date']}-{socket.gethostname()}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1, default=float))
    md = _markdown(result)
    (out / f"{stem}.md").write_text(md)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
