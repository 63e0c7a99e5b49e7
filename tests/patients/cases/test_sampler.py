"""The case sampler: seeded, consistent with the KB, complete charts, round-trips through JSON."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from clinicgym.patients.cases.case import Case
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.errors import CaseError
from clinicgym.patients.knowledge.kb import default_kb


def test_same_seed_same_cases(sampler):
    a = sampler.sample_many(10, seed=3)
    b = sampler.sample_many(10, seed=3)
    assert [c.model_dump() for c in a] == [c.model_dump() for c in b]
    assert [c.id for c in a] != [c.id for c in sampler.sample_many(10, seed=4)]


def test_case_index_is_independent_of_how_many_were_drawn(sampler):
    assert sampler.sample(5, 7) == sampler.sample_many(8, 5)[7]


def test_json_round_trip(sampler):
    case = sampler.sample(1, 0)
    again = Case.model_validate_json(case.model_dump_json())
    assert again == case
    assert again.content_hash() == case.content_hash()


def test_case_respects_condition_demographics(small_kb):
    s = CaseSampler(small_kb, conditions=["lower_urinary_tract_infection"])
    for case in s.sample_many(40, seed=0):
        assert case.sex == "female"
        assert 16 <= case.age <= 95
        assert case.diagnosis.code == "N39.0"


def test_chief_complaint_is_present_and_must_ask(sampler):
    for case in sampler.sample_many(30, seed=2):
        cc = [f for f in case.facts if f.category == "chief_complaint"]
        assert len(cc) == 1 and cc[0].present and cc[0].salience == "must_ask"
        cond = sampler.kb.conditions[case.diagnosis.condition_id]
        assert cc[0].concept in cond.chief_complaint


def test_differential_red_flags_become_pertinent_negatives(small_kb):
    s = CaseSampler(small_kb, conditions=["community_acquired_pneumonia"])
    cases = s.sample_many(40, 0)
    # migraine (in pneumonia's differential, ages 12-70) must-asks the thunderclap headache
    for case in cases:
        by = case.facts_by_concept()
        if 12 <= case.age <= 70:
            assert by["sudden_onset_headache"][0].present is False
        else:  # a look-alike the patient cannot have raises no pertinent negatives
            assert "sudden_onset_headache" not in by
    assert any(c.age < 12 for c in cases) and any(12 <= c.age <= 70 for c in cases)


def test_every_test_and_vital_has_a_result(sampler):
    kb = sampler.kb
    case = sampler.sample(9, 0)
    concepts = {f.concept for f in case.facts}
    assert set(kb.tests) <= concepts
    assert set(kb.vitals) <= concepts
    dia = next(f for f in case.facts if f.concept == "diastolic_bp").value
    sys_ = next(f for f in case.facts if f.concept == "systolic_bp").value
    assert dia < sys_


def test_abnormal_results_follow_the_condition(small_kb):
    s = CaseSampler(small_kb, conditions=["community_acquired_pneumonia"])
    cases = s.sample_many(60, seed=1)
    cxr_abnormal = np.mean(
        [next(f for f in c.facts if f.concept == "chest_xray").abnormal for c in cases]
    )
    assert cxr_abnormal > 0.8  # p = 0.95 in the KB
    crp = [next(f for f in c.facts if f.concept == "crp") for c in cases]
    assert all(f.value is not None and (f.value > 5) == f.abnormal for f in crp)


def test_phi_is_synthetic_and_consistent(sampler):
    for case in sampler.sample_many(20, seed=11):
        dob = dt.date.fromisoformat(case.phi.date_of_birth)
        years = 2025 - dob.year
        assert case.age in (years - 1, years, years + 1)
        assert case.phi.email.endswith("@example.com")
        assert case.phi.phone.startswith("555-")


def test_children_speak_through_a_caregiver(small_kb):
    s = CaseSampler(small_kb, conditions=["community_acquired_pneumonia"])
    kids = [c for c in s.sample_many(80, seed=5) if c.age < 12]
    assert kids, "expected some children with pneumonia"
    for c in kids:
        assert c.persona.speaker == "caregiver"
        cc = next(f for f in c.facts if f.category == "chief_complaint")
        assert not cc.text.startswith("I")
        assert "{" not in cc.text


def test_unknown_condition_filter_is_an_error(small_kb):
    with pytest.raises(CaseError, match=r"unknown condition id\(s\) \['nope'\]"):
        CaseSampler(small_kb, conditions=["nope"])


def test_population_weighting_draws_valid_cases(small_kb):
    s = CaseSampler(small_kb, weighting="population")
    for c in s.sample_many(30, seed=0):
        cond = small_kb.conditions[c.diagnosis.condition_id]
        assert cond.age[0] <= c.age <= cond.age[1]


def test_bundled_kb_samples_every_condition():
    s = CaseSampler(default_kb())
    seen = {c.diagnosis.condition_id for c in s.sample_many(600, seed=0)}
    assert len(seen) >= 0.95 * len(default_kb().conditions)
