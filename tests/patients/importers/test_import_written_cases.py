"""Clinician-written cases imported faithfully (issue 18): a file is never failed for one line,
infants and unspecified sex, tests that keep their names, flags from reference ranges,
negation-aware exam findings, NEJM-shaped cases, and the import audit.

Records written for these tests are inline; the public AgentClinic cases are read from
../shared/data/agentclinic at test time (never copied here) and their tests skip without it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from clinicgym.patients.cases.case import Case
from clinicgym.patients.errors import ImporterError
from clinicgym.patients.importers.agentclinic import import_agentclinic, osce_case
from clinicgym.patients.importers.agentclinic_nejm import import_nejm, pe_results
from clinicgym.patients.importers.audit import audit_case
from clinicgym.patients.importers.demographics import (
    parse_age,
    sex_from_pronouns,
    sex_in_words,
)
from clinicgym.patients.importers.exam_text import finding_clauses, meaning_matches
from clinicgym.patients.importers.external import detect_format, import_cases, read_cases
from clinicgym.patients.importers.freetext import linker_for
from clinicgym.patients.importers.problems import CaseImportWarning
from clinicgym.patients.importers.results import (
    RANGES_FILE,
    flag_result,
    text_abnormal,
)
from clinicgym.patients.importers.results import test_names as name_groups
from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.patients.patient.chart import Chart
from clinicgym.scoring.diagnosis import matches

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data" / "agentclinic"
MEDQA = SHARED / "agentclinic_medqa.jsonl"
NEJM = SHARED / "agentclinic_nejm.jsonl"
needs_shared = pytest.mark.skipif(
    not MEDQA.exists() or not NEJM.exists(),
    reason=f"the public AgentClinic cases are not at {SHARED} (they are read from there, never "
    "copied into the repository)",
)


@pytest.fixture(scope="module")
def kb():
    return default_kb()


def _osce(demographics: str, tests: dict | None = None, exam: dict | None = None, **actor):
    """A small OSCE record written for these tests."""
    return {
        "OSCE_Examination": {
            "Objective_for_Doctor": "Assess the patient.",
            "Patient_Actor": {
                "Demographics": demographics,
                "History": actor.get("history", "Feeding poorly since this morning."),
                "Symptoms": {"Primary_Symptom": actor.get("primary", "Poor feeding")},
            },
            "Physical_Examination_Findings": exam or {},
            "Test_Results": tests or {},
            "Correct_Diagnosis": actor.get("dx", "Neonatal sepsis"),
        }
    }


def _case(kb, raw, line=1) -> tuple[Case, list]:
    case, problems = osce_case(raw, kb, linker_for(kb), file="mine.jsonl", line=line, index=0)
    assert case is not None, problems
    return case, problems


# ---- a file is never failed for one line ------------------------------------------------------


@needs_shared
def test_a_broken_line_never_stops_the_file(kb, tmp_path):
    lines = [x for x in MEDQA.read_text(encoding="utf-8").splitlines() if x.strip()]
    no_dx = json.loads(lines[1])
    del no_dx["OSCE_Examination"]["Correct_Diagnosis"]
    f = tmp_path / "mixed.jsonl"
    f.write_text("\n".join([lines[0], "{not json", json.dumps(no_dx), lines[2]]) + "\n")
    report = import_agentclinic(f, kb)
    assert len(report.cases) == 2 and report.lines == 4
    assert [(p.line, p.field, p.skipped) for p in report.problems] == [
        (2, "", True),
        (3, "Correct_Diagnosis", True),
    ]
    assert "mixed.jsonl line 3: field 'Correct_Diagnosis'" in str(report.problems[1])
    with pytest.warns(CaseImportWarning) as caught:
        assert len(read_cases(f, kb)) == 2
    assert ["line 2: not valid JSON" in str(w.message) for w in caught] == [True, False]
    with pytest.raises(ImporterError, match=r"--strict and 2 of 4 lines") as e:
        read_cases(f, kb, strict=True)
    assert "line 2" in str(e.value) and "line 3" in str(e.value)
    assert len(import_cases(f, kb, limit=1).cases) == 1  # the first case that imports


def test_a_file_with_no_case_at_all_fails(kb, tmp_path):
    f = tmp_path / "none.jsonl"
    f.write_text("{oops\n")
    with pytest.raises(ImporterError, match="no cases"):
        read_cases(f, kb, fmt="agentclinic")


# ---- infants, sex -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "years", "value", "unit", "gestation"),
    [
        ("Newborn, female", 0, 0, "days", None),
        ("3-day-old boy", 0, 3, "days", None),
        ("6-week-old infant", 0, 6, "weeks", None),
        ("18-month-old girl", 1, 18, "months", None),
        ("Newborn, 3050-g male, six hours post delivery", 0, 6, "hours", None),
        ("1100-g newborn, 31 weeks' gestation", 0, 0, "days", 31),
        ("Newborn, born after the 32nd gestational week", 0, 0, "days", 32),
        ("45-year-old woman", 45, None, None, None),
        ("52M", 52, None, None, None),
        ("78 y/o M", 78, None, None, None),
    ],
)
def test_infant_ages_are_kept_as_the_record_gives_them(text, years, value, unit, gestation):
    age, detail = parse_age(text)
    assert age == years
    if value is None:
        assert detail is None
    else:
        assert (detail.value, detail.unit, detail.gestational_weeks) == (value, unit, gestation)


@pytest.mark.parametrize(
    ("text", "sex"), [("52M", "male"), ("29 F", "female"), ("78 y/o M", "male"), ("Mum, 30", None)]
)
def test_clinical_shorthand_names_the_sex(text, sex):
    assert sex_in_words(text) == sex


def test_sex_from_pronouns_leaves_out_other_people():
    assert sex_from_pronouns(["The child was well until today. She vomited twice."]) == "female"
    assert sex_from_pronouns(["His mother says she noticed a rash on him."]) is None
    assert sex_from_pronouns(["The baby cried. The mother reports she is worried."]) is None


def test_a_record_that_never_says_the_sex_plays_as_unspecified(kb):
    case, problems = _case(kb, _osce("3-day-old newborn"))
    assert case.sex == "unspecified" and case.age == 0 and case.age_detail.value == 3
    assert [p.skipped for p in problems] == [False] and "unspecified" in problems[0].message
    from clinicgym.envs.consultation import ConsultationEnv

    env = ConsultationEnv([case], kb=kb)
    obs, _ = env.reset(seed=0, options={"case": case})
    assert obs["sex"] == 2 and env.observation_space.contains(obs)
    assert "Patient: infant, 3 days old" in obs["text"]
    from clinicgym.scoring.probes.counterfactual import sex_irrelevant

    assert not sex_irrelevant(case, kb)  # nothing to flip
    same = case.model_copy(update={"age_detail": None})
    assert '"age_detail"' not in same.model_dump_json(exclude={"age_detail"})
    assert same.content_hash() != case.content_hash()  # set: part of the hash; unset: left out


def test_pronouns_anywhere_in_the_case_give_the_sex(kb):
    raw = _osce("3-year-old child", history="She has had a cough for two days.")
    case, problems = _case(kb, raw)
    assert case.sex == "female" and not problems


# ---- tests keep their names ---------------------------------------------------------------------

_TESTS = {
    "CT_Pulmonary_Angiography": {"Findings": "Filling defect in the right lower lobe artery."},
    "Electrocardiogram": {"Findings": "Sinus tachycardia, 112/min."},
    "Urinalysis": {"Protein": "Negative", "WBC": "12-16/hpf", "Nitrites": "Positive"},
    "Imaging": {"X-Ray_Neck": {"Findings": "Thumb sign of the epiglottis."}},
    "Complete_Blood_Count": {"Hemoglobin": "7.5 g/dL", "WBC": "6,200 /μL"},
    "Liver_Function_Tests": {"Alkaline_Phosphatase": "460 U/L", "ALT": "30 U/L"},
    "Reticulocyte_Count": "13.3%",
    "C-Reactive_Protein": {"Level": "48 mg/L"},
    "Plasma_ACTH": "Raised",
    "Additional_Tests": {"Suggestion": "An MRI could be considered if suspicion persists."},
}


@pytest.fixture(scope="module")
def tested(kb):
    raw = _osce(
        "52-year-old woman", tests=_TESTS, primary="Breathlessness", dx="Pulmonary embolism"
    )
    return _case(kb, raw)[0]


@pytest.mark.parametrize(
    ("query", "source"),
    [
        ("CT pulmonary angiography", "CT_Pulmonary_Angiography"),
        ("CTPA", "CT_Pulmonary_Angiography"),
        ("ECG", "Electrocardiogram"),
        ("EKG", "Electrocardiogram"),
        ("urinalysis", "Urinalysis"),
        ("U/A", "Urinalysis"),
        ("neck x-ray", "X-Ray_Neck"),
        ("X-ray of the neck", "X-Ray_Neck"),
        ("FBC", "Complete_Blood_Count"),
        ("CBC", "Complete_Blood_Count"),
        ("full blood count", "Complete_Blood_Count"),
        ("LFTs", "Liver_Function_Tests"),
        ("haemoglobin", "Hemoglobin"),
        ("CRP", "C-Reactive_Protein"),
        ("reticulocytes", "Reticulocyte_Count"),
    ],
)
def test_tests_are_orderable_by_their_names_and_synonyms(kb, tested, query, source):
    result = Chart(tested, kb).order(query)
    assert result.ok, result.text
    fact = next(f for f in tested.facts if f.id == result.revealed[0])
    assert fact.source.endswith(source), (query, fact.source)
    assert not fact.text.lower().startswith("findings")


def test_what_is_not_an_orderable_result_is_not_on_the_chart(kb, tested):
    chart = Chart(tested, kb)
    assert not chart.order("ACTH stimulation test").ok  # not the plasma ACTH the case holds
    assert chart.order("plasma ACTH").ok
    assert not chart.order("MRI").ok  # a suggestion, not a result
    assert not any("Suggestion" in (f.source or "") for f in tested.facts)
    assert not chart.order("urine WBC").text.startswith("Result: Complete")


def test_flags_come_from_reference_ranges_and_negation_aware_text(kb, tested):
    by_source = {
        ".".join(f.source.split(".")[-2:]): f for f in tested.facts if f.how_revealed == "order"
    }
    by_source.update({f.source.rsplit(".", 1)[-1]: f for f in tested.facts if f.source})
    for abnormal in (
        "Hemoglobin",
        "Alkaline_Phosphatase",
        "Reticulocyte_Count",
        "C-Reactive_Protein",
    ):
        assert by_source[abnormal].abnormal, abnormal
    assert not by_source["ALT"].abnormal and not by_source["Protein"].abnormal
    assert by_source["Nitrites"].abnormal and by_source["Urinalysis.WBC"].abnormal  # 12-16/hpf
    assert not by_source["Complete_Blood_Count.WBC"].abnormal


@pytest.mark.parametrize(
    ("name", "text", "age", "sex", "days", "want"),
    [
        ("Hemoglobin", "7.5 g/dL", 40, "female", None, True),
        ("Hemoglobin", "13.8 g/dL", 40, "male", None, False),
        ("Hemoglobin", "12.5 g/dL", 40, "male", None, True),  # male range
        ("Hemoglobin", "12.5 g/dL", 40, "female", None, False),  # female range
        ("Hemoglobin", "12.5 g/dL", 40, "unspecified", None, False),  # the union
        ("Hemoglobin", "17.6 g/dL", 0, "male", 5.0, False),  # a newborn's range
        ("Hemoglobin", "125 g/L", 40, "female", None, False),  # another unit
        ("Alkaline phosphatase", "460 U/L", 30, "male", None, True),
        ("Reticulocytes", "13.3%", 30, "male", None, True),
        ("CRP", "48 mg/L", 50, "female", None, True),
        ("CRP", "0.4 mg/dL", 50, "female", None, False),
        ("Platelets", "280,000 /μL (normal)", 5, "female", None, False),  # the record's word
        ("LDH", "35664 U per liter (reference range, 120 to 250)", 53, "female", None, True),
        ("Reticulocyte count", "0.8% (normal range: 2-6%)", 70, "male", None, True),
    ],
)
def test_reference_ranges_by_analyte_unit_age_and_sex(name, text, age, sex, days, want):
    assert flag_result(name, text, age=age, sex=sex, age_days=days).abnormal is want


def test_a_urine_result_is_never_held_to_a_serum_range():
    assert flag_result("Na", "45 mEq/L", age=60, sex="male", panel="Urinalysis").basis == "none"
    assert flag_result("Na", "122 mEq/L", age=60, sex="male").abnormal


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Soft and non-tender", False),
        ("No consolidation or effusion", False),
        ("Shifting dullness absent", False),
        ("Absent bowel sounds", True),
        ("Tender in the right iliac fossa", True),
        ("Normal, no thymoma or other masses detected", False),
        ("No fracture, but alignment suggests posterior dislocation", True),
    ],
)
def test_text_results_are_flagged_by_negation_aware_rules(text, want):
    assert text_abnormal(text) is want


def test_the_data_files_name_their_sources():
    ranges = yaml.safe_load(RANGES_FILE.read_text())
    header = RANGES_FILE.read_text().split("version:")[0]
    for a in ranges["analytes"]:
        for r in a["ranges"]:
            assert f"{r['source']}:" in header, (a["id"], r["source"])
    groups = name_groups()
    assert groups.group("CTPA").kb == "ct_pulmonary_angiogram"
    assert groups.group("x-ray chest").id == "chest_xray"
    assert groups.group("FBC").panel and groups.group("FBC").kb is None
    assert groups.group("ACTH stimulation test").kb != groups.group("plasma ACTH").kb


# ---- examination findings ---------------------------------------------------------------------


def test_negation_covers_its_list_and_only_its_list():
    got = finding_clauses("Increased work of breathing, no wheezes or stridor. Absent reflexes.")
    assert [(c.text, c.negated) for c in got] == [
        ("Increased work of breathing", False),
        ("wheezes", True),
        ("stridor", True),
        ("Absent reflexes", False),
    ]


def test_a_kb_finding_links_only_when_it_means_what_the_record_says():
    assert not meaning_matches("A grade 2/6 systolic ejection murmur", ["early diastolic murmur"])
    assert not meaning_matches("Murmur at the apex", ["apical pansystolic murmur"])
    assert not meaning_matches("Clear breath sounds", ["reduced breath sounds on one side"])
    assert meaning_matches("Pitting oedema of both ankles", ["bilateral pitting oedema"])


def test_exam_findings_are_linked_as_absent_never_affirmed(kb):
    exam = {
        "Respiratory_Examination": {
            "Auscultation": "Clear breath sounds bilaterally. No crackles.",
        },
        "Cardiovascular_Examination": {"Auscultation": "Grade 2/6 systolic ejection murmur."},
    }
    case, _ = _case(kb, _osce("60-year-old man", exam=exam, primary="Chest pain"))
    exam_facts = [f for f in case.facts if f.category == "exam"]
    crackles = [f for f in exam_facts if f.concept == "crackles"]
    assert crackles and all(not f.present for f in crackles)
    assert not any(f.concept.startswith("reduced_breath_sounds") for f in exam_facts)
    assert not any(f.concept == "early_diastolic_murmur" for f in exam_facts)
    shown = Chart(case, kb).examine("chest").text
    assert "No crackles." in shown and "Clear breath sounds" in shown


# ---- NEJM-shaped cases --------------------------------------------------------------------------

_NEJM = {
    "image_url": "https://example.org/images?id=IC99990101&width=1500",
    "question": "A 61-year-old man presented with a 2-week history of a painful red eye. On "
    "physical examination, there was conjunctival injection and no discharge. A slit-lamp "
    "examination is shown. What is the most likely diagnosis?",
    "patient_info": "You are a 61-year-old man. Your right eye has been red and painful for two "
    "weeks.",
    "physical_exams": "Laboratory testing results: - ESR: 48 mm/h - CRP: 30 mg/L",
    "answers": [
        {"text": "Conjunctivitis", "correct": False},
        {"text": "Anterior scleritis", "correct": True},
    ],
}


def test_nejm_cases_import_text_only_and_say_so(kb, tmp_path):
    f = tmp_path / "nejm.jsonl"
    f.write_text(json.dumps(_NEJM) + "\n{broken\n")
    assert detect_format(f) == "agentclinic_nejm"
    report = import_nejm(f, kb)
    (case,) = report.cases
    assert case.diagnosis.name == "Anterior scleritis"
    assert [d.name for d in case.differential] == ["Conjunctivitis"]
    assert case.extra["image_url"] == _NEJM["image_url"] and case.extra["image"] == "not attached"
    assert report.notes and "text-only" in report.notes[0]
    assert [p.line for p in report.problems] == [2]
    chart = Chart(case, kb)
    assert chart.order("ESR").ok and chart.order("CRP").ok
    assert not chart.order("image").ok
    assert any(f.category == "exam" and not f.present for f in case.facts)  # no discharge


def test_a_local_image_is_attached_where_the_user_points(kb, tmp_path):
    from PIL import Image

    from clinicgym.envs.action import OrderTest
    from clinicgym.envs.consultation import ConsultationEnv

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(folder / "IC99990101.png")
    f = tmp_path / "nejm.jsonl"
    f.write_text(json.dumps(_NEJM) + "\n")
    (case,) = import_nejm(f, kb, images=folder).cases
    assert case.extra["image"] == "attached"
    env = ConsultationEnv([case], kb=kb, modality="both")
    env.reset(seed=0, options={"case": case})
    obs, *_ = env.step(OrderTest(test="the image"))
    assert "Image attached" in obs["text"] and int(obs["image"].mean()) > 150


def test_a_measurement_brief_that_holds_no_readings_gives_no_tests():
    brief = "The provided text does not include specific instrument readings or test results."
    assert pe_results(brief) is None
    got = pe_results(
        "Laboratory studies: - Kidney function: Normal Urinalysis: - Hematuria: Present"
    )
    assert got == {"Kidney function": "Normal", "Urinalysis": {"Hematuria": "Present"}}


# ---- the public cases ---------------------------------------------------------------------------


@needs_shared
def test_the_shared_nejm_cases_all_import_with_their_answers(kb):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CaseImportWarning)
        cases = read_cases(NEJM, kb)
    raw = [json.loads(x) for x in NEJM.read_text(encoding="utf-8").splitlines() if x.strip()]
    assert len(cases) == len(raw) == 15
    for c, r in zip(cases, raw, strict=True):
        right = next(a["text"] for a in r["answers"] if a["correct"])
        assert matches(right, c.diagnosis), (right, c.diagnosis)
        assert len(c.differential) == len(r["answers"]) - 1
        assert any(f.category == "chief_complaint" for f in c.facts)


@needs_shared
def test_the_import_audit_accounts_for_the_sentences_and_test_names(kb, tmp_path):
    from clinicgym.patients.importers.audit import audit_file

    lines = [x for x in MEDQA.read_text(encoding="utf-8").splitlines() if x.strip()]
    f = tmp_path / "some.jsonl"
    f.write_text("\n".join(lines[i] for i in (0, 25, 29)) + "\n")  # MG, PSC, DGI
    totals = audit_file(f, kb).totals()
    assert totals["cases"] == 3 and totals["lost_test_names"] == 0
    assert totals["placed_share"] >= 0.95 and totals["tests"] >= 20
    assert totals["facts_by_category"]["lab"] >= 15


def test_the_audit_tells_a_denial_from_text_about_the_record():
    from clinicgym.patients.importers.audit import _is_meta_fact

    assert _is_meta_fact("No mention of smoking.")
    assert _is_meta_fact("No additional symptoms provided.")
    assert _is_meta_fact("Blood Pressure Not applicable for age")
    assert not _is_meta_fact("No other symptoms reported by the caregiver.")  # a denial
    assert not _is_meta_fact(
        "Basic Audiometry: Bilateral decreased hearing, details not specified."
    )


def test_clinicgym_cases_audit_prints_a_total_and_json(tmp_path):
    from typer.testing import CliRunner

    from clinicgym.runs.cli import app

    f = tmp_path / "nejm.jsonl"
    f.write_text(json.dumps(_NEJM) + "\n")
    result = CliRunner().invoke(app, ["cases", "audit", str(f)])
    assert result.exit_code == 0, result.output
    assert "1 of 1 cases imported" in result.output and "0 lost test names" in result.output
    as_json = CliRunner().invoke(app, ["cases", "audit", str(f), "--json"])
    totals = json.loads(as_json.stdout)["totals"]
    assert totals["cases"] == 1 and totals["tests"] == 2 and totals["sentences"] >= 8


def test_run_cases_from_plays_every_case_and_strict_stops_on_a_broken_line(tmp_path):
    from typer.testing import CliRunner

    from clinicgym.runs.cli import app

    f = tmp_path / "nejm.jsonl"
    other = {**_NEJM, "question": _NEJM["question"].replace("61-year-old", "47-year-old")}
    f.write_text(json.dumps(_NEJM) + "\n{broken\n" + json.dumps(other) + "\n")
    out = tmp_path / "run"
    args = ["run", "--cases-from", str(f), "--agent", "oracle", "--out", str(out), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 of 3 cases imported, 1 line skipped" in result.output
    assert "line 2: not valid JSON" in result.output and "text-only" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spec"]["cases"] == 2  # every case, not the default 30 (or 3 lines)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["agents"]["oracle"]["metrics"]["diagnostic_accuracy"]["mean"] == 1.0
    strict = CliRunner().invoke(app, [*args[:-3], "--out", str(tmp_path / "r2"), "--strict"])
    assert strict.exit_code == 2 and "--strict and 1 of 3 lines" in strict.output


def test_medicines_and_allergies_inside_past_history_are_their_own_facts(kb):
    raw = _osce("61-year-old woman", dx="Gout")
    actor = raw["OSCE_Examination"]["Patient_Actor"]
    actor["Past_Medical_History"] = (
        "Atrial fibrillation on apixaban. Ramipril 10 mg. Meds: none else. Allergies: "
        "trimethoprim (rash)."
    )
    actor["Social_History"] = "EtOH 10 units/wk. Alcohol about 20 g on weekends."
    case, _ = _case(kb, raw)
    by = {(f.category, f.text, f.present) for f in case.facts}
    meds = {t for c, t, _ in by if c == "medication"}
    assert any("apixaban" in t for t in meds) and any("Ramipril" in t for t in meds)
    assert any(c == "pmh" and "Atrial fibrillation" in t for c, t, _ in by)
    af = next(f for f in case.facts if f.category == "pmh" and "Atrial" in f.text)
    assert af.concept == "atrial_fibrillation"  # the condition keeps its KB link
    assert any(c == "allergy" and "trimethoprim" in t for c, t, _ in by)
    drinks = [f for f in case.facts if "units" in f.text or "20 g" in f.text]
    assert len(drinks) == 2 and {f.category for f in drinks} == {"social"}  # alcohol, no dose
    raw = _osce("8-month-old girl", dx="Bronchiolitis")
    raw["OSCE_Examination"]["Patient_Actor"]["Past_Medical_History"] = "Meds: none. NKDA."
    case, _ = _case(kb, raw)
    denied = {(f.category, f.concept) for f in case.facts if not f.present}
    assert ("medication", "medication.none") in denied and ("allergy", "allergy.none") in denied
    assert not any(f.concept == "pmh.none" for f in case.facts)  # 'Meds: none' is not 'no PMH'
    assert not audit_case(case, raw, kb).unplaced  # the audit finds the empty lists they say


def test_chart_shorthand_becomes_what_the_patient_would_say(kb):
    """A chart's 'label: no', its abbreviations and a problem with its medicines in brackets
    become facts in the patient's words; a status the record does not know gives no fact, and
    the rest of its sentence still does."""
    raw = _osce("70-year-old man", dx="Gout")
    actor = raw["OSCE_Examination"]["Patient_Actor"]
    actor["Past_Medical_History"] = (
        "HTN, T2DM (metformin, gliclazide). Home oxygen: no. Smoking: never. "
        "Had flu jab this autumn, pneumococcal vaccine status unknown."
    )
    case, _ = _case(kb, raw)
    facts = {(f.category, f.text, f.present) for f in case.facts}
    assert ("pmh", "No home oxygen.", False) in facts
    assert any(t == "No smoking." and not p for _, t, p in facts)
    assert ("medication", "I take metformin, gliclazide for type 2 diabetes.", True) in facts
    pmh = {t for c, t, p in facts if c == "pmh" and p}
    assert {"High blood pressure.", "Type 2 diabetes (metformin, gliclazide)."} <= pmh
    assert not any("T2DM" in t or "HTN" in t or "pneumococcal" in t.lower() for _, t, _ in facts)
    assert any("flu jab" in t for _, t, _ in facts)
    audit = audit_case(case, raw, kb)
    assert not audit.unplaced and not audit.meta_denials, audit.unplaced
