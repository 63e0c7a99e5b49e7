"""The KB loads, and every kind of bad file fails with a message naming file, item and field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from clinicgym.patients.errors import KBError
from clinicgym.patients.knowledge.bands import AGE_BANDS
from clinicgym.patients.knowledge.kb import load_kb


def _edit(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_bundled_kb_loads_and_spans_the_settings():
    kb = load_kb()
    assert len(kb.conditions) >= 60
    settings = {s for c in kb.conditions.values() for s in c.settings}
    assert {"primary_care", "emergency", "mental_health", "paediatrics", "rare_disease"} <= settings
    assert sum(1 for c in kb.conditions.values() if c.genetics) >= 5
    assert re.fullmatch(r"1-[0-9a-f]{12}", kb.version)


def test_bundled_kb_conditions_are_complete():
    kb = load_kb()
    for c in kb.conditions.values():
        assert c.sources, c.id
        assert c.differential, f"{c.id} has no differential"
        assert any(f.salience == "must_ask" for f in c.findings), c.id
        assert c.treatments or c.management, f"{c.id} has no first-line care"
    assert any(c.escalation for c in kb.conditions.values())
    assert len(kb.drugs) >= 40
    assert any(d.pharmacogenomics for d in kb.drugs.values())


def test_small_kb_loads(small_kb):
    assert set(small_kb.conditions) == {
        "community_acquired_pneumonia",
        "migraine_without_aura",
        "lower_urinary_tract_infection",
    }
    assert set(small_kb.vitals["heart_rate"].normal) == set(AGE_BANDS)


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(KBError, match="no such directory"):
        load_kb(tmp_path / "nope")


def test_invalid_yaml_names_the_file(kb_copy):
    (kb_copy / "drugs" / "general.yaml").write_text("drugs: [unclosed\n")
    with pytest.raises(KBError, match=r"drugs/general.yaml: not valid YAML"):
        load_kb(kb_copy)


def test_bad_field_names_condition_and_field(kb_copy):
    def bad(d):
        d["conditions"][0]["icd10"] = "pneumonia"
        d["conditions"][1]["findings"][0]["p"] = 1.5

    _edit(kb_copy / "conditions" / "sample.yaml", bad)
    with pytest.raises(KBError) as e:
        load_kb(kb_copy)
    msg = str(e.value)
    assert "has 2 problems" in msg
    assert "condition 'community_acquired_pneumonia', field 'icd10'" in msg
    assert "'pneumonia'" in msg
    assert "condition 'migraine_without_aura', field 'findings.0.p'" in msg


def test_unknown_references_are_all_listed(kb_copy):
    def bad(d):
        c = d["conditions"][0]
        c["findings"].append({"id": "no_such_finding", "p": 0.5})
        c["differential"].append("no_such_condition")
        c["treatments"].append("no_such_drug")
        c["tests"].append({"id": "no_such_test", "p": 0.5, "text": "x"})

    _edit(kb_copy / "conditions" / "sample.yaml", bad)
    with pytest.raises(KBError) as e:
        load_kb(kb_copy)
    msg = str(e.value)
    for needle in (
        "unknown finding 'no_such_finding'",
        "unknown condition 'no_such_condition'",
        "unknown drug 'no_such_drug'",
        "unknown test 'no_such_test'",
    ):
        assert needle in msg


def test_missing_required_field(kb_copy):
    _edit(kb_copy / "conditions" / "sample.yaml", lambda d: d["conditions"][2].pop("sources"))
    with pytest.raises(
        KBError, match=r"lower_urinary_tract_infection', field 'sources': Field required"
    ):
        load_kb(kb_copy)


def test_duplicate_ids_across_files(kb_copy):
    src = kb_copy / "findings" / "general.yaml"
    data = yaml.safe_load(src.read_text())
    (kb_copy / "findings" / "extra.yaml").write_text(
        yaml.safe_dump({"schema_version": 1, "findings": data["findings"][:1]})
    )
    with pytest.raises(
        KBError,
        match=r"findings/general.yaml: finding 'cough' is also defined in findings/extra.yaml",
    ):
        load_kb(kb_copy)


def test_finding_text_may_not_name_the_diagnosis(kb_copy):
    def leak(d):
        for f in d["findings"]:
            if f["id"] == "dysuria":
                f["text"] = "I think it's a UTI, it burns."

    _edit(kb_copy / "findings" / "general.yaml", leak)
    with pytest.raises(KBError, match=r"finding 'dysuria' text names the diagnosis \('UTI'\)"):
        load_kb(kb_copy)


def test_children_need_caregiver_wording(kb_copy):
    def drop(d):
        for f in d["findings"]:
            if f["id"] == "cough":
                f.pop("text_child")

    _edit(kb_copy / "findings" / "general.yaml", drop)
    with pytest.raises(KBError, match=r"finding 'cough' needs 'text_child'"):
        load_kb(kb_copy)


def test_wrong_schema_version(kb_copy):
    _edit(kb_copy / "vitals.yaml", lambda d: d.update(schema_version=99))
    with pytest.raises(KBError, match=r"vitals.yaml: field 'schema_version': 99"):
        load_kb(kb_copy)


def test_prevalence_band_outside_age_range(kb_copy):
    def bad(d):
        d["conditions"][1]["prevalence"]["age_bands"]["0-4"] = 2  # migraine is 12-70

    _edit(kb_copy / "conditions" / "sample.yaml", bad)
    with pytest.raises(KBError, match=r"band '0-4' lies outside age \[12, 70\]"):
        load_kb(kb_copy)
