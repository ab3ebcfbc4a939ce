"""What the installed package promises besides its functions: version, type information, stubs."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

import reprsim

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_version_is_the_installed_distributions():
    assert reprsim.__version__ == importlib.metadata.version("reprsim")
    assert reprsim.__version__ != "0+unknown"


@pytest.mark.skipif(sys.version_info < (3, 11) or not PYPROJECT.is_file(), reason="needs tomllib and the source tree")
def test_version_matches_pyproject():
    import tomllib

    with open(PYPROJECT, "rb") as f:
        assert reprsim.__version__ == tomllib.load(f)["project"]["version"]


def test_typing_marker_and_compiled_module_stubs_are_installed():
    here = Path(reprsim.__file__).parent
    assert (here / "py.typed").is_file()
    stubs = (here / "_core.pyi").read_text()
    # Every public name of the compiled module is in its stubs.
    for name in dir(reprsim._core):
        if not name.startswith("_"):
            assert f"def {name}(" in stubs or f"class {name}" in stubs, name
