"""`clinicgym report` and `clinicgym probe`: files written, tables printed, errors named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinicgym.runs.cli import app
from tests.extras import needs

SMALL_KB = str(Path(__file__).parents[1] / "data" / "kb_small")
runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:shap.*")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    args = [
        "run",
        "-a",
        "scripted",
        "-a",
        "random",
        "--cases",
        "3",
        "--seed",
        "4",
        "--repeats",
        "2",
        "--out",
        str(out),
        "--kb",
        SMALL_KB,
        "--quiet",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return out


def test_report_writes_three_files_and_prints_the_agents(run_dir, tmp_path):
    res = runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    for ext in ("json", "md", "html"):
        assert (tmp_path / f"report.{ext}").stat().st_size > 500
    assert "scripted" in res.output and "random" in res.output
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["summary"]["agents"]["scripted"]["pass_k"]["pass^2"]["n"] == 3  # 2 repeats
    assert data["probes"] is None


@pytest.mark.slow
@needs("probes", "shap")
def test_probe_then_report_includes_the_probes(run_dir, tmp_path):
    res = runner.invoke(
        app,
        [
            "probe",
            str(run_dir),
            "-a",
            "scripted",
            "--cases",
            "1",
            "--permutations",
            "1",
            "--attribute",
            "sex",
            "--attribute",
            "insurance",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    probes = json.loads((run_dir / "probes.json").read_text())
    scripted = probes["agents"]["scripted"]
    assert scripted["attribution"][0]["status"] == "ok"
    assert scripted["self_explanation"][0]["status"] == "no_explanation"  # it diagnoses instead
    assert set(scripted["counterfactual"]["summary"]) >= {"insurance", "control"}
    res = runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "report.json").read_text())["probes"]["agents"]["scripted"]
    assert "Fact attribution, sampled cases" in (tmp_path / "report.html").read_text()
    # flips only: no empty attribution table; a flip that does not apply is said to be skipped
    args = ["probe", str(run_dir), "-a", "random", "--cases", "2", "--kind", "counterfactual"]
    res = runner.invoke(app, [*args, "--attribute", "sex", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "attribution ok/err" not in res.output and "counterfactual flips" in res.output
    cf = json.loads((run_dir / "probes.json").read_text())["agents"]["random"]["counterfactual"]
    applied = sum(f["attribute"] == "sex" for f in cf["flips"])
    assert applied + cf["skipped"].get("sex", 0) == 2
    assert ("skipped: sex on" in _said(res)) == bool(cf["skipped"])
    assert "scripted" in json.loads((run_dir / "probes.json").read_text())["agents"]  # merged


def _said(res) -> str:
    return " ".join(res.output.split())  # rich wraps long lines


def test_errors_name_the_problem(run_dir, tmp_path):
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "not a run directory" in _said(res)
    res = runner.invoke(app, ["probe", str(run_dir), "-a", "oracle", "--quiet"])
    assert res.exit_code == 2 and "'oracle'" in _said(res) and "scripted" in _said(res)
    bad = tmp_path / "w.yaml"
    bad.write_text("schema_version: 1\nid: x\n")
    res = runner.invoke(
        app, ["report", str(run_dir), "--weights", str(bad), "--out", str(tmp_path)]
    )
    assert res.exit_code == 2 and "w.yaml has" in _said(res) and "'summary'" in _said(res)
