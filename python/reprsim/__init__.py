"""reprsim: fast, exact comparison of neural-network representations.

Similarities (``cka``, ``mean_cca``, ``mean_sq_cca``, ``svcca``, ``pwcca``) and distances
(``procrustes_distance``, ``distance``) over activation matrices of shape (n_samples, n_features);
labelled matrices of many representations (``pairwise``, ``pairwise_distances``, returning a
``Comparison``); neighbourhood alignment (``mutual_knn``, ``jaccard_knn``, ``cycle_knn``,
``cknna``), representational similarity analysis (``rdm``, ``rsa``), generalized shape metrics
(``shape_distance``, ``permutation_distance``), Bures (``nbs``, ``bures_distance``), ``gulp_distance``,
``soft_matching`` and cross-validated ``linear_predictivity``. See ``reprsim.METRICS`` for the registry.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, version

# OpenBLAS's idle threads busy-wait for about 2**28 cycles (~0.1 s) after each call before they sleep;
# on a machine whose cores another BLAS needs next, that spinning steals them. The linked library is
# told to sleep after 2**16 cycles (tens of microseconds), unless the user chose a value: the variable
# is read once, when the library loads (importing scipy_openblas32 loads it, as does _core), and is put
# back right after.
_timeout_env = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
if _timeout_env is None:
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = "16"
try:
    # The OpenBLAS library the kernels link to comes from the scipy-openblas32 package (a dependency,
    # not bundled in the wheel). Linux and macOS find it through _core's RPATH into that package;
    # importing the package also loads it, which covers interpreters that do not honour the RPATH.
    # Windows has no RPATH: the DLL's folder is added to the DLL search path before _core is imported.
    try:
        import scipy_openblas32 as _scipy_openblas32
    except ImportError:  # pragma: no cover
        _scipy_openblas32 = None
    if sys.platform == "win32" and _scipy_openblas32 is not None:  # pragma: no cover
        _dll_directory = os.add_dll_directory(_scipy_openblas32.get_lib_dir())
    from . import _core
finally:
    if _timeout_env is None:
        os.environ.pop("OPENBLAS_THREAD_TIMEOUT", None)

from . import _blas, _fork, benchmark
from ._compute import SampleSizeWarning
from ._inference import (
    BootstrapResult,
    CalibratedCKAResult,
    ConfidenceInterval,
    PermutationTestResult,
    bootstrap,
    calibrated_cka,
    permutation_test,
)
from ._folds import PredictivityResult, SkippedTargetsWarning
from ._metrics import (
    CCASummary,
    bures_distance,
    canonical_correlations,
    cca_summary,
    cka,
    distance,
    ensd,
    gulp_distance,
    linear_predictivity,
    mean_cca,
    mean_sq_cca,
    measure,
    minibatch_cka,
    nbs,
    pairwise,
    pairwise_distances,
    permutation_distance,
    predictivity_scores,
    procrustes_distance,
    pwcca,
    shape_distance,
    soft_matching,
    svcca,
)
from ._neighbours import cknna, cycle_knn, jaccard_knn, mutual_knn
from ._registry import METRICS, Measure, MetricInfo
from ._result import Comparison
from ._rsa import rdm, rsa
from ._streaming import StreamingMinibatchCKA, StreamingSimilarity

_fork.install()  # os.fork() waits for reprsim's calls in other threads (see reprsim._fork)

try:
    __version__ = version("reprsim")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0+unknown"


def set_num_threads(n: int | None) -> None:
    """Limit the threads of reprsim's calls.

    reprsim's products and factorisations run on the BLAS reported by :func:`blas_info` (numpy's own
    OpenBLAS when it can, else the linked scipy-openblas32). A call above about 2e7 flops runs on
    ``min(n, the library's own setting)`` threads, where the library's own setting is the one
    ``OPENBLAS_NUM_THREADS``, ``threadpoolctl.threadpool_limits`` or (when the library is numpy's)
    numpy's users control; smaller calls run on one thread. reprsim's memory-bound passes (centring)
    use as many threads of their own. The limit applies to reprsim's calls only: numpy keeps its own
    setting.

    Parameters
    ----------
    n : int or None
        Most threads per call, at least 1; ``None`` removes the limit (the library's setting applies).

    Raises
    ------
    ValueError
        ``n`` is neither a positive integer nor None.
    """
    if n is None:
        _core.set_num_threads(0)
        return
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer or None, got {n!r}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Number of threads a large reprsim call uses now.

    Returns
    -------
    int
        ``min(limit, the BLAS library's own setting)``, or the library's setting when no limit is set
        (see :func:`set_num_threads`).
    """
    return int(_core.get_num_threads())


def blas_info() -> dict[str, object]:
    """Which BLAS library reprsim's kernels call.

    Returns
    -------
    dict
        ``library``: ``"numpy"`` (numpy's own OpenBLAS, one thread pool shared with numpy) or
        ``"scipy-openblas32"`` (the linked library, a pool of its own); ``path``: the library file
        (numpy's) or ``""``; ``config``: OpenBLAS's build configuration string; ``threads``: what
        :func:`get_num_threads` returns; ``reason``: why numpy's library is not used, when it is not.
    """
    return _blas.info()


__all__ = [
    "METRICS",
    "BootstrapResult",
    "CCASummary",
    "CalibratedCKAResult",
    "Comparison",
    "ConfidenceInterval",
    "Measure",
    "MetricInfo",
    "PermutationTestResult",
    "PredictivityResult",
    "SkippedTargetsWarning",
    "SampleSizeWarning",
    "StreamingMinibatchCKA",
    "StreamingSimilarity",
    "benchmark",
    "blas_info",
    "bootstrap",
    "bures_distance",
    "calibrated_cka",
    "canonical_correlations",
    "cca_summary",
    "cka",
    "cknna",
    "cycle_knn",
    "distance",
    "ensd",
    "get_num_threads",
    "gulp_distance",
    "jaccard_knn",
    "linear_predictivity",
    "mean_cca",
    "mean_sq_cca",
    "measure",
    "minibatch_cka",
    "mutual_knn",
    "nbs",
    "pairwise",
    "pairwise_distances",
    "permutation_distance",
    "permutation_test",
    "predictivity_scores",
    "procrustes_distance",
    "pwcca",
    "rdm",
    "rsa",
    "set_num_threads",
    "shape_distance",
    "soft_matching",
    "svcca",
    "__version__",
]
