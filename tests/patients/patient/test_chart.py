"""Examinations and test orders read the chart; unknown ones are errors, never guesses."""

from __future__ import annotations

from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.patient.chart import Chart


def _pneumonia(small_kb):
    s = CaseSampler(small_kb, conditions=["community_acquired_pneumonia"])
    for i in range(100):
        c = s.sample(0, i)
        by = c.facts_by_concept()
        if by["crackles"][0].present and by["chest_xray"][0].abnormal:
            return c
    raise AssertionError


def test_examination_reports_abnormal_findings(small_kb):
    case = _pneumonia(small_kb)
    r = Chart(case, small_kb).examine("chest")
    assert r.ok and r.target == "respiratory"
    assert "crackles" in r.text.lower()
    assert {"concept": "crackles", "status": "affirmed"} in r.answers


def test_normal_system_is_reported_normal(small_kb):
    case = _pneumonia(small_kb)
    r = Chart(case, small_kb).examine("eyes")
    assert r.ok and "No abnormality found" in r.text


def test_vitals(small_kb):
    case = _pneumonia(small_kb)
    r = Chart(case, small_kb).examine("vital signs")
    assert r.ok and "Blood pressure" in r.text and "Oxygen saturation" in r.text


def test_unknown_system_lists_the_options(small_kb):
    r = Chart(_pneumonia(small_kb), small_kb).examine("aura")
    assert not r.ok and "respiratory" in r.text and r.revealed == []


def test_tests_resolve_by_name_abbreviation_and_synonym(small_kb):
    chart = Chart(_pneumonia(small_kb), small_kb)
    for q in ("chest_xray", "CXR", "chest x-ray", "Order a chest radiograph", "FBC", "crp"):
        assert chart.resolve_test(q) is not None, q
    r = chart.order("CXR")
    assert r.ok and "Consolidation" in r.text and r.answers[0]["status"] == "abnormal"


def test_unknown_test_is_an_error_that_lists_available_tests(small_kb):
    r = Chart(_pneumonia(small_kb), small_kb).order("serum unobtainium")
    assert not r.ok and "not available" in r.text and "chest X-ray" in r.text
