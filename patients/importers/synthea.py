"""Synthea's CSV export (patients, conditions, observations, medications, allergies) into rows.

One imported row per diagnosed condition that maps to the KB (SNOMED CT through codes.yaml or a
user map, ICD-10-CM, or a KB id): age at onset, sex, ethnicity, the vitals and labs observed at
that encounter (LOINC, converted to KB units), comorbidities inferred from the medications active
at onset (a KB comorbidity whose usual medication the patient takes), and allergies active then.
Conditions that map to nothing are skipped and counted by code, not treated as errors: a Synthea
record holds many diagnoses outside the KB.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from clinicgym.patients.errors import ImporterError
from clinicgym.patients.importers.codes import CodeMaps, default_codes
from clinicgym.patients.importers.completion import ImportedRow, normalise_sex, resolve_condition
from clinicgym.patients.knowledge.kb import KnowledgeBase

REQUIRED: dict[str, tuple[str, ...]] = {
    "patients.csv": ("Id", "BIRTHDATE", "GENDER", "RACE", "ETHNICITY"),
    "conditions.csv": ("START", "PATIENT", "ENCOUNTER", "CODE", "DESCRIPTION"),
    "observations.csv": ("DATE", "PATIENT", "ENCOUNTER", "CODE", "VALUE", "UNITS"),
    "medications.csv": ("START", "STOP", "PATIENT", "DESCRIPTION"),
    "allergies.csv": ("START", "STOP", "PATIENT", "DESCRIPTION"),
}
OPTIONAL_FILES = ("observations.csv", "medications.csv", "allergies.csv")
RACE = {"white": "White", "black": "Black", "asian": "Asian"}
"""Synthea RACE -> the sampler's ethnicity labels; 'hispanic' ETHNICITY wins; others: mixed."""


def ethnicity_label(race: str, ethnicity: str) -> str:
    """The cohort's ethnicity label for Synthea's RACE and ETHNICITY columns."""
    if str(ethnicity).strip().lower() == "hispanic":
        return "Hispanic"
    return RACE.get(str(race).strip().lower(), "Mixed or other")


def _read(directory: Path, name: str, required: bool, problems: list[str]) -> pd.DataFrame | None:
    path = directory / name
    if not path.exists():
        if required:
            problems.append(
                f"{name}: missing (a Synthea CSV export holds patients.csv and conditions.csv)"
            )
        return None
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        problems.append(f"{name}: not a readable CSV ({e})")
        return None
    missing = [c for c in REQUIRED[name] if c not in df.columns]
    if missing:
        problems.append(
            f"{name}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            f"found: {', '.join(df.columns)}"
        )
        return None
    return df


def _date(value: str, where: str, problems: list[str]) -> dt.date | None:
    text = str(value).strip()[:10]
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        problems.append(f"{where}: {value!r} is not a date (YYYY-MM-DD)")
        return None


def _years(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def read_synthea(
    directory: Path | str,
    kb: KnowledgeBase,
    *,
    code_map: Mapping[str, str] | None = None,
    codes: CodeMaps | None = None,
) -> tuple[list[ImportedRow], dict[str, Any]]:
    """Read a Synthea CSV export directory. Returns (rows, stats) where stats counts unmapped
    condition codes and skipped observations; raises ImporterError naming file, column, value."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ImporterError(
            f"{directory}: not a directory (point --from-synthea at Synthea's csv/)"
        )
    codes = codes or default_codes()
    cmap = {**codes.snomed_by_code(), **dict(code_map or {})}
    patients, conditions, optional = _read_export(directory)
    problems: list[str] = []
    people = _people(patients, problems)
    loinc = codes.loinc_by_code()
    by_encounter = _observations_by_encounter(optional["observations.csv"], loinc)
    stats: dict[str, Any] = {"unmapped_conditions": Counter(), "observations": Counter()}
    rows: list[ImportedRow] = []
    drug_to_comorbidity = _drug_comorbidities(kb)
    for i, c in enumerate(conditions.to_dict("records")):
        where = f"conditions.csv line {i + 2}"
        cond, _ = resolve_condition(c["CODE"], kb, cmap)
        if cond is None:
            stats["unmapped_conditions"][f"{c['CODE']} {c['DESCRIPTION']}"] += 1
            continue
        person = people.get(c["PATIENT"])
        if person is None:
            problems.append(f"{where}, column 'PATIENT': {c['PATIENT']!r} is not in patients.csv")
            continue
        start = _date(c["START"], f"{where}, column 'START'", problems)
        if start is None or person["born"] is None or person["sex"] is None:
            continue
        observations = by_encounter.get(c["ENCOUNTER"], [])
        vitals, tests = _measurements(observations, loinc, kb, stats["observations"], problems)
        rows.append(
            ImportedRow(
                where=where,
                age=_years(person["born"], start),
                sex=person["sex"],
                condition=c["CODE"],
                condition_column="CODE",
                ethnicity=person["ethnicity"],
                vitals=vitals,
                tests=tests,
                comorbidities=_active(
                    optional["medications.csv"], c["PATIENT"], start, drug_to_comorbidity
                ),
                allergies=_allergies(optional["allergies.csv"], c["PATIENT"], start, kb),
            )
        )
    _check_read(directory, problems, rows, stats["unmapped_conditions"])
    stats["unmapped_conditions"] = dict(stats["unmapped_conditions"].most_common(20))
    stats["observations"] = dict(stats["observations"])
    return rows, stats


def _read_export(
    directory: Path,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame | None]]:
    """The export's patients, conditions and optional files (None if absent); fails listing
    every missing or unreadable file at once."""
    problems: list[str] = []
    patients = _read(directory, "patients.csv", True, problems)
    conditions = _read(directory, "conditions.csv", True, problems)
    optional = {n: _read(directory, n, False, problems) for n in OPTIONAL_FILES}
    if problems:
        raise ImporterError(f"{directory}: {len(problems)} problems:\n  " + "\n  ".join(problems))
    assert patients is not None and conditions is not None
    return patients, conditions, optional


def _people(patients: pd.DataFrame, problems: list[str]) -> dict[str, dict[str, Any]]:
    """patients.csv by patient id: birth date, sex and ethnicity (None where unreadable, the
    problem listed)."""
    people: dict[str, dict[str, Any]] = {}
    for i, p in enumerate(patients.to_dict("records")):
        where = f"patients.csv line {i + 2}"
        born = _date(p["BIRTHDATE"], f"{where}, column 'BIRTHDATE'", problems)
        sex = normalise_sex(p["GENDER"])
        if sex is None:
            problems.append(f"{where}, column 'GENDER': {p['GENDER']!r} is not M or F")
        people[p["Id"]] = {
            "born": born,
            "sex": sex,
            "ethnicity": ethnicity_label(p["RACE"], p["ETHNICITY"]),
        }
    return people


def _observations_by_encounter(
    obs: pd.DataFrame | None, loinc: Mapping[str, Any]
) -> dict[str, list[dict[str, str]]]:
    """The observations with a known LOINC code, grouped by encounter (a condition's visit)."""
    by_encounter: dict[str, list[dict[str, str]]] = {}
    if obs is not None:
        for o in obs.to_dict("records"):
            if o["CODE"] in loinc:
                by_encounter.setdefault(o["ENCOUNTER"], []).append(o)
    return by_encounter


def _measurements(
    observations: list[dict[str, str]],
    loinc: Mapping[str, Any],
    kb: KnowledgeBase,
    counts: Counter,
    problems: list[str],
) -> tuple[dict[str, float], dict[str, float | bool]]:
    """An encounter's vitals and test values in KB units; observations in another unit are
    counted and skipped, a value that is not a number is a problem."""
    vitals: dict[str, float] = {}
    tests: dict[str, float | bool] = {}
    for o in observations:
        entry = loinc[o["CODE"]]
        if o["UNITS"].strip() != entry.unit:
            counts[f"unit_mismatch {o['CODE']} {o['UNITS']}"] += 1
            continue
        try:
            value = entry.to_kb(float(o["VALUE"]))
        except ValueError:
            problems.append(
                f"observations.csv, code {o['CODE']}, column 'VALUE': {o['VALUE']!r} is not "
                "a number"
            )
            continue
        if entry.kind == "vital" and entry.kb in kb.vitals:
            vitals[entry.kb] = value
        elif entry.kind == "test" and entry.kb in kb.tests:
            tests[entry.kb] = value
        counts["used"] += 1
    return vitals, tests


def _check_read(
    directory: Path, problems: list[str], rows: list[ImportedRow], unmapped: Counter
) -> None:
    """Fail the export with its problems (the first 20), or when no condition maps to the KB
    (naming the commonest unmapped codes)."""
    if problems:
        raise ImporterError(
            f"{directory}: {len(problems)} problems:\n  " + "\n  ".join(problems[:20])
        )
    if not rows:
        top = ", ".join(f"{k} (x{n})" for k, n in unmapped.most_common(5))
        raise ImporterError(
            f"{directory}: no condition maps to the KB; most frequent unmapped codes: {top}. "
            "Map codes to KB condition ids with --code-map FILE (CODE,condition_id lines)"
        )


def _drug_comorbidities(kb: KnowledgeBase) -> dict[str, str]:
    """Lower-case drug name or synonym -> the one comorbidity that lists the drug."""
    owners: dict[str, list[str]] = {}
    for cm in kb.background.comorbidities:
        for drug in cm.medications:
            owners.setdefault(drug, []).append(cm.id)
    out: dict[str, str] = {}
    for drug, cms in owners.items():
        if len(cms) != 1 or drug not in kb.drugs:
            continue
        d = kb.drugs[drug]
        for name in (d.name, *d.synonyms):
            out[name.lower()] = cms[0]
    return out


def _active_rows(df: pd.DataFrame | None, patient: str, on: dt.date) -> list[dict[str, str]]:
    if df is None:
        return []
    out = []
    for r in df[df["PATIENT"] == patient].to_dict("records"):
        start = str(r["START"])[:10]
        stop = str(r["STOP"])[:10]
        if start and start <= on.isoformat() and (not stop or stop >= on.isoformat()):
            out.append(r)
    return out


def _active(
    meds: pd.DataFrame | None, patient: str, on: dt.date, drug_to_cm: dict[str, str]
) -> list[str] | None:
    if meds is None:
        return None
    found: list[str] = []
    for r in _active_rows(meds, patient, on):
        text = r["DESCRIPTION"].lower()
        for name, cm in drug_to_cm.items():
            if name in text and cm not in found:
                found.append(cm)
    return found


def _allergies(
    allergies: pd.DataFrame | None, patient: str, on: dt.date, kb: KnowledgeBase
) -> list[str] | None:
    if allergies is None:
        return None
    groups = [a.group for a in kb.background.allergies]
    found: list[str] = []
    for r in _active_rows(allergies, patient, on):
        text = r["DESCRIPTION"].lower()
        for g in groups:
            if g.lower() in text and g not in found:
                found.append(g)
    return found
