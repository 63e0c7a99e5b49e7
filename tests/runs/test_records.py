"""Typed run files (runs/records.py) and the one module naming them (runs/layout.py): a run's
manifest and summary round-trip through RunManifest and RunSummary, run directories written by
earlier releases (no format_version, fields added since missing) still load, and a malformed
file is refused with an error naming the file and the field."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from clinicgym.runs import layout
from clinicgym.runs.catalog import run_row
from clinicgym.runs.errors import RunError
from clinicgym.runs.records import (
    MANIFEST_FORMAT_VERSION,
    SUMMARY_FORMAT_VERSION,
    RunFileError,
    RunManifest,
    RunSummary,
    parse_manifest,
    read_manifest,
    read_summary,
)
from clinicgym.runs.review.rundir import RunView, run_hash
from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore, load_run

SMALL_KB = Path(__file__).parents[1] / "data" / "kb_small"
REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def played(tmp_path_factory) -> RunStore:
    """A finished, sealed run of two cases, two agents, two repeats."""
    out = tmp_path_factory.mktemp("records") / "run"
    spec = RunSpec(
        agents=["scripted", "random"],
        cases=2,
        repeats=2,
        max_turns=6,
        seed=3,
        kb_dir=str(SMALL_KB),
        out=out,
    )
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    asyncio.run(execute(ctx, store))
    store.close()
    finalise(ctx, store)
    return store


# ---- round trip ----------------------------------------------------------------------------


def test_a_run_writes_its_manifest_and_summary_through_the_records(played):
    manifest = played.manifest()
    assert isinstance(manifest, RunManifest)
    assert manifest.format_version == MANIFEST_FORMAT_VERSION
    assert manifest.spec.agents == ["scripted", "random"] and manifest.spec.repeats == 2
    assert manifest.planned_episodes() == 8
    assert all(c.hash for c in manifest.cases) and manifest.cases_sha256  # filled at finalise
    assert set(manifest.content or {}) == set(layout.SEALED) and manifest.sealed
    summary = played.summary()
    assert isinstance(summary, RunSummary)
    assert summary.format_version == SUMMARY_FORMAT_VERSION
    assert summary.planned_episodes == summary.stored_episodes == 8
    assert summary.agents["scripted"].episodes == 4
    assert "diagnostic_accuracy" in summary.agents["random"].metrics


def test_reading_then_writing_a_run_file_changes_no_byte(played, tmp_path):
    for name, read in ((layout.MANIFEST, read_manifest), (layout.SUMMARY, read_summary)):
        path = played.root / name
        record = read(path)
        assert record.document() == json.loads(path.read_text())
        copy = tmp_path / name
        record.write(copy)
        assert copy.read_bytes() == path.read_bytes()
        assert read(copy) == record


def test_the_store_names_its_files_from_the_layout(played):
    paths = layout.RunPaths(played.root)
    assert played.manifest_path == paths.manifest == played.root / "manifest.json"
    assert played.episodes_path == paths.episodes == played.root / "episodes.jsonl"
    assert played.cases_path == paths.cases == played.root / "cases.jsonl"
    assert played.summary_path == paths.summary == played.root / "summary.json"
    assert played.scores_path == paths.scores == played.root / "scores.parquet"
    assert layout.SEALED == ("cases.jsonl", "episodes.jsonl", "summary.json")
    for name in (layout.MANIFEST, *layout.SEALED, layout.SCORES):
        assert (played.root / name).is_file()
    assert layout.is_run_dir(played.root) and not layout.is_run_dir(played.root.parent)


# ---- old run directories -------------------------------------------------------------------


def _old_run(root: Path, sampler) -> list:
    """A run directory as the first releases wrote it: no format_version in the manifest or
    the summary, no cases_sha256, suite, policy packs or sealed record, whole cases."""
    root.mkdir(parents=True)
    cases = sampler.sample_many(2, 7)
    spec = {"agents": ["scripted"], "cases": 2, "seed": 0, "repeats": 1, "max_turns": 20}
    spec |= {"kb_dir": str(SMALL_KB), "out": str(root), "a_field_since_removed": True}
    manifest = {
        "run_id": root.name,
        "created": "2026-11-22T10:00:00Z",
        "spec": spec,
        "identity": {"agents": ["scripted"], "cases": 2, "seed": 0},
        "versions": {"clinicgym": "0.1.0", "kb": "1-old", "python": "3.11.9", "platform": "x"},
        "cases": [{"id": c.id, "hash": c.content_hash()} for c in cases],
        "command": ["clinicgym", "run"],
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (root / "cases.jsonl").write_text("".join(c.model_dump_json() + "\n" for c in cases))
    (root / "episodes.jsonl").write_text("")
    summary = {
        "run_id": root.name,
        "metric_descriptions": {},
        "agents": {
            "scripted": {
                "episodes": 0,
                "completed": 0,
                "errors": 0,
                "metrics": {"diagnostic_accuracy": {"mean": None, "ci95": None, "n": 0}},
            }
        },
    }
    (root / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return cases


def test_an_old_run_directory_loads_as_the_first_format(tmp_path, sampler):
    root = tmp_path / "old"
    cases = _old_run(root, sampler)
    manifest = RunStore(root).manifest()
    assert manifest.format_version == 1
    assert manifest.cases_sha256 is None and manifest.suite is None
    assert manifest.policy_packs == [] and manifest.content is None
    assert manifest.spec.agents == ["scripted"] and manifest.spec.kb_dir == str(SMALL_KB)
    assert manifest.spec.document()["a_field_since_removed"] is True  # kept as written
    assert manifest.case_hashes() == [c.content_hash() for c in cases]
    summary = RunStore(root).summary()
    assert summary.format_version == 1 and summary.repeats == 1
    assert summary.agents["scripted"].metrics["diagnostic_accuracy"]["n"] == 0
    # every reader takes it
    row = run_row(root)
    assert row["planned"] == 2 and row["state"] == "partial" and row["kb_version"] == "1-old"
    run = load_run(root)
    assert run.agents == ["scripted"] and set(run.cases) == {c.id for c in cases}
    assert RunView(root).manifest.run_id == "old"


def test_sealing_an_old_run_adds_only_what_the_seal_sets(tmp_path, sampler):
    root = tmp_path / "old"
    _old_run(root, sampler)
    before = json.loads((root / "manifest.json").read_text())
    hashed = run_hash(RunStore(root).manifest())
    RunStore(root).seal()
    after = json.loads((root / "manifest.json").read_text())
    assert list(after) == [*before, "content", "sealed"]
    kept = {k: after[k] for k in before}
    assert json.dumps(kept) == json.dumps(before)  # no key added, dropped or reordered
    assert run_hash(RunStore(root).manifest()) == hashed  # annotations keep their run
    assert RunStore(root).changed_since_sealed() == []


# ---- malformed files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda m: m.update(cases=[{"identifier": 1}]), r"manifest\.json: cases\.0\.id: Field"),
        (lambda m: m["spec"].update(repeats="twice"), r"manifest\.json: spec\.repeats: Input"),
        (lambda m: m.update(versions=["0.1"]), r"manifest\.json: versions: Input should be"),
        (lambda m: m.update(content={"cases.jsonl": {}}), r"content\.cases\.jsonl\.sha256"),
    ],
)
def test_a_malformed_manifest_names_the_file_and_the_field(tmp_path, sampler, edit, named):
    root = tmp_path / "bad"
    _old_run(root, sampler)
    manifest = json.loads((root / "manifest.json").read_text())
    edit(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RunFileError, match=named) as e:
        RunStore(root).manifest()
    assert str(root / "manifest.json") in str(e.value)
    assert "damaged: " + str(root / "manifest.json") in run_row_state(root)


def run_row_state(root: Path) -> str:
    """The catalog's state of a run directory (`_safe_row`: a damaged row, not a crash)."""
    from clinicgym.runs.catalog import _safe_row

    return _safe_row(root)["state"]


def test_a_manifest_that_is_not_json_or_from_a_newer_format_is_refused(tmp_path, sampler):
    root = tmp_path / "bad"
    _old_run(root, sampler)
    path = root / "manifest.json"
    path.write_text('{"run_id": "bad", ')
    with pytest.raises(RunFileError, match=r"manifest\.json: not valid JSON"):
        RunStore(root).manifest()
    path.write_text(json.dumps({"format_version": MANIFEST_FORMAT_VERSION + 1}))
    with pytest.raises(RunFileError, match=r"format_version 2 is newer than this clinicgym"):
        RunStore(root).manifest()
    path.write_text("[]")
    with pytest.raises(RunFileError, match="not a JSON object"):
        parse_manifest(path.read_bytes(), str(path))
    path.unlink()
    with pytest.raises(RunError, match=r"not a run directory \(no manifest\.json\)"):
        RunStore(root).manifest()


def test_a_malformed_summary_names_the_file_and_the_field(tmp_path, sampler):
    root = tmp_path / "bad"
    _old_run(root, sampler)
    path = root / "summary.json"
    summary = json.loads(path.read_text())
    summary["agents"]["scripted"]["episodes"] = "four"
    path.write_text(json.dumps(summary))
    with pytest.raises(RunFileError, match=r"summary\.json: agents\.scripted\.episodes: Input"):
        RunStore(root).summary()
    with pytest.raises(RunFileError, match=r"summary\.json: agents\.scripted\.episodes"):
        RunStore(root).write_summary(summary)  # nor is such a summary ever written


def test_a_resume_over_a_damaged_manifest_names_the_field(tmp_path, sampler):
    spec = RunSpec(agents=["scripted"], cases=2, out=tmp_path / "run")
    RunStore.open(spec, sampler.sample_many(2, 0), "kbv").close()
    path = spec.out / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["cases"][1]["hash"] = 42
    path.write_text(json.dumps(manifest))
    with pytest.raises(RunFileError, match=r"manifest\.json: cases\.1\.hash: Input should be"):
        RunStore.open(spec, sampler.sample_many(2, 0), "kbv")


# ---- one module names the files ------------------------------------------------------------

NAMES = (
    layout.MANIFEST,
    layout.CASES,
    layout.EPISODES,
    layout.SUMMARY,
    layout.SCORES,
    layout.ERRORED,
    layout.UNREADABLE,
    layout.BUG,
    layout.PROBES,
    layout.PATIENT_CACHE,
)
OTHER_FOLDERS = {
    "runs/layout.py",  # where they are named
    "runs/suite.py",  # a suite export folder (suite.json, cases.jsonl), not a run directory
    "runs/rl/suite.py",  # the same for `clinicgym rl pin-suite`
    "runs/rl/trl_grpo.py",  # a training run's own summary.json
}


def test_no_module_of_runs_spells_a_run_file_name_again():
    names = "|".join(re.escape(n) for n in NAMES)
    quoted = re.compile(f"[\"']({names})[\"']")
    found = []
    for path in sorted((REPO / "runs").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel in OTHER_FOLDERS:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if quoted.search(line):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, "use clinicgym.runs.layout:\n" + "\n".join(found)
