"""Fast start: `clinicgym --help` and a run against an HTTP model import no heavy library.

torch, transformers, SDV, shap, matplotlib and scikit-learn are imported only by the code paths
that need them (local models, cohorts, probes, plots), so an API model's run starts in about a
second and works on the light core install (issue 22)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.agents.fake_openai import FakeOpenAIServer, clinician_script

SMALL_KB = str(Path(__file__).parents[1] / "data" / "kb_small")
HEAVY = ("torch", "transformers", "sdv", "shap", "matplotlib", "sklearn")
FINALISE_ONLY = ("pandas", "pyarrow", "scipy")
"""Loaded to write scores.parquet and the summary's intervals, never before the first episode."""
PROBE = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: print('MODULES ' + json.dumps(sorted({m.split('.')[0] "
    "for m in sys.modules}))))\n"
    "import clinicgym.runs.runner as R\n"
    "play = R.play_planned\n"
    "async def first(*a, **k):\n"
    "    if not getattr(first, 'seen', None):\n"
    "        first.seen = sorted({m.split('.')[0] for m in sys.modules})\n"
    "        print('FIRST ' + json.dumps(first.seen))\n"
    "    return await play(*a, **k)\n"
    "R.play_planned = first\n"
    "from clinicgym.runs.cli import main\n"
    "sys.argv = ['clinicgym', *sys.argv[1:]]\n"
    "main()\n"
)


def _first(out: str) -> set[str]:
    """The top-level modules loaded when the first episode started."""
    line = next(x for x in out.splitlines() if x.startswith("FIRST "))
    return set(json.loads(line.removeprefix("FIRST ")))


def _modules(*args: str) -> tuple[set[str], str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("MODULES "))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return set(json.loads(line.removeprefix("MODULES "))), proc.stdout


def test_help_imports_no_heavy_library():
    mods, out = _modules("--help")
    assert "Usage" in out
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))


def test_a_run_against_an_http_model_imports_no_heavy_library(tmp_path):
    with FakeOpenAIServer(clinician_script(turns=3, latency=0.0)) as srv:
        mods, out = _modules(
            "run", "--agent", f"openai:m@{srv.url}", "--cases", "2", "--kb", SMALL_KB,
            "--out", str(tmp_path / "run"), "--quiet",
        )  # fmt: skip
        assert len(srv.requests) >= 2  # the episodes really talked to the model
    assert (tmp_path / "run" / "summary.json").exists()
    assert "clinicgym" in mods and "aiohttp" in mods  # the probe sees the run's imports
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))
    at_first = _first(out)
    assert "clinicgym" in at_first and "pandas" in mods  # finalise did load pandas
    assert not at_first & set(FINALISE_ONLY), sorted(at_first & set(FINALISE_ONLY))
