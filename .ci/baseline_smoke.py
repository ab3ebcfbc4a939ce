"""Every metric of an installed reprsim on small fixed data, written as JSON (used by .ci/check_baseline_cpu).

Usage: python .ci/baseline_smoke.py OUT.json

Also records which OpenBLAS kernel set (core name) scipy-openblas32 picked at run time and where
reprsim was imported from, so that a run under an emulated older CPU can be compared with a native one.
The data are deterministic (a seeded numpy Generator), so two runs on any machines see the same inputs.
"""

from __future__ import annotations

import ctypes
import json
import sys
import time


def openblas_info() -> dict[str, str]:
    import scipy_openblas32

    config = scipy_openblas32.get_openblas_config()
    dll = scipy_openblas32.dll  # loaded by get_openblas_config(), kept alive by the module
    corename = dll.scipy_openblas_get_corename
    corename.restype = ctypes.c_char_p
    return {"config": config, "corename": corename().decode()}


def main() -> int:
    t0 = time.perf_counter()
    import numpy as np

    import reprsim

    rng = np.random.default_rng(20261128)
    n, p1, p2 = 200, 24, 16
    z = rng.standard_normal((n, 6))
    x = z @ rng.standard_normal((6, p1)) + 0.5 * rng.standard_normal((n, p1)) + 2.0
    y = z @ rng.standard_normal((6, p2)) + 0.5 * rng.standard_normal((n, p2)) - 1.0
    wide = rng.standard_normal((40, 64))  # p > n: Gram-space and rank-deficient routes
    wide2 = wide[:, :48] @ rng.standard_normal((48, 48)) + 0.1 * rng.standard_normal((40, 48))

    out: dict[str, float] = {}
    for dtype in (np.float64, np.float32):
        tag = np.dtype(dtype).name
        xd, yd = x.astype(dtype), y.astype(dtype)
        out[f"{tag}/cka"] = float(reprsim.cka(xd, yd))
        out[f"{tag}/cka_debiased"] = float(reprsim.cka(xd, yd, debiased=True))
        out[f"{tag}/cka_rbf"] = float(reprsim.cka(xd, yd, kernel="rbf"))
        out[f"{tag}/mean_cca"] = float(reprsim.mean_cca(xd, yd))
        out[f"{tag}/mean_sq_cca"] = float(reprsim.mean_sq_cca(xd, yd))
        out[f"{tag}/svcca"] = float(reprsim.svcca(xd, yd, variance=0.9))
        out[f"{tag}/pwcca"] = float(reprsim.pwcca(xd, yd))
        out[f"{tag}/procrustes"] = float(reprsim.procrustes_distance(xd, yd))
        out[f"{tag}/angular_procrustes"] = float(reprsim.procrustes_distance(xd, yd, angular=True))
        for i, rho in enumerate(reprsim.canonical_correlations(xd, yd)):
            out[f"{tag}/canonical_correlations[{i}]"] = float(rho)
        for name in sorted(reprsim.METRICS):
            out[f"{tag}/distance[{name}]"] = float(reprsim.distance(xd, yd, metric=name))
        out[f"{tag}/cka_wide"] = float(reprsim.cka(wide.astype(dtype), wide2.astype(dtype)))
        out[f"{tag}/procrustes_wide"] = float(reprsim.procrustes_distance(wide.astype(dtype), wide2.astype(dtype)))
        layers = [xd, yd, xd[:, :8]]
        for (i, j), v in np.ndenumerate(reprsim.pairwise(layers, metric="cka")):
            out[f"{tag}/pairwise[{i},{j}]"] = float(v)
        stream = reprsim.StreamingSimilarity()
        for start in range(0, n, 64):
            stream.update(xd[start:start + 64], yd[start:start + 64])
        out[f"{tag}/streaming_cka"] = float(stream.cka())
        out[f"{tag}/streaming_pwcca"] = float(stream.pwcca())
        out[f"{tag}/minibatch_cka"] = float(reprsim.minibatch_cka(xd, yd, batch_size=50))
    perm = reprsim.permutation_test(x, y, metric="cka", n_permutations=50, seed=0)
    out["float64/permutation_test.statistic"] = float(perm.statistic)
    out["float64/permutation_test.pvalue"] = float(perm.pvalue)
    out["float64/calibrated_cka"] = float(reprsim.calibrated_cka(x, y, n_permutations=0).calibrated)

    try:  # what numpy's run-time dispatch sees on this CPU
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as features
    info = {
        "reprsim_file": reprsim.__file__,
        "cpu_features": {k: bool(features.get(k)) for k in ("SSE42", "AVX", "F16C", "FMA3", "AVX2", "AVX512F")},
        "reprsim_version": reprsim.__version__,
        "openblas": openblas_info(),
        "seconds": time.perf_counter() - t0,
        "values": out,
    }
    with open(sys.argv[1], "w") as f:
        json.dump(info, f, indent=1)
    print(f"{len(out)} values; OpenBLAS core {info['openblas']['corename']!r}; {info['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
