"""Throughput of the linear-CKA permutation null: the compiled kernel against the naive loop.

    python bench/permutation.py                    # n=2000, p=512, float64 (about a minute)
    python bench/permutation.py --dtype float32 --n 4000
    python bench/permutation.py --quick            # tiny shapes, seconds: checks the script only

Every implementation computes CKA(x, y[π]) for the same permutations π:

- ``kernel gram``: reprsim's compiled null in Gram space. Setup: centre, two syrk products for the
  centred Grams K, L (n²·(p1+p2) flops); per permutation ⟨K, L_π⟩ = Σ_ij K_ij L_π(i)π(j), n(n+1)/2
  gathered multiply-adds, no BLAS call (threads: std::thread over permutations).
- ``kernel feature``: the same null in feature space. Setup: centre once; per permutation one
  product XcᵀYc[π] (2·n·p1·p2 flops, in the threaded BLAS).
- ``permutation_test``: the public function end to end (space chosen automatically, permutations
  drawn from numpy, p-value).
- ``naive reprsim.cka``: ``reprsim.cka(x, y[perm])`` in a Python loop (re-centres and recomputes
  every product each time).
- ``naive numpy``: the textbook numpy code per permutation (centre, XcᵀYc, XcᵀXc, YcᵀYc).

Before timing, the kernel's values are compared with the naive loop's on the same permutations.
Throughput is permutations per second (median and best of ``--repeats`` runs; setup excluded for
the kernels and timed separately). Results go to ``bench/results/permutation-<date>-<machine>.json``
and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
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
from reprsim import _core

HERE = Path(__file__).resolve().parent


def _data(n: int, p: int, dtype: type, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two representations reading a shared 64-dimensional latent, with noise and column offsets."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 64))

    def one() -> np.ndarray:
        a = z @ rng.standard_normal((64, p)) + rng.standard_normal((n, p)) + rng.standard_normal(p)
        return a.astype(dtype)

    return one(), one()


def _numpy_cka(x: np.ndarray, y: np.ndarray) -> float:
    xc = x - x.mean(axis=0)
    yc = y - y.mean(axis=0)
    return float(np.sum((xc.T @ yc) ** 2) / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))


def _blas_threads(k: int) -> Any:
    """Sets reprsim's and (through threadpoolctl, when installed) numpy's BLAS threads."""
    reprsim.set_num_threads(k)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=k)


def _time(fn: Callable[[], Any], count: int, repeats: int) -> dict[str, float]:
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        rates.append(count / (time.perf_counter() - t0))
    return {"median": statistics.median(rates), "best": max(rates), "runs": rates}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--p", type=int, default=512)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--permutations", type=int, default=200, help="per timed run of the kernels")
    ap.add_argument("--naive", type=int, default=10,
                    help="permutations per timed run of the naive loops (four times as many for the feature kernel)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--note", default="", help="a sentence for the Markdown table, e.g. that the machine was shared")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.p, args.permutations, args.naive, args.repeats = 200, 32, 20, 5, 1

    cores = os.cpu_count() or 1
    dtype = np.dtype(args.dtype).type
    x, y = _data(args.n, args.p, dtype)
    rng = np.random.default_rng(1)
    perms = np.stack([rng.permutation(args.n) for _ in range(args.permutations)]).astype(np.int64)
    naive_perms = perms[: args.naive]
    load_before = os.getloadavg()

    # Correctness gate, on the permutations the naive loop times.
    tol = 1e-10 if dtype is np.float64 else 1e-4
    gate = {}
    naive_values = np.array([reprsim.cka(x, y[p]) for p in naive_perms])
    for space in ("gram", "feature"):
        kernel = _core.LinearCKANull(x, y, False, space, float(args.permutations))
        diff = float(np.max(np.abs(kernel.evaluate(naive_perms, 1) - naive_values)))
        gate[space] = {"max_abs_diff": diff, "ok": diff <= tol}
        if diff > tol:
            print(f"kernel {space} disagrees with the naive loop by {diff:.3g}", file=sys.stderr)
            return 1

    rows: list[dict[str, Any]] = []

    def record(name: str, threads: int, rate: dict[str, float], setup_s: float | None = None) -> None:
        rows.append({"implementation": name, "threads": threads, "perm_per_s": rate, "setup_s": setup_s})
        print(f"{name:34s} threads={threads}  {rate['median']:10.1f} perm/s (best {rate['best']:.1f})")

    for threads in sorted({1, cores}):
        limits = _blas_threads(threads)
        try:
            for space in ("gram", "feature"):
                t0 = time.perf_counter()
                kernel = _core.LinearCKANull(x, y, False, space, float(args.permutations))
                setup = time.perf_counter() - t0
                # Feature space costs a full product per permutation: time fewer of them.
                sub = perms if space == "gram" else perms[: 4 * args.naive]
                rate = _time(lambda: kernel.evaluate(sub, threads), len(sub), args.repeats)
                record(f"kernel {space}", threads, rate, setup)
            rate = _time(
                lambda: reprsim.permutation_test(x, y, n_permutations=args.permutations, seed=2, n_jobs=threads),
                args.permutations, args.repeats,
            )
            record("permutation_test (end to end)", threads, rate)
            rate = _time(lambda: [reprsim.cka(x, y[p]) for p in naive_perms], len(naive_perms), args.repeats)
            record("naive reprsim.cka loop", threads, rate)
            rate = _time(lambda: [_numpy_cka(x, y[p]) for p in naive_perms], len(naive_perms), args.repeats)
            record("naive numpy loop", threads, rate)
        finally:
            if limits is not None:
                limits.unregister()

    load_after = os.getloadavg()
    for r in rows:
        base = next(b for b in rows if b["implementation"] == "naive reprsim.cka loop" and b["threads"] == r["threads"])
        r["speedup_vs_naive_reprsim"] = r["perm_per_s"]["median"] / base["perm_per_s"]["median"]

    machine = socket.gethostname().split(".")[0]
    stem = f"{'quick-' if args.quick else ''}permutation-{_dt.date.today().isoformat()}-{machine}"
    meta = {
        "n": args.n, "p1": args.p, "p2": args.p, "dtype": args.dtype,
        "permutations_per_run": args.permutations, "naive_permutations_per_run": args.naive,
        "repeats": args.repeats, "cores": cores, "machine": machine, "platform": platform.platform(),
        "processor": platform.processor(), "python": platform.python_version(), "numpy": np.__version__,
        "reprsim": reprsim.__version__, "loadavg_before": load_before, "loadavg_after": load_after,
        "auto_space": str(_core.LinearCKANull(x, y, False, "auto", float(args.permutations)).space),
        "gate": gate, "quick": args.quick, "note": args.note,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        f"# Linear-CKA permutation null: n={args.n}, p1=p2={args.p}, {args.dtype}",
        "",
        f"Machine `{machine}`, {cores} cores ({platform.processor() or platform.machine()}); load average "
        f"{load_before[0]:.1f} before and {load_after[0]:.1f} after the run. Permutations per second, median "
        f"of {args.repeats} runs (best in brackets); kernel setup (centring + factors) excluded and listed. "
        f"`permutation_test` chose `{meta['auto_space']}` space. Threads: reprsim's and numpy's BLAS, and "
        "the kernel's threads over permutations." + (f" {args.note}" if args.note else ""),
        "",
        "| implementation | threads | permutations/s | vs naive reprsim.cka loop | setup (s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["perm_per_s"]
        setup = f"{r['setup_s']:.3f}" if r["setup_s"] is not None else ""
        lines.append(f"| {r['implementation']} | {r['threads']} | {s['median']:.1f} ({s['best']:.1f}) | "
                     f"{r['speedup_vs_naive_reprsim']:.1f}× | {setup} |")
    lines += ["", f"Gate: kernel vs naive loop, max |Δ| = {gate['gram']['max_abs_diff']:.2g} (Gram), "
              f"{gate['feature']['max_abs_diff']:.2g} (feature)."]
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
