"""reprsim: fast, exact comparison of neural-network representations.

Similarities (``cka``, ``mean_cca``, ``mean_sq_cca``, ``svcca``, ``pwcca``) and distances
(``procrustes_distance``, ``distance``, ``pairwise``) over activation matrices of shape
(n_samples, n_features). See ``reprsim.METRICS`` for the registry of dissimilarities.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:  # the OpenBLAS library the kernels link to; importing it loads it where RPATH is not honoured
    import scipy_openblas32 as _scipy_openblas32  # noqa: F401
except ImportError:  # pragma: no cover
    pass

from . import _core, benchmark
from ._inference import (
    BootstrapResult,
    CalibratedCKAResult,
    ConfidenceInterval,
    PermutationTestResult,
    bootstrap,
    calibrated_cka,
    permutation_test,
)
from ._metrics import (
    CCASummary,
    canonical_correlations,
    cca_summary,
    cka,
    distance,
    mean_cca,
    mean_sq_cca,
    pairwise,
    procrustes_distance,
    pwcca,
    svcca,
)
from ._registry import METRICS, MetricInfo
from ._streaming import StreamingMinibatchCKA, StreamingSimilarity, minibatch_cka

try:
    __version__ = version("reprsim")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0+unknown"


def set_num_threads(n: int) -> None:
    """Set the number of threads of reprsim's BLAS (scipy-openblas32). Does not affect numpy's."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Number of threads reprsim's BLAS uses."""
    return int(_core.get_num_threads())


__all__ = [
    "METRICS",
    "BootstrapResult",
    "CCASummary",
    "CalibratedCKAResult",
    "ConfidenceInterval",
    "MetricInfo",
    "PermutationTestResult",
    "StreamingMinibatchCKA",
    "StreamingSimilarity",
    "benchmark",
    "bootstrap",
    "calibrated_cka",
    "canonical_correlations",
    "cca_summary",
    "cka",
    "distance",
    "get_num_threads",
    "mean_cca",
    "mean_sq_cca",
    "minibatch_cka",
    "pairwise",
    "permutation_test",
    "procrustes_distance",
    "pwcca",
    "set_num_threads",
    "svcca",
    "__version__",
]
