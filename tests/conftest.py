"""Shared fixtures: the small test KB, its sampler and the (session-wide) question matcher."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA = Path(__file__).parent / "data"
SMALL_KB = DATA / "kb_small"


@pytest.fixture(scope="session")
def small_kb():
    from clinicgym.patients.kb import load_kb

    return load_kb(SMALL_KB)


@pytest.fixture(scope="session")
def sampler(small_kb):
    from clinicgym.patients.sampler import CaseSampler

    return CaseSampler(small_kb)


@pytest.fixture(scope="session")
def matcher(small_kb):
    from clinicgym.patients.matching import matcher_for

    return matcher_for(small_kb)


@pytest.fixture
def kb_copy(tmp_path: Path) -> Path:
    """A writable copy of the small KB, for tests that break it on purpose."""
    dst = tmp_path / "kb"
    shutil.copytree(SMALL_KB, dst)
    return dst
