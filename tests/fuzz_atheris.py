"""Coverage-guided fuzzing of the array boundary with atheris (libFuzzer for Python).

Not collected by pytest (the name does not match test_*.py). Raw bytes decide the shapes, dtype,
memory layout (strides, offset, byte order) and values of two arrays, and which public function gets
them; every call must return a finite value in the metric's documented range or raise ValueError /
TypeError. Anything else (another exception type, a non-finite or out-of-range value, a crash of
the process) is a finding: atheris stops and writes the input to crash-<hash>.

Run (pip install atheris):

    python tests/fuzz_atheris.py -max_total_time=60 -rss_limit_mb=4096

Reproduce a finding: ``python tests/fuzz_atheris.py crash-<hash>``.
"""

from __future__ import annotations

import math
import sys
import warnings

import atheris
import numpy as np

with atheris.instrument_imports():
    import reprsim

DTYPES = ["<f8", "<f4", ">f8", ">f4", "<f2", "<i4", ">i8", "|b1", "<u2", "<c16", "|O"]


def _similarity_range(metric):
    low, high = reprsim.METRICS[metric].range
    return 1.0 - high, 1.0 - low


FUNCTIONS = [
    (lambda x, y: reprsim.cka(x, y), _similarity_range("cka")),
    (lambda x, y: reprsim.cka(x, y, debiased=True), _similarity_range("debiased_cka")),
    (lambda x, y: reprsim.cka(x[:16], y[:16], kernel="rbf"), (0.0, 1.0)),
    (lambda x, y: reprsim.cka(x[:16], y[:16], kernel="rbf", bandwidth=0.7), (0.0, 1.0)),
    (reprsim.canonical_correlations, (0.0, 1.0)),
    (reprsim.mean_cca, _similarity_range("mean_cca")),
    (reprsim.mean_sq_cca, _similarity_range("mean_sq_cca")),
    (reprsim.svcca, _similarity_range("svcca")),
    (reprsim.pwcca, _similarity_range("pwcca")),
    (reprsim.procrustes_distance, reprsim.METRICS["procrustes"].range),
    (lambda x, y: reprsim.procrustes_distance(x, y, angular=True), reprsim.METRICS["angular_procrustes"].range),
    (lambda x, y: reprsim.pairwise([x, y], metric="debiased_cka"), reprsim.METRICS["debiased_cka"].range),
    (lambda x, y: reprsim.pairwise([x, y], [y], metric="pwcca"), reprsim.METRICS["pwcca"].range),
    (lambda x, y: reprsim.pairwise([x, y], metric="angular_procrustes"), reprsim.METRICS["angular_procrustes"].range),
    (lambda x, y: reprsim.StreamingSimilarity().update(x, y).update(x, y).distance("cka"), (0.0, 1.0)),
    (lambda x, y: reprsim.StreamingSimilarity().update(x[: len(x) // 2 + 1], y[: len(y) // 2 + 1])
     .update(x[len(x) // 2 + 1:], y[len(y) // 2 + 1:]).distance("pwcca"), (0.0, 1.0)),
    (lambda x, y: reprsim.StreamingSimilarity().update(x, y).canonical_correlations(), (0.0, 1.0)),
    (lambda x, y: reprsim.minibatch_cka(x, y, batch_size=4), (-1.0, 1.0)),
    (lambda x, y: reprsim.StreamingMinibatchCKA(debiased=False).update(x, y).result(), (0.0, 1.0)),
    (lambda x, y: reprsim.permutation_test(x, y, n_permutations=3, seed=0).null_distribution, (0.0, 1.0)),
    (lambda x, y: reprsim.permutation_test(x, y, "procrustes", n_permutations=2, seed=0).statistic, (0.0, 2.0)),
    (lambda x, y: reprsim.bootstrap(x, y, "cka", n_resamples=3, seed=0, method="percentile").statistic, (0.0, 1.0)),
]


def _array(fdp: atheris.FuzzedDataProvider, n: int) -> np.ndarray:
    p = fdp.ConsumeIntInRange(1, 12)
    dtype = np.dtype(DTYPES[fdp.ConsumeIntInRange(0, len(DTYPES) - 1)])
    layout = fdp.ConsumeIntInRange(0, 5)
    if dtype == object:
        return np.array([[fdp.ConsumeRegularFloat() for _ in range(p)] for _ in range(n)], dtype=object)
    step_r, step_c = (2, 1) if layout == 1 else (1, 3) if layout == 2 else (1, 1)
    shape = (n * step_r, p * step_c)
    count = shape[0] * shape[1]
    raw = fdp.ConsumeBytes(count * dtype.itemsize + 1)
    raw = raw + bytes(count * dtype.itemsize + 1 - len(raw))
    # offset 1 gives an unaligned array for multi-byte dtypes
    offset = 1 if layout == 5 else 0
    a = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape)
    a = a[::step_r, ::step_c]
    if layout == 3:
        a = a[::-1]
    elif layout == 4:
        a = np.asfortranarray(a)
    return a


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    n = fdp.ConsumeIntInRange(1, 24)
    fn, (low, high) = FUNCTIONS[fdp.ConsumeIntInRange(0, len(FUNCTIONS) - 1)]
    x, y = _array(fdp, n), _array(fdp, n)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            value = fn(x, y)
    except (ValueError, TypeError):
        return
    values = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise AssertionError(f"non-finite result {value!r}")
    if not (np.all(values >= low - 1e-5) and np.all(values <= high + 1e-5)):
        raise AssertionError(f"{value!r} outside [{low}, {high}]")
    if not math.isfinite(float(values.sum())):
        raise AssertionError("overflow in the result")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
