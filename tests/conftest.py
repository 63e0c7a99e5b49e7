"""Shared fixtures: the small test KB, its sampler and the (session-wide) question matcher;
and the light core's rule: a test module that needs an extra skips, naming it, when it is absent."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA = Path(__file__).parent / "data"
SMALL_KB = DATA / "kb_small"

NEEDS_EXTRA = {
    "test_hf.py": ("local", "torch"),
    "test_hf_vision.py": ("local", "torch"),
    "test_cohort_report.py": ("cohorts", "sdv"),
    "test_cohort_synthesis.py": ("cohorts", "sdv"),
    "test_cohort_targeting.py": ("cohorts", "sdv"),
    "test_cohort_cli.py": ("cohorts", "sdv"),
}
"""Test modules that import an extra's library at the top, with the extra and that library
(a single test that needs one is marked with `tests.extras.needs`)."""


class _NeedsExtra(pytest.Module):
    reason = ""

    def collect(self):  # type: ignore[override]
        pytest.skip(self.reason)


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector):
    """A module listed in NEEDS_EXTRA is reported as skipped, not as a collection error."""
    need = NEEDS_EXTRA.get(module_path.name)
    if need is None or importlib.util.find_spec(need[1]) is not None:
        return None
    module = _NeedsExtra.from_parent(parent, path=module_path)
    module.reason = f"needs the '{need[0]}' extra ({need[1]} is not installed: the light core)"
    return module


@pytest.fixture(scope="session")
def small_kb():
    from clinicgym.patients.knowledge.kb import load_kb

    return load_kb(SMALL_KB)


@pytest.fixture(scope="session")
def sampler(small_kb):
    from clinicgym.patients.cases.sampler import CaseSampler

    return CaseSampler(small_kb)


@pytest.fixture(scope="session")
def matcher(small_kb):
    from clinicgym.patients.patient.matching import matcher_for

    return matcher_for(small_kb)


@pytest.fixture
def kb_copy(tmp_path: Path) -> Path:
    """A writable copy of the small KB, for tests that break it on purpose."""
    dst = tmp_path / "kb"
    shutil.copytree(SMALL_KB, dst)
    return dst
