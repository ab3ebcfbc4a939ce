"""Every public function and class documents its parameters and return value (numpydoc checks).

The public API is ``reprsim.__all__``, ``reprsim.benchmark.__all__`` and ``reprsim.torch.__all__`` (when
torch is installed), with the public methods and properties of their classes. The checks are
numpydoc's validation codes for what a reader cannot do without: a docstring and a summary (GL08,
SS01), every parameter documented with a type and a description and no unknown one (PR01, PR02,
PR04, PR07), and a described Returns section (RT01, RT03). Style codes (extended summary, examples,
See Also, wording) are not enforced. Result classes built by the library (dataclasses) document their
fields under Attributes rather than Parameters, which counts as documented here.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import re

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")
from numpydoc.docscrape import ClassDoc  # noqa: E402

import reprsim  # noqa: E402
import reprsim.benchmark  # noqa: E402

CHECKS = {"GL08", "SS01", "PR01", "PR02", "PR04", "PR07", "RT01", "RT03"}


def _public_objects() -> list[str]:
    modules = [reprsim, reprsim.benchmark]
    if importlib.util.find_spec("torch") is not None:
        modules.append(importlib.import_module("reprsim.torch"))
    out = []
    for mod in modules:
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue  # constants, submodules, __version__
            path = f"{mod.__name__}.{name}"
            out.append(path)
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    if not attr.startswith("_") and (
                        inspect.isfunction(value) or isinstance(value, (classmethod, staticmethod, property))
                    ):
                        out.append(f"{path}.{attr}")
    return out


def _resolve(path: str):
    parts = path.split(".")
    obj = reprsim
    for p in parts[1:]:
        obj = getattr(obj, p)
    return obj


def _attribute_names(cls: type) -> set[str]:
    names = set()
    for item in ClassDoc(cls, config={"show_class_members": False})["Attributes"]:
        names.update(n.strip() for n in item.name.split(","))
    return names


PUBLIC = _public_objects()


@pytest.mark.parametrize("path", PUBLIC)
def test_public_docstring_documents_parameters_and_returns(path):
    obj = _resolve(path)
    problems = []
    for code, message in numpydoc_validate.validate(path)["errors"]:
        if code not in CHECKS:
            continue
        if code == "PR01" and inspect.isclass(obj) and dataclasses.is_dataclass(obj):
            missing = set(re.findall(r"'([^']+)'", message))
            if missing <= _attribute_names(obj):
                continue  # fields documented under Attributes
        problems.append(f"{code}: {message}")
    assert not problems, f"{path}: " + "; ".join(problems)


METRIC_FUNCTIONS = ["cka", "canonical_correlations", "mean_cca", "mean_sq_cca", "svcca", "pwcca",
                    "procrustes_distance", "minibatch_cka", "calibrated_cka"]


@pytest.mark.parametrize("name", METRIC_FUNCTIONS)
def test_metric_docstrings_state_kind_range_errors_and_reference(name):
    doc = inspect.getdoc(getattr(reprsim, name))
    assert re.search(r"\b(similarity|distance|correlations?)\b", doc, re.I), "similarity or distance"
    assert re.search(r"\[0, (1|2|π/2)\]|at most 1", doc), "range"
    for section in ("Parameters", "Returns", "Raises", "References"):
        assert f"\n{section}\n---" in doc, section
