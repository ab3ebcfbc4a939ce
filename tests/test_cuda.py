"""The metrics on CUDA tensors: run only where torch sees a CUDA device (skipped elsewhere).

References are the independent float64 numpy implementations in `reference.py`, applied to the same values
copied to the CPU; float32 device products are held to 1e-5 relative, float64 to 1e-9.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible", allow_module_level=True)

import reference as ref  # noqa: E402

import reprsim  # noqa: E402
from reprsim.torch import compare  # noqa: E402

DEV = torch.device("cuda")
TOL = {torch.float32: 1e-5, torch.float64: 1e-9}


def cka64(x, y):
    """Linear CKA in float64 from the feature-space formula (O(n·p²); the Gram-space reference is O(n³))."""
    xc, yc = ref.center(x), ref.center(y)
    return np.linalg.norm(xc.T @ yc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))


def pair(n, p1, p2, dtype, seed=0, offset=10.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p1, generator=g, dtype=torch.float64) + offset
    k = min(p1, p2)
    y = x[:, :k] @ torch.randn(k, p2, generator=g, dtype=torch.float64) + torch.randn(n, p2, generator=g,
                                                                                      dtype=torch.float64)
    return x.to(dtype), y.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_metric_on_cuda_matches_the_float64_reference(dtype):
    x, y = pair(500, 20, 30, dtype)
    xn, yn = x.double().numpy(), y.double().numpy()
    xg, yg = x.to(DEV), y.to(DEV)
    for name in reprsim.METRICS:
        got = reprsim.distance(xg, yg, metric=name)
        want = ref.distance(xn, yn, name)
        assert isinstance(got, float) and np.isfinite(got), name
        assert got == pytest.approx(want, rel=TOL[dtype], abs=TOL[dtype]), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_metric_over_several_row_chunks_equals_the_cpu_path(dtype):
    x, y = pair(9000, 64, 48, dtype)  # more rows than one device chunk
    xg, yg = x.to(DEV), y.to(DEV)
    for name in reprsim.METRICS:
        want = reprsim.distance(x.numpy(), y.numpy(), metric=name)
        assert reprsim.distance(xg, yg, metric=name) == pytest.approx(want, rel=TOL[dtype], abs=TOL[dtype]), name
    assert reprsim.cka(xg, yg) == pytest.approx(cka64(x.numpy(), y.numpy()), rel=TOL[dtype])


def test_public_functions_on_cuda_equal_the_cpu_path():
    x, y = pair(3000, 40, 25, torch.float32, seed=1)
    xg, yg = x.to(DEV), y.to(DEV)
    xn, yn = x.numpy(), y.numpy()
    np.testing.assert_allclose(reprsim.canonical_correlations(xg, yg), reprsim.canonical_correlations(xn, yn),
                               rtol=1e-5, atol=1e-6)
    for fn in (reprsim.cka, reprsim.mean_cca, reprsim.mean_sq_cca, reprsim.svcca, reprsim.pwcca,
               reprsim.procrustes_distance):
        assert fn(xg, yg) == pytest.approx(fn(xn, yn), rel=1e-5), fn.__name__
    assert reprsim.cka(xg, yg, debiased=True) == pytest.approx(reprsim.cka(xn, yn, debiased=True), rel=1e-5)
    got, want = reprsim.cca_summary(xg, yg), reprsim.cca_summary(xn, yn)
    np.testing.assert_allclose(got.correlations, want.correlations, rtol=1e-5, atol=1e-6)
    assert (got.mean_cca, got.pwcca) == pytest.approx((want.mean_cca, want.pwcca), rel=1e-5)


def test_invariances_hold_on_the_device():
    x, y = pair(2000, 32, 32, torch.float64, seed=2)
    xg, yg = x.to(DEV), y.to(DEV)
    q, _ = torch.linalg.qr(torch.randn(32, 32, dtype=torch.float64, device=DEV))
    base = reprsim.cka(xg, yg)
    assert reprsim.cka(xg @ q * 3.0 + 7.0, yg) == pytest.approx(base, rel=1e-10)
    assert reprsim.cka(xg, xg) == pytest.approx(1.0, rel=1e-12)
    assert reprsim.procrustes_distance(xg, xg @ q) == pytest.approx(0.0, abs=1e-9)


def test_non_contiguous_half_and_large_offset_tensors():
    x, y = pair(4000, 50, 30, torch.float64, seed=3, offset=0.0)
    want = cka64(x.numpy(), y.numpy())
    xt = x.T.contiguous().to(DEV).T  # a transposed (column-major) view
    assert not xt.is_contiguous()
    assert reprsim.cka(xt, y.to(DEV)) == pytest.approx(want, rel=1e-10)
    assert reprsim.cka(x.to(DEV)[::2], y.to(DEV)[::2]) == pytest.approx(cka64(x.numpy()[::2], y.numpy()[::2]),
                                                                        rel=1e-10)
    # float16 / bfloat16 are promoted to float32 on the device; compare with the promoted values.
    for half in (torch.float16, torch.bfloat16):
        xh, yh = x.to(half), y.to(half)
        want_h = cka64(xh.double().numpy(), yh.double().numpy())
        assert reprsim.cka(xh.to(DEV), yh.to(DEV)) == pytest.approx(want_h, rel=1e-5), half
    # Exact centring: an offset of 1e6 in float64 changes nothing beyond rounding of the inputs.
    assert reprsim.cka(x.to(DEV) + 1e6, y.to(DEV)) == pytest.approx(cka64(x.numpy() + 1e6, y.numpy()), rel=1e-8)


def test_streaming_updates_with_cuda_batches_merge_with_cpu_state():
    x, y = pair(6000, 24, 16, torch.float32, seed=4)
    full = {m: reprsim.distance(x.numpy(), y.numpy(), metric=m) for m in reprsim.METRICS}
    dev = reprsim.StreamingSimilarity()
    for s in range(0, 4000, 700):
        dev.update(x[s:min(s + 700, 4000)].to(DEV), y[s:min(s + 700, 4000)].to(DEV))
    cpu = reprsim.StreamingSimilarity().update(x[4000:].numpy(), y[4000:].numpy())
    merged = reprsim.StreamingSimilarity.from_state(dev.merge(cpu).state())
    assert merged.n_seen == 6000
    for m, want in full.items():
        assert merged.distance(m) == pytest.approx(want, rel=1e-5, abs=1e-6), m


def test_layer_matrix_streaming_on_cuda():
    xs = [pair(3000, 16 + 4 * i, 8, torch.float32, seed=10 + i)[0] for i in range(3)]
    ys = [pair(3000, 16, 12 + 2 * j, torch.float32, seed=10 + j)[1] for j in range(2)]
    acc = reprsim.StreamingSimilarity(layers_x=3, layers_y=2)
    for s in range(0, 3000, 1000):
        acc.update([a[s:s + 1000].to(DEV) for a in xs], [b[s:s + 1000].to(DEV) for b in ys])
    got = acc.cka()
    for i in range(3):
        for j in range(2):
            assert got[i, j] == pytest.approx(cka64(xs[i].double().numpy(), ys[j].double().numpy()), rel=1e-5)


def test_compare_on_the_device_equals_compare_on_the_cpu():
    torch.manual_seed(0)

    def mlp():
        return torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32),
                                   torch.nn.ReLU(), torch.nn.Linear(32, 8))

    a, b = mlp(), mlp()
    g = torch.Generator().manual_seed(1)
    data = torch.randn(2048, 16, generator=g)
    batches = [(data[i:i + 256], torch.zeros(256)) for i in range(0, 2048, 256)]
    layers = ["0", "2", "4"]
    for metric in ("cka", "debiased_cka", "pwcca", "procrustes"):
        cpu = compare(a, b, batches, layers, layers, metric=metric, device="cpu", progress=False).values
        gpu = compare(a, b, batches, layers, layers, metric=metric, device="cuda", progress=False).values
        np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-6, err_msg=metric)
    assert next(a.parameters()).device.type == "cuda"  # compare moved the models to the device, as documented


def test_bad_cuda_inputs_raise_clear_errors():
    x, y = pair(100, 5, 4, torch.float32)
    xg, yg = x.to(DEV), y.to(DEV)
    with pytest.raises(TypeError, match="same device"):
        reprsim.cka(xg, y)
    with pytest.raises(TypeError, match="same device"):
        reprsim.cka(xg, y.numpy())
    bad = yg.clone()
    bad[5, 1] = float("nan")
    with pytest.raises(ValueError, match="y contains NaN or Inf"):
        reprsim.cka(xg, bad)
    with pytest.raises(ValueError, match="same number of samples"):
        reprsim.cka(xg, yg[:50])
    with pytest.raises(TypeError, match="complex"):
        reprsim.cka(xg.to(torch.complex64), yg)
    with pytest.raises(ValueError, match="zero variance"):
        reprsim.cka(torch.full((100, 5), 3.0, device=DEV), yg)
    with pytest.raises(TypeError, match="tensor on cuda"):
        reprsim.cka(xg, yg, kernel="rbf")
    with pytest.raises(TypeError, match="tensor on cuda"):
        reprsim.pairwise([xg, xg], [yg])
