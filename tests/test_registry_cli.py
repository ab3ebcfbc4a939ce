import numpy as np
import pytest

import reprsim

EXPECTED = {"cka", "debiased_cka", "mean_cca", "mean_sq_cca", "svcca", "pwcca", "procrustes", "angular_procrustes",
            "ensd", "rbf_cka", "minibatch_cka", "mutual_knn", "jaccard_knn", "cycle_knn", "cknna", "rsa"}


def test_registry_names_and_metadata():
    assert EXPECTED <= set(reprsim.METRICS)
    for name, info in reprsim.METRICS.items():
        assert info.name == name and info.value_kind in ("similarity", "distance")
        assert info.range[0] < info.range[1] and info.value_range[0] < info.value_range[1]
        assert info.estimator in {"biased", "debiased", "exact", "minibatch", "cross-validated"}
        assert info.statistics in ("moments", "factor", "kernel", "minibatch", "neighbours", "rdm", "folds")
        assert callable(getattr(reprsim, info.function))
        if info.similarity is not None:
            assert info.value_kind == "similarity" and callable(getattr(reprsim, info.similarity))
        bound = info.bind()  # the defaults pass the option checks
        assert bound.min_n >= 2
    assert reprsim.METRICS["cka"].defaults == {"debiased": False}
    assert reprsim.METRICS["debiased_cka"].defaults == {}
    assert reprsim.METRICS["procrustes"].value_kind == "distance"
    assert "invertible_linear" in reprsim.METRICS["mean_cca"].invariances
    assert "invertible_linear" not in reprsim.METRICS["cka"].invariances
    assert reprsim.METRICS["angular_procrustes"].is_metric


def test_registry_is_read_only():
    with pytest.raises(TypeError):
        reprsim.METRICS["new"] = reprsim.METRICS["cka"]
    with pytest.raises(AttributeError):
        reprsim.METRICS["cka"].symmetric = False


def test_version():
    assert reprsim.__version__.count(".") >= 2
