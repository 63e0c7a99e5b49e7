"""DDXPlus release -> Cases: evidence codes worded as answers, pertinent negatives from the
pathology and its differential, diagnoses by code or name, zip input, errors; and
`clinicgym run --cases-from` on both importers' fixtures."""

from __future__ import annotations

import csv
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from clinicgym.patients.errors import ImporterError
from clinicgym.patients.importers.ddxplus import answer, read_ddxplus, statement
from clinicgym.patients.importers.external import detect_format, read_cases
from clinicgym.patients.importers.problems import CaseImportWarning
from clinicgym.patients.knowledge.kb import default_kb

DATA = Path(__file__).parents[1] / "data"
RELEASE = DATA / "ddxplus_sample"


@pytest.fixture(scope="module")
def kb():
    return default_kb()


@pytest.fixture(scope="module")
def cases(kb):
    return read_ddxplus(RELEASE, kb)


def _by_source(case, code):
    return [f for f in case.facts if f.source == f"ddxplus:{code}"]


def test_detects_a_release_directory_or_its_patients_file():
    assert detect_format(RELEASE) == "ddxplus"
    assert detect_format(RELEASE / "release_test_patients.csv") == "ddxplus"


def test_evidence_questions_become_the_patients_answers():
    assert statement("Do you have a fever?", True) == "I have a fever."
    assert statement("Do you have a fever?", False) == "I don't have a fever."
    assert (
        statement("Are you short of breath or do you find it hard to breathe?", False)
        == "I'm not short of breath and I don't find it hard to breathe."
    )
    assert statement("Is the pain worse at night?", True) == "Is the pain worse at night? Yes."
    assert answer("Characterize your pain:", ["sharp", "burning"]) == (
        "Characterize my pain: sharp, burning."
    )


def test_a_patient_row_becomes_a_case(cases):
    cap = cases[0]
    assert (cap.age, cap.sex, cap.closed_world) == (61, "male", False)
    (cc,) = [f for f in cap.facts if f.category == "chief_complaint"]
    assert cc.source == "ddxplus:E_11" and cc.text == "I have a cough."
    assert _by_source(cap, "E_16")[0].text == "How intense is the pain? 6 (on a 0-10 scale)."
    assert _by_source(cap, "E_15")[0].text.endswith("Right side of the chest.")
    travel = _by_source(cap, "E_21")[0]  # the default value: as good as not synthesised
    assert not travel.present and travel.text.endswith("No.")
    assert _by_source(cap, "E_18")[0].category == "pmh"  # an antecedent
    fever = _by_source(cap, "E_10")[0]
    assert fever.concept == "fever" and fever.present  # clearly a KB finding


def test_pertinent_negatives_come_from_the_pathology_and_its_differential(cases):
    cap = cases[0]  # pneumonia; differential bronchitis and URTI
    negatives = {f.source for f in cap.facts if not f.present and f.category != "phi"}
    assert {"ddxplus:E_26", "ddxplus:E_19", "ddxplus:E_20", "ddxplus:E_25"} <= negatives
    assert "ddxplus:E_22" not in negatives  # haemoptysis: only pulmonary embolism has it
    own = next(f for f in cap.facts if f.source == "ddxplus:E_26")
    assert own.salience == "should_ask"  # a symptom of the patient's own pathology


def test_diagnoses_by_code_or_name_and_outside_the_kb(cases):
    cap, pe, urti, peri = cases
    assert cap.diagnosis.condition_id == "community_acquired_pneumonia"  # ICD-10 J18.9
    assert urti.diagnosis.condition_id == "common_cold"  # 'URTI' is a KB synonym
    assert peri.diagnosis.condition_id == "acute_pericarditis"  # ICD-10 I30.9 in the KB
    assert [d.name for d in pe.differential] == [
        "Acute pericarditis",
        "Community-acquired pneumonia",
    ]
    assert pe.extra["differential"][0] == ["Embolie pulmonaire", 0.61]


def test_a_diagnosis_outside_the_kb_keeps_its_release_name_and_code():
    from clinicgym.patients.knowledge.kb import load_kb

    small = load_kb(Path(__file__).parents[2] / "data" / "kb_small")  # no pericarditis there
    peri = read_ddxplus(RELEASE, small)[3]
    assert peri.diagnosis.condition_id is None and peri.diagnosis.name == "Pericarditis"
    assert peri.diagnosis.code == "I30.9"


def test_a_zipped_patients_file_and_a_row_limit(kb, tmp_path):
    for name in ("release_evidences.json", "release_conditions.json"):
        shutil.copy(RELEASE / name, tmp_path / name)
    with zipfile.ZipFile(tmp_path / "release_test_patients.zip", "w") as zf:
        zf.write(RELEASE / "release_test_patients.csv", "release_test_patients")
    with pytest.raises(ImporterError, match=r"holds no \.csv file"):
        read_ddxplus(tmp_path, kb)
    with zipfile.ZipFile(tmp_path / "release_test_patients.zip", "w") as zf:
        zf.write(RELEASE / "release_test_patients.csv", "release_test_patients.csv")
    got = read_cases(tmp_path / "release_test_patients.zip", kb, limit=2)
    assert [c.diagnosis.name for c in got] == ["Community-acquired pneumonia", "Pulmonary embolism"]


def test_a_bad_row_is_skipped_and_reported_with_its_row_and_field(kb, tmp_path):
    for name in ("release_evidences.json", "release_conditions.json"):
        shutil.copy(RELEASE / name, tmp_path / name)
    with open(RELEASE / "release_test_patients.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rows[0]["SEX"] = "X"
    rows[1]["EVIDENCES"] = "['E_13', 'E_99']"
    rows[2]["INITIAL_EVIDENCE"] = "E_27"
    with open(tmp_path / "release_test_patients.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.warns(CaseImportWarning, match="row 2: field 'SEX'"):
        assert len(read_ddxplus(tmp_path, kb)) == len(rows) - 3  # the other rows import
    with pytest.raises(ImporterError) as e:
        read_ddxplus(tmp_path, kb, strict=True)
    msg = str(e.value)
    assert "3 problems" in msg
    assert "row 2: field 'SEX': 'X' is not M or F" in msg
    assert "row 3: field 'EVIDENCES': unknown evidence 'E_99'" in msg
    assert "row 4: field 'INITIAL_EVIDENCE': 'E_27' is not among the EVIDENCES" in msg


def test_a_condition_naming_an_unknown_evidence_is_reported(kb, tmp_path):
    shutil.copy(RELEASE / "release_test_patients.csv", tmp_path)
    shutil.copy(RELEASE / "release_evidences.json", tmp_path)
    conditions = json.loads((RELEASE / "release_conditions.json").read_text(encoding="utf-8"))
    conditions["Bronchite"]["symptoms"]["E_77"] = {}
    (tmp_path / "release_conditions.json").write_text(json.dumps(conditions), encoding="utf-8")
    with pytest.raises(ImporterError, match=r"condition 'Bronchite', field 'symptoms': unknown"):
        read_ddxplus(tmp_path, kb)


def test_a_run_spec_takes_its_cases_from_the_file(tmp_path):
    from clinicgym.runs.errors import RunError
    from clinicgym.runs.runner import prepare
    from clinicgym.runs.spec import RunSpec

    spec = RunSpec(agents=["scripted"], cases=2, cases_from=str(RELEASE), out=tmp_path / "r")
    ctx = prepare(spec)
    assert [c.id for c in ctx.cases] == ["ddxplus-0000", "ddxplus-0001"]
    assert "cases_from" in spec.identity() and "cases_format" in spec.identity()
    with pytest.raises(RunError, match="cannot be combined with --cohort"):
        prepare(spec.model_copy(update={"cohort": str(tmp_path)}))


# ---- end to end: `clinicgym run --cases-from FILE --agent scripted` ------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "n"),
    [(DATA / "agentclinic_cases.jsonl", 5), (RELEASE / "release_test_patients.csv", 4)],
)
def test_clinicgym_run_plays_imported_cases(tmp_path, source, n):
    from typer.testing import CliRunner

    from clinicgym.runs.cli import app

    out = tmp_path / "run"
    args = ["run", "--cases-from", str(source), "--agent", "scripted", "--out", str(out), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(episodes) == n and all(e["status"] == "completed" for e in episodes)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stored_episodes"] == n
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spec"]["cases_from"] == str(source)
    again = CliRunner().invoke(app, args)  # resuming finds nothing left to do
    assert again.exit_code == 0 and "0 episodes run now" in again.output
