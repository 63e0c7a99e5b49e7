"""`clinicgym play`: a person's lines in, a score card out, the episode saved like a run's."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from clinicgym.runs.cli import app

SMALL_KB = str(Path(__file__).parents[1] / "data" / "kb_small")


def test_play_scores_a_person_like_a_model(tmp_path):
    save = tmp_path / "mine.jsonl"
    lines = (
        "Do you have a headache?\nEXAMINE: neurological\nDIAGNOSIS: Migraine without aura (70%)\n"
    )
    r = CliRunner().invoke(
        app,
        ["play", "--seed", "3", "--kb", SMALL_KB, "--save", str(save)],
        input=lines,
        env={"COLUMNS": "200"},
    )
    assert r.exit_code == 0, r.output
    assert "Patient:" in r.output and "true diagnosis" in r.output
    assert "Migraine without aura (G43.0)" in r.output
    assert re.search(r"diagnostic_accuracy\s+│ 1\.00", r.output)
    ep = json.loads(save.read_text())
    assert ep["agent_id"] == "human" and ep["status"] == "completed" and ep["turns"] == 3
    assert ep["metrics"]["diagnostic_accuracy"] == 1.0


def test_play_rejects_an_unknown_condition():
    r = CliRunner().invoke(app, ["play", "--kb", SMALL_KB, "--condition", "scurvy"])
    assert r.exit_code == 2 and "scurvy" in r.output
