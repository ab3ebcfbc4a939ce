"""CPU time of reprsim against the fastest formulations a user could run instead, in one interleaved run.

    python bench/run.py                        # every workload at full size
    python bench/run.py --quick --no-peers     # tiny shapes: a few-second smoke test of the harness
    python bench/run.py --only W1,W3 --rounds 9

Every candidate of a workload is called in turn, round-robin (the order rotated each round), and its
median over the rounds is reported, so that all candidates see the same machine load; each
candidate's value is compared with a float64 reference written from the definition (plain numpy,
never timed), and the machine's float32/float64 GEMM peak is measured at the start and the end. A
mixed-use row runs reprsim calls right after numpy and torch matmuls (and numpy after reprsim), in a
fresh process per BLAS setup. Writes ``bench/results/<YYYY-MM-DD>-<machine>.json`` and a Markdown
table beside it (and a PNG plot when matplotlib is installed). See bench/README.md.
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

import mixed as _mixed  # noqa: E402
import peers as _peers  # noqa: E402
import references as ref  # noqa: E402

import reprsim  # noqa: E402

# A candidate agrees with the float64 reference when its value is within this (absolute) of it. float32
# inputs: products in float32 agree to ~1e-6 at best; a different definition differs in the 2nd-3rd digit.
TOLERANCE = {"float32": 1e-3, "float64": 1e-6}
WORKLOAD_IDS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"]


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
    reference: Callable[[dict[str, Any]], Any]  # float64 value every candidate is measured against
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
    return gram, "gram", "(k1+k2)·n²·p (each layer's Gram entries once) + k1·k2·n² (one inner product per pair)"


def _w4_flops(d: dict[str, Any]) -> tuple[float, str, str]:
    n, p1 = d["x"].shape
    p2 = d["y"].shape[1]
    return (n * p1**2 + n * p2**2 + 2.0 * n * p1 * p2, "qr",
            "n·p1² + n·p2² + 2·n·p1·p2: the cross-products that determine the canonical correlations, counted "
            "once for both values; the O(p³) factorisations and the SVD are not counted")


def _w5_flops(d: dict[str, Any]) -> tuple[float, str, str]:
    n, p1 = d["x"].shape
    return 2.0 * n * p1 * d["y"].shape[1], "feature", "2·n·p1·p2 (gemm XᵀY); the SVD of the product is not counted"


def _w7_flops(d: dict[str, Any]) -> tuple[float, str, str]:
    n, p1 = d["x"].shape
    return (float(n) ** 2 * (p1 + d["y"].shape[1]), "gram",
            "n²·p1 + n²·p2 (the Grams behind the distances, syrk); the O(n²) passes are not counted")


def _w8_flops(d: dict[str, Any]) -> tuple[float, str, str]:
    n, p1 = d["x"].shape
    p2, b = d["y"].shape[1], d["batch"]
    per = min(b * p1**2 + b * p2**2 + 2.0 * b * p1 * p2, float(b) ** 2 * (p1 + p2))
    return per * (n // b), "gram", "per minibatch the cheaper of 4·b·p² (feature) and 2·b²·p (Gram), times n/b"


def _matrix_shape(d: dict[str, Any]) -> str:
    n, p = d["xs"][0].shape
    return f"{len(d['xs'])}×{len(d['ys'])} layers, n={n}, p={p}, {d['xs'][0].dtype}"


def _mb_shape(d: dict[str, Any]) -> str:
    n, p1 = d["x"].shape
    return f"{n // d['batch']} minibatches of {d['batch']}, p1={p1}, p2={d['y'].shape[1]}, {d['x'].dtype}"


def _size(quick: bool, full: tuple[int, ...], small: tuple[int, ...]) -> tuple[int, ...]:
    return small if quick else full


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def workloads() -> list[Workload]:
    def pair_make(seed: int, full: tuple[int, int], small: tuple[int, int], dtype: type) -> Callable[[bool], dict]:
        def make(quick: bool) -> dict[str, Any]:
            n, p = _size(quick, full, small)
            return _pair(_rng(seed), n, p, p, dtype)

        return make

    def mb_make(quick: bool) -> dict[str, Any]:
        n, p, b = _size(quick, (10000, 1024, 1000), (400, 48, 100))
        d = _pair(_rng(8), n, p, p, np.float32)
        d["batch"] = b
        return d

    def cca_pair(d: dict[str, Any]) -> tuple[float, float]:
        s = reprsim.cca_summary(d["x"], d["y"])
        return s.pwcca, s.mean_cca

    return [
        Workload("W1", "linear CKA", "float32", pair_make(1, (10000, 1024), (400, 48), np.float32), _pair_shape,
                 _pair_flops, lambda d: ref.ref_cka(d["x"], d["y"]),
                 [Impl("reprsim", "reprsim", lambda d: reprsim.cka(d["x"], d["y"])),
                  Impl("sim_metric formula", "numpy", lambda d: ref.cka_sim_metric(d["x"], d["y"]),
                       note="transpose, centre and normalise in float32, ‖BAᵀ‖², ‖AAᵀ‖, ‖BBᵀ‖"),
                  Impl("netrep formula", "numpy", lambda d: ref.cka_netrep(d["x"], d["y"]),
                       note="centre in float32, XXᵀ, YYᵀ, float32 inner products")],
                 memory=True),
        Workload("W2", "linear CKA, widths > n", "float32", pair_make(2, (2000, 4096), (120, 300), np.float32),
                 _pair_shape, _pair_flops, lambda d: ref.ref_cka(d["x"], d["y"]),
                 [Impl("reprsim", "reprsim", lambda d: reprsim.cka(d["x"], d["y"])),
                  Impl("netrep formula", "numpy", lambda d: ref.cka_netrep(d["x"], d["y"]),
                       note="centre in float32, XXᵀ, YYᵀ, float32 inner products"),
                  Impl("sim_metric formula", "numpy", lambda d: ref.cka_sim_metric(d["x"], d["y"]),
                       note="transpose, centre and normalise in float32, ‖BAᵀ‖², ‖AAᵀ‖, ‖BBᵀ‖")]),
        Workload("W3", "12 × 12 layer-by-layer linear-CKA matrix", "float32",
                 lambda quick: _layers(_rng(3), *_size(quick, (5000, 768, 12), (300, 32, 3)), np.float32),
                 _matrix_shape, _w3_flops, lambda d: ref.ref_cka_matrix(d["xs"], d["ys"]),
                 [Impl("reprsim", "reprsim", lambda d: np.asarray(reprsim.pairwise(d["xs"], d["ys"], metric="cka")),
                       note="pairwise(): each layer centred once, Gram blocks, one product for all pairs"),
                  Impl("numpy, cached per layer", "numpy", lambda d: ref.cka_matrix_cached(d["xs"], d["ys"]),
                       note="each layer centred once, ‖XᵢᵀXᵢ‖ cached, one XᵢᵀYⱼ per pair"),
                  Impl("sim_metric formula per pair", "numpy",
                       lambda d: np.array([[ref.cka_sim_metric(a, b) for b in d["ys"]] for a in d["xs"]]),
                       note="lin_cka_dist for each of the k1·k2 pairs")],
                 memory=True),
        Workload("W4", "PWCCA and mean CCA", "float64", pair_make(4, (5000, 512), (400, 24), np.float64),
                 _pair_shape, _w4_flops, lambda d: ref.ref_cca(d["x"], d["y"]),
                 [Impl("reprsim", "reprsim", cca_pair, note="cca_summary(): one decomposition for both values"),
                  Impl("sim_metric formula", "numpy", lambda d: ref.cca_sim_metric(d["x"], d["y"]),
                       note="cca_decomp (eigen-whitening, full SVD) + pwcca_dist + mean_cca_corr"),
                  Impl("numpy Householder QR", "numpy",
                       lambda d: (ref.pwcca_qr(d["x"], d["y"]), ref.mean_cca_qr(d["x"], d["y"])),
                       note="numpy.linalg.qr of both inputs, SVD of QxᵀQy (two calls)")]),
        Workload("W5", "Procrustes distance", "float32", pair_make(5, (5000, 512), (400, 24), np.float32),
                 _pair_shape, _w5_flops, lambda d: ref.ref_procrustes(d["x"], d["y"]),
                 [Impl("reprsim", "reprsim", lambda d: reprsim.procrustes_distance(d["x"], d["y"])),
                  Impl("sim_metric formula", "numpy", lambda d: ref.procrustes_sim_metric(d["x"], d["y"]),
                       note="transpose, centre and normalise in float32, nuclear norm of the float32 product")]),
        Workload("W6", "debiased linear CKA", "float32", pair_make(6, (10000, 1024), (400, 48), np.float32),
                 _pair_shape, _pair_flops, lambda d: ref.ref_debiased_cka(d["x"], d["y"]),
                 [Impl("reprsim", "reprsim", lambda d: reprsim.cka(d["x"], d["y"], debiased=True)),
                  Impl("numpy (feature space)", "numpy", lambda d: ref.debiased_cka_feature(d["x"], d["y"]),
                       note="U-statistic from XᵀY, XᵀX, YᵀY and row norms")]),
        Workload("W7", "RBF CKA, σ² = median of all n² squared distances", "float64",
                 pair_make(7, (2000, 512), (120, 16), np.float64), _pair_shape, _w7_flops,
                 lambda d: ref.ref_rbf_cka_median_full(d["x"], d["y"]),
                 [Impl("reprsim", "reprsim",
                       lambda d: reprsim.cka(d["x"], d["y"], kernel="rbf", bandwidth="median_full")),
                  Impl("reprsim, bandwidth='median'", "reprsim-variant",
                       lambda d: reprsim.cka(d["x"], d["y"], kernel="rbf"),
                       note="median over distinct pairs (another value: not gated)"),
                  Impl("Kornblith notebook formula", "numpy", lambda d: ref.rbf_cka_kornblith(d["x"], d["y"]),
                       note="distances from the Gram, numpy median of all entries, centred Grams")]),
        Workload("W8", "minibatch CKA (debiased HSIC per minibatch)", "float32", mb_make, _mb_shape, _w8_flops,
                 lambda d: ref.ref_minibatch_cka(d["x"], d["y"], d["batch"]),
                 [Impl("reprsim", "reprsim", lambda d: reprsim.minibatch_cka(d["x"], d["y"], batch_size=d["batch"])),
                  Impl("pytorch-cka formula (numpy)", "numpy",
                       lambda d: ref.minibatch_cka_uncentred_grams(d["x"], d["y"], d["batch"]),
                       note="uncentred float32 Grams per minibatch, HSIC₁ from their sums")]),
    ]


def with_peers(wl: Workload, peer_info: dict[str, dict[str, Any]]) -> list[Impl]:
    impls = list(wl.impls)
    for peer in _peers.PEERS:
        info = peer_info.get(peer.name)
        if info is None or not info["imported"] or wl.id not in peer.workloads:
            continue
        prepare, run = peer.workloads[wl.id]
        impls.append(Impl(peer.name, "peer", run, prepare, note=peer.notes.get(wl.id, "")))
    return impls


def load_peers(enabled: bool, only: str | None = None) -> dict[str, dict[str, Any]]:
    info: dict[str, dict[str, Any]] = {}
    for peer in _peers.PEERS:
        if not enabled or (only is not None and peer.name != only):
            info[peer.name] = {"imported": False, "reason": "peers disabled (--no-peers)"}
            continue
        mod, ver, reason = peer.load()
        info[peer.name] = {"imported": mod is not None, "version": ver, "reason": reason,
                           "not_offered": dict(peer.not_offered), "workloads": sorted(peer.workloads)}
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


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


_LIMITS: Any = None


def set_threads(k: int) -> dict[str, Any]:
    """One thread count for every BLAS in the process (threadpoolctl) and torch; reprsim follows the
    library it calls (reprsim.get_num_threads)."""
    out: dict[str, Any] = {"requested": k}
    try:
        import threadpoolctl

        global _LIMITS  # keep the limit in force for the whole run
        _LIMITS = threadpoolctl.threadpool_limits(limits=k)
        out["threadpoolctl"] = [
            {"library": i.get("prefix"), "api": i.get("internal_api"), "threads": i.get("num_threads"),
             "version": i.get("version"), "arch": i.get("architecture"), "path": i.get("filepath")}
            for i in threadpoolctl.threadpool_info()
        ]
    except ImportError:
        reprsim.set_num_threads(k)
        out["threadpoolctl"] = "not installed: numpy's BLAS threads not limited"
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(k)
        out["torch"] = torch.get_num_threads()
    out["reprsim"] = reprsim.get_num_threads()
    return out


def gemm_peak(dtype: type, size: int, repeats: int) -> float:
    """Best GFLOP/s of numpy's matmul of two size×size matrices."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    a @ b  # warm-up: threads started, pages touched
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best / 1e9


# ----------------------------------------------------------------------------------------------
# Interleaved timing and accuracy


def _jsonable(value: Any) -> Any:
    arr = np.asarray(value, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else arr.tolist()


def _err(value: Any, reference: Any) -> float:
    a = np.asarray(value, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def first_call_probe(spec: str, quick: bool, threads: int) -> dict[str, Any]:
    """One call of one candidate in this (fresh) process: its time and value."""
    wid, name = spec.split(":", 1)
    wl = next(w for w in workloads() if w.id == wid)
    peer_info = load_peers(name not in {i.name for i in wl.impls}, only=name)
    impl = next(i for i in with_peers(wl, peer_info) if i.name == name)
    set_threads(threads)
    state = impl.prepare(wl.make(quick))
    t0 = time.perf_counter()
    value = impl.run(state)
    return {"first_call_s": time.perf_counter() - t0, "value": _jsonable(value)}


def time_interleaved(impls: list[Impl], data: dict[str, Any], rounds: int, budget: float,
                     log: Callable[[str], None], probe: Callable[[Impl], dict[str, Any]] | None = None
                     ) -> dict[str, dict[str, Any]]:
    """Call every candidate once (its value; warm-up), then `rounds` rounds in which every candidate
    is called once in turn, the order rotated each round. A candidate whose first call took longer
    than `budget` seconds is timed by that call alone and left out of the rounds. Peers first go
    through `probe` (one call in a fresh process, stopped after a timeout: a C++ or torch call cannot
    be stopped in this one); one that times out or takes longer than the budget there is timed by
    that call alone and never runs here."""
    recs: dict[str, dict[str, Any]] = {}
    states: dict[str, Any] = {}
    for impl in impls:
        rec: dict[str, Any] = {"kind": impl.kind, "note": impl.note}
        recs[impl.name] = rec
        if probe is not None and impl.kind == "peer":
            first = probe(impl)
            if "error" in first:
                rec.update(status="timeout" if "did not finish" in first["error"] else "error", error=first["error"])
                log(f"    {impl.name}: {first['error']}")
                continue
            if first["first_call_s"] > budget:
                rec.update(value=first["value"], first_call_s=first["first_call_s"], times_s=[first["first_call_s"]],
                           timing=f"one call in a fresh process (over the {budget:g} s budget)")
                log(f"    {impl.name}: first call {_fmt_s(first['first_call_s'])} (fresh process)")
                continue
        try:
            states[impl.name] = impl.prepare(data)
            gc.collect()
            t0 = time.perf_counter()
            value = impl.run(states[impl.name])
            first = time.perf_counter() - t0
        except Exception as exc:  # a peer failing on this input is a result to report
            rec.update(status="error", error=f"{type(exc).__name__}: {exc}"[:300])
            states.pop(impl.name, None)
            continue
        rec["value"] = _jsonable(value)
        rec["first_call_s"] = first
        rec["times_s"] = []
        if first > budget and impl.kind != "reprsim":
            rec["times_s"] = [first]
            rec["timing"] = f"one call (over the {budget:g} s budget)"
            states.pop(impl.name)
        log(f"    {impl.name}: first call {_fmt_s(first)}")
    active = [i for i in impls if i.name in states]
    for impl in active:
        recs[impl.name]["cpu_s"] = []
    for r in range(rounds):
        order = active[r % len(active):] + active[: r % len(active)] if active else []
        for impl in order:
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            impl.run(states[impl.name])
            t1, c1 = time.perf_counter(), time.process_time()
            recs[impl.name]["times_s"].append(t1 - t0)
            recs[impl.name]["cpu_s"].append(c1 - c0)
    for impl in active:
        recs[impl.name]["timing"] = f"median of {rounds} interleaved rounds"
    for rec in recs.values():
        if rec.get("times_s"):
            rec["median_s"] = statistics.median(rec["times_s"])
        if rec.get("cpu_s"):
            # CPU seconds of the whole process (every thread) during the call: the work done, which a
            # loaded machine changes less than the wall time (idle threads spinning count too).
            rec["median_cpu_s"] = statistics.median(rec["cpu_s"])
    return recs


def grade(recs: dict[str, dict[str, Any]], reference: Any, tol: float) -> None:
    for rec in recs.values():
        if "value" not in rec:
            continue
        rec["abs_err"] = _err(rec["value"], reference)
        if not np.all(np.isfinite(np.asarray(rec["value"], dtype=np.float64))):
            rec["status"] = "non-finite"
        elif rec["kind"] == "reprsim-variant":
            rec["status"] = "other value"
        else:
            rec["status"] = "ok" if rec["abs_err"] <= tol else "inaccurate"


# ----------------------------------------------------------------------------------------------
# Peak memory, one subprocess per (workload, implementation)


def _status_mb(name: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    """RSS high-water mark of this process (VmHWM, which /proc/self/clear_refs resets; getrusage as
    the fallback, which also keeps the parent's size at fork)."""
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
    impl.run(impl.prepare(wl.make(True)))  # warm-up on tiny shapes: libraries loaded, pools started
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


def _subprocess_json(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:g} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(lines[-1])


def run_memory(wid: str, names: list[str], quick: bool, threads: int, timeout: float) -> dict[str, Any]:
    return {name: _subprocess_json([sys.executable, str(Path(__file__).resolve()), "--memory-probe",
                                    f"{wid}:{name}", "--threads", str(threads)] + (["--quick"] if quick else []),
                                   timeout)
            for name in names}


# ----------------------------------------------------------------------------------------------
# Mixed use, one fresh process per BLAS setup

MIXED_SETUPS = {
    "shared": ({}, "reprsim on numpy's OpenBLAS (the default): one thread pool"),
    "own": ({"REPRSIM_BLAS": "scipy-openblas32"},
            "reprsim on its own scipy-openblas32, idle threads sleep after 2^16 cycles"),
    "own, spinning": ({"REPRSIM_BLAS": "scipy-openblas32", "OPENBLAS_THREAD_TIMEOUT": "28"},
                      "reprsim on its own scipy-openblas32 with OpenBLAS's default 2^28-cycle spin (before)"),
}


def run_mixed(quick: bool, rounds: int, threads: int, timeout: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (env_extra, note) in MIXED_SETUPS.items():
        if quick and name != "shared":
            continue
        env = dict(os.environ, **env_extra)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--mixed-probe", "--threads", str(threads),
               "--rounds", str(rounds)] + (["--quick"] if quick else [])
        res = _subprocess_json(cmd, timeout, env)
        res["note"] = note
        out[name] = res
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
        "sim_metric formula (eigen-whitening)": lambda: (ref._cca_eig(x, y)[0], *ref.cca_sim_metric(x, y)),
        "numpy Householder QR": lambda: (ref.canonical_correlations_qr(x, y), ref.pwcca_qr(x, y),
                                         ref.mean_cca_qr(x, y)),
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
# Targets (measured, never asserted)

REQUIRED = {"W1": 1.0, "W2": 1.0, "W3": 1.5, "W4": 2.0, "W5": 1.0, "W6": 1.0, "W7": 1.0, "W8": 1.0}
MIXED_MAX_RATIO = 1.15


def targets(wid: str, w: dict[str, Any]) -> list[dict[str, Any]]:
    impls = w["impls"]
    t_r = impls["reprsim"].get("median_s")
    out: list[dict[str, Any]] = []
    if t_r is None:
        return out
    others = [(v["median_s"], k, v.get("status")) for k, v in impls.items()
              if v.get("kind") in ("numpy", "peer") and "median_s" in v]
    agreeing = [o for o in others if o[2] == "ok"]
    for label, pool in (("fastest alternative that agrees with the float64 reference", agreeing),
                        ("fastest alternative, any accuracy", others)):
        if not pool:
            out.append({"target": label, "required": REQUIRED[wid], "measured": None, "against": None, "met": None})
            continue
        t, k, _ = min(pool)
        out.append({"target": label, "required": REQUIRED[wid], "measured": t / t_r, "against": k,
                    "met": bool(t / t_r >= REQUIRED[wid])})
    return out


# ----------------------------------------------------------------------------------------------
# Report


def _fmt_s(t: float | None) -> str:
    if t is None or not math.isfinite(t):
        return "—"
    return f"{t * 1e3:.1f} ms" if t < 1.0 else f"{t:.2f} s"


def _fmt_x(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}×"


def markdown(res: dict[str, Any]) -> str:
    meta = res["meta"]
    peak = res["gemm_peak_gflops"]
    lines = [f"# reprsim benchmark — {meta['date']} — {meta['machine']}", ""]
    if meta["quick"]:
        lines += ["**Quick mode: tiny shapes; checks the harness, measures nothing.**", ""]
    if meta.get("note"):
        lines += [f"**{meta['note']}**", ""]
    blas = meta["blas"]
    lines += [
        f"CPU: {meta['cpu']} ({meta['cpu_count']} logical cores), threads: {meta['threads']['requested']} "
        f"(reprsim: {meta['threads']['reprsim']}), rounds: {meta['rounds']} interleaved (median). "
        f"reprsim {meta['versions']['reprsim']} on {blas['library']} ({blas['config']}), "
        f"numpy {meta['versions']['numpy']}, torch {meta['versions'].get('torch', '—')}, "
        f"Python {meta['versions']['python']}.",
        f"Load average (1, 5, 15 min) at the start: {meta['load_start']}, at the end: {meta['load_end']}.",
        f"numpy GEMM peak: float32 {peak['float32']:.1f}, float64 {peak['float64']:.1f} GFLOP/s (best "
        f"{meta['gemm']['size']}² matmul; start/end: f32 {peak['start']['float32']:.1f}/{peak['end']['float32']:.1f}, "
        f"f64 {peak['start']['float64']:.1f}/{peak['end']['float64']:.1f}).",
        "",
        "Ratios: the other candidate's time divided by reprsim's (> 1: reprsim is faster). Error: |value − "
        "float64 reference| (the largest entry for a matrix or pair of values); a candidate beyond the tolerance "
        f"({TOLERANCE['float32']:g} for float32 inputs, {TOLERANCE['float64']:g} for float64) is marked "
        "'inaccurate'.", "",
        "| id | workload | reprsim | GFLOP/s | of peak | fastest agreeing alternative | × | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for wid, w in res["workloads"].items():
        t_r = w["impls"]["reprsim"].get("median_s")
        tg = w["targets"][0] if w["targets"] else {}
        against = tg.get("against")
        t_o = w["impls"][against]["median_s"] if against else None
        met = "—" if tg.get("met") is None else ("yes" if tg["met"] else "**no**")
        lines.append(
            f"| {wid} | {w['title']} ({w['shape']}) | {_fmt_s(t_r)} | {w.get('reprsim_gflops', 0):.1f} | "
            f"{w.get('fraction_of_peak', 0):.2f} | {'—' if against is None else f'{_fmt_s(t_o)} ({against})'} | "
            f"{_fmt_x(tg.get('measured'))} | ≥ {REQUIRED[wid]} | {met} |")
    lines += ["", "## Every candidate", "",
              "| id | candidate | kind | time | timing | × (time / reprsim) | CPU time (all threads) | error vs float64 "
              "| status |",
              "|---|---|---|---|---|---|---|---|---|"]
    for wid, w in res["workloads"].items():
        t_r = w["impls"]["reprsim"].get("median_s")
        for name, v in w["impls"].items():
            status = v.get("status", "")
            if status == "error":
                status = f"error: {v.get('error', '')}"
            err = v.get("abs_err")
            ratio = v["median_s"] / t_r if ("median_s" in v and t_r and name != "reprsim") else None
            lines.append(f"| {wid} | {name} | {v.get('kind')} | {_fmt_s(v.get('median_s'))} | {v.get('timing', '')} | "
                         f"{_fmt_x(ratio) if ratio else ''} | {_fmt_s(v.get('median_cpu_s'))} | "
                         f"{'' if err is None else f'{err:.1e}'} | {status} |")
    lines += ["", "## FLOP models (reprsim's GFLOP/s = model FLOPs / median time)", ""]
    for wid, w in res["workloads"].items():
        lines.append(f"- {wid} ({w['route']}): {w['flop_model']} = {w['flops']:.3g} FLOP")
    mixed = res.get("mixed")
    if mixed:
        lines += ["", "## Mixed use (a fresh process per BLAS setup; calls right after another library's call)", "",
                  f"Target: every ratio to 'alone' at most {MIXED_MAX_RATIO}.", "",
                  "| BLAS setup | call | after | median | × alone |", "|---|---|---|---|---|"]
        for setup, m in mixed.items():
            if "error" in m:
                lines.append(f"| {setup} | error: {m['error']} | | | |")
                continue
            for row in m["rows"]:
                lines.append(f"| {setup} | {row['call']} | {row['after'] or 'alone'} | {_fmt_s(row['median_s'])} | "
                             f"{row['ratio_to_alone']:.2f}× |")
        lines += ["", "CPU seconds the process burns in a 0.2 s sleep right after each call (idle BLAS threads "
                      "spinning):", "", "| BLAS setup | " + " | ".join(
                          next(iter(m for m in mixed.values() if "spin_cpu_s_in_0.2s_sleep" in m),
                               {"spin_cpu_s_in_0.2s_sleep": {}})["spin_cpu_s_in_0.2s_sleep"]) + " |"]
        for setup, m in mixed.items():
            if "spin_cpu_s_in_0.2s_sleep" in m:
                lines.append(f"| {setup} | " + " | ".join(f"{v:.3f}" for v in m["spin_cpu_s_in_0.2s_sleep"].values())
                             + " |")
        lines += ["", "Setups: " + "; ".join(f"{k}: {m.get('note', '')}" for k, m in mixed.items()) + "."]
    if any(w.get("memory") for w in res["workloads"].values()):
        lines += ["", "## Peak memory (one subprocess per candidate, one call)", "",
                  "| id | candidate | RSS before the call | peak RSS | peak − RSS before | tracemalloc peak |",
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
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines) + "\n")


def plot(res: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib)"
    labels, ratios, colors = [], [], []
    palette = {"numpy": "#4c72b0", "peer": "#dd8452"}
    for wid, w in res["workloads"].items():
        t_r = w["impls"]["reprsim"].get("median_s")
        for name, v in w["impls"].items():
            if v.get("kind") not in palette or "median_s" not in v or not t_r:
                continue
            flag = "" if v.get("status") == "ok" else f" [{v.get('status')}]"
            labels.append(f"{wid}: {name}{flag}")
            ratios.append(v["median_s"] / t_r)
            colors.append(palette[v["kind"]])
    fig, ax = plt.subplots(figsize=(10, 0.32 * max(8, len(labels)) + 1.5))
    y = np.arange(len(labels))[::-1]
    ax.barh(y, ratios, color=colors)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xlabel("candidate's time / reprsim's time (log; > 1: reprsim faster)")
    for yi, r in zip(y, ratios):
        ax.text(r, yi, f" {r:.2g}×", va="center", fontsize=7)
    meta = res["meta"]
    ax.set_title(f"reprsim {meta['versions']['reprsim']} — {meta['machine']} — {meta['date']}, "
                 f"{meta['threads']['requested']} thread(s){' — QUICK' if meta['quick'] else ''}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ----------------------------------------------------------------------------------------------
# Main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny shapes: a smoke test of the harness")
    ap.add_argument("--only", default="", help="comma-separated workload ids, e.g. W1,W3 (MIX: the mixed-use row)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads for every BLAS (threadpoolctl) and torch (default: all cores)")
    ap.add_argument("--rounds", "--repeats", type=int, default=7, dest="rounds",
                    help="interleaved rounds; medians reported (default 7)")
    ap.add_argument("--budget", type=float, default=60.0,
                    help="a candidate whose first call takes longer is timed by that call alone (default 60 s)")
    ap.add_argument("--no-peers", action="store_true", help="reprsim and the numpy formulations only")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--no-mixed", action="store_true", help="skip the mixed-use row")
    ap.add_argument("--timeout", type=float, default=1200.0, help="limit for each subprocess (default 1200 s)")
    ap.add_argument("--peer-timeout", type=float, default=120.0,
                    help="a peer's first call, in a fresh process, is stopped after this long (default 120 s)")
    ap.add_argument("--skip", default="", help="comma-separated candidate names not to run")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="output folder (default bench/results)")
    ap.add_argument("--name", default=None,
                    help="file stem of the outputs (default <YYYY-MM-DD>-<machine>, prefixed 'quick-' with --quick)")
    ap.add_argument("--note", default="", help="a line printed at the top of the table (e.g. 'busy machine')")
    ap.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mixed-probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--first-call-probe", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.first_call_probe:
        print(json.dumps(first_call_probe(args.first_call_probe, args.quick, args.threads)))
        return 0
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, args.quick, args.threads)))
        return 0
    if args.mixed_probe:
        set_threads(args.threads)
        print(json.dumps(_mixed.measure(args.quick, args.rounds)))
        return 0
    if args.threads < 1 or args.rounds < 1:
        ap.error("--threads and --rounds must be at least 1")

    all_wl = workloads()
    wanted = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(wanted) - {w.id for w in all_wl} - {"MIX"})
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; choose from {[w.id for w in all_wl] + ['MIX']}")
    selected = [w for w in all_wl if not wanted or w.id in wanted]

    peer_info = load_peers(not args.no_peers)
    threads = set_threads(args.threads)  # after the peers, so that torch's threads are set too
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    machine = machine_tag()
    gemm_size, gemm_rep = (512, 3) if args.quick else (4096, 5)
    load_start = load_average()
    print(f"reprsim {reprsim.__version__} on {machine}, {args.threads} thread(s), load {load_start}", flush=True)
    start = {dt.__name__: gemm_peak(dt, gemm_size, gemm_rep) for dt in (np.float32, np.float64)}
    print(f"numpy GEMM peak: float32 {start['float32']:.1f}, float64 {start['float64']:.1f} GFLOP/s", flush=True)
    info = reprsim.blas_info()
    res: dict[str, Any] = {
        "meta": {
            "date": date, "machine": machine, "hostname": socket.gethostname(), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "quick": args.quick,
            "rounds": args.rounds, "budget_s": args.budget, "threads": threads, "tolerance": TOLERANCE,
            "gemm": {"size": gemm_size, "repeats": gemm_rep}, "load_start": load_start,
            "blas": {k: info[k] for k in ("library", "path", "config", "reason")},
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
                             "route": route, "flop_model": model}
        print(f"{wl.id} {wl.title}: {w['shape']}", flush=True)
        reference = wl.reference(data)
        w["reference"] = _jsonable(reference)
        def probe(impl: Impl, wid: str = wl.id) -> dict[str, Any]:
            return _subprocess_json([sys.executable, str(Path(__file__).resolve()), "--first-call-probe",
                                     f"{wid}:{impl.name}", "--threads", str(args.threads)]
                                    + (["--quick"] if args.quick else []), args.peer_timeout)

        skip = {x.strip() for x in args.skip.split(",") if x.strip()}
        recs = time_interleaved([i for i in with_peers(wl, peer_info) if i.name not in skip], data, args.rounds, args.budget,
                                lambda s: print(s, flush=True), probe)
        grade(recs, reference, TOLERANCE[wl.dtype])
        if recs["reprsim"].get("status") != "ok":
            raise RuntimeError(f"reprsim failed on {wl.id}: {recs['reprsim']}")
        for peer in _peers.PEERS:
            why = peer.not_offered.get(wl.id)
            if why and peer_info[peer.name].get("imported"):
                recs.setdefault(peer.name, {"kind": "peer", "status": f"not offered: {why}"})
        w["impls"] = recs
        t_r = recs["reprsim"]["median_s"]
        for name, v in recs.items():
            err = f", |Δ| = {v['abs_err']:.1e}" if "abs_err" in v else ""
            print(f"  {name:45s} {v.get('status', ''):10s} {_fmt_s(v.get('median_s'))}{err}"
                  f"{'  ' + v['error'] if 'error' in v else ''}", flush=True)
        w["reprsim_gflops"] = flops / t_r / 1e9
        w["ratios"] = {k: v["median_s"] / t_r for k, v in recs.items() if k != "reprsim" and "median_s" in v}
        res["workloads"][wl.id] = w
        if wl.memory and not args.no_memory:
            names = [k for k, v in recs.items() if "value" in v]
            w["memory"] = run_memory(wl.id, names, args.quick, args.threads, args.timeout)
        del data
        gc.collect()

    if (not wanted or "MIX" in wanted) and not args.no_mixed:
        print("mixed use", flush=True)
        res["mixed"] = run_mixed(args.quick, args.rounds if args.quick else max(args.rounds, 5), args.threads,
                                 args.timeout)
    if not wanted or "W4" in wanted:
        res["cca_accuracy"] = cca_accuracy(args.quick)

    end = {dt.__name__: gemm_peak(dt, gemm_size, gemm_rep) for dt in (np.float32, np.float64)}
    res["meta"]["load_end"] = load_average()
    peak = {k: max(start[k], end[k]) for k in start}
    res["gemm_peak_gflops"] = {**peak, "start": start, "end": end}
    for wid, w in res["workloads"].items():
        w["fraction_of_peak"] = w["reprsim_gflops"] / peak[w["dtype"]]
        w["targets"] = targets(wid, w)

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
