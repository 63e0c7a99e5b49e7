"""The OpenEnv server (runs/integrations/openenv_server.py) played with OpenEnv's own client.

The `openenv` extra is installed apart from `verifiers`, in its own venv built once by
tests/runs/openenv_venv.sh and cached outside the repository (about a minute the first time);
tests/runs/openenv_check.py runs there with this checkout on PYTHONPATH: two real servers on
127.0.0.1, four sessions at once, typed actions, observations and state, and a gate that ends a
consultation at its first high-severity violation. Skipped, saying why, where the venv cannot be
built; run in-process where openenv is installed in this venv.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def openenv_python() -> str:
    if importlib.util.find_spec("openenv") is not None:
        return sys.executable
    done = subprocess.run(
        ["bash", str(HERE / "openenv_venv.sh")], capture_output=True, text=True, timeout=1100
    )
    if done.returncode == 3:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_openenv_client_plays_concurrent_gated_sessions(openenv_python, tmp_path):
    path = tmp_path / "path"
    path.mkdir()
    (path / "clinicgym").symlink_to(ROOT)  # the package is the repository root
    env = {**os.environ, "PYTHONPATH": str(path), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [openenv_python, str(HERE / "openenv_check.py")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok: 4 sessions at once"), done.stdout
    assert "ai-disclosure-first-contact" in done.stdout


def test_the_server_module_names_its_extra_without_openenv():
    if importlib.util.find_spec("openenv") is not None:
        pytest.skip("openenv is installed here: the missing-extra message cannot show")
    from clinicgym.errors import MissingExtra

    with pytest.raises(MissingExtra, match=r"pip install 'clinicgym\[openenv\]'"):
        importlib.import_module("clinicgym.runs.integrations.openenv_server")
