import numpy as np
import pytest

import reprsim
from reprsim import cli

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


def test_demo_prints_every_metric_with_expected_pattern(capsys):
    assert cli.main(["demo", "--n", "200", "--p", "16"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()[4:] if line.strip()}
    assert set(lines) == set(reprsim.METRICS)
    for metric, (rotated, scaled, noisy, linear, unrelated) in lines.items():
        if "isotropic_scaling" in reprsim.METRICS[metric].invariances:
            assert abs(float(scaled)) < 1e-6, metric  # every metric that claims it ignores isotropic scaling
        assert float(unrelated) > float(noisy), metric
    assert abs(float(lines["cka"][0])) < 1e-6 and abs(float(lines["mean_cca"][3])) < 1e-6


def test_compare_two_saved_arrays(tmp_path, capsys, rng):
    x = rng.standard_normal((40, 5))
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", x @ rng.standard_normal((5, 3)))
    assert cli.main(["compare", str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("mean_cca "))
    assert abs(float(row.split()[1])) < 1e-6


def test_compare_reports_bad_files(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.ones((5, 2, 2)))
    assert cli.main(["compare", str(tmp_path / "a.npy"), str(tmp_path / "a.npy")]) == 2
    assert "2-D" in capsys.readouterr().err
    assert cli.main(["compare", str(tmp_path / "missing.npy"), str(tmp_path / "a.npy")]) == 2
