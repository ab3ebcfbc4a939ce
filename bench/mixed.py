"""Mixed use: reprsim calls interleaved with numpy and torch calls, against each call alone.

A user's script alternates numpy, torch and reprsim. Each BLAS thread pool in the process keeps its
idle threads spinning for a while after a call (OpenBLAS: about 2**28 cycles, ~0.1 s), on the cores the
next library's threads need. This measures, round-robin over the conditions, median over rounds:

- a reprsim call (linear CKA, Procrustes) alone, right after a numpy matmul, right after a torch matmul;
- a numpy (and a torch) matmul alone and right after a reprsim call;
- the CPU time the process burns in a 0.2 s sleep right after each kind of call (the spinning itself:
  it does not depend on what else the machine runs).

"Alone" means after `idle` seconds of a plain Python loop (every pool has gone to sleep by then).

    python bench/mixed.py [--quick] [--rounds 9]      # prints JSON; run.py runs it per BLAS setup
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import reprsim


def _idle(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _spin_cpu(after: Callable[[], Any], sleep_s: float = 0.2) -> float:
    """Process CPU seconds burnt during a sleep right after `after()` (idle threads spinning)."""
    after()
    c0 = time.process_time()
    time.sleep(sleep_s)
    return time.process_time() - c0


def measure(quick: bool = False, rounds: int = 9, idle: float | None = None) -> dict[str, Any]:
    if idle is None:
        idle = 0.01 if quick else 0.3
    spin_sleep = 0.01 if quick else 0.2
    rng = np.random.default_rng(11)
    n1, p1, n5, p5, m = (2000, 128, 1000, 64, 256) if quick else (10000, 1024, 5000, 512, 1024)
    x1 = rng.standard_normal((n1, p1), dtype=np.float32)
    y1 = x1 @ rng.standard_normal((p1, p1), dtype=np.float32) + rng.standard_normal((n1, p1), dtype=np.float32)
    x5 = rng.standard_normal((n5, p5), dtype=np.float32)
    y5 = x5 @ rng.standard_normal((p5, p5), dtype=np.float32) + rng.standard_normal((n5, p5), dtype=np.float32)
    a = rng.standard_normal((m, m), dtype=np.float32)
    calls: dict[str, Callable[[], Any]] = {
        "reprsim cka": lambda: reprsim.cka(x1, y1),
        "reprsim procrustes": lambda: reprsim.procrustes_distance(x5, y5),
        "numpy matmul": lambda: a @ a,
    }
    try:
        import torch

        ta = torch.from_numpy(a.copy())
        calls["torch matmul"] = lambda: ta @ ta
    except ImportError:  # pragma: no cover - torch is optional
        torch = None
    conditions: list[tuple[str, str | None]] = []
    for call in ("reprsim cka", "reprsim procrustes"):
        conditions += [(call, None), (call, "numpy matmul")]
        if "torch matmul" in calls:
            conditions.append((call, "torch matmul"))
    conditions += [("numpy matmul", None), ("numpy matmul", "reprsim cka"), ("numpy matmul", "reprsim procrustes")]
    if "torch matmul" in calls:
        conditions += [("torch matmul", None), ("torch matmul", "reprsim procrustes")]
    for f in calls.values():  # warm-up: libraries loaded, pools started
        f()
        f()
    times: dict[str, list[float]] = {f"{c} after {p}" if p else f"{c} alone": [] for c, p in conditions}
    for _ in range(rounds):
        for call, pre in conditions:
            _idle(idle)
            if pre:
                calls[pre]()
            t0 = time.perf_counter()
            calls[call]()
            times[f"{call} after {pre}" if pre else f"{call} alone"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []
    for call, pre in conditions:
        key = f"{call} after {pre}" if pre else f"{call} alone"
        rows.append({"call": call, "after": pre, "median_s": med[key], "times_s": times[key],
                     "ratio_to_alone": med[key] / med[f"{call} alone"]})
    spin = {}
    for name in calls:
        _idle(idle)
        spin[name] = statistics.median(_spin_cpu(calls[name], spin_sleep) for _ in range(3))
    info = reprsim.blas_info()
    return {"rows": rows, "spin_cpu_s_in_0.2s_sleep": spin, "spin_sleep_s": spin_sleep, "rounds": rounds, "idle_s": idle,
            "blas": {k: info[k] for k in ("library", "config", "threads")},
            "shapes": {"cka": [n1, p1], "procrustes": [n5, p5], "matmul": m},
            "torch_threads": None if torch is None else torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    print(json.dumps(measure(args.quick, args.rounds)))


if __name__ == "__main__":
    main()
