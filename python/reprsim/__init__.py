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

# The OpenBLAS library the kernels link to comes from the scipy-openblas32 package (a dependency, not
# bundled in the wheel). Linux and macOS find it through _core's RPATH into that package; importing
# the package also loads it, which covers interpreters that do not honour the RPATH. Windows has no
# RPATH: the DLL's folder is added to the DLL search path before _core is imported.
try:
    import scipy_openblas32 as _scipy_openblas32
except ImportError:  # pragma: no cover
    _scipy_openblas32 = None
if sys.platform == "win32" and _scipy_openblas32 is not None:  # pragma: no cover
    _dll_directory = os.add_dll_directory(_scipy_openblas32.get_lib_dir())

from . import _core, _fork, benchmark
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


def set_num_threads(n: int) -> None:
    """Set the number of threads of reprsim's BLAS (scipy-openblas32).

    Process-wide; numpy's and torch's BLAS keep their own settings. Small products run on one thread
    whatever this says.

    Parameters
    ----------
    n : int
        Number of threads, at least 1.

    Raises
    ------
    ValueError
        ``n`` is not a positive integer.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Number of threads reprsim's BLAS (scipy-openblas32) uses.

    Returns
    -------
    int
        The current setting (see :func:`set_num_threads`).
    """
    return int(_core.get_num_threads())


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
