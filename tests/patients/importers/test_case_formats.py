"""The written-case format registry: a format is one module and one entry (issue 21)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from clinicgym.patients.errors import ImporterError
from clinicgym.patients.importers import external
from clinicgym.patients.importers.external import CaseFormat, detect_format, import_cases
from clinicgym.patients.knowledge.kb import default_kb

VIGNETTE = '''
"""A toy format for the test: one JSON object per line with "vignette" and "diagnosis"."""
from clinicgym.patients.importers.agentclinic import osce_case
from clinicgym.patients.importers.freetext import linker_for
from clinicgym.patients.importers.problems import import_jsonl


def detects(path, head):
    return isinstance(head, dict) and {"vignette", "diagnosis"} <= set(head)


def read(path, kb, *, limit=None):
    linker = linker_for(kb)

    def make(raw, file, line, index):
        osce = {"OSCE_Examination": {
            "Objective_for_Doctor": "Assess the patient.",
            "Patient_Actor": {"Demographics": raw["age_sex"], "History": raw["vignette"],
                              "Symptoms": {"Primary_Symptom": raw["vignette"].split(".")[0]}},
            "Physical_Examination_Findings": {}, "Test_Results": {},
            "Correct_Diagnosis": raw["diagnosis"]}}
        return osce_case(osce, kb, linker, file=file, line=line, index=index)

    return import_jsonl(path, "vignette", make, limit=limit)
'''


def test_a_new_format_is_one_module_and_one_registry_entry(tmp_path, monkeypatch):
    (tmp_path / "vignette_format.py").write_text(textwrap.dedent(VIGNETTE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(external.FORMATS, "vignette", CaseFormat("vignette", "vignette_format"))
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        json.dumps({"age_sex": "45-year-old woman", "vignette": "Cough for two weeks. No fever.",
                    "diagnosis": "Acute bronchitis"}) + "\n"
    )  # fmt: skip
    assert detect_format(cases) == "vignette"
    report = import_cases(cases, default_kb())
    assert [c.diagnosis.name for c in report.cases] == ["Acute bronchitis"]
    assert any(not f.present and "fever" in f.text.lower() for f in report.cases[0].facts)


def test_an_unknown_format_and_misplaced_images_are_named(tmp_path):
    cases = tmp_path / "c.jsonl"
    cases.write_text(json.dumps({"OSCE_Examination": {}}) + "\n")
    with pytest.raises(ImporterError, match=r"unknown case format 'nope'.*agentclinic"):
        import_cases(cases, default_kb(), fmt="nope")
    with pytest.raises(ImporterError, match=r"--case-images .*agentclinic_nejm.*not 'agentclinic'"):
        import_cases(cases, default_kb(), images=tmp_path)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"x": 1}) + "\n")
    with pytest.raises(ImporterError, match="cannot tell the format"):
        detect_format(other)
    assert detect_format(cases) == "agentclinic" and Path(cases).exists()
