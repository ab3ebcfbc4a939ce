"""The BLAS library reprsim calls (numpy's OpenBLAS when usable, else the linked one) and its threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import reprsim
from reprsim import _core


def test_blas_info_names_the_library_and_its_configuration():
    info = reprsim.blas_info()
    assert info["library"] in ("numpy", "scipy-openblas32")
    assert "OpenBLAS" in info["config"]
    assert info["threads"] == reprsim.get_num_threads()
    if info["library"] == "numpy":
        assert os.path.exists(info["path"]) and "USE64BITINT" in info["config"] and info["reason"] == ""
    else:
        assert info["reason"]


def test_numpy_openblas_is_used_when_numpy_bundles_an_ilp64_openblas():
    config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    if config.get("name") != "scipy-openblas" or "64" not in str(config.get("openblas configuration", "")):
        pytest.skip(f"numpy's BLAS here is {config.get('name')}")
    assert reprsim.blas_info()["library"] == "numpy"


def test_a_library_that_is_not_loaded_is_refused_and_nothing_changes(tmp_path):
    before = _core.blas_library()
    ok, why = _core.use_blas_library(str(tmp_path / "libnot_there.so"))
    assert not ok and "not loaded" in why
    assert _core.blas_library() == before


CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import reprsim
    rng = np.random.default_rng(3)
    z = rng.standard_normal((600, 5))
    x = z @ rng.standard_normal((5, 40)) + rng.standard_normal((600, 40))
    y = z @ rng.standard_normal((5, 30)) + rng.standard_normal((600, 30))
    print(json.dumps({"library": reprsim.blas_info()["library"], "values": [
        reprsim.cka(x, y), reprsim.cka(x.astype(np.float32), y.astype(np.float32)),
        reprsim.cka(x, y, debiased=True), reprsim.pwcca(x, y), reprsim.mean_cca(x, y),
        reprsim.procrustes_distance(x, y), reprsim.cka(x, y, kernel="rbf"),
        reprsim.svcca(x, y)]}))
    """
)


def _run(env_extra):
    env = dict(os.environ, **env_extra)
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_both_libraries_give_the_same_values():
    own = _run({"REPRSIM_BLAS": "scipy-openblas32"})
    auto = _run({})
    assert own["library"] == "scipy-openblas32"
    np.testing.assert_allclose(auto["values"], own["values"], rtol=1e-5, atol=1e-9)


def test_set_num_threads_limits_reprsim_without_touching_the_library_setting():
    library = _core.library_num_threads()
    try:
        reprsim.set_num_threads(1)
        assert reprsim.get_num_threads() == 1
        assert _core.library_num_threads() == library
        reprsim.set_num_threads(None)
        assert reprsim.get_num_threads() == library
    finally:
        reprsim.set_num_threads(None)


def test_threadpoolctl_limit_on_the_library_applies_to_reprsim():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    path = reprsim.blas_info()["path"] or "libscipy_openblas"
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        # Every OpenBLAS in the process is limited, the one reprsim calls among them.
        assert reprsim.get_num_threads() == 1, path
    assert reprsim.get_num_threads() == _core.library_num_threads()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_num_threads_rejects_what_is_not_a_positive_integer_or_none(bad):
    with pytest.raises(ValueError, match="positive integer or None"):
        reprsim.set_num_threads(bad)
