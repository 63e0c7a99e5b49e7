"""The cohort table: explicit metadata, record <-> row round trip, KB rules, atomic directories."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from clinicgym.patients.cohorts.cohort import (
    ID_COLUMN,
    CohortManifest,
    CohortSchema,
    SourceInfo,
    icd10_chapter,
    write_cohort,
)
from clinicgym.patients.errors import CohortError
from tests.extras import needs


@pytest.fixture(scope="module")
def schema(small_kb):
    return CohortSchema.for_kb(small_kb)


@pytest.fixture(scope="module")
def records(sampler):
    return [sampler.sample_record(np.random.default_rng([2, i])) for i in range(120)]


@pytest.fixture(scope="module")
def table(schema, records):
    return schema.table(records)


@needs("cohorts", "sdv")
def test_metadata_is_declared_and_valid(schema):
    md = schema.metadata_dict()["tables"]["patients"]["columns"]
    assert md["condition_id"]["range_values"] == sorted(schema.kb.conditions)
    assert md["sex"]["range_values"] == ["female", "male"]
    assert md["age"] == {
        "sdtype": "numerical",
        "range_min": 0,
        "range_max": 120,
        "decimal_places": 0,
    }
    assert md["finding_01"] == {"sdtype": "boolean"}
    assert ID_COLUMN not in md
    schema.metadata().validate()
    # one column per condition finding slot, per test slot (flag and value), per vital
    assert schema.finding_slots == 7 and schema.test_slots == 3
    assert "test_3_value" in md and "vital_diastolic_bp" in md


def test_records_round_trip_through_rows(schema, records, table):
    assert list(table.columns) == [ID_COLUMN, *schema.columns]
    filled = Counter()
    decoded = schema.decode(table, seed=0, filled=filled)
    assert len(decoded) == len(records)
    for i, rec in enumerate(records):
        back = decoded.record(i)
        a, b = rec.model_dump(), back.model_dump()
        cond = schema.kb.conditions[rec.condition_id]
        for tid in list(a["tests"]):
            if tid not in {t.id for t in cond.tests}:
                # tests outside the condition are drawn normal again, not stored
                assert not b["tests"][tid]["abnormal"]
                a["tests"].pop(tid), b["tests"].pop(tid)
        assert a == b
    assert not filled


def test_seed_rows_break_no_kb_rule(schema, table):
    assert schema.violations(table).isna().all()


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("condition_id", "no_such_condition", "unknown_condition"),
        ("icd10", "J18.1", "icd10_mismatch"),
        ("icd10_chapter", "A00-B99", "icd10_chapter_mismatch"),
        ("age", 130, "age_outside_condition_range"),
        ("age_band", "0-4", "age_band_mismatch"),
        ("chief_complaint", "photophobia", "chief_complaint_not_of_condition"),
        ("genomic_marker", "CFTR F508del", "marker_mismatch"),
        ("vital_heart_rate", 400.0, "implausible_heart_rate"),
        ("vital_diastolic_bp", 200.0, "implausible_diastolic_bp"),
    ],
)
def test_each_kb_rule_is_detected(schema, table, column, value, reason):
    row = table[table["condition_id"] == "community_acquired_pneumonia"].head(1).copy()
    row[column] = value
    assert schema.violations(row).iloc[0] == reason


def test_sex_specific_and_comorbidity_rules(schema, table):
    uti = table[table["condition_id"] == "lower_urinary_tract_infection"].head(1).copy()
    uti["sex"] = "male"
    assert schema.violations(uti).iloc[0] == "sex_not_allowed_for_condition"
    child = table[table["age_band"] == "0-4"].head(1).copy()
    assert len(child), "the seed should hold an infant"
    child["comorbid_hypertension"] = True
    assert schema.violations(child).iloc[0] == "comorbidity_impossible_at_age"


def test_normalise_blanks_cells_the_condition_does_not_have(schema, table):
    t = table.copy()
    t[schema.finding_columns] = t[schema.finding_columns].fillna(True)
    n = schema.normalise(t)
    mig = n[n["condition_id"] == "migraine_without_aura"]
    assert mig["test_1_abnormal"].isna().all()  # migraine has no tests in the small KB
    cap = n[n["condition_id"] == "community_acquired_pneumonia"]
    assert cap["test_1_value"].isna().all()  # chest X-ray: a report, no value
    assert cap["test_2_value"].notna().all()  # CRP
    # the chief complaint's own slot is carried by the chief_complaint column
    for _, r in cap.iterrows():
        k = [f.id for f in schema.kb.conditions[r["condition_id"]].findings].index(
            r["chief_complaint"]
        )
        assert pd.isna(r[schema.finding_column(k)])


def test_check_columns_names_missing_and_mistyped(schema, table):
    bad = table.drop(columns=["age_band"]).copy()
    bad["age"] = bad["age"].astype(object)
    bad.loc[bad.index[3], "age"] = "old"
    bad["finding_01"] = bad["finding_01"].astype(object)
    bad.loc[bad.index[0], "finding_01"] = "yes"
    with pytest.raises(CohortError) as e:
        schema.check_columns(bad, "x.parquet")
    msg = str(e.value)
    assert "missing columns: age_band" in msg
    assert "column 'age': expected a number, found 'old'" in msg
    assert "column 'finding_01': expected true/false, found 'yes'" in msg


def test_icd10_chapters():
    assert icd10_chapter("J18.9") == "J00-J99"
    assert icd10_chapter("O99.1") == "O00-O9A"
    assert icd10_chapter("S72.001A") == "S00-T88"
    assert icd10_chapter("not a code") is None


def _manifest(kb) -> CohortManifest:
    return CohortManifest(
        cohort_id="c",
        created="now",
        clinicgym_version="0",
        sdv_version="0",
        kb_version=kb.version,
        source=SourceInfo(kind="kb", rows=1),
        synthesizer={"name": "gaussian_copula"},
        seed=0,
        split={},
        plan={},
        counts={},
    )


def test_write_cohort_is_all_or_nothing(small_kb, table, tmp_path):
    def boom(_dir):
        raise RuntimeError("disk full")

    out = tmp_path / "c"
    with pytest.raises(RuntimeError, match="disk full"):
        write_cohort(
            out,
            manifest=_manifest(small_kb),
            table=table,
            train=table,
            holdout=table,
            save_synthesizer=boom,
        )
    assert not out.exists() and list(tmp_path.iterdir()) == []
    write_cohort(out, manifest=_manifest(small_kb), table=table, train=table, holdout=table)
    assert (out / "manifest.json").exists() and (out / "records.parquet").exists()
    with pytest.raises(CohortError, match="already exists"):
        write_cohort(out, manifest=_manifest(small_kb), table=table, train=table, holdout=table)


def test_open_refuses_a_cohort_of_another_kb_version(small_kb, table, tmp_path):
    from clinicgym.patients.cohorts.cohort import Cohort

    manifest = _manifest(small_kb).model_copy(update={"kb_version": "1-000000000000"})
    write_cohort(tmp_path / "c", manifest=manifest, table=table, train=table, holdout=table)
    with pytest.raises(
        CohortError, match=r"made with KB version 1-000000000000, but the KB in use"
    ):
        Cohort.open(tmp_path / "c", small_kb)
    with pytest.raises(CohortError, match="not a cohort directory"):
        Cohort.open(tmp_path, small_kb)
