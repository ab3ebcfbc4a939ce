"""Every check of the CUDA path in one unattended run (a few minutes on one GPU).

    python bench/gpu_check.py [--out bench/results] [--n 50000 --p 4096]

1. Agreement: every metric on CUDA tensors against the CPU path on the same float32 data (≤ 1e-5 relative).
2. Streaming on the device: compare() of two models on the GPU against the CPU compare() (≤ 1e-5).
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

    # 1. agreement with the CPU path, every metric
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 256, generator=g) + 10.0
    y = x[:, :128] @ torch.randn(128, 192, generator=g) + torch.randn(4096, 192, generator=g)
    xg, yg = x.to(dev), y.to(dev)
    agree = {}
    for name in reprsim.METRICS:
        cpu = reprsim.distance(x.numpy(), y.numpy(), metric=name)
        gpu = reprsim.distance(xg, yg, metric=name)
        rel = abs(gpu - cpu) / max(abs(cpu), 1e-12)
        agree[name] = {"cpu": cpu, "gpu": gpu, "rel_diff": rel, "ok": rel <= 1e-5}
        ok &= rel <= 1e-5
    report["checks"]["agreement"] = agree

    # 2. compare() with models on the GPU vs on the CPU
    torch.manual_seed(0)
    def mlp():
        return torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                   torch.nn.ReLU(), torch.nn.Linear(256, 10))
    a, b = mlp(), mlp()
    data = torch.randn(8192, 64, generator=g)
    batches = [data[i:i + 1024] for i in range(0, 8192, 1024)]
    layers = ["0", "2", "4"]
    res_cpu = compare(a, b, batches, layers, layers, metric="cka", progress=False).values
    res_gpu = compare(a, b, batches, layers, layers, metric="cka", device="cuda", progress=False).values
    rel = float(np.max(np.abs(res_gpu - res_cpu) / np.abs(res_cpu)))
    report["checks"]["compare_on_device"] = {"max_rel_diff": rel, "ok": rel <= 1e-5}
    ok &= rel <= 1e-5

    # 3. speed at n × p float32
    n, p = args.n, args.p
    xl = torch.randn(n, p, device=dev)
    yl = xl @ torch.randn(p, p, device=dev) / p**0.5 + torch.randn(n, p, device=dev)
    m = torch.randn(8192, 8192, device=dev)
    t_mm = timed(lambda: m @ m, sync)
    peak = 2 * 8192**3 / t_mm / 1e9

    def plain_torch():
        xc = xl - xl.mean(0)
        yc = yl - yl.mean(0)
        return (xc.T @ yc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm())

    t_plain = timed(plain_torch, sync)
    t_ours = timed(lambda: reprsim.cka(xl, yl), sync)
    flops = 6 * n * p * p  # three n×p×p products, as both implementations compute them
    value_ours = reprsim.cka(xl, yl)
    value_plain = float(plain_torch())
    report["checks"]["large_cka"] = {
        "n": n, "p": p, "fp32_matmul_gflops": peak, "plain_torch_s": t_plain, "reprsim_s": t_ours,
        "reprsim_gflops": flops / t_ours / 1e9, "plain_torch_gflops": flops / t_plain / 1e9,
        "speed_vs_plain_torch": t_plain / t_ours, "value_reprsim": value_ours, "value_plain_torch": value_plain,
    }

    print(json.dumps(report, indent=2))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"gpu-check-{report['date']}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nagreement and streaming checks: {'PASS' if ok else 'FAIL'}; "
          f"large CKA: reprsim {t_ours:.3f}s vs plain torch {t_plain:.3f}s; FP32 matmul {peak:.0f} GFLOP/s; wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
