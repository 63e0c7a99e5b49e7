"""DDXPlus patients (evidence codes, conditions, differential) -> Cases.

A DDXPlus release is a directory with `release_evidences.json` (codes `E_xx` with `question_en`,
`data_type` B binary / C categorical / M multi-choice, `possible-values`, `value_meaning`,
`default_value`, `is_antecedent`), `release_conditions.json` (pathologies by `condition_name`,
with `cond-name-eng`, `icd10-id`, `severity`, and their `symptoms` and `antecedents`) and patient
files (CSV, or a zip holding one): AGE, SEX, PATHOLOGY, EVIDENCES (e.g. "['E_91', 'E_55_@_V_89']"),
INITIAL_EVIDENCE and DIFFERENTIAL_DIAGNOSIS ([[pathology, probability], ...]).

Each patient becomes a Case: the initial evidence is the chief complaint; every other evidence a
history fact (antecedents as past history), worded from its question ("Do you have a fever?" ->
"I have a fever."; a categorical answer as "How intense is the pain? 7 (0-10)."). The binary
evidences of the patient's pathology and of its differential that the patient does not have are
pertinent negatives, as DDXPlus's own simulator would answer "no" to them. Binary evidences whose
question clearly asks about a KB finding take the KB id as concept. The diagnosis is the KB's when
its code or English name is; the differential keeps DDXPlus's probabilities in `extra`.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clinicgym.patients.cases.case import Case, Diagnosis
from clinicgym.patients.errors import ImporterError
from clinicgym.patients.importers.completion import MAX_LISTED, normalise_sex
from clinicgym.patients.importers.freetext import (
    CaseBuilder,
    KBLinker,
    diagnosis_for,
    lineage,
    linker_for,
)
from clinicgym.patients.importers.problems import ImportProblem, ImportReport
from clinicgym.patients.knowledge.kb import KnowledgeBase

FORMAT = "ddxplus"
EVIDENCES_FILE = "release_evidences.json"
CONDITIONS_FILE = "release_conditions.json"
PATIENT_COLUMNS = ("AGE", "SEX", "PATHOLOGY", "EVIDENCES", "INITIAL_EVIDENCE")
_SEP = "_@_"


def locate(path: Path | str) -> tuple[Path, Path]:
    """(release directory, patients file) for a release directory or a patients CSV/zip in it."""
    path = Path(path)
    if path.is_dir():
        found = sorted(
            p
            for p in path.iterdir()
            if p.suffix.lower() in (".csv", ".zip") and "patient" in p.name
        )
        if not found:
            raise ImporterError(
                f"{path}: no DDXPlus patients file (*patients*.csv or *patients*.zip) in the "
                "directory; pass the file itself"
            )
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise ImporterError(
                f"{path}: several patients files ({names}); pass the one to import, e.g. "
                f"--cases-from {found[0]}"
            )
        return path, found[0]
    if not path.exists():
        raise ImporterError(f"{path}: no such file or directory")
    return path.parent, path


def _load_json(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(
            f"{path}: file is missing (a DDXPlus release has {path.name} beside the patients file)"
        )
        return {}
    except json.JSONDecodeError as e:
        problems.append(f"{path}: not valid JSON ({e.msg}, line {e.lineno})")
        return {}
    if not isinstance(raw, dict):
        problems.append(f"{path}: expected a JSON object keyed by code or name")
        return {}
    return raw


def _check_metadata(
    evidences: dict[str, Any], conditions: dict[str, Any], root: Path, problems: list[str]
) -> None:
    for code, ev in evidences.items():
        where = f"{root / EVIDENCES_FILE}: evidence '{code}'"
        if not isinstance(ev, dict):
            problems.append(f"{where}: expected an object")
            continue
        if not str(ev.get("question_en", "")).strip():
            problems.append(f"{where}, field 'question_en': missing or empty")
        if ev.get("data_type") not in ("B", "C", "M"):
            problems.append(
                f"{where}, field 'data_type': {ev.get('data_type')!r} is not one of B, C, M"
            )
    for name, cond in conditions.items():
        where = f"{root / CONDITIONS_FILE}: condition '{name}'"
        if not isinstance(cond, dict):
            problems.append(f"{where}: expected an object")
            continue
        for key in ("symptoms", "antecedents"):
            for code in cond.get(key, {}) or {}:
                if code not in evidences:
                    problems.append(f"{where}, field '{key}': unknown evidence '{code}'")


def _patient_rows(path: Path) -> Iterator[dict[str, str]]:
    """The patient rows of a CSV or zipped CSV, read as they are needed."""
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as zf:
                members = [n for n in zf.namelist() if n.lower().endswith(".csv")]
                if not members:
                    raise ImporterError(f"{path}: the zip holds no .csv file")
                text = zf.read(members[0]).decode("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImporterError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise ImporterError(f"{path}: not a readable CSV or zip ({e})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in PATIENT_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ImporterError(
            f"{path}: missing column(s) {', '.join(missing)}; DDXPlus patient files have "
            f"{', '.join(PATIENT_COLUMNS)} and DIFFERENTIAL_DIAGNOSIS; found "
            f"{', '.join(reader.fieldnames or [])}"
        )
    return iter(reader)


def read_ddxplus(
    path: Path | str, kb: KnowledgeBase, *, limit: int | None = None, strict: bool = False
) -> list[Case]:
    """Read DDXPlus patients (the first `limit` that import, or all) into Cases. A problem with
    the release's evidence or condition files fails it; a patient row that cannot be imported
    is skipped and reported as a CaseImportWarning naming the row and field (`strict=True`:
    every problem raised at once)."""
    report = import_ddxplus(path, kb, limit=limit)
    if strict and report.problems:
        raise _error(report.path, [str(p) for p in report.problems])
    report.check(False)
    report.warn()
    return report.cases


def detects(path: Path, head: Any) -> bool:
    """A DDXPlus release directory, or a patients CSV/zip beside its evidence file."""
    if path.is_dir():
        return (path / EVIDENCES_FILE).exists()
    return path.suffix.lower() in (".csv", ".zip") and (path.parent / EVIDENCES_FILE).exists()


def read(path: Path | str, kb: KnowledgeBase, *, limit: int | None = None) -> ImportReport:
    """The format registry's reader (`importers/external.py`): `import_ddxplus`."""
    return import_ddxplus(path, kb, limit=limit)


def import_ddxplus(
    path: Path | str, kb: KnowledgeBase, *, limit: int | None = None
) -> ImportReport:
    """Every patient row of a DDXPlus release that can be imported, and every row's problem."""
    root, patients = locate(path)
    problems: list[str] = []
    evidences = _load_json(root / EVIDENCES_FILE, problems)
    conditions = _load_json(root / CONDITIONS_FILE, problems)
    if not problems:
        _check_metadata(evidences, conditions, root, problems)
    if problems:
        raise _error(root, problems)
    rows = _patient_rows(patients)
    linker = linker_for(kb)
    report = ImportReport(patients, "ddxplus")
    for i, row in enumerate(rows):
        if limit is not None and len(report.cases) >= limit:
            break
        report.lines += 1
        where = f"{patients.name} row {i + 2}"  # the header is row 1
        try:
            report.cases.append(case_from_row(row, evidences, conditions, kb, linker, where, i))
        except ImporterError as e:
            message = str(e).removeprefix(f"{where}: ")
            report.problems.append(ImportProblem(patients.name, i + 2, "", message, unit="row"))
    if not report.lines:
        raise ImporterError(f"{patients}: no patient rows")
    return report


def _error(where: Path, problems: list[str]) -> ImporterError:
    shown = problems[:MAX_LISTED]
    more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    noun = "problem" if len(problems) == 1 else "problems"
    return ImporterError(
        f"{where}: {len(problems)} {noun} reading DDXPlus data:\n  " + "\n  ".join(shown) + more
    )


def _literal(value: str, field: str, where: str) -> Any:
    try:
        return ast.literal_eval(value) if isinstance(value, str) else value
    except (ValueError, SyntaxError):
        raise ImporterError(
            f"{where}: field '{field}': cannot read {value[:60]!r} as a list"
        ) from None


def case_from_row(
    row: dict[str, str],
    evidences: dict[str, Any],
    conditions: dict[str, Any],
    kb: KnowledgeBase,
    linker: KBLinker,
    where: str,
    index: int,
) -> Case:
    """One DDXPlus patient row -> Case; ImporterError names `where` and the field."""
    problems: list[str] = []
    age = _age(row, problems)
    sex = normalise_sex(row.get("SEX", ""))
    if sex is None:
        problems.append(f"field 'SEX': {row.get('SEX')!r} is not M or F")
    pathology = str(row.get("PATHOLOGY", "")).strip()
    if pathology not in conditions:
        problems.append(f"field 'PATHOLOGY': {pathology!r} is not in {CONDITIONS_FILE}")
    items = _literal(row.get("EVIDENCES", "[]"), "EVIDENCES", where)
    if not isinstance(items, list):
        problems.append("field 'EVIDENCES': expected a list of evidence codes")
        items = []
    chosen = _chosen_evidence(items, evidences, problems)
    initial = str(row.get("INITIAL_EVIDENCE", "")).strip()
    if initial not in chosen:
        problems.append(f"field 'INITIAL_EVIDENCE': {initial!r} is not among the EVIDENCES")
    ddx_raw = _literal(
        row.get("DIFFERENTIAL_DIAGNOSIS", "[]") or "[]", "DIFFERENTIAL_DIAGNOSIS", where
    )
    ddx = _differential(ddx_raw, conditions, problems)
    if problems:
        raise ImporterError(f"{where}: " + "; ".join(problems))
    assert sex is not None
    b = CaseBuilder(kb, linker, age, sex)
    _add_answers(b, chosen, evidences, initial)
    own = conditions[pathology]
    related = [own, *(conditions[name] for name, _ in ddx if name != pathology)]
    _add_denied_symptoms(b, chosen, evidences, related, own)
    diagnosis, differential = _diagnoses(pathology, ddx, conditions, linker)
    return b.build(
        case_id=f"{FORMAT}-{index:04d}",
        setting="primary_care",
        diagnosis=diagnosis,
        differential=differential,
        lineage=lineage(FORMAT, where, index),
        extra={
            "format": FORMAT,
            "pathology": pathology,
            "severity": own.get("severity"),
            "initial_evidence": initial,
            "differential": [[n, p] for n, p in ddx],
        },
    )


def _diagnoses(
    pathology: str, ddx: list[tuple[str, float]], conditions: dict[str, Any], linker: KBLinker
) -> tuple[Diagnosis, list[Diagnosis]]:
    """The pathology and the other pathologies of its differential as diagnoses, by their
    English names and ICD-10 codes."""
    own = conditions[pathology]
    name = str(own.get("cond-name-eng") or pathology)
    diagnosis = diagnosis_for(name, linker, str(own.get("icd10-id", "") or ""))
    differential = [
        diagnosis_for(
            str(conditions[n].get("cond-name-eng") or n),
            linker,
            str(conditions[n].get("icd10-id", "") or ""),
        )
        for n, _ in ddx
        if n != pathology
    ]
    return diagnosis, differential


def _age(row: dict[str, str], problems: list[str]) -> int:
    """The row's AGE in whole years 0-120; -1 with a problem listed when it is not one."""
    try:
        age = int(float(row["AGE"]))
        if not 0 <= age <= 120:
            raise ValueError
    except (TypeError, ValueError):
        problems.append(f"field 'AGE': {row.get('AGE')!r} is not an age in years (0-120)")
        age = -1
    return age


def _chosen_evidence(
    items: list[Any], evidences: dict[str, Any], problems: list[str]
) -> dict[str, list[str]]:
    """The row's evidence codes, in order, each with the values given for it ('CODE_@_VALUE');
    an unknown code is a problem."""
    chosen: dict[str, list[str]] = {}
    for item in items:
        code, _, value = str(item).partition(_SEP)
        if code not in evidences:
            shown = "" if str(item) == code else f" in {item!r}"
            problems.append(f"field 'EVIDENCES': unknown evidence {code!r}{shown}")
            continue
        chosen.setdefault(code, [])
        if value:
            chosen[code].append(value)
    return chosen


def _differential(
    ddx_raw: Any, conditions: dict[str, Any], problems: list[str]
) -> list[tuple[str, float]]:
    """The row's (pathology, probability) pairs; a pair that is not one is a problem."""
    ddx: list[tuple[str, float]] = []
    for pair in ddx_raw if isinstance(ddx_raw, list) else []:
        if isinstance(pair, list | tuple) and len(pair) == 2 and pair[0] in conditions:
            ddx.append((str(pair[0]), float(pair[1])))
        else:
            problems.append(f"field 'DIFFERENTIAL_DIAGNOSIS': {pair!r} is not [pathology, p]")
    return ddx


def _add_answers(
    b: CaseBuilder, chosen: dict[str, list[str]], evidences: dict[str, Any], initial: str
) -> None:
    """One history fact per evidence the patient gave: the initial one is the chief complaint,
    antecedents past history; an answer that is only the default value is incidental and
    not present."""
    for code, values in chosen.items():
        ev = evidences[code]
        question = str(ev["question_en"]).strip()
        antecedent = bool(ev.get("is_antecedent"))
        category = "chief_complaint" if code == initial else "pmh" if antecedent else "hpi"
        salience = "should_ask" if antecedent else "must_ask"
        src = f"ddxplus:{code}"
        if ev["data_type"] == "B":
            b.add(**_history(statement(question, True), category, salience, src, True, question))
            continue
        default = str(ev.get("default_value", ""))
        real = [v for v in values if v != default]
        meanings = [_meaning(ev, v) for v in real]
        if not real:
            text = answer(question, [_meaning(ev, default)] if default else ["no"])
            b.add(**_history(text, category, "incidental", src, False, None))
            continue
        b.add(**_history(answer(question, meanings, ev), category, salience, src, True, None))


def _add_denied_symptoms(
    b: CaseBuilder,
    chosen: dict[str, list[str]],
    evidences: dict[str, Any],
    related: list[dict[str, Any]],
    own: dict[str, Any],
) -> None:
    """Deny the yes/no symptoms and antecedents of the diagnosis and its differential that the
    patient did not report (worth asking for the diagnosis's own, incidental otherwise)."""
    for cond in related:
        for key in ("symptoms", "antecedents"):
            for code in cond.get(key, {}) or {}:
                ev = evidences[code]
                if code in chosen or ev.get("data_type") != "B":
                    continue
                chosen[code] = []
                question = str(ev["question_en"]).strip()
                category = "pmh" if ev.get("is_antecedent") else "hpi"
                salience = "should_ask" if cond is own else "incidental"
                b.add(
                    **_history(
                        statement(question, False),
                        category,
                        salience,
                        f"ddxplus:{code}",
                        False,
                        question,
                    )
                )


def _history(
    text: str, category: str, salience: str, source: str, present: bool, link: str | None
) -> dict[str, Any]:
    return {
        "category": category,
        "concept": "",
        "text": text,
        "present": present,
        "salience": salience,
        "how_revealed": "ask",
        "source": source,
        "_link": link,
        "_kind": "history",
    }


def _meaning(ev: dict[str, Any], value: str) -> str:
    m = (ev.get("value_meaning") or {}).get(value)
    if isinstance(m, dict):
        return str(m.get("en") or m.get("fr") or value)
    return str(m or value)


_YES_NO = (
    (re.compile(r"^do you\s+(.+)$", re.I), "I {}", "I don't {}"),
    (re.compile(r"^have you\s+(.+)$", re.I), "I have {}", "I haven't {}"),
    (re.compile(r"^are you\s+(.+)$", re.I), "I'm {}", "I'm not {}"),
    (re.compile(r"^did you\s+(.+)$", re.I), "I did {}", "I didn't {}"),
    (re.compile(r"^were you\s+(.+)$", re.I), "I was {}", "I wasn't {}"),
    (re.compile(r"^can you\s+(.+)$", re.I), "I can {}", "I can't {}"),
)


def _first_person(text: str) -> str:
    """Second person to first: 'your' -> 'my', a subject 'you' ('do you', 'you are') -> 'I',
    an object 'you' -> 'me'."""
    text = re.sub(r"\byourself\b", "myself", text, flags=re.I)
    text = re.sub(r"\byour\b", "my", text, flags=re.I)
    text = re.sub(
        r"\b(do|did|does|can|could|are|were|have|had|will|would|should)\s+you\b",
        lambda m: f"{m.group(1)} I",
        text,
        flags=re.I,
    )
    text = re.sub(r"^you\b", "I", text, flags=re.I)
    text = re.sub(r"\byou\b", "me", text, flags=re.I)
    return re.sub(r"\bare I\b", "am I", text, flags=re.I)


_OR_QUESTION = re.compile(r",?\s+or\s+(?=(?:do|are|have|did|were|can)\s+you\b)", re.I)


def statement(question: str, present: bool) -> str:
    """A yes/no question as the patient's answer: 'Do you have a fever?' -> 'I have a fever.'
    (absent: "I don't have a fever."); 'Are you short of breath or do you find it hard to
    breathe?' -> "I'm short of breath or I find it hard to breathe."; other forms keep the
    question: 'Is it worse at night? Yes.'"""
    q = " ".join(question.split()).rstrip(" ?:")
    parts = _OR_QUESTION.split(q)
    said = []
    for part in parts:
        for pattern, yes, no in _YES_NO:
            m = pattern.match(part)
            if m:
                said.append((yes if present else no).format(_first_person(m.group(1))))
                break
        else:
            said = []
            break
    if said:
        return (" or " if present else " and ").join(said) + "."
    mine = _first_person(q)
    return f"{mine[:1].upper() + mine[1:]}? {'Yes' if present else 'No'}."


def answer(question: str, values: list[str], ev: dict[str, Any] | None = None) -> str:
    """A categorical or multi-choice answer: 'How intense is the pain? 7 (on a 0-10 scale).'"""
    q = _first_person(" ".join(question.split()).rstrip(" ?:"))
    q = q[:1].upper() + q[1:]
    scale = ev is not None and all(
        isinstance(v, int | float) for v in ev.get("possible-values", [None])
    )
    said = ", ".join(values)
    if scale and ev is not None:
        vals = ev["possible-values"]
        said += f" (on a {min(vals)}-{max(vals)} scale)"
    if question.strip().endswith(
        ":"
    ):  # 'Characterize your pain:' -> 'Characterize my pain: sharp.'
        return f"{q}: {said}."
    return f"{q}? {said[:1].upper() + said[1:]}."
