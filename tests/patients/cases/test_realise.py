"""Realisation: columnar records -> CaseTable, the same Case whichever path a record took."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from clinicgym.patients.cases.case import Case
from clinicgym.patients.cases.realise import Records, realise, realise_draws
from clinicgym.patients.cohorts.cohort import (
    Cohort,
    CohortManifest,
    CohortSchema,
    SourceInfo,
    write_cohort,
)
from clinicgym.patients.knowledge.bands import age_band
from clinicgym.patients.knowledge.uniforms import BLOCK_ROWS, Uniforms, uniform_rows


@pytest.fixture(scope="module")
def schema(small_kb):
    return CohortSchema.for_kb(small_kb)


@pytest.fixture(scope="module")
def table(schema, sampler):
    records = [sampler.sample_record(np.random.default_rng([5, i])) for i in range(150)]
    return schema.table(records)


def test_uniforms_hand_out_a_fixed_row_and_say_when_it_runs_out():
    u = Uniforms([0.0, 0.999, 0.5, 0.25])
    assert u.below(3) == 0 and u.below(3) == 2
    assert u.pick([1.0, 3.0]) == 1  # 0.5 * 3 falls in the second bin
    assert u.choice({"a": 1.0, "b": 3.0}) == "b"  # 0.25 * 4 = 1.0: a boundary belongs to the next
    with pytest.raises(IndexError, match="all 4 uniforms"):
        u.random()


def test_uniform_rows_do_not_depend_on_the_slice():
    whole = uniform_rows(3, 1, 0, 2 * BLOCK_ROWS + 7, 4)
    part = uniform_rows(3, 1, BLOCK_ROWS - 2, 5, 4)  # straddles a block boundary
    assert np.array_equal(whole[BLOCK_ROWS - 2 : BLOCK_ROWS + 3], part)
    assert not np.array_equal(uniform_rows(3, 0, 0, 5, 4), uniform_rows(3, 1, 0, 5, 4))
    assert uniform_rows(3, 1, 10, 0, 4).shape == (0, 4)


def test_decoded_and_record_built_columns_realise_to_the_same_cases(small_kb, schema, table):
    decoded = schema.decode(table, seed=1)
    rebuilt = Records.from_records(small_kb, list(decoded))
    ids = [f"c{i}" for i in range(len(decoded))]
    draws = uniform_rows(1, 1, 0, len(decoded), realise_draws())
    a, b = realise(decoded, ids, draws), realise(rebuilt, ids, draws)
    for i in range(0, len(a), 7):
        assert a[i].model_dump() == b[i].model_dump()


def test_a_row_decodes_the_same_alone_or_in_its_table(schema, table):
    blanked = table.copy()
    blanked.loc[:, "vital_heart_rate"] = np.nan  # every row draws from its own uniforms
    whole = schema.decode(schema.typed(blanked), seed=4)
    for i in (0, 33, 149):
        row = blanked.iloc[i].to_dict()
        assert schema.record(row, seed=4, index=i) == whole.record(i)
    tail = schema.decode(schema.typed(blanked.iloc[100:]), seed=4, start=100)
    assert tail.record(5) == whole.record(105)


def test_blank_cells_are_filled_from_the_kb_and_counted(small_kb, schema, table):
    blanked = table.copy()
    blanked.loc[::2, "vital_heart_rate"] = np.nan
    conds = blanked["condition_id"].map(small_kb.conditions)
    has_test = conds.map(lambda c: bool(c.tests)).to_numpy()
    every_third = np.arange(len(blanked)) % 3 == 0
    blanked.loc[has_test & every_third, "test_1_abnormal"] = pd.NA
    numeric = (
        has_test
        & conds.map(
            lambda c: bool(c.tests) and small_kb.tests[c.tests[0].id].normal is not None
        ).to_numpy()
    )
    blanked.loc[numeric, "test_1_value"] = np.nan
    filled: Counter = Counter()
    records = schema.decode(schema.typed(blanked), seed=2, filled=filled)
    assert filled["vital"] == len(blanked.iloc[::2])
    assert filled["test"] == int((has_test & every_third).sum() + numeric.sum()) > 0
    assert "finding" not in filled
    for i in range(0, len(records), 2):
        rec = records.record(i)
        cond = small_kb.conditions[rec.condition_id]
        lo, hi = (
            cond.vitals.get("heart_rate") or small_kb.vitals["heart_rate"].normal[age_band(rec.age)]
        )
        assert lo <= rec.vitals["heart_rate"] <= hi
    for i in np.flatnonzero(numeric):
        rec = records.record(int(i))
        spec = small_kb.conditions[rec.condition_id].tests[0]
        out = rec.tests[spec.id]
        lo, hi = spec.value if out.abnormal else small_kb.tests[spec.id].normal
        assert lo <= out.value <= hi
        assert out.text == (spec.text if out.abnormal else small_kb.tests[spec.id].normal_text)


def test_persona_ids_point_at_present_facts_the_patient_is_asked_about(schema, table):
    decoded = schema.decode(table, seed=0)
    cases = realise(
        decoded,
        [f"c{i}" for i in range(len(decoded))],
        uniform_rows(0, 1, 0, len(decoded), realise_draws()),
    )
    seen = Counter()
    for case in cases:
        facts = {f.id: f for f in case.facts}
        assert list(facts) == [f"f{k:02d}" for k in range(len(case.facts))]
        for fid in case.persona.volunteer + case.persona.reluctant:
            f = facts[fid]
            assert f.present and f.how_revealed == "ask" and f.category != "phi"
            seen["volunteer" if fid in case.persona.volunteer else "reluctant"] += 1
    assert seen["volunteer"] and seen["reluctant"]  # both paths were exercised


def test_case_table_reads_like_a_sequence(schema, table):
    decoded = schema.decode(table.head(3), seed=0)
    cases = realise(decoded, ["a", "b", "c"], uniform_rows(0, 1, 0, 3, realise_draws()))
    assert len(cases) == 3 and isinstance(cases[-1], Case) and cases[-1].id == "c"
    assert [c.id for c in cases[1:]] == ["b", "c"]
    assert cases[0].artefacts and cases[0].lineage.source == "kb-sampler"
    with pytest.raises(IndexError):
        cases[3]
    with pytest.raises(ValueError, match="draws of shape"):
        realise(decoded, ["a", "b", "c"], np.zeros((3, 2)))


def test_cohort_case_i_does_not_depend_on_how_many_are_read(small_kb, table, tmp_path):
    manifest = CohortManifest(
        cohort_id="c",
        created="now",
        clinicgym_version="0",
        sdv_version="0",
        kb_version=small_kb.version,
        source=SourceInfo(kind="kb", rows=len(table)),
        synthesizer={"name": "gaussian_copula"},
        seed=0,
        split={},
        plan={},
        counts={},
    )
    write_cohort(tmp_path / "c", manifest=manifest, table=table, train=table, holdout=table)
    cohort = Cohort.open(tmp_path / "c", small_kb)
    few, many = cohort.case_table(5), cohort.case_table(40)
    assert few[4] == many[4]
    assert many[4].lineage.parent_ids == [f"cohort:c/{table['patient_id'].iloc[4]}"]
    assert cohort.cases(2) == [few[0], few[1]]
    assert [r.condition_id for _, _, r in cohort.records(3)] == table["condition_id"][:3].tolist()
