"""A plain CSV, one row per patient episode, with a column mapping, into imported rows.

Columns (after mapping): `age`, `sex`, `condition` (required); `ethnicity`, `insurance`,
`chief_complaint` (optional); and KB-named columns `finding.<id>` (true/false),
`vital.<id>` and `test.<id>` (numbers in the KB's units; true/false for report-only tests),
`comorbidity.<id>` and `allergy.<group>` (true/false). `mapping` renames source columns to these
names, e.g. {"age": "AGE_YEARS", "condition": "DX_CODE"}. Every problem in the file (a missing or
unknown column, a value of the wrong type) is listed in one error naming column, line and value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from clinicgym.patients.errors import ImporterError
from clinicgym.patients.importers.completion import MAX_LISTED, ImportedRow, normalise_sex
from clinicgym.patients.knowledge.kb import KnowledgeBase

REQUIRED = ("age", "sex", "condition")
OPTIONAL = ("ethnicity", "insurance", "chief_complaint")
PREFIXES = ("finding.", "vital.", "test.", "comorbidity.", "allergy.")
TRUE = {"true", "t", "yes", "y", "1", "present", "positive"}
FALSE = {"false", "f", "no", "n", "0", "absent", "negative"}


def parse_mapping(items: list[str] | None) -> dict[str, str]:
    """['age=AGE_YEARS', 'condition=DX'] -> {'age': 'AGE_YEARS', 'condition': 'DX'}."""
    out: dict[str, str] = {}
    for item in items or []:
        ours, sep, theirs = item.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise ImporterError(f"--map '{item}': expected OUR_COLUMN=YOUR_COLUMN, e.g. age=AGE")
        out[ours.strip()] = theirs.strip()
    return out


def _bool(value: str) -> bool | None:
    v = value.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    return None


def read_csv(
    path: Path | str,
    kb: KnowledgeBase,
    *,
    mapping: Mapping[str, str] | None = None,
    ignore_extra: bool = False,
) -> list[ImportedRow]:
    """Read and type-check a CSV; raise ImporterError listing every problem found."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise ImporterError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ImporterError(f"{path}: not a readable CSV ({e})") from None
    mapping = dict(mapping or {})
    found = list(raw.columns)
    problems: list[str] = []
    for ours, theirs in mapping.items():
        if theirs not in found:
            problems.append(f"--map {ours}={theirs}: the file has no column '{theirs}'")
    rename = {theirs: ours for ours, theirs in mapping.items() if theirs in found}
    df = raw.rename(columns=rename)
    for col in REQUIRED:
        if col not in df.columns:
            problems.append(
                f"missing column '{col}' (map one with --map {col}=YOUR_COLUMN); "
                f"columns found: {', '.join(found)}"
            )
    known = _known_columns(kb)
    extra = [c for c in df.columns if c not in REQUIRED + OPTIONAL and c not in known]
    if extra and not ignore_extra:
        for c in extra:
            hint = ""
            if c.startswith(PREFIXES):
                hint = " (no such KB id)"
            problems.append(
                f"unexpected column '{c}'{hint}; allowed: {', '.join(REQUIRED + OPTIONAL)} and "
                "finding.<id>, vital.<id>, test.<id>, comorbidity.<id>, allergy.<group> "
                "(or pass --ignore-extra-columns)"
            )
    if problems:
        raise ImporterError(f"{path}: {len(problems)} problems:\n  " + "\n  ".join(problems))
    rows: list[ImportedRow] = []
    for i, rec in enumerate(df.to_dict("records")):
        where = f"{path.name} line {i + 2}"
        row = _row(rec, where, known, problems, mapping.get("condition", "condition"))
        if row is not None:
            rows.append(row)
    if problems:
        listed = problems[:MAX_LISTED]
        more = (
            f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        )
        raise ImporterError(f"{path}: {len(problems)} problems:\n  " + "\n  ".join(listed) + more)
    if not rows:
        raise ImporterError(f"{path}: no data rows")
    return rows


def _known_columns(kb: KnowledgeBase) -> set[str]:
    out = {f"finding.{f}" for f in kb.findings}
    out |= {f"vital.{v}" for v in kb.vitals}
    out |= {f"test.{t}" for t in kb.tests}
    out |= {f"comorbidity.{c.id}" for c in kb.background.comorbidities}
    out |= {f"allergy.{a.group}" for a in kb.background.allergies}
    return out


def _row(
    rec: dict[str, str], where: str, known: set[str], problems: list[str], condition_column: str
) -> ImportedRow | None:
    """One CSV record as a row, or None when any of its cells is a problem (each listed)."""
    before = len(problems)
    age = _age(rec, where, problems)
    sex = normalise_sex(rec.get("sex", ""))
    if sex is None:
        problems.append(
            f"{where}, column 'sex': {rec.get('sex', '')!r} is not one of female, male (F/M)"
        )
    condition = rec.get("condition", "").strip()
    if not condition:
        problems.append(f"{where}, column 'condition': empty")
    data, comorbidities, allergies = _facts(rec, where, known, problems)
    if len(problems) > before:
        return None
    return ImportedRow(
        where=where,
        age=int(age),
        sex=sex or "female",
        condition=condition,
        condition_column=condition_column,
        ethnicity=rec.get("ethnicity", "").strip() or None,
        insurance=rec.get("insurance", "").strip() or None,
        chief_complaint=rec.get("chief_complaint", "").strip() or None,
        comorbidities=comorbidities,
        allergies=allergies,
        **data,
    )


def _age(rec: dict[str, str], where: str, problems: list[str]) -> float:
    """The row's age in whole years 0-120; 0 with a problem listed when it is not one."""
    age_text = rec.get("age", "").strip()
    try:
        age = float(age_text)
        if age != int(age) or not 0 <= age <= 120:
            raise ValueError
    except ValueError:
        problems.append(f"{where}, column 'age': {age_text!r} is not a whole number of years 0-120")
        age = 0
    return age


def _facts(
    rec: dict[str, str], where: str, known: set[str], problems: list[str]
) -> tuple[dict[str, Any], list[str] | None, list[str] | None]:
    """The row's fact columns (`finding.X`, `vital.X`, `test.X`, `comorbidity.X`, `allergy.X`):
    findings, vitals and tests by id, and the comorbidities and allergies marked true (None
    when no such column has a value); a cell that does not parse is a problem."""
    data: dict[str, Any] = {
        "findings": {},
        "vitals": {},
        "tests": {},
    }
    comorbidities: list[str] | None = None
    allergies: list[str] | None = None
    for col, value in rec.items():
        if col not in known or value.strip() == "":
            continue
        kind, _, key = col.partition(".")
        if kind in ("finding", "comorbidity", "allergy"):
            b = _bool(value)
            if b is None:
                problems.append(f"{where}, column '{col}': {value!r} is not true/false")
                continue
            if kind == "finding":
                data["findings"][key] = b
            elif kind == "comorbidity":
                comorbidities = comorbidities or []
                if b:
                    comorbidities.append(key)
            else:
                allergies = allergies or []
                if b:
                    allergies.append(key)
        else:
            b = _bool(value) if kind == "test" else None
            if b is not None and not value.strip().replace(".", "").isdigit():
                data["tests"][key] = b
                continue
            try:
                data[f"{kind}s"][key] = float(value)
            except ValueError:
                problems.append(f"{where}, column '{col}': {value!r} is not a number")
    return data, comorbidities, allergies
