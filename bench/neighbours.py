"""Neighbourhood and RSA measures at scale: reprsim against faiss, rsatoolbox and scipy, in one run.

    python bench/neighbours.py                 # K1 and R1 at full size, 2 threads (about 10 minutes)
    python bench/neighbours.py --only K1       # one workload
    python bench/neighbours.py --quick         # tiny shapes, seconds: checks the script only

Workloads (synthetic data: representations reading a shared 64-dimensional latent, plus noise):

- K1, mutual k-NN, n=20000, p=1024, k=10, float32. Candidates: ``reprsim knn_lists`` (the exact search of
  one input: blocked GEMM of the upper triangle + per-row heaps), ``reprsim.mutual_knn`` (two searches
  and the finaliser), ``faiss IndexFlatIP`` (faiss-cpu's exact inner-product search of the normalised
  rows for the same lists: k+1 neighbours, the row itself dropped), and ``numpy sgemm`` (a 4096×1024 by
  1024×4096 float32 product, best of three per round: the machine's GEMM peak, measured in the same
  run). Accuracy: the fraction of rows whose k-NN set equals the float64 reference's (a numpy float64
  search, full rows per block; the random data have no ties), and each mutual k-NN value's distance
  from the reference lists' value.
- R1, RSA, n=5000, p=512, float64: correlation RDM + Spearman comparison. Candidates: ``reprsim.rsa``,
  ``rsatoolbox calc_rdm + compare`` (when rsatoolbox imports), ``scipy pdist + spearmanr``. Accuracy:
  each value's distance from the exact Spearman correlation of scipy's float64 RDMs (ranks compared in
  integer arithmetic).

Candidates are timed round-robin (one call of each per round, ``--rounds`` rounds, median reported),
with reprsim's BLAS, numpy's BLAS (threadpoolctl) and faiss's OpenMP all at ``--threads`` threads. Peak
memory beyond the inputs is measured for the reprsim and faiss searches and for reprsim.rsa in a fresh
subprocess each (VmHWM after resetting it, minus VmRSS once the inputs exist; Linux only). Results go
to ``bench/results/neighbours-<date>-<machine>.json`` and a Markdown table beside it; the machine's load
average before and after is recorded.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import reprsim
from reprsim._neighbours import knn_lists

HERE = Path(__file__).resolve().parent


def _data(n: int, p: int, dtype: Any, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 64))

    def one() -> np.ndarray:
        a = z @ rng.standard_normal((64, p)) + 2.0 * rng.standard_normal((n, p)) + rng.standard_normal(p)
        return np.ascontiguousarray(a.astype(dtype))

    return one(), one()


def _threads(k: int) -> Any:
    reprsim.set_num_threads(k)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=k)


def _round_robin(candidates: dict[str, Callable[[], Any]], rounds: int) -> dict[str, dict[str, Any]]:
    """Each candidate once per round, in the same order; returns times and the last value of each."""
    out: dict[str, dict[str, Any]] = {name: {"times": [], "values": []} for name in candidates}
    for r in range(rounds):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            value = fn()
            dt = time.perf_counter() - t0
            out[name]["times"].append(dt)
            out[name]["values"].append(value if np.isscalar(value) else None)
            out[name]["value"] = value
            print(f"  round {r + 1}: {name:34s} {dt:8.3f} s", flush=True)
    for v in out.values():
        v["median_s"] = statistics.median(v["times"])
    return out


def _gemm_peak(p: int) -> Callable[[], float]:
    rng = np.random.default_rng(5)
    a = rng.standard_normal((4096, p), dtype=np.float32)
    b = rng.standard_normal((p, 4096), dtype=np.float32)

    def run() -> float:
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        return 2.0 * 4096 * 4096 * p / best / 1e9  # GFLOP/s

    return run


def _unit(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return x64 / np.linalg.norm(x64, axis=1, keepdims=True)


def _reference_lists(x: np.ndarray, k: int) -> np.ndarray:
    """float64 exact k-NN sets (sorted indices) by full rows per block (independent of reprsim's search)."""
    z = _unit(x)
    n = len(z)
    out = np.empty((n, k), dtype=np.int64)
    for r0 in range(0, n, 1024):
        s = z[r0:r0 + 1024] @ z.T
        rows = np.arange(s.shape[0])
        s[rows, rows + r0] = -np.inf
        out[r0:r0 + 1024] = np.sort(np.argpartition(-s, k - 1, axis=1)[:, :k], axis=1)
    return out


def _mutual_of_sets(a: np.ndarray, b: np.ndarray) -> float:
    k = a.shape[1]
    return float(np.mean([len(np.intersect1d(u, v, assume_unique=True)) for u, v in zip(a, b)]) / k)


def _faiss_lists(x: np.ndarray, k: int) -> np.ndarray:
    import faiss

    z = np.ascontiguousarray(x.astype(np.float32))
    faiss.normalize_L2(z)
    index = faiss.IndexFlatIP(z.shape[1])
    index.add(z)
    _, idx = index.search(z, k + 1)
    rows = np.arange(len(z))[:, None]
    keep = idx != rows
    # Drop the row itself (or, if a tie pushed it out, the last entry).
    keep[keep.all(axis=1), -1] = False
    return np.sort(idx[keep].reshape(len(z), k), axis=1)


def _executed_flops(n: int, p: int) -> float:
    """The search's GEMM flops: each row panel of 1024 rows against every later column (the upper part)."""
    total = 0
    for i0 in range(0, n, 1024):
        total += min(1024, n - i0) * (n - i0)
    return 2.0 * total * p


_MEMORY_SCRIPT = r"""
import sys, numpy as np
sys.path.insert(0, {bench!r})
from neighbours import _data
import reprsim
from reprsim._neighbours import knn_lists
reprsim.set_num_threads({threads})
x, y = _data({n}, {p}, np.{dtype})
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
base = rss("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")
{call}
print((rss("VmHWM:") - base) / 2**20)
"""


def _peak_mb(call: str, n: int, p: int, dtype: str, threads: int) -> float | None:
    """Peak resident memory of `call` beyond the inputs, in MiB, in a fresh process (Linux)."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    code = _MEMORY_SCRIPT.format(bench=str(HERE), n=n, p=p, dtype=dtype, call=call, threads=threads)
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, check=True)
        return float(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        print(f"  memory measurement failed: {exc}", file=sys.stderr)
        return None


def bench_k1(args: argparse.Namespace) -> dict[str, Any]:
    n, p, k = (2000, 64, 10) if args.quick else (20000, 1024, 10)
    print(f"K1: mutual k-NN, n={n}, p={p}, k={k}, float32", flush=True)
    x, y = _data(n, p, np.float32)
    t0 = time.perf_counter()
    ref_x, ref_y = _reference_lists(x, k), _reference_lists(y, k)
    print(f"  float64 reference lists: {time.perf_counter() - t0:.1f} s", flush=True)
    ref_mutual = _mutual_of_sets(ref_x, ref_y)
    candidates: dict[str, Callable[[], Any]] = {
        "numpy sgemm (peak, GFLOP/s)": _gemm_peak(p),
        "reprsim knn_lists(x)": lambda: knn_lists(x, k).indices,
        "reprsim.mutual_knn(x, y)": lambda: reprsim.mutual_knn(x, y, k=k),
    }
    faiss_note = None
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
        candidates["faiss IndexFlatIP search(x)"] = lambda: _faiss_lists(x, k)
    except ImportError as exc:
        faiss_note = f"faiss not installed ({exc})"
    res = _round_robin(candidates, args.rounds)
    gemm_rates = res["numpy sgemm (peak, GFLOP/s)"]["values"]
    gemm_peak = max(gemm_rates)
    flops = _executed_flops(n, p)
    t_search = res["reprsim knn_lists(x)"]["median_s"]
    accuracy = {
        "reprsim knn_lists(x)": {"rows_equal": float(np.mean(np.all(res["reprsim knn_lists(x)"]["value"] == ref_x,
                                                                     axis=1)))},
        "reprsim.mutual_knn(x, y)": {"abs_error": abs(res["reprsim.mutual_knn(x, y)"]["value"] - ref_mutual)},
    }
    if "faiss IndexFlatIP search(x)" in res:
        accuracy["faiss IndexFlatIP search(x)"] = {
            "rows_equal": float(np.mean(np.all(res["faiss IndexFlatIP search(x)"]["value"] == ref_x, axis=1)))}
    memory = {
        "reprsim knn_lists(x)": _peak_mb(f"knn_lists(x, {k})", n, p, "float32", args.threads),
        "reprsim.mutual_knn(x, y)": _peak_mb(f"reprsim.mutual_knn(x, y, k={k})", n, p, "float32", args.threads),
    }
    if "faiss IndexFlatIP search(x)" in res:
        memory["faiss IndexFlatIP search(x)"] = _peak_mb(
            f"import faiss; faiss.omp_set_num_threads({args.threads}); from neighbours import _faiss_lists; "
            f"_faiss_lists(x, {k})", n, p, "float32", args.threads)
    summary = {
        "gemm_peak_gflops": gemm_peak,
        "gemm_median_gflops": statistics.median(gemm_rates),
        "search_executed_gflop": flops / 1e9,
        "search_gflops": flops / t_search / 1e9,
        "search_fraction_of_peak": flops / t_search / 1e9 / gemm_peak,
        "search_full_product_equivalent_gflops": 2.0 * n * n * p / t_search / 1e9,
        "reference_mutual_knn": ref_mutual,
    }
    if "faiss IndexFlatIP search(x)" in res:
        summary["search_time_over_faiss"] = t_search / res["faiss IndexFlatIP search(x)"]["median_s"]
    for v in res.values():
        v.pop("value", None)
    return {"workload": "K1", "n": n, "p": p, "k": k, "dtype": "float32", "results": res, "accuracy": accuracy,
            "peak_memory_mib_beyond_inputs": memory, "summary": summary, "note": faiss_note}


def _exact_spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two vectors without ties, from integer rank arithmetic (exact up to one rounding)."""
    from decimal import Decimal, getcontext

    from scipy import stats

    getcontext().prec = 40
    n = len(a)
    ra = stats.rankdata(a)
    rb = stats.rankdata(b)
    if len(np.unique(ra)) < n or len(np.unique(rb)) < n:
        return float(stats.spearmanr(a, b).statistic)  # ties: scipy's float64 value stands as the reference
    da = (2 * ra - n - 1).astype(np.int64)
    db = (2 * rb - n - 1).astype(np.int64)
    # Σ da·db in exact integers: split each factor so that the int64 products cannot overflow.
    lo, hi = da % 65536, da // 65536
    s = int(np.sum((lo * db).astype(object))) + 65536 * int(np.sum((hi * db).astype(object)))
    return float(Decimal(s) / (Decimal(n) ** 3 - Decimal(n)) * 3)


def bench_r1(args: argparse.Namespace) -> dict[str, Any]:
    n, p = (600, 32) if args.quick else (5000, 512)
    print(f"R1: RSA (correlation RDM, Spearman), n={n}, p={p}, float64", flush=True)
    x, y = _data(n, p, np.float64, seed=3)
    from scipy import stats
    from scipy.spatial.distance import pdist

    a, b = pdist(x, "correlation"), pdist(y, "correlation")
    reference = _exact_spearman(a, b)
    del a, b
    candidates: dict[str, Callable[[], Any]] = {
        "reprsim.rsa": lambda: reprsim.rsa(x, y, rdm="correlation", compare="spearman"),
        "scipy pdist + spearmanr": lambda: float(
            stats.spearmanr(pdist(x, "correlation"), pdist(y, "correlation")).statistic),
    }
    note = None
    try:
        import rsatoolbox

        def rsatoolbox_rsa() -> float:
            ra = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method="correlation")
            rb = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(y), method="correlation")
            return float(rsatoolbox.rdm.compare(ra, rb, method="spearman")[0, 0])

        candidates["rsatoolbox calc_rdm + compare"] = rsatoolbox_rsa
    except ImportError as exc:
        note = f"rsatoolbox not installed ({exc})"
    res = _round_robin(candidates, args.rounds)
    accuracy = {name: {"abs_error": abs(v["value"] - reference), "value": v["value"]} for name, v in res.items()}
    memory = {"reprsim.rsa": _peak_mb("reprsim.rsa(x, y)", n, p, "float64", args.threads)}
    t = res["reprsim.rsa"]["median_s"]
    summary = {name: v["median_s"] / t for name, v in res.items() if name != "reprsim.rsa"}
    for v in res.values():
        v.pop("value", None)
    return {"workload": "R1", "n": n, "p": p, "dtype": "float64", "results": res, "accuracy": accuracy,
            "reference": reference, "peak_memory_mib_beyond_inputs": memory,
            "speedup_of_reprsim": summary, "note": note}


def _markdown(meta: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    lines = [
        "# Neighbourhood and RSA measures",
        "",
        f"Machine `{meta['machine']}`, {meta['cores']} cores ({meta['processor'] or meta['platform']}); "
        f"{meta['threads']} threads for reprsim's BLAS, numpy's BLAS and faiss. Load average "
        f"{meta['loadavg_before'][0]:.1f} before and {meta['loadavg_after'][0]:.1f} after the run. Times: "
        f"median of {meta['rounds']} round-robin rounds (each round times every candidate once)."
        + (f" {meta['note']}" if meta["note"] else ""),
        "",
    ]
    for run in runs:
        if run["workload"] == "K1":
            s = run["summary"]
            lines += [
                f"## K1: mutual k-NN, n={run['n']}, p={run['p']}, k={run['k']}, float32",
                "",
                "| candidate | median (s) | rounds (s) | accuracy vs float64 | peak memory beyond inputs (MiB) |",
                "|---|---|---|---|---|",
            ]
            for name, r in run["results"].items():
                acc = run["accuracy"].get(name, {})
                acc_s = (f"{acc['rows_equal']:.4%} rows equal" if "rows_equal" in acc
                         else f"abs. error {acc['abs_error']:.2g}" if "abs_error" in acc else "")
                mem = run["peak_memory_mib_beyond_inputs"].get(name)
                times = ", ".join(f"{t:.2f}" for t in r["times"])
                lines.append(f"| {name} | {r['median_s']:.2f} | {times} | {acc_s} | "
                             f"{'' if mem is None else f'{mem:.0f}'} |")
            lines += [
                "",
                f"GEMM peak (numpy sgemm, best of the rounds): {s['gemm_peak_gflops']:.0f} GFLOP/s (median "
                f"{s['gemm_median_gflops']:.0f}). The search "
                f"executes {s['search_executed_gflop']:.1f} GFLOP (the upper triangle of the n×n products): "
                f"{s['search_gflops']:.0f} GFLOP/s, **{s['search_fraction_of_peak']:.2f} of the peak**; counted as "
                f"the full n²·p product it replaces, {s['search_full_product_equivalent_gflops']:.0f} GFLOP/s."
                + (f" Search time over faiss's: **{s['search_time_over_faiss']:.2f}**."
                   if "search_time_over_faiss" in s else ""),
                "",
            ]
        else:
            lines += [
                f"## R1: RSA, correlation RDM + Spearman, n={run['n']}, p={run['p']}, float64",
                "",
                "| candidate | median (s) | rounds (s) | reprsim speed-up | abs. error vs exact Spearman |",
                "|---|---|---|---|---|",
            ]
            for name, r in run["results"].items():
                sp = run["speedup_of_reprsim"].get(name)
                times = ", ".join(f"{t:.2f}" for t in r["times"])
                lines.append(f"| {name} | {r['median_s']:.2f} | {times} | "
                             f"{'' if sp is None else f'{sp:.1f}×'} | {run['accuracy'][name]['abs_error']:.2g} |")
            mem = run["peak_memory_mib_beyond_inputs"].get("reprsim.rsa")
            lines += ["", f"reprsim.rsa peak memory beyond the inputs: {'n/a' if mem is None else f'{mem:.0f} MiB'}."
                      f" Reference Spearman: {run['reference']:.15f}.", ""]
        if run.get("note"):
            lines += [f"Note: {run['note']}", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--only", default="K1,R1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--note", default="")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds = min(args.rounds, 2)
    limits = _threads(args.threads)
    load_before = os.getloadavg()
    runs = []
    try:
        for w in args.only.split(","):
            runs.append({"K1": bench_k1, "R1": bench_r1}[w.strip()](args))
    finally:
        if limits is not None:
            limits.unregister()
    load_after = os.getloadavg()
    machine = socket.gethostname().split(".")[0]
    versions = {"reprsim": reprsim.__version__, "numpy": np.__version__, "python": platform.python_version()}
    for mod in ("scipy", "faiss", "rsatoolbox", "threadpoolctl"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional peers
            versions[mod] = None
    meta = {"machine": machine, "cores": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor(), "threads": args.threads, "rounds": args.rounds,
            "loadavg_before": load_before, "loadavg_after": load_after, "versions": versions,
            "quick": args.quick, "note": args.note}
    stem = f"{'quick-' if args.quick else ''}neighbours-{_dt.date.today().isoformat()}-{machine}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=2, default=float))
    (args.out / f"{stem}.md").write_text(_markdown(meta, runs))
    print(f"wrote {args.out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
