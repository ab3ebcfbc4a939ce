"""The reprsim command: exit codes (in a subprocess, as a shell sees them), messages and output formats."""

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import reprsim
from reprsim import cli


def run(*args, cwd=None):
    """The command in a fresh interpreter: (exit status, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "reprsim.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def files(tmp_path, rng):
    x = rng.standard_normal((40, 5))
    y = x @ rng.standard_normal((5, 3)) + 0.1 * rng.standard_normal((40, 3))
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", y)
    return tmp_path, x, y


def test_nan_file_gives_one_message_naming_the_file_and_exit_2(files):
    tmp, x, _ = files
    bad = x.copy()
    bad[3, 1] = np.nan
    np.save(tmp / "nan.npy", bad)
    code, out, err = run("compare", str(tmp / "nan.npy"), str(tmp / "b.npy"))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "nan.npy contains NaN or Inf" in lines[0] and "row 3, column 1" in lines[0]
    assert "x " not in lines[0]


def test_constant_file_gives_one_message_and_exit_2(files):
    tmp, _, _ = files
    np.save(tmp / "const.npy", np.ones((40, 3)))
    code, out, err = run("compare", str(tmp / "a.npy"), str(tmp / "const.npy"))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "const.npy is constant" in err


def test_empty_file_and_dev_null_are_input_errors_not_tracebacks(files):
    tmp, _, _ = files
    (tmp / "empty.npy").write_bytes(b"")
    paths = [str(tmp / "empty.npy")] + (["/dev/null"] if os.path.exists("/dev/null") else [])
    for path in paths:
        code, _, err = run("compare", path, str(tmp / "b.npy"))
        assert code == 2 and "Traceback" not in err
        assert f"{path} is empty" in err


def test_text_file_is_read_as_a_table_or_refused_without_pickle_advice(files):
    tmp, x, y = files
    np.savetxt(tmp / "a.csv", x, delimiter=",")
    np.savetxt(tmp / "a.txt", x)
    (tmp / "notes.npy").write_text("not an array\n")
    (tmp / "header.csv").write_text("f1,f2\n1,2\n3,4\n")
    code, _, err = run("compare", str(tmp / "notes.npy"), str(tmp / "b.npy"))
    assert code == 2 and "Traceback" not in err
    assert "unsafely" not in err and "pickle" not in err
    assert "notes.npy is neither a .npy file nor a .npz archive" in err and ".csv" in err
    assert cli.main(["compare", str(tmp / "header.csv"), str(tmp / "b.npy")]) == 2
    for table in ("a.csv", "a.txt"):
        got = cli.load_representation(str(tmp / table))
        np.testing.assert_allclose(got, x, rtol=1e-15)  # savetxt's default format keeps 18 digits


def test_object_array_is_refused_without_unpickling(files):
    tmp, _, _ = files
    np.save(tmp / "obj.npy", np.array([{"a": 1}] * 40, dtype=object), allow_pickle=True)
    with pytest.raises(cli.InputError, match="obj.npy holds Python objects"):
        cli.load_representation(str(tmp / "obj.npy"))


def test_npz_takes_its_only_array_or_the_named_one(files, capsys):
    tmp, x, y = files
    np.savez(tmp / "one.npz", x)
    np.savez(tmp / "two.npz", acts=x, labels=np.arange(40))
    np.testing.assert_array_equal(cli.load_representation(str(tmp / "one.npz")), x)
    with pytest.raises(cli.InputError, match=r"two.npz holds 2 arrays \(acts, labels\); choose one with --key-a"):
        cli.load_representation(str(tmp / "two.npz"), key_option="--key-a")
    with pytest.raises(cli.InputError, match="has no array named 'act'; it holds acts, labels"):
        cli.load_representation(str(tmp / "two.npz"), "act")
    assert cli.main(["compare", str(tmp / "two.npz"), str(tmp / "b.npy"), "--key-a", "acts", "--metric", "cka",
                     "--json"]) == 0
    record = json.loads(capsys.readouterr().out)[0]
    assert record["value"] == pytest.approx(reprsim.cka(x, y), rel=1e-12)
    assert cli.main(["compare", str(tmp / "a.npy"), str(tmp / "b.npy"), "--key", "acts"]) == 2
    assert "--key applies to .npz archives" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["missing.npy", "b.npy"], "missing.npy: no such file"),
    (["a3d.npy", "b.npy"], "a3d.npy holds an array of shape (40, 2, 2); reprsim compares 2-D arrays"),
    (["short.npy", "b.npy"], "short.npy has 30 samples (rows) and b.npy has 40"),
    (["a.npy", "b.npy", "--metric", "kca"], "--metric kca: unknown metric 'kca'; did you mean 'cka'?"),
    (["a.npy", "b.npy", "--metric", "svcca:variance=2"], "--metric svcca:variance=2: variance must be"),
    (["a.npy", "b.npy", "--metric", "svcca:0.9"], "options are KEY=VALUE pairs"),
    (["a.npy", "b.npy", "--metric", "cka:debaised=true"], "did you mean 'debiased'?"),
])
def test_input_and_usage_errors_exit_2_with_one_message(files, capsys, monkeypatch, argv, message):
    tmp, x, _ = files
    np.save(tmp / "a3d.npy", np.ones((40, 2, 2)))
    np.save(tmp / "short.npy", x[:30])
    monkeypatch.chdir(tmp)
    assert cli.main(["compare", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err and len(captured.err.strip().splitlines()) == 1


def test_undefined_measure_exits_1_with_each_reason_once_and_the_others_computed(files):
    tmp, x, y = files
    code, out, err = run("compare", "a.npy", "b.npy", "--metric", "mutual_knn:k=50", "--metric", "jaccard_knn:k=50",
                         "--metric", "cka", cwd=tmp)
    assert code == 1
    cka_row = next(line for line in out.splitlines() if line.startswith("cka "))
    assert float(cka_row.split()[1]) == pytest.approx(reprsim.cka(x, y), abs=5e-5)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one reason, shared by the two measures
    assert lines[0].startswith("reprsim compare: mutual_knn(k=50), jaccard_knn(k=50): undefined: k must be between")


def test_messages_name_the_files_not_x_and_y(files, capsys, monkeypatch):
    tmp, x, _ = files
    np.save(tmp / "one_feature.npy", x[:, :1])  # every row is constant: RSA's correlation distance is undefined
    monkeypatch.chdir(tmp)
    assert cli.main(["compare", "one_feature.npy", "b.npy", "--metric", "rsa", "--metric", "cka"]) == 1
    err = capsys.readouterr().err
    assert "one_feature.npy has 40 constant rows" in err
    assert "x has" not in err


def test_demo_refuses_too_few_samples_without_warnings():
    code, out, err = run("demo", "--n", "0")
    assert code == 2 and out == ""
    assert "argument --n: must be at least 2, got 0" in err and "Warning" not in err


def test_demo_prints_every_metric_with_expected_pattern_and_no_negative_zero(capsys):
    assert cli.main(["demo", "--n", "200", "--p", "16"]) == 0
    out = capsys.readouterr().out
    assert "-0.0000" not in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()[4:] if line.strip()}
    assert set(lines) == set(reprsim.METRICS)
    for metric, (rotated, scaled, noisy, linear, unrelated) in lines.items():
        if "isotropic_scaling" in reprsim.METRICS[metric].invariances:
            assert abs(float(scaled)) < 1e-6, metric  # every metric that claims it ignores isotropic scaling
        assert float(unrelated) > float(noisy), metric
    assert abs(float(lines["cka"][0])) < 1e-6 and abs(float(lines["mean_cca"][3])) < 1e-6


def test_fmt_never_prints_negative_zero():
    assert cli.fmt(-1e-17) == "0.0000" and cli.fmt(-0.0) == "0.0000" and cli.fmt(-0.00004) == "0.0000"
    assert cli.fmt(-0.00006) == "-0.0001" and cli.fmt(None) == "undefined"


def test_version_and_help_document_exit_codes():
    code, out, _ = run("--version")
    assert code == 0 and out.strip() == f"reprsim {reprsim.__version__}"
    code, out, _ = run("--help")
    assert code == 0
    assert "exit status:" in out and "0  every requested measure" in out and "2  usage or input error" in out
    code, out, _ = run("compare", "--help")
    assert code == 0 and "--metric NAME[:KEY=VALUE,...]" in out and "value_kind" in out


def test_compare_table_prints_value_distance_and_kind(files, capsys, monkeypatch):
    tmp, x, y = files
    monkeypatch.chdir(tmp)
    assert cli.main(["compare", "a.npy", "b.npy"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "a.npy (40, 5) vs b.npy (40, 3): 40 samples"
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[3:] if line.strip()}
    assert set(rows) == set(reprsim.METRICS)
    cka = reprsim.cka(x, y)
    assert rows["cka"][:2] == [cli.fmt(cka), cli.fmt(1.0 - cka)]
    assert rows["procrustes"][2] == "distance" and rows["cka"][2] == "similarity"


def test_metric_options_and_json_schema(files, capsys, monkeypatch):
    tmp, x, y = files
    monkeypatch.chdir(tmp)
    argv = ["compare", "a.npy", "b.npy", "--metric", "svcca:variance=0.9,convention=singular_values",
            "--metric", "mutual_knn:k=5", "--metric", "procrustes:angular=true", "--json"]
    assert cli.main(argv) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["metric"] for r in records] == ["svcca", "mutual_knn", "procrustes"]
    for r in records:
        assert set(r) == {"metric", "options", "value", "distance", "value_kind", "n", "paths", "error"}
        assert r["n"] == 40 and r["paths"] == ["a.npy", "b.npy"] and r["error"] is None
        assert r["value"] == pytest.approx(reprsim.measure(x, y, r["metric"], **r["options"]), rel=1e-12)
        assert r["distance"] == pytest.approx(reprsim.distance(x, y, r["metric"], **r["options"]), rel=1e-12)
    assert records[0]["options"] == {"variance": 0.9, "convention": "singular_values"}
    assert records[1]["options"] == {"k": 5} and records[2]["options"] == {"angular": True}
    assert records[2]["value_kind"] == "distance" and records[0]["value_kind"] == "similarity"


def test_csv_output_has_one_row_per_measure(files, capsys, monkeypatch):
    tmp, x, y = files
    monkeypatch.chdir(tmp)
    assert cli.main(["compare", "a.npy", "b.npy", "--metric", "cka", "--metric", "mutual_knn:k=60", "--csv"]) == 1
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == list(cli.CSV_FIELDS)
    assert float(rows[0]["value"]) == reprsim.cka(x, y) and rows[0]["error"] == ""
    assert rows[1]["value"] == "" and rows[1]["options"] == "k=60" and "k must be between" in rows[1]["error"]
    assert rows[1]["path_a"] == "a.npy" and rows[1]["n"] == "40"


def test_metrics_command_lists_every_measure_and_its_options(capsys):
    assert cli.main(["metrics"]) == 0
    out = capsys.readouterr().out
    for name in reprsim.METRICS:
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name
    assert "variance=0.99" in out and "k=10" in out
