"""Pack loading: every shipped pack validates; broken packs fail at load with file, rule and
field named; a run never starts with a half-loaded set of packs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clinicgym.policies import PackError, PackNotFoundError, load_pack, load_packs, resolve
from clinicgym.policies.library import PACKS_DIR, available, load

GOOD = PACKS_DIR / "hipaa-privacy" / "1.yaml"


def _write(tmp_path: Path, data: object, name: str = "my-pack/1.yaml") -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return p


def _pack(**rule_overrides: object) -> dict:
    raw = yaml.safe_load(GOOD.read_text())
    raw["id"] = "my-pack"
    raw["rules"][0].update(rule_overrides)
    return raw


def test_every_shipped_pack_loads_with_two_or_more_versions() -> None:
    packs = available()
    assert set(packs) == {
        "hipaa-privacy",
        "gdpr",
        "prescribing-safety",
        "emergency-escalation",
        "mental-health-safety",
        "ai-transparency",
    }
    for pid, versions in packs.items():
        assert len(versions) >= 2
        for v in versions:
            p = load(f"{pid}@{v}")
            assert p.ref == f"{pid}@{v}" and len(p.sha256) == 64
            assert all(r.source.regulation for r in p.rules)


def test_references_resolve_to_latest_or_named_version(tmp_path) -> None:
    assert resolve("gdpr").name == "2.yaml"
    assert resolve("gdpr@1").name == "1.yaml"
    with pytest.raises(PackNotFoundError, match="has no version '9'; versions: 1, 2"):
        resolve("gdpr@9")
    with pytest.raises(PackNotFoundError, match="unknown pack 'gdrp'; available: ai-transparency"):
        resolve("gdrp")
    p = _write(tmp_path, _pack())
    assert load(str(p)).ref == "my-pack@1"


def test_malformed_yaml_names_the_file(tmp_path) -> None:
    p = _write(tmp_path, "id: [unclosed\n")
    with pytest.raises(PackError, match=r"1\.yaml has 1 problem:\n  not valid YAML"):
        load_pack(p)


def test_unknown_event_names_rule_and_field(tmp_path) -> None:
    p = _write(tmp_path, _pack(watches=["third_party", "disclosure"]))
    with pytest.raises(PackError) as e:
        load_pack(p)
    msg = str(e.value)
    assert "rule 'no-unauthorised-disclosure', field 'watches'" in msg
    assert "unknown event 'disclosure'; known: clinician, ask" in msg


def test_rule_citing_a_missing_field_fails(tmp_path) -> None:
    p = _write(tmp_path, _pack(evidence=["action.recipient", "action.dosage", "case.alergies"]))
    with pytest.raises(PackError) as e:
        load_pack(p)
    msg = str(e.value)
    assert "has 2 problems" in msg
    assert (
        "field 'evidence': unknown field 'action.dosage' for watched events ['disclose', 'ask']"
        in msg
    )
    assert "unknown field 'case.alergies'; known: case.format_version" in msg


def test_bad_check_settings_and_unknown_checks_are_all_reported(tmp_path) -> None:
    raw = _pack(check={"name": "unauthorised_disclosure", "args": {"require": ["signed"]}})
    raw["rules"][1]["check"] = {"name": "no_such_check"}
    raw["rules"][1]["severity"] = "urgent"
    with pytest.raises(PackError) as e:
        load_pack(_write(tmp_path, raw))
    msg = str(e.value)
    assert "rule 'no-unauthorised-disclosure', field 'check.args.require'" in msg
    assert "'signed' is not one of authorised, verified" in msg
    assert "rule 'minimum-necessary', field 'severity'" in msg and "'urgent'" in msg


def test_unknown_check_and_missing_needed_events(tmp_path) -> None:
    raw = _pack(watches=["disclose"])
    raw["rules"][1]["check"] = {"name": "no_such_check"}
    with pytest.raises(PackError) as e:
        load_pack(_write(tmp_path, raw))
    msg = str(e.value)
    assert "check 'unauthorised_disclosure' needs events ['ask', 'third_party']" in msg
    assert "unknown check 'no_such_check'; known: allergy_conflict" in msg


def test_match_spec_errors_point_into_the_args(tmp_path) -> None:
    raw = _pack(
        watches=["patient", "clinician", "ask"],
        check={
            "name": "respond_within",
            "args": {
                "trigger": {"events": ["patient"], "patterns": ["(unclosed"]},
                "response": {"events": ["patient"], "patterns": ["ok"]},
            },
        },
    )
    with pytest.raises(PackError) as e:
        load_pack(_write(tmp_path, raw))
    msg = str(e.value)
    assert "field 'check.args.trigger.0'" in msg and "not a valid regular expression" in msg
    assert "'response' must watch clinician events" in msg


def test_file_location_must_match_id_and_version(tmp_path) -> None:
    p = _write(tmp_path, _pack(), name="other-name/3.yaml")
    with pytest.raises(PackError) as e:
        load_pack(p)
    assert "does not match its folder 'other-name'" in str(e.value)
    assert "does not match its file name '3.yaml'" in str(e.value)


def test_load_packs_reports_every_broken_pack_and_refuses_two_versions(tmp_path) -> None:
    bad = _write(tmp_path, _pack(severity="urgent"))
    with pytest.raises(PackError) as e:
        load_packs(["gdpr@1", str(bad), "nope", "hipaa-privacy@1", "hipaa-privacy@2"])
    msg = str(e.value)
    assert "policy packs has 3 problems" in msg
    assert "field 'severity'" in msg and "unknown pack 'nope'" in msg
    assert "'hipaa-privacy' is named more than once (hipaa-privacy@1, hipaa-privacy@2)" in msg


def test_a_run_never_starts_with_a_half_loaded_pack(tmp_path) -> None:
    from clinicgym.runs.runner import prepare
    from clinicgym.runs.spec import RunSpec

    bad = _write(tmp_path, _pack(watches=["disclosure"]))
    spec = RunSpec(
        agents=["oracle"],
        cases=2,
        out=tmp_path / "run",
        kb_dir=str(Path(__file__).parent / "data" / "kb"),
        policy_packs=["gdpr@2", str(bad)],
    )
    with pytest.raises(PackError, match="unknown event 'disclosure'"):
        prepare(spec)
    assert not (tmp_path / "run").exists()


def test_a_changed_pack_file_cannot_resume_a_run(tmp_path) -> None:
    from clinicgym.runs.errors import RunError
    from clinicgym.runs.runner import prepare
    from clinicgym.runs.spec import RunSpec
    from clinicgym.runs.store import RunStore

    pack = _write(tmp_path, _pack())
    spec = RunSpec(
        agents=["oracle"],
        cases=1,
        out=tmp_path / "run",
        kb_dir=str(Path(__file__).parent / "data" / "kb"),
        policy_packs=[str(pack)],
    )
    ctx = prepare(spec)
    RunStore.open(spec, ctx.cases, ctx.kb.version).close()
    RunStore.open(spec, ctx.cases, ctx.kb.version).close()  # same pack: resumes
    raw = _pack()
    raw["rules"][0]["severity"] = "critical"
    pack.write_text(yaml.safe_dump(raw))
    with pytest.raises(RunError, match=r"policy packs \(ref, sha256\)"):
        RunStore.open(spec, ctx.cases, ctx.kb.version)
