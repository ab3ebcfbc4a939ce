"""Which metric to trust? Scoring dissimilarity metrics against functional differences.

Implements the framework of Ding, Denain & Steinhardt (NeurIPS 2021), "Grounding Representation
Similarity with Statistical Testing": a metric is scored by the rank correlation between its
dissimilarities and functional differences (|Δ probe accuracy|, |Δ OOD accuracy|) over many pairs of
representations.

- :func:`score`, :func:`protocol`, :func:`replay`: the scoring API.
- :func:`delete_principal_components`, :func:`layer_identification`, :func:`detection_threshold`:
  the perturbations and tests.
- :func:`run_suite`: the local benchmark behind ``reprsim benchmark`` (small ReLU networks trained
  here on scikit-learn's digits).

scipy is needed for the rank statistics; scikit-learn for the suite's data
(``pip install ".[benchmark]"`` in the reprsim source folder).
"""

from .generators import (
    DetectionResult,
    LayerIdentification,
    delete_principal_components,
    detection_threshold,
    first_drop,
    layer_groups,
    layer_identification,
)
from .scoring import (
    PADDED_CCA,
    PAPER_CONVENTIONS,
    PaddedCCA,
    ProtocolResult,
    Score,
    dissimilarities_to_reference,
    pairwise_dissimilarities,
    percentile_ranks,
    protocol,
    replay,
    score,
)
from .suite import FULL, QUICK, SuiteConfig, format_table, plot_records, run_suite, suite_metrics

__all__ = [
    "FULL",
    "PADDED_CCA",
    "PAPER_CONVENTIONS",
    "QUICK",
    "DetectionResult",
    "LayerIdentification",
    "PaddedCCA",
    "ProtocolResult",
    "Score",
    "SuiteConfig",
    "delete_principal_components",
    "detection_threshold",
    "dissimilarities_to_reference",
    "first_drop",
    "format_table",
    "layer_groups",
    "layer_identification",
    "pairwise_dissimilarities",
    "percentile_ranks",
    "plot_records",
    "protocol",
    "replay",
    "run_suite",
    "score",
    "suite_metrics",
]
