"""Every check of the CUDA path in one unattended run (a few minutes on one GPU).

    python bench/gpu_check.py [--out bench/results] [--n 50000 --p 4096]

1. Agreement: every metric on CUDA tensors against the CPU path on the same data (float32 ≤ 1e-5 relative,
   float64 ≤ 1e-10).
2. Streaming on the device: compare() of two models on the GPU against the CPU compare() (≤ 1e-5), for
   CKA, debiased CKA, PWCCA and Procrustes.
3. Speed: linear CKA at n=50000, p=4096 float32 on the GPU, against plain torch code for the same formula
   (centre, then XᵀX, YᵀY, XᵀY) and against the GPU's measured FP32 matmul throughput (TF32 off), in the
   same run.
Prints a summary and writes gpu-check-<date>.json under --out. Exits 0 with a message when no GPU is present.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import traceback

import numpy as np


def timed(fn, sync, repeats=5):
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--p", type=int, default=4096)
    args = ap.parse_args()

    import torch

    import reprsim
    from reprsim.torch import compare

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible; nothing to check (the script is ready for a GPU machine).")
        return 0
    dev = torch.device("cuda")
    sync = torch.cuda.synchronize
    report = {"date": dt.date.today().isoformat(), "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "reprsim": reprsim.__version__, "python": platform.python_version(),
              "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "checks": {}}
    ok = True

    def section(name, fn):
        """Run one check; an exception is recorded (with its traceback) instead of ending the run."""
        nonlocal ok
        t0 = time.perf_counter()
        try:
            result = fn()
        except Exception:  # noqa: BLE001 - every failure is written to the report
            result = {"ok": False, "error": traceback.format_exc()}
            print(result["error"], file=sys.stderr)
        result["wall_s"] = time.perf_counter() - t0
        report["checks"][name] = result
        ok &= bool(result.get("ok", True))

    # 1. agreement with the CPU path, every metric, float32 and float64
    def agreement():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(4096, 256, generator=g, dtype=torch.float64) + 10.0
        y = x[:, :128] @ torch.randn(128, 192, generator=g, dtype=torch.float64) + torch.randn(
            4096, 192, generator=g, dtype=torch.float64)
        out = {"ok": True}
        for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-10)):
            xd, yd = x.to(dtype), y.to(dtype)
            xg, yg = xd.to(dev), yd.to(dev)
            for name in reprsim.METRICS:
                cpu = reprsim.distance(xd.numpy(), yd.numpy(), metric=name)
                gpu = reprsim.distance(xg, yg, metric=name)
                rel = abs(gpu - cpu) / max(abs(cpu), 1e-12)
                out[f"{name}/{str(dtype)[6:]}"] = {"cpu": cpu, "gpu": gpu, "rel_diff": rel, "ok": rel <= tol}
                out["ok"] &= rel <= tol
        return out

    section("agreement", agreement)

    # 2. compare() with models on the GPU vs on the CPU
    def compare_on_device():
        torch.manual_seed(0)

        def mlp():
            return torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                       torch.nn.ReLU(), torch.nn.Linear(256, 10))

        a, b = mlp(), mlp()
        g = torch.Generator().manual_seed(1)
        data = torch.randn(8192, 64, generator=g)
        batches = [data[i:i + 1024] for i in range(0, 8192, 1024)]
        layers = ["0", "2", "4"]
        out = {"ok": True}
        for metric in ("cka", "debiased_cka", "pwcca", "procrustes"):
            res_cpu = compare(a, b, batches, layers, layers, metric=metric, device="cpu", progress=False).values
            t0 = time.perf_counter()
            res_gpu = compare(a, b, batches, layers, layers, metric=metric, device="cuda", progress=False).values
            t_gpu = time.perf_counter() - t0
            rel = float(np.max(np.abs(res_gpu - res_cpu) / np.maximum(np.abs(res_cpu), 1e-6)))
            out[metric] = {"max_rel_diff": rel, "gpu_s": t_gpu, "ok": rel <= 1e-5}
            out["ok"] &= rel <= 1e-5
        return out

    section("compare_on_device", compare_on_device)

    # 3. speed at n × p float32 against plain torch code and the FP32 matmul rate (TF32 off)
    def large_cka():
        n, p = args.n, args.p
        torch.manual_seed(0)
        xl = torch.randn(n, p, device=dev)
        yl = xl @ torch.randn(p, p, device=dev) / p**0.5 + torch.randn(n, p, device=dev)
        m = torch.randn(8192, 8192, device=dev)
        t_mm = timed(lambda: m @ m, sync)
        peak = 2 * 8192**3 / t_mm / 1e9
        del m

        def plain_torch():
            xc = xl - xl.mean(0)
            yc = yl - yl.mean(0)
            return (xc.T @ yc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm())

        def plain_torch_f64():
            xc = xl.double() - xl.double().mean(0)
            yc = yl.double() - yl.double().mean(0)
            return (xc.T @ yc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm())

        t_plain = timed(plain_torch, sync)
        torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated()
        t_ours = timed(lambda: reprsim.cka(xl, yl), sync)
        extra_mem = torch.cuda.max_memory_allocated() - base_mem
        t_deb = timed(lambda: reprsim.cka(xl, yl, debiased=True), sync)
        flops = 6 * n * p * p  # three n×p×p products, as both implementations compute them
        # The CCA family on the device (float64 products) against the C++ CPU path, at p = 1024.
        xs, ys = xl[:, :1024].contiguous(), yl[:, :1024].contiguous()
        t_pwcca = timed(lambda: reprsim.pwcca(xs, ys), sync, repeats=3)
        xs_cpu, ys_cpu = xs.cpu().numpy(), ys.cpu().numpy()
        t_pwcca_cpu = timed(lambda: reprsim.pwcca(xs_cpu, ys_cpu), lambda: None, repeats=3)
        pw_rel = abs(reprsim.pwcca(xs, ys) - reprsim.pwcca(xs_cpu, ys_cpu)) / reprsim.pwcca(xs_cpu, ys_cpu)
        value_ours = reprsim.cka(xl, yl)
        value_plain = float(plain_torch())
        value_f64 = float(plain_torch_f64())
        return {
            "n": n, "p": p, "fp32_matmul_gflops": peak, "plain_torch_s": t_plain, "reprsim_s": t_ours,
            "reprsim_debiased_s": t_deb, "reprsim_gflops": flops / t_ours / 1e9,
            "plain_torch_gflops": flops / t_plain / 1e9, "speed_vs_plain_torch": t_plain / t_ours,
            "reprsim_extra_gpu_mem_mb": extra_mem / 2**20,
            "pwcca_p1024_gpu_s": t_pwcca, "pwcca_p1024_cpu_s": t_pwcca_cpu, "pwcca_p1024_rel_diff": pw_rel,
            "cpu_threads": reprsim.get_num_threads() if hasattr(reprsim, "get_num_threads") else None,
            "value_reprsim": value_ours, "value_plain_torch_f32": value_plain, "value_torch_f64": value_f64,
            "reprsim_err_vs_f64": abs(value_ours - value_f64), "plain_f32_err_vs_f64": abs(value_plain - value_f64),
        }

    section("large_cka", large_cka)
    report["ok"] = bool(ok)

    print(json.dumps(report, indent=2))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"gpu-check-{report['date']}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    big = report["checks"]["large_cka"]
    speed = (f"large CKA: reprsim {big['reprsim_s']:.3f}s vs plain torch {big['plain_torch_s']:.3f}s; "
             f"FP32 matmul {big['fp32_matmul_gflops']:.0f} GFLOP/s" if "reprsim_s" in big else "large CKA failed")
    print(f"\nagreement and streaming checks: {'PASS' if ok else 'FAIL'}; {speed}; wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
