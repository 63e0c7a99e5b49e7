"""Importers: a mapped CSV, a Synthea export and FHIR bundles become KB records; bad input fails
with an error naming the column or value; FHIR export round-trips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clinicgym.patients.errors import ImporterError
from clinicgym.patients.importers.codes import load_codes
from clinicgym.patients.importers.completion import ImportedRow, complete, resolve_condition
from clinicgym.patients.importers.fhir import export_bundles, read_bundles, record_bundle
from clinicgym.patients.importers.plain_csv import parse_mapping, read_csv
from clinicgym.patients.importers.synthea import read_synthea
from tests.extras import needs

DATA = Path(__file__).parents[1] / "data"
MAPPING = ["age=AGE_YEARS", "sex=GENDER", "condition=DX", "finding.fever=fever_flag"]


def test_csv_with_mapping_becomes_complete_records(small_kb):
    rows = read_csv(
        DATA / "cohort.csv", small_kb, mapping=parse_mapping(MAPPING), ignore_extra=True
    )
    assert [r.condition for r in rows] == [
        "J18.9",
        "community_acquired_pneumonia",
        "N39.0",
        "G43.0",
    ]
    assert rows[0].findings == {"fever": True} and rows[0].vitals == {"heart_rate": 112.0}
    assert rows[1].comorbidities == ["asthma"] and rows[0].comorbidities == []
    records, filled, dropped = complete(rows, small_kb, seed=1, source="cohort.csv")
    assert [r.condition_id for r in records] == [
        "community_acquired_pneumonia",
        "community_acquired_pneumonia",
        "lower_urinary_tract_infection",
        "migraine_without_aura",
    ]
    first = records[0]
    assert first.age == 34 and first.sex == "female"
    assert first.findings["fever"] is True and first.vitals["heart_rate"] == 112.0
    assert first.tests["crp"].value == 140.0 and first.tests["crp"].abnormal
    # what the CSV lacks came from the KB, and was counted
    assert filled["ethnicity"] == 4 and filled["finding"] > 0 and filled["vital"] > 0
    assert filled["condition_by_icd10"] == 3 and filled["condition_by_kb_id"] == 1
    # a denied finding the condition does not have is not an error (migraine, fever=false)
    assert "fever" not in records[3].findings or records[3].findings["fever"] is False
    assert not dropped


def test_csv_missing_and_extra_columns_are_named(small_kb, tmp_path):
    with pytest.raises(ImporterError) as e:
        read_csv(DATA / "cohort.csv", small_kb, mapping=parse_mapping(["age=AGE_YEARS"]))
    msg = str(e.value)
    assert "missing column 'sex'" in msg and "missing column 'condition'" in msg
    assert "unexpected column 'PID'" in msg and "--ignore-extra-columns" in msg


def test_csv_mistyped_values_name_column_line_and_value(small_kb, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "age,sex,condition,vital.heart_rate,finding.cough\n"
        "forty,F,J18.9,90,yes\n"
        "30,X,J18.9,fast,maybe\n"
    )
    with pytest.raises(ImporterError) as e:
        read_csv(bad, small_kb)
    msg = str(e.value)
    assert "bad.csv line 2, column 'age': 'forty' is not a whole number" in msg
    assert "line 3, column 'sex': 'X' is not one of female, male" in msg
    assert "line 3, column 'vital.heart_rate': 'fast' is not a number" in msg
    assert "line 3, column 'finding.cough': 'maybe' is not true/false" in msg


def test_unknown_condition_code_is_an_error_naming_it(small_kb, tmp_path):
    f = tmp_path / "dx.csv"
    f.write_text("age,sex,DIAG\n40,M,X99.9\n")
    rows = read_csv(f, small_kb, mapping={"condition": "DIAG"})
    with pytest.raises(ImporterError, match=r"column 'DIAG': unknown condition code 'X99.9'"):
        complete(rows, small_kb, source=str(f))


def test_kb_inconsistent_rows_fail_or_are_dropped_and_counted(small_kb):
    rows = [
        ImportedRow(where="r1", age=40, sex="male", condition="N39.0"),
        ImportedRow(where="r2", age=5, sex="female", condition="G43.0"),
        ImportedRow(where="r3", age=30, sex="female", condition="N39.0"),
    ]
    with pytest.raises(ImporterError) as e:
        complete(rows, small_kb)
    msg = str(e.value)
    assert "r1: sex 'male' with condition 'lower_urinary_tract_infection'" in msg
    assert "r2: age 5 with condition 'migraine_without_aura', whose KB age range is 12-70" in msg
    records, _, dropped = complete(rows, small_kb, drop_inconsistent=True)
    assert len(records) == 1
    assert dropped == {"sex_not_allowed_for_condition": 1, "age_outside_condition_range": 1}


def test_condition_codes_resolve_by_id_icd_map_and_category(small_kb):
    assert resolve_condition("J18.9", small_kb)[1] == "icd10"
    assert resolve_condition("J18.1", small_kb)[1] == "icd10_category"  # only J18 in the KB
    assert resolve_condition("37796009", small_kb, {"37796009": "migraine_without_aura"})[1] == (
        "code_map"
    )
    assert resolve_condition("Z99.9", small_kb)[0] is None


def test_synthea_export(small_kb):
    rows, stats = read_synthea(
        DATA / "synthea", small_kb, code_map={"37796009": "migraine_without_aura"}
    )
    by = {(r.where, r.condition): r for r in rows}
    a1 = by[("conditions.csv line 2", "233604007")]
    assert a1.age == 59 and a1.sex == "female" and a1.ethnicity == "Hispanic"
    assert a1.vitals == {
        "temperature": 38.6,
        "heart_rate": 108.0,
        "systolic_bp": 128.0,
        "diastolic_bp": 78.0,
    }
    assert a1.tests == {"wbc": 14.2, "crp": 95.0}  # bmi is not in the small KB
    assert a1.comorbidities == ["hypertension"]  # ramipril active at onset
    b2 = by[("conditions.csv line 4", "233604007")]
    assert b2.allergies == ["penicillin"] and b2.ethnicity == "Black"
    assert "temperature" not in b2.vitals  # reported in degF: skipped and counted
    assert stats["observations"]["unit_mismatch 8310-5 [degF]"] == 1
    assert any(k.startswith("59621000") for k in stats["unmapped_conditions"])
    assert {r.condition for r in rows} == {"233604007", "68566005", "37796009"}
    records, *_ = complete(rows, small_kb, code_map={"37796009": "migraine_without_aura"})
    assert records[0].vitals["heart_rate"] == 108.0


def test_synthea_missing_column_is_named(small_kb, tmp_path):
    d = tmp_path / "s"
    shutil.copytree(DATA / "synthea", d)
    (d / "conditions.csv").write_text("START,PATIENT,CODE\n2020-01-01,a1,233604007\n")
    with pytest.raises(
        ImporterError, match=r"conditions.csv: missing columns ENCOUNTER, DESCRIPTION"
    ):
        read_synthea(d, small_kb)


@needs("cohorts", "fhir")
def test_fhir_bundle_import(small_kb):
    rows, stats = read_bundles([DATA / "fhir"], small_kb)
    assert len(rows) == 1 and stats["unmapped_conditions"] == {"73211009": 1}
    r = rows[0]
    assert r.age == 53 and r.sex == "male" and r.condition == "233604007"
    # the heart rate of another day is not this episode's
    assert r.vitals == {"heart_rate": 112.0, "temperature": 38.9}
    assert r.tests == {"wbc": 15.1} and r.allergies == ["penicillin"]


@needs("cohorts", "fhir")
def test_fhir_invalid_bundle_names_file_and_field(small_kb, tmp_path):
    bad = tmp_path / "bad.json"
    patient = {"resourceType": "Patient", "id": "x", "birthDate": "yesterday"}
    bad.write_text(
        json.dumps(
            {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient}]}
        )
    )
    with pytest.raises(ImporterError, match=r"bad.json: not a valid FHIR bundle \(field 'entry"):
        read_bundles([bad], small_kb)


@needs("cohorts", "fhir")
def test_fhir_export_then_import_gives_back_the_record(sampler, small_kb, tmp_path):
    records = [sampler.sample_record(np.random.default_rng([4, i])) for i in range(6)]
    n = export_bundles(((f"p{i}", r) for i, r in enumerate(records)), small_kb, tmp_path / "fhir")
    assert n == 6 and len(list((tmp_path / "fhir").glob("*.json"))) == 6
    rows, _ = read_bundles([tmp_path / "fhir"], small_kb)
    back, filled, _ = complete(rows, small_kb)
    assert filled["finding"] == filled["vital"] == filled["test"] == 0
    for a, b in zip(records, back, strict=True):
        assert a.model_dump() == b.model_dump()


@needs("cohorts", "fhir")
def test_fhir_bundle_carries_codes(sampler, small_kb):
    import datetime as dt

    rec = sampler.sample_record(np.random.default_rng(3))
    bundle = record_bundle(rec, "p1", small_kb, encounter=dt.date(2025, 3, 1))
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds[0] == "Patient" and "Condition" in kinds and "Observation" in kinds
    cond = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Condition"
    )
    icd = small_kb.conditions[rec.condition_id].icd10
    assert {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": icd} in [
        {k: c[k] for k in ("system", "code")} for c in cond["code"]["coding"]
    ]


def test_code_file_problems_are_named(tmp_path):
    f = tmp_path / "codes.yaml"
    f.write_text(
        "schema_version: 1\nsources: [x]\nloinc:\n  - {code: 'abc', kb: wbc, kind: lab, unit: x, display: y}\nsnomed: []\n"
    )
    with pytest.raises(ImporterError) as e:
        load_codes(f)
    assert "loinc entry 'abc', field 'code'" in str(e.value)
    assert "loinc entry 'abc', field 'kind'" in str(e.value)
