"""Submissions: submit packs a finished suite run; verify accepts it and rejects an edited
transcript, a changed score and a missing case with the reason; build writes HTML and CSV."""

from __future__ import annotations

import csv
import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinicgym.runs.cli import app
from clinicgym.runs.errors import LeaderboardError
from clinicgym.runs.leaderboard import BUNDLE_INDEX, pack, verify

SMALL_KB = str(Path(__file__).parents[1] / "data" / "kb_small")
REGISTRY = """format_version: 1
suites:
  tiny:
    description: Three small-KB cases for tests.
    recipe:
      cases: 3
      max_turns: 8
      policy_packs: [hipaa-privacy@2]
"""
runner = CliRunner()


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    """A finished run of suite tiny@1 (frozen from the small KB) by scripted and random."""
    root = tmp_path_factory.mktemp("lb")
    (root / "reg.yaml").write_text(REGISTRY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLINICGYM_SUITES", str(root / "reg.yaml"))
        r = runner.invoke(app, ["suite", "freeze", "tiny", "--seed", "5", "--kb", SMALL_KB])
        assert r.exit_code == 0 and "froze tiny@1" in r.output, r.output
        args = ["run", "--suite", "tiny", "-a", "scripted", "-a", "random", "--kb", SMALL_KB]
        r = runner.invoke(app, [*args, "--out", str(root / "run"), "--quiet"])
        assert r.exit_code == 0, r.output
        yield root


def rebundle(src: Path, dst: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    """Copy a bundle with `edit` applied to its files, then every hash recomputed (the
    manifest's sealed record and bundle.json), as a careful forger would."""
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    edit(files)
    manifest = json.loads(files["manifest.json"])
    for n in manifest["content"]:
        manifest["content"][n]["sha256"] = hashlib.sha256(files[n]).hexdigest()
    files["manifest.json"] = json.dumps(manifest).encode()
    index = json.loads(files[BUNDLE_INDEX])
    for n in index["files"]:
        index["files"][n]["sha256"] = hashlib.sha256(files[n]).hexdigest()
    files[BUNDLE_INDEX] = json.dumps(index).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    return dst


def _episodes(files: dict[str, bytes]) -> list[dict]:
    return [json.loads(x) for x in files["episodes.jsonl"].splitlines()]


def _put_episodes(files: dict[str, bytes], eps: list[dict]) -> None:
    files["episodes.jsonl"] = b"".join(json.dumps(e).encode() + b"\n" for e in eps)


def test_submit_then_verify_accepts_an_untouched_bundle(suite_run, monkeypatch):
    monkeypatch.setenv("CLINICGYM_SUITES", str(suite_run / "reg.yaml"))
    bundle = suite_run / "ok.zip"
    r = runner.invoke(app, ["submit", str(suite_run / "run"), "--out", str(bundle)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["leaderboard", "verify", str(bundle)])
    assert r.exit_code == 0 and "accepted" in r.output and "tiny@1" in r.output, r.output
    v = verify(bundle)
    assert v.accepted and v.info["packs"] == ["hipaa-privacy@2"]


def test_tampered_bundles_are_rejected_with_the_reason(suite_run, monkeypatch, tmp_path):
    monkeypatch.setenv("CLINICGYM_SUITES", str(suite_run / "reg.yaml"))
    ok = pack(suite_run / "run", tmp_path / "ok.zip")
    cases = {
        json.loads(x)["id"]: json.loads(x)
        for x in (suite_run / "run" / "cases.jsonl").read_text().splitlines()
    }

    # an edited transcript, hashes left alone: the hashes give it away
    def naive(files):
        eps = _episodes(files)
        eps[1]["outcome"]["diagnoses"].reverse()
        _put_episodes(files, eps)

    with zipfile.ZipFile(ok) as z:
        files = {n: z.read(n) for n in z.namelist()}
    naive(files)
    with zipfile.ZipFile(tmp_path / "naive.zip", "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    problems = " | ".join(verify(tmp_path / "naive.zip").problems)
    assert "episodes.jsonl: sha256" in problems and "does not match bundle.json" in problems
    assert "episodes.jsonl was edited after the run was finalised" in problems

    # an edited transcript with every hash recomputed: re-scoring gives it away
    def better_diagnoses(files):
        eps = _episodes(files)
        for e in eps:
            if e["agent_id"] == "random":
                dx = cases[e["case_id"]]["diagnosis"]["name"]
                e["outcome"]["diagnoses"] = [{"name": dx, "confidence": 1.0}]
        _put_episodes(files, eps)

    v = verify(rebundle(ok, tmp_path / "forged.zip", better_diagnoses))
    assert not v.accepted
    assert any(
        "re-scoring the transcripts does not give the claimed numbers" in p for p in v.problems
    ), v.problems
    assert "random" in " ".join(v.problems)

    # a changed score
    def inflate(files):
        summary = json.loads(files["summary.json"])
        summary["agents"]["random"]["metrics"]["diagnostic_accuracy"]["mean"] = 0.99
        files["summary.json"] = json.dumps(summary).encode()

    r = runner.invoke(
        app, ["leaderboard", "verify", str(rebundle(ok, tmp_path / "score.zip", inflate))]
    )
    assert r.exit_code == 1 and "rejected" in r.output
    assert "agents.random.metrics.diagnostic_accuracy.mean: claimed 0.99" in r.output

    # a missing case (its episodes dropped, every hash recomputed)
    def drop_case(files):
        eps = [e for e in _episodes(files) if e["case_id"] != "tiny-v1-0002"]
        _put_episodes(files, eps)

    problems = " | ".join(verify(rebundle(ok, tmp_path / "missing.zip", drop_case)).problems)
    assert "2 planned episodes are missing (cases tiny-v1-0002)" in problems
    assert "every case of the suite must be run" in problems

    # other cases than the suite's: the frozen hash gives it away
    def other_cases(files):
        lines = files["cases.jsonl"].splitlines()
        case = json.loads(lines[0])
        case["age"] = case["age"] + 1
        files["cases.jsonl"] = b"\n".join([json.dumps(case).encode(), *lines[1:]]) + b"\n"

    problems = " | ".join(verify(rebundle(ok, tmp_path / "cases.zip", other_cases)).problems)
    assert "not the suite's cases" in problems


def test_submit_refuses_an_unfinished_or_edited_run(suite_run, tmp_path):
    with pytest.raises(LeaderboardError, match="not a run directory"):
        pack(tmp_path)
    edited = tmp_path / "edited"
    edited.mkdir()
    for f in (suite_run / "run").iterdir():
        if f.is_file():
            (edited / f.name).write_bytes(f.read_bytes())
    with open(edited / "summary.json", "a") as fh:
        fh.write(" ")
    with pytest.raises(LeaderboardError, match=r"summary\.json changed since the run was final"):
        pack(edited)


def test_build_writes_html_and_csv_with_intervals_and_versions(suite_run, monkeypatch, tmp_path):
    monkeypatch.setenv("CLINICGYM_SUITES", str(suite_run / "reg.yaml"))
    ok = pack(suite_run / "run", tmp_path / "ok.zip")

    def inflate(files):
        summary = json.loads(files["summary.json"])
        summary["agents"]["scripted"]["errors"] = (
            0 if summary["agents"]["scripted"]["errors"] else 1
        )
        files["summary.json"] = json.dumps(summary).encode()

    bad = rebundle(ok, tmp_path / "bad.zip", inflate)
    r = runner.invoke(
        app, ["leaderboard", "build", str(ok), str(bad), "--out", str(tmp_path / "site")]
    )
    assert r.exit_code == 0, r.output
    assert "1 accepted bundles" in r.output and "left out" in r.output
    rows = list(csv.DictReader((tmp_path / "site" / "leaderboard.csv").open()))
    assert [x["agent"] for x in rows] == ["scripted", "random"]  # best top-1 first
    assert {x["suite"] for x in rows} == {"tiny@1"} and rows[0]["packs"] == "hipaa-privacy@2"
    summary = json.loads((suite_run / "run" / "summary.json").read_text())
    acc = summary["agents"]["random"]["metrics"]["diagnostic_accuracy"]
    assert float(rows[1]["diagnostic_accuracy"]) == pytest.approx(acc["mean"])
    assert float(rows[1]["diagnostic_accuracy_lo"]) == pytest.approx(acc["ci95"][0])
    html = (tmp_path / "site" / "index.html").read_text()
    assert "Suite tiny@1" in html and "hipaa-privacy@2" in html and "Rejected bundles" in html
    assert f"[{acc['ci95'][0]:.3f}, {acc['ci95'][1]:.3f}]" in html


def test_a_run_without_a_suite_is_rejected(tmp_path):
    r = runner.invoke(
        app,
        ["run", "-a", "oracle", "--cases", "2", "--kb", SMALL_KB, "--out", str(tmp_path / "r")],
    )
    assert r.exit_code == 0, r.output
    v = verify(pack(tmp_path / "r", tmp_path / "b.zip"))
    assert v.problems == [
        "the run did not play a named suite (run it with `clinicgym run --suite`)"
    ]
