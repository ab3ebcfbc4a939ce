"""bench/run.py --quick runs end to end and writes complete, consistent results.

The harness is exercised at tiny shapes, single-threaded, without the peer packages; nothing here
asserts a timing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "bench" / "run.py"
WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, str(RUN), "--quick", "--no-peers", "--threads", "1", "--rounds", "2",
           "--out", str(out), "--name", "smoke"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return out, json.loads((out / "smoke.json").read_text())


def test_bench_quick_reports_every_workload_with_finite_times(quick):
    _, res = quick
    assert list(res["workloads"]) == WORKLOADS
    for wid, w in res["workloads"].items():
        timed = {k: v for k, v in w["impls"].items() if "median_s" in v}
        assert "reprsim" in timed, wid
        assert len(timed) >= 2, f"{wid}: reprsim and at least one other formulation are timed"
        for name, v in timed.items():
            # The first call gives the value; every candidate then gets one call per interleaved round.
            assert len(v["times_s"]) == 2, (wid, name)
            assert math.isfinite(v["median_s"]) and v["median_s"] > 0, (wid, name)
        assert w["reprsim_gflops"] > 0 and w["flops"] > 0


def test_bench_quick_every_candidate_agrees_with_the_float64_reference(quick):
    _, res = quick
    for wid, w in res["workloads"].items():
        tol = res["meta"]["tolerance"][w["dtype"]]
        for name, v in w["impls"].items():
            if v["kind"] == "reprsim-variant":  # another value by design (a different bandwidth rule)
                continue
            assert v["status"] == "ok", (wid, name, v.get("status"), v.get("error"))
            assert v["abs_err"] <= tol, (wid, name, v["abs_err"])
        assert w["impls"]["reprsim"]["abs_err"] < (1e-5 if w["dtype"] == "float32" else 1e-9), wid


def test_bench_quick_values_are_in_the_metrics_ranges(quick):
    _, res = quick
    w = res["workloads"]
    for wid in ("W1", "W2", "W6", "W7", "W8"):
        assert 0.0 < w[wid]["impls"]["reprsim"]["value"] <= 1.0
    matrix = w["W3"]["impls"]["reprsim"]["value"]
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    assert all(0.0 < c <= 1.0 for row in matrix for c in row)
    pw, mean = w["W4"]["impls"]["reprsim"]["value"]
    assert 0.0 < pw <= 1.0 and 0.0 < mean <= 1.0
    assert 0.0 <= w["W5"]["impls"]["reprsim"]["value"] <= 2.0


def test_bench_quick_measures_gemm_peak_ratios_and_targets(quick):
    _, res = quick
    peak = res["gemm_peak_gflops"]
    assert peak["float32"] > 0 and peak["float64"] > 0
    for wid, w in res["workloads"].items():
        assert w["fraction_of_peak"] == pytest.approx(w["reprsim_gflops"] / peak[w["dtype"]])
        t_r = w["impls"]["reprsim"]["median_s"]
        for name, ratio in w["ratios"].items():
            assert ratio == pytest.approx(w["impls"][name]["median_s"] / t_r)
        assert w["targets"], wid
        best = w["targets"][0]
        assert best["measured"] == pytest.approx(w["impls"][best["against"]]["median_s"] / t_r)


def test_bench_quick_mixed_use_row_times_each_call_alone_and_after_the_others(quick):
    _, res = quick
    m = res["mixed"]["shared"]
    assert m["blas"]["library"] in ("numpy", "scipy-openblas32")
    rows = {(r["call"], r["after"]): r for r in m["rows"]}
    for call in ("reprsim cka", "reprsim procrustes"):
        assert rows[(call, None)]["ratio_to_alone"] == pytest.approx(1.0)
        assert rows[(call, "numpy matmul")]["median_s"] > 0
    assert rows[("numpy matmul", "reprsim cka")]["median_s"] > 0
    assert set(m["spin_cpu_s_in_0.2s_sleep"]) >= {"reprsim cka", "numpy matmul"}


def test_bench_quick_measures_peak_memory_of_w1_and_w3_in_subprocesses(quick):
    _, res = quick
    for wid in ("W1", "W3"):
        mem = res["workloads"][wid]["memory"]
        assert "reprsim" in mem
        for name, m in mem.items():
            assert "error" not in m, (wid, name, m)
            assert m["peak_rss_mb"] > 0 and m["tracemalloc_peak_mb"] >= 0


def test_bench_cca_accuracy_of_reprsim_on_condition_number_1e6(quick):
    _, res = quick
    acc = res["cca_accuracy"]
    assert acc["cond_x"] == pytest.approx(1e6, rel=1e-3)
    r = acc["routes"]["reprsim"]
    # The exact values are known by construction; a QR route keeps ~eps·cond accuracy.
    assert r["max_abs_err_rho"] < 1e-8
    assert r["abs_err_mean_cca"] < 1e-8
    assert r["abs_err_pwcca"] < 1e-8


def test_bench_quick_writes_markdown_table_and_plot(quick):
    out, _ = quick
    md = (out / "smoke.md").read_text()
    for wid in WORKLOADS:
        assert f"| {wid} |" in md
    assert "Quick mode" in md
    pytest.importorskip("matplotlib")
    png = (out / "smoke.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_rejects_unknown_workload_with_the_valid_ids():
    proc = subprocess.run([sys.executable, str(RUN), "--quick", "--only", "W9"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert "W9" in proc.stderr and "W1" in proc.stderr
