"""The numpy core never imports the optional torch layer; the torch layer registers its backend itself."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

import reprsim

CORE = pathlib.Path(reprsim.__file__).parent


def _imports(path: pathlib.Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append("." * node.level + (node.module or ""))
    return out


@pytest.mark.parametrize("path", sorted(p.name for p in CORE.glob("*.py")))
def test_core_modules_do_not_import_the_torch_layer_anywhere(path):
    # At module level or inside functions: no "from .torch", "reprsim.torch" or "import torch" (CPU tensors
    # are read through their numpy view, device tensors through the registered backend).
    for name in _imports(CORE / path):
        assert not name.startswith(".torch") and not name.startswith("reprsim.torch"), (path, name)
        assert name != "torch" or path == "_validation.py", (path, name)


def test_every_measure_runs_with_torch_unimportable():
    code = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
# POT imports scikit-learn, whose array-API check reads sys.modules["torch"] and fails on None: without POT the
# transport measures take scipy's solver, as they do wherever POT is not installed
sys.modules["ot"] = None
import numpy as np
import reprsim
rng = np.random.default_rng(0)
x = rng.standard_normal((60, 6)); y = x @ rng.standard_normal((6, 5)) + rng.standard_normal((60, 5))
for name in reprsim.METRICS:
    reprsim.measure(x, y, name)
    reprsim.pairwise([x, y], metric=name)
acc = reprsim.StreamingSimilarity().update(x, y)
acc.measure("cka"); acc.measure("pwcca")
reprsim.permutation_test(x, y, "ensd", n_permutations=5, seed=0)
assert "reprsim.torch" not in sys.modules
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_the_torch_backend_registers_when_reprsim_torch_is_imported():
    pytest.importorskip("torch")
    import reprsim.torch  # noqa: F401
    from reprsim import _backend

    assert "torch" in _backend._BACKENDS
