"""Named suites: the bundled registry reproduces, versions freeze by the cases' hash, hidden suites
keep only a commitment to their seed, and a suite fixes what the run spec may say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from clinicgym.runs.config import resolve_spec
from clinicgym.runs.errors import StoreError, SuiteError
from clinicgym.runs.store import RunStore, cases_sha256
from clinicgym.runs.suite import (
    BUNDLED_REGISTRY,
    HIDDEN_SEED_ENV,
    HIDDEN_SEED_FILE_ENV,
    check,
    export,
    freeze,
    lookup,
    parse_ref,
    read_registry,
    suite_cases,
    version_cases,
)

REGISTRY = {
    "format_version": 1,
    "suites": {
        "tiny": {"description": "small", "recipe": {"cases": 3, "max_turns": 6}},
        "secret": {"description": "held out", "hidden": True, "recipe": {"cases": 2}},
    },
}


@pytest.fixture
def registry(tmp_path, monkeypatch):
    path = tmp_path / "reg.yaml"
    path.write_text(yaml.safe_dump(REGISTRY))
    monkeypatch.setenv("CLINICGYM_SUITES", str(path))
    monkeypatch.delenv(HIDDEN_SEED_ENV, raising=False)
    monkeypatch.delenv(HIDDEN_SEED_FILE_ENV, raising=False)
    return path


def test_bundled_suites_are_valid_and_reproduce():
    reg = read_registry(BUNDLED_REGISTRY)
    names = {"core", "emergency", "mental-health", "policy-stress", "rare-disease", "multimodal"}
    assert names <= set(reg.suites)
    for name in names:
        for v in reg.suites[name].versions:
            assert all("@" in p for p in v.recipe.policy_packs)  # pinned pack versions
    rows = check()
    public = [r for r in rows if not r["hidden"]]
    assert public and all(r["status"] in ("reproduces", "superseded") for r in public), [
        r.get("detail") for r in rows if r["status"] == "changed"
    ]
    for name in names:  # the latest version of every suite runs here
        latest = f"{name}@{reg.suites[name].versions[-1].version}"
        assert {r["suite"]: r["status"] for r in public}[latest] == "reproduces"


def test_freeze_is_frozen_by_the_hash_and_refuses_changed_cases(registry, small_kb):
    v = freeze("tiny", seed=12, kb=small_kb)
    assert v is not None and v.version == 1 and v.seed == 12
    assert freeze("tiny", seed=99, kb=small_kb) is None  # still reproduces: nothing new
    name, suite, ver = lookup("tiny@1")
    cases = version_cases(name, suite, ver, small_kb)
    assert cases_sha256(cases) == ver.cases_sha256 and cases[0].id == "tiny-v1-0000"
    assert lookup("tiny")[2].version == 1
    with pytest.raises(SuiteError, match="has no version 7; frozen versions: tiny@1"):
        lookup("tiny@7")
    with pytest.raises(SuiteError, match="unknown suite 'nope'"):
        lookup("nope")
    with pytest.raises(SuiteError, match="must be a number"):
        parse_ref("tiny@x")
    raw = yaml.safe_load(registry.read_text())
    raw["suites"]["tiny"]["versions"][0]["cases_sha256"] = "0" * 64
    registry.write_text(yaml.safe_dump(raw))
    with pytest.raises(SuiteError, match=r"tiny@1' is frozen at cases_sha256 0000.*cases changed"):
        version_cases(*lookup("tiny@1"), small_kb)
    assert {r["suite"]: r["status"] for r in check(small_kb)}["tiny@1"] == "changed"
    raw["suites"]["tiny"]["versions"][0]["superseded"] = "replaced by tiny@2"
    registry.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        SuiteError, match=r"cannot be run from here. Superseded: replaced by tiny@2"
    ):
        version_cases(*lookup("tiny@1"), small_kb)
    row = next(r for r in check(small_kb) if r["suite"] == "tiny@1")
    assert row["status"] == "superseded" and row["detail"] == "replaced by tiny@2"


def test_hidden_suite_keeps_only_a_commitment(registry, small_kb, monkeypatch):
    with pytest.raises(SuiteError, match=f"{HIDDEN_SEED_FILE_ENV}, which is not set here"):
        freeze("secret", kb=small_kb)
    secret_file = registry.parent / "outside-the-repo" / "secret"
    secret_file.parent.mkdir()
    secret_file.write_text("maintainer-only\n")
    monkeypatch.setenv(HIDDEN_SEED_FILE_ENV, str(secret_file))
    v = freeze("secret", kb=small_kb)
    assert v is not None and v.seed is None and len(v.seed_sha256 or "") == 64
    text = registry.read_text()
    assert "maintainer-only" not in text and "seed_sha256" in text
    cases = version_cases(*lookup("secret@1"), small_kb)
    assert all(c.lineage.seed is None for c in cases)
    monkeypatch.delenv(HIDDEN_SEED_FILE_ENV)
    assert cases == version_cases(*lookup("secret@1"), small_kb, secret="maintainer-only")
    monkeypatch.setenv(HIDDEN_SEED_ENV, "a guess")
    with pytest.raises(SuiteError, match="not the secret this version was frozen with"):
        version_cases(*lookup("secret@1"), small_kb)
    raw = yaml.safe_load(text)
    raw["suites"]["secret"]["versions"][0]["seed"] = 5
    registry.write_text(yaml.safe_dump(raw))
    with pytest.raises(SuiteError, match="a hidden suite keeps seed_sha256, never a seed"):
        read_registry(registry)


def test_registry_problems_are_collected_and_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "suites": {
                    "a": {"description": "x", "recipe": {"cases": 0}},
                    "b": {"description": "y", "recipe": {"cases": 2, "colour": "red"}},
                    "c": {"description": "z", "recipe": {"cases": 2, "policy_packs": ["gdpr"]}},
                }
            }
        )
    )
    with pytest.raises(SuiteError) as e:
        read_registry(path)
    msg = str(e.value)
    assert "suite 'a', field 'recipe.cases'" in msg and "(got 0)" in msg
    assert "suite 'b', field 'recipe.colour'" in msg


def test_a_suite_fixes_the_spec_and_exports_to_a_directory(registry, small_kb, tmp_path):
    freeze("tiny", seed=12, kb=small_kb)
    spec = resolve_spec(None, {"agents": ["oracle"], "suite": "tiny", "out": tmp_path / "r"})
    assert spec.suite == "tiny@1" and spec.cases == 3 and spec.max_turns == 6 and spec.seed == 0
    with pytest.raises(SuiteError, match="'max_turns': the suite fixes 6, got 9"):
        resolve_spec(None, {"agents": ["oracle"], "suite": "tiny", "max_turns": 9, "out": tmp_path})
    with pytest.raises(SuiteError, match="'settings' picks cases itself"):
        resolve_spec(
            None, {"agents": ["oracle"], "suite": "tiny", "settings": ["er"], "out": tmp_path}
        )
    frozen = suite_cases(spec, small_kb)
    out = export("tiny@1", tmp_path / "exported", kb=small_kb)
    assert json.loads((out / "named_suite.json").read_text())["name"] == "tiny"
    spec2 = resolve_spec(None, {"agents": ["oracle"], "suite": str(out), "out": tmp_path / "r2"})
    assert spec2.max_turns == 6
    assert [c.content_hash() for c in suite_cases(spec2, small_kb)] == [
        c.content_hash() for c in frozen
    ]
    lines = (out / "cases.jsonl").read_text().splitlines()
    (out / "cases.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(SuiteError, match=r"does not match the case hashes in suite\.json"):
        suite_cases(spec2, small_kb)


def test_run_with_suite_records_it_in_the_manifest(registry, small_kb, tmp_path):
    from typer.testing import CliRunner

    from clinicgym.runs.cli import app

    freeze("tiny", seed=12, kb=small_kb)
    kb = str(Path(__file__).parents[1] / "data" / "kb_small")
    r = CliRunner().invoke(
        app,
        ["run", "--suite", "tiny@1", "-a", "oracle", "--kb", kb, "--out", str(tmp_path / "r")],
    )
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["suite"]["ref"] == "tiny@1"
    assert manifest["suite"]["cases_sha256"] == manifest["suite"]["frozen_sha256"]
    assert manifest["cases_sha256"] == lookup("tiny@1")[2].cases_sha256
    # cases.jsonl names the suite and each case's index; readers regenerate and check the hash
    cases_file = tmp_path / "r" / "cases.jsonl"
    lines = cases_file.read_text().splitlines()
    assert len(lines) == 3 and all(len(x) < 400 and '"suite": "tiny@1"' in x for x in lines)
    back = RunStore(tmp_path / "r").cases()
    assert back == list(version_cases(*lookup("tiny@1"), small_kb))
    first = json.loads(lines[0])
    cases_file.write_text("\n".join([json.dumps({**first, "hash": "0" * 64}), *lines[1:]]) + "\n")
    with pytest.raises(StoreError, match="hashes to"):
        RunStore(tmp_path / "r").cases()
    r = CliRunner().invoke(
        app, ["run", "--suite", "tiny", "--cases", "9", "-a", "oracle", "--out", str(tmp_path)]
    )
    assert r.exit_code == 2 and "'cases': the suite fixes 3, got 9" in r.output
