"""Each patients/ subpackage's face exports its public names lazily (issue 21)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

FACES = ["knowledge", "cases", "cohorts", "patient"]


@pytest.mark.parametrize("face", FACES)
def test_every_exported_name_resolves_to_its_module(face):
    if face == "cohorts":
        pytest.importorskip("sdv", reason="the cohorts face's names need the 'cohorts' extra")
    pkg = importlib.import_module(f"clinicgym.patients.{face}")
    assert pkg.__all__, face
    for name in pkg.__all__:
        value = getattr(pkg, name)
        module = getattr(value, "__module__", None)
        if module is not None and module.startswith("clinicgym."):
            assert module.startswith(f"clinicgym.patients.{face}."), (name, module)
    assert set(pkg.__all__) <= set(dir(pkg))
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        pkg.no_such_name  # noqa: B018


def test_importing_a_face_imports_none_of_its_modules():
    code = (
        "import sys, clinicgym.patients.cohorts, clinicgym.patients.patient;"
        "print(sorted(m for m in sys.modules if m.startswith(('clinicgym.patients.cohorts.',"
        "'clinicgym.patients.patient.')) or m == 'sdv'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
