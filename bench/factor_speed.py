"""Update throughput of the streaming QR-factor state (FactorState) against the moments (StreamState).

    python bench/factor_speed.py                 # full grid, 1 BLAS thread (several minutes on 2 cores)
    python bench/factor_speed.py --threads 2 --no-large
    python bench/factor_speed.py --quick         # smoke test

For each shape (layers k × k of width p, batches of b float32 rows) both states ingest the same K batches,
timed interleaved in one process (A, B, A, B, … over several rounds; medians): StreamState.update K times,
and FactorState.update K times plus the final flush (so that every row is factored; K·b covers at least
two flushes, so the buffering is amortised as in a long stream). Printed beside the times: the ratio
(factor / moments), the GEMM peak of this machine at the same thread count (a float64 product of
2048 × 2048), each state's memory, and each state's accuracy on pair (0, 0) against the in-memory
functions on the concatenated rows (mean CCA; debiased CKA). Results go to
bench/results/factor-speed-<threads>t.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import reprsim
from reprsim import _core

RESULTS = Path(__file__).resolve().parent / "results"


def gemm_peak(threads: int) -> float:
    a = np.random.default_rng(0).standard_normal((2048, 2048))
    with threadpool_limits(threads):
        a @ a
        best = min(_timed(lambda: a @ a) for _ in range(3))
    return 2 * 2048**3 / best / 1e9


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def stream_bytes(state) -> int:
    d = state.to_dict()
    return int(sum(np.asarray(v).nbytes for key in d for v in (d[key] if isinstance(d[key], list) else [d[key]])))


def run_shape(k: int, p: int, b: int, rounds: int, rng: np.random.Generator) -> dict:
    widths = k * 2 * p
    flush = min(max(widths, 256), 4096)
    batches = max(2, int(np.ceil(2 * flush / b)))
    xs = [[rng.standard_normal((b, p), dtype=np.float32) for _ in range(k)] for _ in range(batches)]
    ys = [[(xs[t][i][:, : p // 2] @ rng.standard_normal((p // 2, p), dtype=np.float32)
            + rng.standard_normal((b, p), dtype=np.float32)) for i in range(k)] for t in range(batches)]
    nx, ny = [f"x{i}" for i in range(k)], [f"y{j}" for j in range(k)]

    def ingest(cls):
        s = cls(k, k)
        t0 = time.perf_counter()
        for t in range(batches):
            s.update(xs[t], ys[t], nx, ny)
        if hasattr(s, "flush"):
            s.flush()
        return time.perf_counter() - t0, s

    times: dict[str, list[float]] = {"moments": [], "factor": []}
    states = {}
    for _ in range(rounds):
        for name, cls in (("moments", _core.StreamState), ("factor", _core.FactorState)):
            dt, states[name] = ingest(cls)
            times[name].append(dt)
    med = {name: float(np.median(v)) for name, v in times.items()}
    n = batches * b
    rec = {"layers": k, "width": p, "batch": b, "batches": batches, "rows": n,
           "ms_per_batch_moments": 1e3 * med["moments"] / batches, "ms_per_batch_factor": 1e3 * med["factor"] / batches,
           "ratio": med["factor"] / med["moments"], "rounds": rounds,
           "bytes_moments": stream_bytes(states["moments"]), "bytes_factor": int(states["factor"].memory_bytes()),
           "load": load()}
    x = np.concatenate([t[0] for t in xs])
    y = np.concatenate([t[0] for t in ys])
    cka = reprsim.cka(x, y, debiased=True)
    rec["cka_err_moments"] = abs(states["moments"].cka(True, nx, ny)[0, 0] - cka)
    rec["cka_err_factor"] = abs(states["factor"].cka(True, nx, ny)[0, 0] - cka)
    if n > 2 * p + 2:
        m = reprsim.mean_cca(x, y)
        rec["mean_cca_err_moments"] = abs(states["moments"].cca_statistic("mean", 0.0, True, nx, ny)[0, 0] - m)
        rec["mean_cca_err_factor"] = abs(states["factor"].cca_statistic("mean", 0.0, True, nx, ny)[0, 0] - m)
    return rec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-large", action="store_true", help="skip 4 x 4 layers of width 1024 (~1 GB, minutes)")
    args = ap.parse_args()
    reprsim.set_num_threads(args.threads)
    rng = np.random.default_rng(1)
    if args.quick:
        grid = [(1, 64, 64), (1, 256, 512), (4, 64, 512)]
    else:
        grid = [(k, p, b) for k in (1, 4) for p in (64, 256, 1024) for b in (64, 512, 4096)
                if not (args.no_large and k == 4 and p == 1024)]
    peak = gemm_peak(args.threads)
    print(f"GEMM peak (float64, {args.threads} thread(s)): {peak:.1f} GFLOP/s; load {load()}", flush=True)
    rows = []
    with threadpool_limits(args.threads):
        for k, p, b in grid:
            rec = run_shape(k, p, b, 1 if (k == 4 and p == 1024) else args.rounds, rng)
            rows.append(rec)
            print(json.dumps(rec), flush=True)
    meta = {"threads": args.threads, "gemm_peak_gflops": peak, "machine": platform.machine(),
            "cpus": os.cpu_count(), "load_end": load()}
    RESULTS.mkdir(exist_ok=True)
    tag = f"factor-speed-{args.threads}t" + ("-quick" if args.quick else "")
    (RESULTS / f"{tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    fmt = lambda v: "—" if v is None else f"{v:.1e}"  # noqa: E731
    lines = [
        f"# FactorState.update vs StreamState.update ({args.threads} BLAS thread(s), float32 batches, "
        f"GEMM peak {peak:.0f} GFLOP/s)",
        "",
        "| layers | width | batch | moments ms/batch | factor ms/batch | ratio | memory moments | memory factor |"
        " |Δ| debiased CKA moments / factor | |Δ| mean CCA moments / factor | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layers']}×{r['layers']} | {r['width']} | {r['batch']} | {r['ms_per_batch_moments']:.2f} | "
            f"{r['ms_per_batch_factor']:.2f} | {r['ratio']:.2f} | {r['bytes_moments'] / 2**20:.1f} MiB | "
            f"{r['bytes_factor'] / 2**20:.1f} MiB | {fmt(r['cka_err_moments'])} / {fmt(r['cka_err_factor'])} | "
            f"{fmt(r.get('mean_cca_err_moments'))} / {fmt(r.get('mean_cca_err_factor'))} | {r['load']} |"
        )
    (RESULTS / f"{tag}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
