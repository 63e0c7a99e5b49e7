"""AgentClinic OSCE cases (JSONL, one `OSCE_Examination` per line) -> Cases.

AgentClinic's MedQA-style cases are free text under varying sub-keys: `Objective_for_Doctor`,
`Patient_Actor` (Demographics, History, Symptoms with Primary_Symptom / Secondary_Symptoms,
Past_Medical_History, Social_History, Review_of_Systems, ... in any combination),
`Physical_Examination_Findings` (Vital_Signs and per-system sections, strings or nested dicts),
`Test_Results` (nested dicts of panels and single tests, sometimes plain strings) and
`Correct_Diagnosis`. Each becomes atomic facts:

- the Patient_Actor's history becomes the patient's facts (importers/record_history.py);
- exam sections become exam facts of the system their heading names, absent findings ("No
  crackles") as facts with present=False (importers/exam_text.py);
- every test keeps its name and is orderable by it and its synonyms, abnormal by reference
  ranges (importers/record_tests.py, importers/results.py);
- the diagnosis is the KB's if its name is, else a named diagnosis outside the KB.

A file is never failed for one line: a line that cannot be imported (not JSON, no diagnosis, no
age) is skipped and reported with its file, line and field (`import_agentclinic` returns an
`ImportReport`); `strict=True` fails the file instead. Newborns and infants are age 0 with their
age in hours, days, weeks or months and their gestation kept (`Case.age_detail`); a sex the
demographics do not give is taken from the pronouns anywhere in the case, else 'unspecified'.

Cases are open-world (`closed_world=False`): the patient says "I don't know" for what the
record lacks. An examination of a system the record does not mention reports no abnormality,
as AgentClinic's measurement agent does."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clinicgym.patients.cases.case import AgeDetail, Case
from clinicgym.patients.errors import ImporterError
from clinicgym.patients.importers.demographics import (
    age_from_history,
    parse_age,
    sex_from_pronouns,
    sex_in_words,
    strings,
)
from clinicgym.patients.importers.freetext import (
    CaseBuilder,
    KBLinker,
    diagnosis_for,
    lineage,
    linker_for,
    vital_facts,
)
from clinicgym.patients.importers.problems import ImportProblem, ImportReport, import_jsonl
from clinicgym.patients.importers.record_history import add_history
from clinicgym.patients.importers.record_tests import add_tests, flat_vitals
from clinicgym.patients.importers.text import humanise
from clinicgym.patients.knowledge.kb import KnowledgeBase

FORMAT = "agentclinic"


def read_agentclinic(
    path: Path | str, kb: KnowledgeBase, *, limit: int | None = None, strict: bool = False
) -> list[Case]:
    """Read an AgentClinic OSCE JSONL file into Cases (the first `limit`, or all). A line that
    cannot be imported is skipped and reported as a CaseImportWarning naming the line and field;
    `strict=True` fails the file instead, listing every problem."""
    report = import_agentclinic(path, kb, limit=limit)
    report.check(strict)
    report.warn()
    return report.cases


def detects(path: Path, head: Any) -> bool:
    """A JSONL file whose first record is an OSCE case (`OSCE_Examination` or `Patient_Actor`)."""
    return isinstance(head, dict) and ("OSCE_Examination" in head or "Patient_Actor" in head)


def read(path: Path | str, kb: KnowledgeBase, *, limit: int | None = None) -> ImportReport:
    """The format registry's reader (`importers/external.py`): `import_agentclinic`."""
    return import_agentclinic(path, kb, limit=limit)


def import_agentclinic(
    path: Path | str, kb: KnowledgeBase, *, limit: int | None = None
) -> ImportReport:
    """Every case of an AgentClinic OSCE JSONL file that can be imported, and every problem
    (file, line, field) with the others; never raises for one line."""
    linker = linker_for(kb)

    def make(raw: Any, file: str, line: int, index: int) -> tuple[Case | None, list[ImportProblem]]:
        return osce_case(raw, kb, linker, file=file, line=line, index=index)

    return import_jsonl(path, FORMAT, make, limit=limit)


def parse_demographics(text: str) -> tuple[int | None, str | None]:
    """'45-year-old man' -> (45, 'male'); '6-month-old girl' -> (0, 'female'); 'Newborn,
    female' -> (0, 'female'); '3-year-old child' -> (3, None)."""
    age, _ = parse_age(text)
    return age, sex_in_words(text)


def case_from_osce(
    raw: Any, kb: KnowledgeBase, linker: KBLinker, *, where: str, index: int
) -> Case:
    """One AgentClinic OSCE case -> Case; ImporterError names `where` and the field of every
    problem that stops it."""
    case, problems = osce_case(raw, kb, linker, file=where, line=None, index=index)
    if case is None:
        raise ImporterError(f"{where}: " + "; ".join(_what(p) for p in problems if p.skipped))
    return case


def _what(p: ImportProblem) -> str:
    return (f"field '{p.field}': " if p.field else "") + p.message


def osce_case(
    raw: Any,
    kb: KnowledgeBase,
    linker: KBLinker,
    *,
    file: str,
    line: int | None,
    index: int,
) -> tuple[Case | None, list[ImportProblem]]:
    """One AgentClinic OSCE record -> (Case or None, problems). A record without a diagnosis,
    an age or anything to open with is skipped; a sex the record never gives is 'unspecified'
    and reported (the case is kept)."""

    def problem(field: str, message: str, skipped: bool = True) -> ImportProblem:
        return ImportProblem(file, line, field, message, skipped)

    osce = raw.get("OSCE_Examination", raw) if isinstance(raw, dict) else None
    if not isinstance(osce, dict):
        return None, [problem("", "expected a JSON object with 'OSCE_Examination'")]
    actor, dx_raw, problems = _actor_and_diagnosis(osce, problem)
    demo = " ".join(
        str(v) for k, v in actor.items() if "demograph" in k.lower() or k.lower() in ("age", "sex")
    )
    age, detail = _age(demo, actor)
    sex = sex_in_words(demo) or sex_from_pronouns(strings(osce))
    if age is None:
        problems.append(
            problem(
                "Patient_Actor.Demographics",
                f"no age in {demo[:60]!r}; expected e.g. '45-year-old woman', '3-day-old', "
                "'Newborn'",
            )
        )
    if any(p.skipped for p in problems):
        return None, problems
    if sex is None:
        problems.append(
            problem(
                "Patient_Actor.Demographics",
                f"no sex in {demo[:60]!r} and no pronoun for the patient anywhere in the case; "
                "imported with sex 'unspecified'",
                skipped=False,
            )
        )
    assert age is not None and isinstance(dx_raw, str)
    b = CaseBuilder(kb, linker, min(age, 120), sex or "unspecified", age_detail=detail)
    add_history(b, actor)
    if not b.open_with_first_symptom():
        problems.append(
            problem(
                "Patient_Actor",
                "no symptom to open with (expected 'Symptoms.Primary_Symptom' or a 'History')",
            )
        )
        return None, problems
    where = f"{file} line {line}" if line is not None else file
    return _finish_case(b, osce, dx_raw, linker, where, index), problems


def _actor_and_diagnosis(
    osce: dict[str, Any], problem: Callable[[str, str], ImportProblem]
) -> tuple[dict[str, Any], Any, list[ImportProblem]]:
    """The record's patient actor ({} if it is no object) and diagnosis name (the first of a
    list), with a problem for each that is missing or malformed."""
    problems: list[ImportProblem] = []
    actor = osce.get("Patient_Actor")
    if not isinstance(actor, dict):
        got = f"{type(actor).__name__} ({str(actor)[:40]!r})"
        problems.append(problem("Patient_Actor", f"expected an object, got {got}"))
        actor = {}
    dx_raw = osce.get("Correct_Diagnosis")
    if isinstance(dx_raw, list):
        dx_raw = dx_raw[0] if dx_raw else None
    if not isinstance(dx_raw, str) or not dx_raw.strip():
        problems.append(problem("Correct_Diagnosis", f"expected a diagnosis name, got {dx_raw!r}"))
    return actor, dx_raw, problems


def _age(demo: str, actor: dict[str, Any]) -> tuple[int | None, AgeDetail | None]:
    """The patient's age and its detail from the demographics, else from the history ('born
    three days ago'); a newborn's age in days comes from the history when it says."""
    age, detail = parse_age(demo)
    if age is None:  # 'The patient was born three days ago' in the history
        age, detail = age_from_history(" ".join(strings(actor.get("History", ""))))
    elif detail is not None and detail.value == 0:  # 'Newborn' + 'born three days ago'
        _, told = age_from_history(" ".join(strings(actor.get("History", ""))))
        if told is not None:
            detail = told.model_copy(update={"gestational_weeks": detail.gestational_weeks})
    return age, detail


def _finish_case(
    b: CaseBuilder, osce: dict[str, Any], dx_raw: str, linker: KBLinker, where: str, index: int
) -> Case:
    """The case from its history: examination and tests added, the setting read from the
    doctor's objective (an emergency department, else primary care)."""
    _exam(b, osce.get("Physical_Examination_Findings"))
    tests = add_tests(b, osce.get("Test_Results"), source=f"{FORMAT}:Test_Results")
    objective = str(osce.get("Objective_for_Doctor", "") or "")
    emergency = re.search(r"emergency|\bED\b|A&E", objective, re.IGNORECASE)
    setting = "emergency" if emergency else "primary_care"
    return b.build(
        case_id=f"{FORMAT}-{index:04d}",
        setting=setting,
        diagnosis=diagnosis_for(dx_raw, linker),
        differential=[],
        lineage=lineage(FORMAT, where, index),
        extra={
            "objective": objective,
            "panels": tests.panels,
            "test_names": tests.names,
            "format": FORMAT,
        },
    )


def _exam(b: CaseBuilder, exam: Any) -> None:
    if exam is None:
        return
    if not isinstance(exam, dict):
        b.add_exam(exam, system="general", source="agentclinic:Physical_Examination_Findings")
        return
    for key, value in exam.items():
        src = f"agentclinic:Physical_Examination_Findings.{key}"
        if "vital" in key.lower():
            for f in vital_facts(flat_vitals(value), b.kb, b.linker, b.age, src):
                b.add(**f)
            continue
        _exam_node(b, value, b.linker.exam_system(key), src, [])


def _exam_node(b: CaseBuilder, value: Any, system: str, src: str, path: list[str]) -> None:
    """An examination section of any depth: each leaf's findings under the system its
    heading names, labelled by its sub-heading(s)."""
    if isinstance(value, dict):
        for sub, v in value.items():
            sub_system = b.linker.exam_system(sub) if system == "general" else system
            _exam_node(b, v, sub_system, f"{src}.{sub}", [*path, str(sub)])
        return
    if not path:
        label = ""
    elif len(path) == 1:
        label = humanise(path[0])
    else:
        label = f"{humanise(path[-2])}, {humanise(path[-1]).lower()}"
    b.add_exam(value, system=system, source=src, label=label)
