"""Imported rows -> full KB records: resolve condition codes, check the KB, fill what is missing.

Real-world-shaped sources (a CSV, Synthea, FHIR) hold some of what a cohort row needs: usually
age, sex, a diagnosis code, some vitals and labs. `complete` resolves the code to a KB condition,
checks the row against the KB (sex, age range, chief complaint, findings), draws whatever the
source lacks from the KB exactly as the case sampler would, and counts every cell it filled, so
the manifest says how much of a seed came from the source and how much from the KB.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from clinicgym.patients.cases.record import PatientRecord, TestOutcome
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.cohorts.cohort import icd10_chapter
from clinicgym.patients.errors import ImporterError
from clinicgym.patients.knowledge.kb import Condition, KnowledgeBase

MAX_LISTED = 20
"""At most this many problems are spelled out in one error (the count is always given)."""


class ImportedRow(BaseModel):
    """What one source row says about one patient episode, in KB terms where known."""

    model_config = ConfigDict(extra="forbid")
    where: str
    """Where it came from, for error messages: 'my.csv line 12', 'bundle p1.json'."""
    age: int = Field(ge=0, le=120)
    sex: str
    condition: str
    """A KB condition id, an ICD-10-CM code or a code in the importer's code map."""
    condition_column: str = "condition"
    ethnicity: str | None = None
    insurance: str | None = None
    chief_complaint: str | None = None
    findings: dict[str, bool] = {}
    vitals: dict[str, float] = {}
    tests: dict[str, float | bool] = {}
    """Test id -> numeric value, or True/False for abnormal (report-only tests)."""
    comorbidities: list[str] | None = None
    """None: the source does not say (the KB draws them); []: none."""
    allergies: list[str] | None = None
    """None: the source does not say (the KB draws them); []: none known."""


def resolve_condition(
    code: str, kb: KnowledgeBase, code_map: Mapping[str, str] | None = None
) -> tuple[Condition | None, str]:
    """A KB condition for a code: a KB id, an exact ICD-10-CM code, a mapped code, or an ICD-10
    code whose three-character category only one KB condition has. Returns (condition, how)."""
    code = str(code).strip()
    if code in kb.conditions:
        return kb.conditions[code], "kb_id"
    by_icd = {c.icd10.upper(): c for c in kb.conditions.values()}
    upper = code.upper()
    if upper in by_icd:
        return by_icd[upper], "icd10"
    if code_map and code in code_map and code_map[code] in kb.conditions:
        return kb.conditions[code_map[code]], "code_map"
    if icd10_chapter(upper) is not None and len(upper) >= 3:
        same = [c for c in kb.conditions.values() if c.icd10.upper()[:3] == upper[:3]]
        if len(same) == 1:
            return same[0], "icd10_category"
    return None, ""


def complete(
    rows: Sequence[ImportedRow],
    kb: KnowledgeBase,
    *,
    seed: int = 0,
    code_map: Mapping[str, str] | None = None,
    drop_inconsistent: bool = False,
    source: str = "input",
) -> tuple[list[PatientRecord], Counter, Counter]:
    """Resolve and complete imported rows. Returns (records, cells filled from the KB by kind,
    rows dropped by reason). A row that breaks the KB is an error (all are listed at once)
    unless `drop_inconsistent`, which drops and counts it; an unknown condition code is always
    an error."""
    from clinicgym.patients.importers.codes import default_codes

    code_map = {**default_codes().snomed_by_code(), **dict(code_map or {})}
    sampler = CaseSampler(kb)
    problems: list[str] = []
    filled: Counter = Counter()
    dropped: Counter = Counter()
    records: list[PatientRecord] = []
    background = {b.id for b in kb.background.findings}
    comorbidities = {c.id for c in kb.background.comorbidities}
    allergies = {a.group for a in kb.background.allergies}
    for i, row in enumerate(rows):
        cond, how = resolve_condition(row.condition, kb, code_map)
        if cond is None:
            problems.append(
                f"{row.where}, column '{row.condition_column}': unknown condition code "
                f"'{row.condition}' (not a KB condition id, an ICD-10-CM code of the KB, or a "
                "mapped code; see `clinicgym kb list`)"
            )
            continue
        filled[f"condition_by_{how}"] += 1
        kb_problems = _check(row, cond, kb, background, comorbidities, allergies)
        if kb_problems:
            if drop_inconsistent:
                dropped[kb_problems[0][0]] += 1
                continue
            problems.extend(f"{row.where}: {msg}" for _, msg in kb_problems)
            continue
        rng = np.random.default_rng([seed, i])
        base = sampler.record_for(cond, row.age, row.sex, rng)
        records.append(_overlay(base, row, cond, kb, filled))
    if problems:
        listed = problems[:MAX_LISTED]
        more = (
            f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        )
        raise ImporterError(
            f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}:\n  "
            + "\n  ".join(listed)
            + more
        )
    if not records:
        raise ImporterError(f"{source}: no rows left to use ({dict(dropped)} dropped)")
    return records, filled, dropped


def _check(
    row: ImportedRow,
    cond: Condition,
    kb: KnowledgeBase,
    background: set[str],
    comorbidities: set[str],
    allergies: set[str],
) -> list[tuple[str, str]]:
    """(reason key, message) for each way the row breaks the KB."""
    out: list[tuple[str, str]] = []
    if cond.sex != "any" and row.sex != cond.sex:
        out.append(
            (
                "sex_not_allowed_for_condition",
                f"sex '{row.sex}' with condition '{cond.id}', which the KB gives to "
                f"{cond.sex} patients only",
            )
        )
    if not cond.age[0] <= row.age <= cond.age[1]:
        out.append(
            (
                "age_outside_condition_range",
                f"age {row.age} with condition '{cond.id}', whose KB age range is "
                f"{cond.age[0]}-{cond.age[1]}",
            )
        )
    if row.chief_complaint is not None and row.chief_complaint not in cond.chief_complaint:
        out.append(
            (
                "chief_complaint_not_of_condition",
                f"chief complaint '{row.chief_complaint}' is not one of condition '{cond.id}''s: "
                f"{', '.join(cond.chief_complaint)}",
            )
        )
    linked = {link.id for link in cond.findings}
    for fid, present in row.findings.items():
        if present and fid not in linked and fid not in background:
            out.append(
                (
                    "finding_not_of_condition",
                    f"finding '{fid}' is neither a finding of condition '{cond.id}' nor a "
                    "background finding",
                )
            )
    for vid in row.vitals:
        if vid not in kb.vitals:
            out.append(("unknown_vital", f"unknown vital sign '{vid}'"))
    for tid in row.tests:
        if tid not in kb.tests:
            out.append(("unknown_test", f"unknown test '{tid}'"))
    for cid in row.comorbidities or []:
        if cid not in comorbidities:
            out.append(("unknown_comorbidity", f"unknown comorbidity '{cid}'"))
    for group in row.allergies or []:
        if group not in allergies:
            out.append(("unknown_allergy", f"unknown allergy group '{group}'"))
    return out


def _overlay(
    base: PatientRecord, row: ImportedRow, cond: Condition, kb: KnowledgeBase, filled: Counter
) -> PatientRecord:
    """The KB-drawn record with every value the source gave put on top."""
    data: dict[str, Any] = base.model_dump()
    for key in ("ethnicity", "insurance", "chief_complaint"):
        value = getattr(row, key)
        if value is None:
            filled[key] += 1
        else:
            data[key] = value
    if row.chief_complaint is None and row.findings:
        # prefer a chief complaint the source reports as present
        present = [cc for cc in cond.chief_complaint if row.findings.get(cc)]
        if present:
            data["chief_complaint"] = present[0]
    findings = dict(data["findings"])
    for fid in findings:
        if fid not in row.findings:
            filled["finding"] += 1
    # a denied finding the KB does not model for this condition is simply not kept
    findings.update({f: v for f, v in row.findings.items() if f in findings or v})
    findings[data["chief_complaint"]] = True
    data["findings"] = findings
    vitals = dict(data["vitals"])
    for vid in vitals:
        if vid in row.vitals:
            vitals[vid] = round(float(row.vitals[vid]), kb.vitals[vid].decimals)
        else:
            filled["vital"] += 1
    data["vitals"] = vitals
    data["tests"] = _overlay_tests(data["tests"], row, cond, kb, filled)
    if row.comorbidities is not None:
        data["comorbidities"] = [
            c.id for c in kb.background.comorbidities if c.id in row.comorbidities
        ]
    else:
        filled["comorbidities"] += 1
    if row.allergies is not None:
        data["allergies"] = [a.group for a in kb.background.allergies if a.group in row.allergies]
    else:
        filled["allergies"] += 1
    return PatientRecord.model_validate(data)


def _overlay_tests(
    drawn: dict[str, Any], row: ImportedRow, cond: Condition, kb: KnowledgeBase, filled: Counter
) -> dict[str, Any]:
    """The KB-drawn test outcomes with each the source gave in their place: a flag says
    abnormal or not, a number is judged against the normal range and rounded; the report text
    is the condition's when abnormal, else the normal one. Tests the source lacks are counted."""
    tests: dict[str, Any] = dict(drawn)
    specs = {t.id: t for t in cond.tests}
    for tid in tests:
        if tid not in row.tests:
            filled["test"] += 1
            continue
        test = kb.tests[tid]
        value = row.tests[tid]
        spec = specs.get(tid)
        if isinstance(value, bool):
            text = (spec.text if spec and value else None) or test.normal_text
            tests[tid] = TestOutcome(abnormal=value, value=None, text=text).model_dump()
        else:
            lo, hi = test.normal or (float("-inf"), float("inf"))
            abnormal = not lo <= float(value) <= hi
            text = (spec.text if spec and abnormal else None) or test.normal_text
            tests[tid] = TestOutcome(
                abnormal=abnormal, value=round(float(value), test.decimals), text=text
            ).model_dump()
    return tests


def normalise_sex(value: Any) -> str | None:
    """'F', 'female', 'Woman' -> 'female'; unknown -> None."""
    v = str(value).strip().lower()
    if v in ("f", "female", "woman", "w"):
        return "female"
    if v in ("m", "male", "man"):
        return "male"
    return None


__all__ = ["ImportedRow", "complete", "normalise_sex", "resolve_condition"]
