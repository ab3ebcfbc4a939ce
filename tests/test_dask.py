"""Sharded accumulation on a local Dask cluster: worker processes' accumulators merge to the exact value."""

import os

import numpy as np
import pytest

distributed = pytest.importorskip("dask.distributed")

import reprsim  # noqa: E402


def test_shards_accumulated_in_dask_worker_processes_merge_to_the_in_memory_result():
    rng = np.random.default_rng(7)
    n = 400
    z = rng.standard_normal((n, 3))
    x = z @ rng.standard_normal((3, 8)) + 0.5 * rng.standard_normal((n, 8)) + 2.0
    y = z @ rng.standard_normal((3, 6)) + 0.5 * rng.standard_normal((n, 6))
    shards = np.array_split(np.arange(n), [37, 150, 151, 290])  # uneven, one of a single row

    # Nested functions travel to the workers by value (the test module is not importable there).
    def accumulate(xs, ys, batch):
        import os

        from reprsim import StreamingSimilarity

        acc = StreamingSimilarity()
        for start in range(0, len(xs), batch):
            acc.update(xs[start : start + batch], ys[start : start + batch])
        return os.getpid(), acc

    def merge(a, b):
        return a[0], a[1].merge(b[1])

    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        parts = [client.submit(accumulate, x[idx], y[idx], 16, pure=False) for idx in shards]
        pids = {pid for pid, _ in client.gather(parts)}
        # Merge as a tree on the workers, in an order unrelated to the rows'.
        left = client.submit(merge, parts[3], parts[0], pure=False)
        right = client.submit(merge, parts[4], parts[1], pure=False)
        right = client.submit(merge, right, parts[2], pure=False)
        _, merged = client.submit(merge, left, right, pure=False).result()

    assert os.getpid() not in pids  # the accumulation ran in other processes
    assert merged.n_seen == n
    for metric in ("cka", "debiased_cka", "mean_cca", "mean_sq_cca", "svcca", "pwcca", "procrustes"):
        np.testing.assert_allclose(
            merged.distance(metric), reprsim.distance(x, y, metric=metric), rtol=1e-9, err_msg=metric
        )
