"""AgentClinic OSCE JSONL -> Cases: free text to atomic facts, varied sub-keys, chart-orderable
tests, diagnoses in and outside the KB, and one error listing every problem in a bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinicgym.patients.errors import ImporterError
from clinicgym.patients.importers.agentclinic import parse_demographics, read_agentclinic
from clinicgym.patients.importers.external import detect_format
from clinicgym.patients.importers.freetext import clauses, patient_text
from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.patients.patient.chart import Chart
from clinicgym.patients.patient.matching import matcher_for
from clinicgym.patients.patient.patient import GroundedPatient
from clinicgym.scoring.diagnosis import matches

DATA = Path(__file__).parents[1] / "data" / "agentclinic_cases.jsonl"


@pytest.fixture(scope="module")
def kb():
    return default_kb()


@pytest.fixture(scope="module")
def cases(kb):
    return {c.diagnosis.name: c for c in read_agentclinic(DATA, kb)}


def _facts(case, category=None, concept=None):
    return [
        f
        for f in case.facts
        if (category is None or f.category == category)
        and (concept is None or f.concept == concept)
    ]


def test_the_fixture_is_detected_and_every_case_is_read(cases):
    assert detect_format(DATA) == "agentclinic"
    assert len(cases) == 5
    for c in cases.values():
        assert not c.closed_world and c.lineage.source == "import:agentclinic"
        assert len(_facts(c, "chief_complaint")) == 1


@pytest.mark.parametrize(
    ("text", "age", "sex"),
    [
        ("58-year-old man", 58, "male"),
        ("A 47-year-old woman", 47, "female"),
        ("Age: 62, Sex: Male", 62, "male"),
        ("4-year-old boy, brought by his mother", 4, "male"),
        ("6-month-old girl", 0, "female"),
    ],
)
def test_demographics_in_their_varied_forms(text, age, sex):
    assert parse_demographics(text) == (age, sex)


def test_lists_split_into_atomic_negatives_but_qualified_sentences_stay_whole():
    got = clauses("Denies leg swelling, haemoptysis or weight loss. Swollen hands and feet.")
    assert [(c.text, c.negated) for c in got] == [
        ("leg swelling", True),
        ("haemoptysis", True),
        ("weight loss", True),
        ("Swollen hands and feet", False),
    ]
    assert [c.text for c in clauses("Pain in the right lower quadrant, worse on walking")] == [
        "Pain in the right lower quadrant, worse on walking"
    ]
    got = clauses("There were no fevers or rigors. She has no history of asthma.")
    assert [(c.text, c.negated) for c in got] == [
        ("fevers", True),
        ("rigors", True),
        ("She has no history of asthma", True),
    ]


def test_chart_wording_becomes_what_the_patient_says():
    assert patient_text("She vomited twice") == "I vomited twice."
    assert patient_text("Patient reports chest pain") == "Chest pain."
    assert patient_text("Her mother died of a stroke") == "My mother died of a stroke."
    assert patient_text("He has had a fever", caregiver=True) == "He has had a fever."


def test_history_facts_link_to_the_kb_only_where_clear(cases):
    cap = cases["Community-acquired pneumonia"]
    assert _facts(cap, concept="fever")[0].text == "Fever."
    negatives = {f.concept for f in cap.facts if f.category == "ros" and not f.present}
    assert negatives == {"unilateral_leg_swelling", "haemoptysis", "weight_loss"}
    driver = next(f for f in cap.facts if "bus driver" in f.text)
    assert driver.concept.startswith("text.")  # no KB finding says this: kept as free text


def test_vitals_exam_and_sections_of_varied_shape(cases):
    cap = cases["Community-acquired pneumonia"]
    temp = _facts(cap, concept="temperature")[0]
    assert temp.value == 38.9 and temp.abnormal
    sbp, dbp = _facts(cap, concept="systolic_bp")[0], _facts(cap, concept="diastolic_bp")[0]
    assert (sbp.value, dbp.value) == (128, 76)
    assert {f.system for f in _facts(cap, "exam")} == {"respiratory"}
    sah = cases["Subarachnoid haemorrhage"]  # vitals given as one string
    assert _facts(sah, concept="heart_rate")[0].value == 58
    assert _facts(sah, concept="amlodipine") and _facts(sah, concept="allergy.none")
    kawasaki = cases["Kawasaki disease"]  # nested HEENT section, a child's caregiver answers
    assert kawasaki.persona.speaker == "caregiver"
    assert {"ent", "skin"} <= {f.system for f in _facts(kawasaki, "exam")}
    gbs = cases["Guillain-Barre syndrome"]  # 'Presenting_Complaint', allergy list
    assert _facts(gbs, "chief_complaint")[0].text.startswith("Weakness in both legs")
    assert _facts(gbs, concept="allergy.penicillin")[0].value == "penicillin"


def test_tests_are_orderable_by_name_panels_whole_and_imaging_as_pictures(kb, cases):
    cap = cases["Community-acquired pneumonia"]
    chart = Chart(cap, kb)
    cxr = chart.order("CXR")
    assert cxr.ok and "right lower lobe" in cxr.text and cxr.artefacts == ["a-chest_xray"]
    art = next(a for a in cap.artefacts if a.id == "a-chest_xray")
    assert art.image["findings"] == [{"kind": "consolidation", "side": "right", "zone": "lower"}]
    cbc = chart.order("complete blood count")
    panel = next(a for a in cap.artefacts if a.id in cbc.artefacts)
    assert [r["test"] for r in panel.table] == ["WBC", "Hemoglobin", "Platelets"]
    assert chart.order("haemoglobin").ok  # a KB synonym of the analyte
    gbs = cases["Guillain-Barre syndrome"]  # Test_Results given as a plain paragraph
    lp = Chart(gbs, kb).order("lumbar puncture")
    assert lp.ok and "protein 1.8 g/L" in lp.text


def test_a_diagnosis_outside_the_kb_stays_named_and_matchable(cases):
    phaeo = cases["Phaeochromocytoma"]
    assert phaeo.diagnosis.condition_id is None and phaeo.diagnosis.code == ""
    assert matches("Pheochromocytoma", phaeo.diagnosis)
    assert not matches("Hyperthyroidism", phaeo.diagnosis)
    assert cases["Kawasaki disease"].diagnosis.condition_id == "kawasaki_disease"


def test_the_grounded_patient_answers_from_the_imported_record(kb, cases):
    patient = GroundedPatient(cases["Subarachnoid haemorrhage"], matcher_for(kb))
    assert "headache" in patient.opening().text.lower()
    reply = patient.answer("Is your neck stiff?")
    assert reply.answers[0].status == "affirmed" and "Neck stiffness" in reply.text
    unknown = patient.answer("Have you lost weight recently?")
    assert unknown.answers[0].status == "unknown"  # open world: not in the record


def test_a_strict_read_of_a_bad_file_lists_every_problem_with_line_and_field(kb, tmp_path):
    good = DATA.read_text(encoding="utf-8").splitlines()[0]
    no_dx = json.loads(good)
    del no_dx["OSCE_Examination"]["Correct_Diagnosis"]
    no_age = json.loads(good)
    no_age["OSCE_Examination"]["Patient_Actor"]["Demographics"] = "adult"
    bad = tmp_path / "agentclinic_bad.jsonl"
    bad.write_text("\n".join([good, json.dumps(no_dx), "{oops", json.dumps(no_age)]) + "\n")
    with pytest.raises(ImporterError) as e:
        read_agentclinic(bad, kb, strict=True)  # all or nothing; by default the rest import
    msg = str(e.value)
    assert "--strict and 3 of 4 lines" in msg
    assert "line 2: field 'Correct_Diagnosis'" in msg
    assert "line 3: not valid JSON" in msg
    assert "line 4: field 'Patient_Actor.Demographics': no age in 'adult'" in msg
