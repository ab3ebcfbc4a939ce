"""CPU throughput of reprsim against plain numpy and the installed peer packages, in one run.

    python bench/run.py                  # every workload, full size (minutes)
    python bench/run.py --quick          # tiny shapes: a smoke test of the harness
    python bench/run.py --only W1,W3 --threads 1 --repeats 7

Writes ``bench/results/<YYYY-MM-DD>-<machine>.json``, a Markdown table beside it and a PNG plot of
the ratios. See bench/README.md for the workloads, the FLOP models and how to read the output.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:
    import resource
except ImportError:  # not on Windows; the memory probe then reports no RSS peak
    resource = None  # type: ignore[assignment]

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import peers as _peers  # noqa: E402
import references as ref  # noqa: E402

import reprsim  # noqa: E402

# Agreement with reprsim's value before timing. float32 inputs: the textbook code runs its products
# and reductions in float32, so it agrees to a few 1e-5 at best; the tolerance leaves room for that
# and still catches a different definition (which differs in the second or third digit).
TOLERANCE = {"float32": 1e-3, "float64": 1e-6}


# ----------------------------------------------------------------------------------------------
# Workloads


@dataclass
class Impl:
    name: str
    kind: str  # "reprsim", "numpy" or "peer"
    run: Callable[[Any], Any]
    prepare: Callable[[dict[str, Any]], Any] = lambda d: d
    note: str = ""


@dataclass
class Workload:
    id: str
    title: str
    dtype: str
    make: Callable[[bool], dict[str, Any]]  # quick -> data
    shape: Callable[[dict[str, Any]], str]
    flops: Callable[[dict[str, Any]], tuple[float, str, str]]  # (flops, route, model text)
    impls: list[Impl]
    memory: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _pair(rng: np.random.Generator, n: int, p1: int, p2: int, dtype: type, k: int = 64) -> dict[str, Any]:
    """Two representations sharing a k-dimensional latent signal, plus noise and column offsets."""
    z = rng.standard_normal((n, k), dtype=dtype)

    def one(p: int) -> np.ndarray:
        a = z @ rng.standard_normal((k, p), dtype=dtype)
        a += rng.standard_normal((n, p), dtype=dtype)
        a += rng.standard_normal(p, dtype=dtype)  # a mean to remove
        return a

    return {"x": one(p1), "y": one(p2)}


def _layers(rng: np.random.Generator, n: int, p: int, layers: int, dtype: type, k: int = 64) -> dict[str, Any]:
    """Two 'models' of `layers` layers each: a latent drifting through depth, read out with noise."""
    z = rng.standard_normal((n, k), dtype=dtype)

    def model() -> list[np.ndarray]:
        a = rng.standard_normal((k, p), dtype=dtype)
        out = []
        for _ in range(layers):
            a = a + 0.5 * rng.standard_normal((k, p), dtype=dtype)
            h = z @ a
            h += rng.standard_normal((n, p), dtype=dtype) * dtype(2.0)
            out.append(h)
        return out

    return {"xs": model(), "ys": model()}


def _linear_flops(n: int, p1: int, p2: int) -> tuple[float, str, str]:
    feature = n * p1**2 + n * p2**2 + 2.0 * n * p1 * p2
    gram = float(n) ** 2 * (p1 + p2)
    if feature <= gram:
        return feature, "feature", "n·p1² + n·p2² (syrk XᵀX, YᵀY) + 2·n·p1·p2 (gemm XᵀY) = 4·n·p² for p1 = p2"
    return gram, "gram", "n²·p1 + n²·p2 (syrk Grams XXᵀ, YYᵀ) = 2·n²·p for p1 = p2"


def _pair_shape(d: dict[str, Any]) -> str:
    return f"n={d['x'].shape[0]}, p1={d['x'].shape[1]}, p2={d['y'].shape[1]}, {d['x'].dtype}"


def _pair_flops(d: dict[str, Any]) -> tuple[float, str, str]:
    n, p1 = d["x"].shape
    return _linear_flops(n, p1, d["y"].shape[1])


def _w3_flops(d: dict[str, Any]) -> tuple[float, str, str]:
    n, p = d["xs"][0].shape
    k1, k2 = len(d["xs"]), len(d["ys"])
    feature = (k1 + k2) * n * p**2 + k1 * k2 * 2.0 * n * p * p
    gram = (k1 + k2) * float(n) ** 2 * p + k1 * k2 * float(n) ** 2
    if feature <= gram:
        return feature, "feature", "(k1+k2)·n·p² (one syrk per layer) + k1·k2·2·n·p² (one gemm per pair)"
    return gram, "gram", ("(k1+k2)·n²·p (one syrk Gram per layer) + k1·k2·n² (one inner product of packed "
                          "upper triangles per pair)")


def _w4_flops(d: dict[str, Any]) -> tuple[float, str, str]:
    n, p1 = d["x"].shape
    p2 = d["y"].shape[1]
    return (
        n * p1**2 + n * p2**2 + 2.0 * n * p1 * p2,
        "qr",
        "n·p1² + n·p2² + 2·n·p1·p2: the cross-products XᵀX, YᵀY, XᵀY that determine the canonical "
        "correlations, counted once for both values; the O(p³) factorisations are not counted",
    )


def _w5_flops(d: dict[str, Any]) -> tuple[float, str, str]:
    n, p1 = d["x"].shape
    p2 = d["y"].shape[1]
    return 2.0 * n * p1 * p2, "feature", "2·n·p1·p2 (gemm XᵀY); the SVD of the p1×p2 product is not counted"


def _matrix_shape(d: dict[str, Any]) -> str:
    n, p = d["xs"][0].shape
    return f"{len(d['xs'])}×{len(d['ys'])} layers, n={n}, p={p}, {d['xs'][0].dtype}"


def _size(quick: bool, full: tuple[int, ...], small: tuple[int, ...]) -> tuple[int, ...]:
    return small if quick else full


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def workloads() -> list[Workload]:
    def cka(d: dict[str, Any]) -> float:
        return reprsim.cka(d["x"], d["y"])

    def cka_debiased(d: dict[str, Any]) -> float:
        return reprsim.cka(d["x"], d["y"], debiased=True)

    def cka_matrix(d: dict[str, Any]) -> np.ndarray:
        return reprsim.pairwise(d["xs"], d["ys"], metric="cka")

    def cca_pair(d: dict[str, Any]) -> tuple[float, float]:
        s = reprsim.cca_summary(d["x"], d["y"])
        return s.pwcca, s.mean_cca

    def cca_pair_two_calls(d: dict[str, Any]) -> tuple[float, float]:
        return reprsim.pwcca(d["x"], d["y"]), reprsim.mean_cca(d["x"], d["y"])

    def procrustes(d: dict[str, Any]) -> float:
        return reprsim.procrustes_distance(d["x"], d["y"])

    linear = [
        Impl("numpy (feature space)", "numpy", lambda d: ref.cka_feature(d["x"], d["y"]),
             note="centre, then XᵀY, XᵀX, YᵀY"),
        Impl("numpy (Gram space)", "numpy", lambda d: ref.cka_gram(d["x"], d["y"]),
             note="centre, then XcXcᵀ, YcYcᵀ"),
    ]
    debiased = [
        Impl("numpy (feature space)", "numpy", lambda d: ref.debiased_cka_feature(d["x"], d["y"]),
             note="U-statistic from XᵀY, XᵀX, YᵀY and row norms"),
        Impl("numpy (Gram space)", "numpy", lambda d: ref.debiased_cka_gram(d["x"], d["y"]),
             note="centre, then Song et al.'s estimator on XcXcᵀ, YcYcᵀ"),
    ]

    def pair_make(seed: int, full: tuple[int, int], small: tuple[int, int], dtype: type) -> Callable[[bool], dict]:
        def make(quick: bool) -> dict[str, Any]:
            n, p = _size(quick, full, small)
            return _pair(_rng(seed), n, p, p, dtype)

        return make

    return [
        Workload("W1", "linear CKA", "float32", pair_make(1, (10000, 1024), (400, 48), np.float32),
                 _pair_shape, _pair_flops, [Impl("reprsim", "reprsim", cka), *linear], memory=True),
        Workload("W2", "linear CKA, widths > n", "float32", pair_make(2, (2000, 4096), (120, 300), np.float32),
                 _pair_shape, _pair_flops, [Impl("reprsim", "reprsim", cka), *linear]),
        Workload("W3", "12 × 12 layer-by-layer linear-CKA matrix", "float32",
                 lambda quick: _layers(_rng(3), *_size(quick, (5000, 768, 12), (300, 32, 3)), np.float32),
                 _matrix_shape, _w3_flops,
                 [Impl("reprsim", "reprsim", cka_matrix, note="pairwise(): one factor per layer"),
                  Impl("numpy per-pair loop", "numpy", lambda d: ref.cka_matrix_loop(d["xs"], d["ys"]),
                       note="cka_feature for each of the k1·k2 pairs")],
                 memory=True),
        Workload("W4", "PWCCA and mean CCA", "float64", pair_make(4, (5000, 512), (400, 24), np.float64),
                 _pair_shape, _w4_flops,
                 [Impl("reprsim", "reprsim", cca_pair, note="cca_summary(): one factorisation per input"),
                  Impl("reprsim, two calls", "reprsim", cca_pair_two_calls, note="pwcca() + mean_cca()"),
                  Impl("numpy (eigen-whitening, sim_metric style)", "numpy",
                       lambda d: (ref.pwcca_eig(d["x"], d["y"]), ref.mean_cca_eig(d["x"], d["y"])),
                       note="two calls, each whitening with eigh of the covariances"),
                  Impl("numpy (Householder QR)", "numpy",
                       lambda d: (ref.pwcca_qr(d["x"], d["y"]), ref.mean_cca_qr(d["x"], d["y"])),
                       note="two calls, each with numpy.linalg.qr of both inputs")]),
        Workload("W5", "Procrustes distance", "float32", pair_make(5, (5000, 512), (400, 24), np.float32),
                 _pair_shape, _w5_flops,
                 [Impl("reprsim", "reprsim", procrustes),
                  Impl("numpy (SVD of XᵀY)", "numpy", lambda d: ref.procrustes_distance(d["x"], d["y"]))]),
        Workload("W6", "debiased linear CKA", "float32", pair_make(6, (10000, 1024), (400, 48), np.float32),
                 _pair_shape, _pair_flops, [Impl("reprsim", "reprsim", cka_debiased), *debiased]),
    ]


def reprsim_route(wid: str, data: dict[str, Any]) -> str | None:
    """The space reprsim's dispatcher picks for a linear-CKA workload's shape (None elsewhere)."""
    choose = getattr(reprsim._core, "choose_space", None)
    if choose is None or wid not in ("W1", "W2", "W3", "W6"):
        return None
    if wid == "W3":
        n, p = data["xs"][0].shape
        try:
            return choose(n, p, p, data["xs"][0].itemsize, k1=len(data["xs"]), k2=len(data["ys"]))
        except TypeError:  # a dispatcher that does not weigh the number of factors
            return None
    n, p1 = data["x"].shape
    return choose(n, p1, data["y"].shape[1], data["x"].itemsize)


def with_peers(wl: Workload, peer_info: dict[str, dict[str, Any]]) -> list[Impl]:
    impls = list(wl.impls)
    for peer in _peers.PEERS:
        info = peer_info.get(peer.name)
        if info is None or not info["imported"] or wl.id not in peer.workloads:
            continue
        prepare, run = peer.workloads[wl.id]
        impls.append(Impl(peer.name, "peer", run, prepare))
    return impls


def load_peers(enabled: bool, only: str | None = None) -> dict[str, dict[str, Any]]:
    info: dict[str, dict[str, Any]] = {}
    for peer in _peers.PEERS:
        if not enabled or (only is not None and peer.name != only):
            info[peer.name] = {"imported": False, "reason": "peers disabled (--no-peers)"}
            continue
        mod, ver, reason = peer.load()
        info[peer.name] = {"imported": mod is not None, "version": ver, "reason": reason,
                           "not_offered": dict(peer.not_offered),
                           "workloads": sorted(peer.workloads)}
    return info


# ----------------------------------------------------------------------------------------------
# Machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_tag() -> str:
    host = socket.gethostname().split(".")[0]
    cpu = re.sub(r"\((r|tm)\)|cpu|processor|@.*$", "", cpu_model(), flags=re.I)
    words = [w for w in re.split(r"[^a-z0-9]+", cpu.lower()) if w][:3]
    tag = "-".join([host, *words, f"{os.cpu_count()}c"])
    return re.sub(r"[^a-z0-9-]", "", tag.lower())


def set_threads(k: int) -> dict[str, Any]:
    """One thread count for reprsim's BLAS, numpy's BLAS (threadpoolctl) and torch."""
    reprsim.set_num_threads(k)
    out: dict[str, Any] = {"requested": k, "reprsim": reprsim.get_num_threads()}
    try:
        import threadpoolctl

        global _LIMITS  # keep the limit in force for the whole run
        _LIMITS = threadpoolctl.threadpool_limits(limits=k)
        out["threadpoolctl"] = [
            {"library": i.get("prefix"), "api": i.get("internal_api"), "threads": i.get("num_threads"),
             "version": i.get("version"), "arch": i.get("architecture")}
            for i in threadpoolctl.threadpool_info()
        ]
    except ImportError:
        out["threadpoolctl"] = "not installed: numpy's BLAS threads not limited"
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(k)
        out["torch"] = torch.get_num_threads()
    return out


_LIMITS: Any = None


def gemm_peak(dtype: type, size: int, repeats: int) -> float:
    """Best GFLOP/s of numpy's matmul of two size×size matrices."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=dtype)
    b = rng.standard_normal((size, size), dtype=dtype)
    a @ b  # warm-up: threads started, pages touched
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best / 1e9


# ----------------------------------------------------------------------------------------------
# Timing and the correctness gate


def _diff(value: Any, reference: Any) -> float:
    a = np.asarray(value, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def _jsonable(value: Any) -> Any:
    arr = np.asarray(value, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else arr.tolist()


def measure(impl: Impl, data: dict[str, Any], repeats: int, budget_s: float) -> tuple[dict[str, Any], Any]:
    """Run once (warm-up; its value goes to the correctness gate), then time. reprsim always gets
    `repeats` timed runs; the others stop early once `budget_s` is spent (at least one timed run,
    or only the first call's time when that call alone exceeded the budget)."""
    rec: dict[str, Any] = {"kind": impl.kind, "note": impl.note}
    try:
        state = impl.prepare(data)
        gc.collect()
        t0 = time.perf_counter()
        value = impl.run(state)
        first = time.perf_counter() - t0
    except Exception as exc:  # a peer failing on this input is a result to report, not a crash
        rec.update(status="error", error=f"{type(exc).__name__}: {exc}"[:300])
        return rec, None
    rec["value"] = _jsonable(value)
    times: list[float] = []
    if impl.kind != "reprsim" and first > budget_s:
        times = [first]
        rec["timing"] = "first call only (over the time budget)"
    else:
        spent = first
        while len(times) < repeats:
            gc.collect()
            t0 = time.perf_counter()
            impl.run(state)
            times.append(time.perf_counter() - t0)
            spent += times[-1]
            if impl.kind != "reprsim" and spent > budget_s:
                break
        rec["timing"] = f"median of {len(times)}"
    rec["times_s"] = times
    rec["median_s"] = statistics.median(times)
    return rec, value


def measure_in_subprocess(wid: str, impl: Impl, args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """`measure` in a fresh process, stopped after `args.timeout` seconds.

    A process of its own per implementation: a slow peer can be stopped (its C++ or torch code
    cannot be interrupted in-process), and its thread pools and allocations do not linger into the
    next measurement. The data are regenerated there from the same seed.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--impl-probe", f"{wid}:{impl.name}",
           "--threads", str(args.threads), "--repeats", str(args.repeats), "--budget", str(args.budget)]
    if args.quick:
        cmd.append("--quick")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"kind": impl.kind, "note": impl.note, "status": "timeout",
                "error": f"did not finish within {args.timeout:g} s", "lower_bound_s": args.timeout}, None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"kind": impl.kind, "note": impl.note, "status": "error", "error": tail[:300]}, None
    rec = json.loads(lines[-1])
    return rec, rec.get("value")


def impl_probe(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    wid, name = spec.split(":", 1)
    wl = next(w for w in workloads() if w.id == wid)
    peer_info = load_peers(name not in {i.name for i in wl.impls}, only=name)
    impl = next(i for i in with_peers(wl, peer_info) if i.name == name)
    set_threads(args.threads)
    rec, _ = measure(impl, wl.make(args.quick), args.repeats, args.budget)
    return rec


def gate(rec: dict[str, Any], value: Any, reference: Any, tol: float) -> None:
    """Compare an implementation's value with reprsim's; the verdict goes into `rec`."""
    if value is None:
        return
    if reference is None:  # reprsim itself
        finite = np.all(np.isfinite(np.asarray(value, dtype=np.float64)))
        rec["status"] = "ok" if finite else "non-finite"
        return
    rec["abs_diff"] = _diff(value, reference)
    rec["status"] = "ok" if rec["abs_diff"] <= tol else "mismatch"


# ----------------------------------------------------------------------------------------------
# Peak memory, one subprocess per (workload, implementation)


def _status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (Linux), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    """RSS high-water mark of this process.

    VmHWM where the kernel reports it: it belongs to this process's address space, so the reset
    through /proc/self/clear_refs applies to it. getrusage's ru_maxrss also keeps the largest RSS
    the process had before exec — the parent's size after a fork — so it is only the fallback.
    """
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    if resource is None:
        return float("nan")
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def memory_probe(spec: str, quick: bool, threads: int) -> dict[str, Any]:
    """Run one implementation once in this (fresh) process and report its peak memory."""
    wid, name = spec.split(":", 1)
    wl = next(w for w in workloads() if w.id == wid)
    peer_info = load_peers(name not in {i.name for i in wl.impls}, only=name)
    impl = next(i for i in with_peers(wl, peer_info) if i.name == name)
    set_threads(threads)
    # Warm-up on the tiny shapes: libraries loaded, thread pools started, but no buffer of the
    # measured size left in the allocator's free lists to be reused.
    impl.run(impl.prepare(wl.make(True)))
    data = wl.make(quick)
    state = impl.prepare(data)
    gc.collect()
    base = _status_mb("VmRSS")
    reset = False
    try:  # Linux: reset the RSS high-water mark so that it measures this call only
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        pass
    tracemalloc.start()
    impl.run(state)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = _peak_rss_mb()
    return {"impl": name, "rss_before_mb": base, "peak_rss_mb": peak,
            "peak_rss_above_start_mb": (peak - base) if (reset and base is not None) else None,
            "hwm_reset": reset, "tracemalloc_peak_mb": traced_peak / 2**20}


def run_memory(wid: str, names: list[str], quick: bool, threads: int, timeout: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-probe", f"{wid}:{name}",
               "--threads", str(threads)] + (["--quick"] if quick else [])
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            out[name] = {"error": f"did not finish within {timeout:g} s"}
            continue
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            out[name] = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
        else:
            out[name] = json.loads(lines[-1])
    return out


# ----------------------------------------------------------------------------------------------
# Accuracy of the CCA routes on ill-conditioned inputs


def cca_accuracy(quick: bool, cond: float = 1e6) -> dict[str, Any]:
    """Canonical correlations and PWCCA known by construction, on inputs of condition number `cond`.

    Ux, Uy are orthonormal, centred, with UxᵀUy = diag(ρ); X = Ux·diag(σx)·Vxᵀ and Y likewise, σ
    log-spaced over [1/cond, 1]. The canonical correlations of (X, Y) are exactly ρ, x's canonical
    variates are the columns of Ux, so ⟨hᵢ, xⱼ⟩ = σᵢ·Vx[j, i] and PWCCA = Σ αᵢρᵢ / Σ αᵢ with
    αᵢ = σᵢ·Σⱼ |Vx[j, i]|.
    """
    n, p = (300, 12) if quick else (2000, 64)
    rng = np.random.default_rng(7)
    m = rng.standard_normal((n, 2 * p))
    m -= m.mean(axis=0)
    q, _ = np.linalg.qr(m)
    a, b = q[:, :p], q[:, p:]
    rho = np.linspace(0.99, 0.05, p)
    ux = a
    uy = a * rho + b * np.sqrt(1.0 - rho**2)
    sigma = np.logspace(0.0, -math.log10(cond), p)
    vx, _ = np.linalg.qr(rng.standard_normal((p, p)))
    vy, _ = np.linalg.qr(rng.standard_normal((p, p)))
    x = (ux * sigma) @ vx.T
    y = (uy * sigma) @ vy.T
    alpha = sigma * np.abs(vx).sum(axis=0)
    true_pw = float(alpha @ rho / alpha.sum())
    true_mean = float(rho.mean())

    routes: dict[str, Callable[[], tuple[np.ndarray, float, float]]] = {
        "reprsim": lambda: (reprsim.canonical_correlations(x, y), reprsim.pwcca(x, y), reprsim.mean_cca(x, y)),
        "numpy (eigen-whitening, sim_metric style)": lambda: (
            ref._cca_eig(x, y)[0], ref.pwcca_eig(x, y), ref.mean_cca_eig(x, y)),
        "numpy (Householder QR)": lambda: (
            ref.canonical_correlations_qr(x, y), ref.pwcca_qr(x, y), ref.mean_cca_qr(x, y)),
    }
    out: dict[str, Any] = {"n": n, "p": p, "cond_x": float(np.linalg.cond(x)), "cond_y": float(np.linalg.cond(y)),
                           "true_mean_cca": true_mean, "true_pwcca": true_pw, "routes": {}}
    for name, fn in routes.items():
        try:
            r, pw, mean = fn()
            r = np.sort(np.asarray(r))[::-1]
            err_rho = float(np.max(np.abs(r - rho))) if r.shape == rho.shape else math.inf
            out["routes"][name] = {"max_abs_err_rho": err_rho, "abs_err_mean_cca": abs(mean - true_mean),
                                   "abs_err_pwcca": abs(pw - true_pw), "n_rho": int(r.size)}
        except Exception as exc:
            out["routes"][name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return out


# ----------------------------------------------------------------------------------------------
# Targets (from the performance goals; measured, never asserted)


def targets(wid: str, w: dict[str, Any], peak: float) -> list[dict[str, Any]]:
    impls = w["impls"]
    t_r = impls["reprsim"].get("median_s")
    if t_r is None:
        return []

    def fastest(kinds: tuple[str, ...]) -> tuple[str | None, float | None]:
        cand = [(v["median_s"], k) for k, v in impls.items()
                if v.get("kind") in kinds and v.get("status") == "ok" and "median_s" in v]
        if not cand:
            return None, None
        t, k = min(cand)
        return k, t

    out = []

    def add(name: str, required: float, measured: float | None, against: str | None) -> None:
        out.append({"target": name, "required": required, "measured": measured, "against": against,
                    "met": None if measured is None else bool(measured >= required)})

    frac = w["reprsim_gflops"] / peak
    if wid in ("W1", "W2", "W6"):
        add("fraction of numpy GEMM peak", 0.85, frac, None)
        k, t = fastest(("numpy", "peer"))
        add("speed vs fastest other implementation", 1.0, None if t is None else t / t_r, k)
    elif wid == "W3":
        add("fraction of numpy GEMM peak", 0.7, frac, None)
        k, t = fastest(("peer",))
        add("speed vs fastest peer", 1.5, None if t is None else t / t_r, k)
        k, t = fastest(("numpy",))
        add("speed vs numpy per-pair loop", 5.0, None if t is None else t / t_r, k)
    elif wid == "W4":
        name = "numpy (eigen-whitening, sim_metric style)"
        v = impls.get(name, {})
        add("speed vs eigen-whitening numpy reference", 4.0,
            v["median_s"] / t_r if v.get("status") == "ok" else None, name)
    elif wid == "W5":
        k, t = fastest(("peer",))
        add("speed vs fastest peer", 1.5, None if t is None else t / t_r, k)
    return out


# ----------------------------------------------------------------------------------------------
# Output


def _fmt_s(t: float | None) -> str:
    if t is None:
        return "—"
    return f"{t * 1e3:.1f} ms" if t < 1.0 else f"{t:.2f} s"


def _fmt_x(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}×"


def markdown(res: dict[str, Any]) -> str:
    meta, peak = res["meta"], res["gemm_peak_gflops"]
    lines = [
        f"# reprsim benchmark — {meta['date']} — {meta['machine']}",
        "",
        f"{'**Quick mode (tiny shapes): a smoke test of the harness, not a measurement.**' if meta['quick'] else ''}",
        f"**{meta['note']}**" if meta.get("note") else "",
        "",
        f"CPU: {meta['cpu']} ({meta['cpu_count']} logical cores), threads: {meta['threads']['requested']}, "
        f"repeats: {meta['repeats']} (median). reprsim {meta['versions']['reprsim']}, numpy "
        f"{meta['versions']['numpy']}, Python {meta['versions']['python']}.",
        f"numpy GEMM peak in this run: float32 {peak['float32']:.1f} GFLOP/s, float64 {peak['float64']:.1f} GFLOP/s "
        f"(best {meta['gemm']['size']}² matmul; start/end: f32 {peak['start']['float32']:.1f}/"
        f"{peak['end']['float32']:.1f}, f64 {peak['start']['float64']:.1f}/{peak['end']['float64']:.1f}).",
        "",
        "Ratios are times of the other implementation divided by reprsim's (> 1: reprsim is faster).",
        "",
        "| id | workload | cheaper route | reprsim | GFLOP/s | of peak | fastest numpy | × numpy | fastest peer | × peer |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for wid, w in res["workloads"].items():
        r = w["impls"]["reprsim"]
        ok = [(v["median_s"], k, v["kind"]) for k, v in w["impls"].items()
              if k != "reprsim" and v.get("status") == "ok" and "median_s" in v]
        bn = min([o for o in ok if o[2] == "numpy"], default=None)
        bp = min([o for o in ok if o[2] == "peer"], default=None)
        t_r = r.get("median_s")
        route = w["route"]
        if w.get("reprsim_route") not in (None, route):
            route += f" (reprsim chose {w['reprsim_route']})"
        lines.append(
            f"| {wid} | {w['title']} ({w['shape']}) | {route} | {_fmt_s(t_r)} | {w.get('reprsim_gflops', 0):.1f} | "
            f"{w.get('fraction_of_peak', 0):.2f} | {'—' if bn is None else f'{_fmt_s(bn[0])} ({bn[1]})'} | "
            f"{_fmt_x(None if bn is None or not t_r else bn[0] / t_r)} | "
            f"{'—' if bp is None else f'{_fmt_s(bp[0])} ({bp[1]})'} | "
            f"{_fmt_x(None if bp is None or not t_r else bp[0] / t_r)} |")
    caveat = " (quick mode: the shapes are too small for these to mean anything)" if meta["quick"] else ""
    lines += ["", f"## Targets{caveat}", "", "| id | target | required | measured | against | met |", "|---|---|---|---|---|---|"]
    for wid, w in res["workloads"].items():
        for t in w["targets"]:
            m = "—" if t["measured"] is None else f"{t['measured']:.2f}"
            met = "n/a (nothing to compare)" if t["met"] is None else ("yes" if t["met"] else "**no**")
            lines.append(f"| {wid} | {t['target']} | ≥ {t['required']} | {m} | {t['against'] or ''} | {met} |")
    lines += ["", "## Every implementation", "",
              "| id | implementation | status | |value − reprsim| | time | timing | × (time / reprsim) |",
              "|---|---|---|---|---|---|---|"]
    for wid, w in res["workloads"].items():
        t_r = w["impls"]["reprsim"].get("median_s")
        for name, v in w["impls"].items():
            status = v.get("status", "")
            if status in ("error", "timeout"):
                status = f"{status}: {v.get('error', '')}"
            diff = v.get("abs_diff")
            ratio = v["median_s"] / t_r if ("median_s" in v and t_r) else None
            shown = _fmt_s(v.get("median_s")) if "lower_bound_s" not in v else f"> {v['lower_bound_s']:g} s"
            lines.append(f"| {wid} | {name} | {status} | {'' if diff is None else f'{diff:.1e}'} | "
                         f"{shown} | {v.get('timing', '')} | "
                         f"{'' if name == 'reprsim' else _fmt_x(ratio)} |")
    lines += ["", "## FLOP models (reprsim's effective GFLOP/s = model FLOPs / median time)", ""]
    for wid, w in res["workloads"].items():
        lines.append(f"- {wid} ({w['route']}): {w['flop_model']} = {w['flops']:.3g} FLOP")
    if any(w.get("memory") for w in res["workloads"].values()):
        lines += ["", "## Peak memory (one subprocess per implementation, one call)", "",
                  "| id | implementation | RSS before the call | peak RSS | peak − RSS before | tracemalloc peak |",
                  "|---|---|---|---|---|---|"]
        for wid, w in res["workloads"].items():
            for name, m in (w.get("memory") or {}).items():
                if "error" in m:
                    lines.append(f"| {wid} | {name} | error: {m['error']} | | | |")
                    continue
                mb = [m.get("rss_before_mb"), m.get("peak_rss_mb"), m.get("peak_rss_above_start_mb"),
                      m.get("tracemalloc_peak_mb")]
                cells = " | ".join("—" if v is None else f"{v:.1f} MB" for v in mb)
                lines.append(f"| {wid} | {name} | {cells} |")
        lines += ["", "tracemalloc sees Python and numpy allocations only; reprsim's C++ buffers and torch's "
                      "show in the RSS columns."]
    acc = res.get("cca_accuracy")
    if acc:
        lines += ["", f"## CCA accuracy on ill-conditioned inputs (n={acc['n']}, p={acc['p']}, "
                      f"cond(x) = {acc['cond_x']:.1e}, cond(y) = {acc['cond_y']:.1e})", "",
                  "Exact values known by construction (see bench/README.md).", "",
                  "| route | max abs error ρ | abs error mean CCA | abs error PWCCA |", "|---|---|---|---|"]
        for name, v in acc["routes"].items():
            if "error" in v:
                lines.append(f"| {name} | error: {v['error']} | | |")
            else:
                lines.append(f"| {name} | {v['max_abs_err_rho']:.1e} | {v['abs_err_mean_cca']:.1e} | "
                             f"{v['abs_err_pwcca']:.1e} |")
    lines += ["", "## Peers", "", "| package | version | status |", "|---|---|---|"]
    for name, p in res["peers"].items():
        if p.get("imported"):
            status = "timed on " + ", ".join(p["workloads"])
            if p.get("not_offered"):
                status += "; not on " + "; ".join(f"{k} ({v})" for k, v in sorted(p["not_offered"].items()))
        else:
            status = f"skipped: {p.get('reason')}"
        lines.append(f"| {name} | {p.get('version') or '—'} | {status} |")
    text = "\n".join(lines) + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)


def plot(res: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib)"
    wids = list(res["workloads"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 0.55 * max(6, 3 * len(wids)) + 1.5),
                                   gridspec_kw={"width_ratios": [3, 1]})
    labels, ratios, colors = [], [], []
    palette = {"numpy": "#4c72b0", "peer": "#dd8452"}
    for wid in wids:
        w = res["workloads"][wid]
        t_r = w["impls"]["reprsim"].get("median_s")
        for name, v in w["impls"].items():
            if name == "reprsim" or "median_s" not in v or not t_r:
                continue
            flag = "" if v.get("status") == "ok" else " [value differs]"
            labels.append(f"{wid}: {name}{flag}")
            ratios.append(v["median_s"] / t_r)
            colors.append(palette.get(v["kind"], "grey"))
    y = np.arange(len(labels))[::-1]
    ax1.barh(y, ratios, color=colors)
    ax1.set_yticks(y, labels, fontsize=8)
    ax1.set_xscale("log")
    ax1.axvline(1.0, color="black", lw=1)
    ax1.set_xlabel("time of the implementation / time of reprsim (log; > 1: reprsim faster)")
    for yi, r in zip(y, ratios):
        ax1.text(r, yi, f" {r:.2g}×" if r < 10 else f" {r:.0f}×", va="center", fontsize=7)
    from matplotlib.patches import Patch

    ax1.legend(handles=[Patch(color=c, label=k) for k, c in palette.items()], loc="lower right", fontsize=8)
    fr = [res["workloads"][w].get("fraction_of_peak", 0.0) for w in wids]
    ax2.barh(np.arange(len(wids))[::-1], fr, color="#55a868")
    ax2.set_yticks(np.arange(len(wids))[::-1], wids)
    ax2.axvline(1.0, color="black", lw=1)
    ax2.axvline(0.85, color="grey", lw=1, ls="--")
    ax2.set_xlabel("reprsim GFLOP/s / numpy GEMM peak")
    meta = res["meta"]
    fig.suptitle(f"reprsim {meta['versions']['reprsim']} — {meta['machine']} — {meta['date']}, "
                 f"{meta['threads']['requested']} thread(s){' — QUICK (smoke test)' if meta['quick'] else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ----------------------------------------------------------------------------------------------
# Main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny shapes: a smoke test of the harness (seconds with --no-peers)")
    ap.add_argument("--only", default="", help="comma-separated workload ids, e.g. W1,W3")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads for reprsim's BLAS, numpy's BLAS (threadpoolctl) and torch (default: all cores)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of reprsim per workload; median (default 5)")
    ap.add_argument("--budget", type=float, default=60.0,
                    help="seconds after which the other implementations stop repeating (default 60)")
    ap.add_argument("--no-peers", action="store_true", help="time reprsim and numpy only")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="output folder (default bench/results)")
    ap.add_argument("--name", default=None,
                    help="file stem of the outputs (default <YYYY-MM-DD>-<machine>, prefixed 'quick-' with --quick)")
    ap.add_argument("--note", default="", help="a line printed at the top of the table (e.g. 'busy machine')")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds after which an implementation other than reprsim is stopped (default 600)")
    ap.add_argument("--in-process", action="store_true",
                    help="time every implementation in this process (no subprocess, no --timeout)")
    ap.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--impl-probe", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, args.quick, args.threads)))
        return 0
    if args.impl_probe:
        print(json.dumps(impl_probe(args.impl_probe, args)))
        return 0
    if args.threads < 1 or args.repeats < 1:
        ap.error("--threads and --repeats must be at least 1")

    all_wl = workloads()
    wanted = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(wanted) - {w.id for w in all_wl})
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; choose from {[w.id for w in all_wl]}")
    selected = [w for w in all_wl if not wanted or w.id in wanted]

    peer_info = load_peers(not args.no_peers)
    threads = set_threads(args.threads)  # after the peers, so that torch's threads are set too

    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    machine = machine_tag()
    gemm_size, gemm_rep = (512, 3) if args.quick else (4096, 5)
    print(f"reprsim {reprsim.__version__} on {machine}, {args.threads} thread(s)", flush=True)
    start = {dt.__name__: gemm_peak(dt, gemm_size, gemm_rep) for dt in (np.float32, np.float64)}
    print(f"numpy GEMM peak: float32 {start['float32']:.1f}, float64 {start['float64']:.1f} GFLOP/s", flush=True)

    res: dict[str, Any] = {
        "meta": {
            "date": date, "machine": machine, "hostname": socket.gethostname(), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "quick": args.quick,
            "repeats": args.repeats, "budget_s": args.budget, "threads": threads,
            "tolerance": TOLERANCE, "gemm": {"size": gemm_size, "repeats": gemm_rep},
            "versions": {"reprsim": reprsim.__version__, "numpy": np.__version__,
                         "python": platform.python_version()},
            "note": args.note,
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        },
        "peers": peer_info,
        "workloads": {},
    }
    if "torch" in sys.modules:
        res["meta"]["versions"]["torch"] = sys.modules["torch"].__version__

    for wl in selected:
        data = wl.make(args.quick)
        flops, route, model = wl.flops(data)
        w: dict[str, Any] = {"title": wl.title, "shape": wl.shape(data), "dtype": wl.dtype, "flops": flops,
                             "route": route, "flop_model": model, "impls": {}}
        w["reprsim_route"] = reprsim_route(wl.id, data)
        print(f"{wl.id} {wl.title}: {w['shape']}", flush=True)
        reference = None
        for impl in with_peers(wl, peer_info):
            if impl.kind == "reprsim" or args.in_process:
                rec, value = measure(impl, data, args.repeats, args.budget)
            else:
                rec, value = measure_in_subprocess(wl.id, impl, args)
            gate(rec, value, reference, TOLERANCE[wl.dtype])
            if impl.kind == "reprsim":
                if value is None or rec["status"] != "ok":
                    raise RuntimeError(f"reprsim failed on {wl.id}: {rec.get('error', rec.get('status'))}")
                reference = value
            w["impls"][impl.name] = rec
            extra = f", |Δ| = {rec['abs_diff']:.1e}" if "abs_diff" in rec else ""
            print(f"  {impl.name:45s} {rec['status']:9s} {_fmt_s(rec.get('median_s'))}{extra}"
                  f"{'  ' + rec['error'] if 'error' in rec else ''}", flush=True)
        for peer in _peers.PEERS:
            why = peer.not_offered.get(wl.id)
            if why and peer_info[peer.name].get("imported"):
                w["impls"].setdefault(peer.name, {"kind": "peer", "status": f"not offered: {why}"})
        t_r = w["impls"]["reprsim"]["median_s"]
        w["reprsim_gflops"] = flops / t_r / 1e9
        w["fraction_of_peak"] = w["reprsim_gflops"] / start[wl.dtype]
        w["ratios"] = {k: v["median_s"] / t_r for k, v in w["impls"].items() if k != "reprsim" and "median_s" in v}
        res["workloads"][wl.id] = w
        if wl.memory and not args.no_memory:
            names = [k for k, v in w["impls"].items() if v.get("status") in ("ok", "mismatch")]
            w["memory"] = run_memory(wl.id, names, args.quick, args.threads, args.timeout)
        del data
        gc.collect()

    if not wanted or "W4" in wanted:
        res["cca_accuracy"] = cca_accuracy(args.quick)

    end = {dt.__name__: gemm_peak(dt, gemm_size, gemm_rep) for dt in (np.float32, np.float64)}
    peak = {k: max(start[k], end[k]) for k in start}
    res["gemm_peak_gflops"] = {**peak, "start": start, "end": end}
    for wid, w in res["workloads"].items():
        w["fraction_of_peak"] = w["reprsim_gflops"] / peak[w["dtype"]]
        w["targets"] = targets(wid, w, peak[w["dtype"]])

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.name or (("quick-" if args.quick else "") + f"{date}-{machine}")
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=1, allow_nan=True) + "\n")
    table = markdown(res)
    (args.out / f"{stem}.md").write_text(table)
    problem = plot(res, args.out / f"{stem}.png")
    if problem:
        print(problem)
    elif not args.quick and args.out.resolve() == (HERE / "results").resolve() and not wanted:
        shutil.copyfile(args.out / f"{stem}.png", args.out / "latest.png")
        shutil.copyfile(args.out / f"{stem}.md", args.out / "latest.md")
    print()
    print(table)
    print(f"wrote {args.out / stem}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
