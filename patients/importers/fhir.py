"""FHIR R4 bundles in and out, through `fhir.resources` (its R4B models read R4 JSON for the
resources used here: Patient, Condition, Observation, AllergyIntolerance, MedicationStatement).

Import: one row per Condition whose code resolves to a KB condition (ICD-10-CM, SNOMED CT via
codes.yaml, or the clinicgym KB system), with age at onset, sex, and the Observations of that
encounter or day (LOINC vitals and labs; KB findings and tests). Problem-list Conditions with a KB
comorbidity code become comorbidities.

Export: one `collection` Bundle per cohort row, written as <patient_id>.json: the Patient, the
diagnosis (ICD-10-CM and KB codes), problem-list comorbidities, findings and the chief complaint,
vitals and labs (LOINC where codes.yaml has one, KB codes always), allergies and medications.
Importing an exported bundle gives back the same record.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from clinicgym.errors import require_extra
from clinicgym.patients.cases.phi import ENCOUNTER_YEAR
from clinicgym.patients.cases.record import PatientRecord
from clinicgym.patients.errors import ImporterError
from clinicgym.patients.importers.codes import (
    ICD10CM,
    KB_SYSTEM,
    LOINC,
    SNOMED,
    UCUM,
    CodeMaps,
    default_codes,
)
from clinicgym.patients.importers.completion import ImportedRow, normalise_sex, resolve_condition
from clinicgym.patients.knowledge.kb import Condition, KnowledgeBase

CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ETHNICITY_URL = "urn:clinicgym:ethnicity"
INSURANCE_URL = "urn:clinicgym:insurance"
COMPLETE_URL = "urn:clinicgym:record-complete"
"""Set on exported patients: every comorbidity and allergy is listed, so none listed = none."""
CHIEF_COMPLAINT = "chief-complaint"
GENOMIC_MARKER = "genomic-marker"


def _bundle_model() -> Any:
    require_extra("cohorts", "FHIR import and export", "fhir")
    from fhir.resources.R4B.bundle import Bundle

    return Bundle


# --------------------------------------------------------------------------------------------
# Export


def record_bundle(
    record: PatientRecord,
    patient_id: str,
    kb: KnowledgeBase,
    *,
    encounter: dt.date,
    codes: CodeMaps | None = None,
) -> dict[str, Any]:
    """A FHIR R4 `collection` Bundle (as JSON-ready dict, validated) for one record."""
    codes = codes or default_codes()
    loinc = codes.loinc_for_kb()
    cond = kb.conditions[record.condition_id]
    pref = f"urn:uuid:{patient_id}"
    subject = {"reference": pref}
    when = encounter.isoformat()
    resources = [
        _diagnosis(cond, subject, when),
        *_comorbidity_conditions(record, subject),
        _chief_complaint(record, subject, when),
        *_finding_observations(record, subject, when),
        *_vital_observations(record, kb, subject, when, loinc),
        *_test_observations(record, kb, subject, when, loinc),
        *_genomic_markers(cond, subject, when),
        *_allergy_intolerances(record, subject),
        *_medication_statements(record, kb, subject),
    ]
    entries = [{"fullUrl": pref, "resource": _patient(record, patient_id, encounter)}]
    for resource in resources:
        rid = f"{patient_id}-{len(entries)}"
        resource["id"] = rid
        entries.append({"fullUrl": f"urn:uuid:{rid}", "resource": resource})
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    try:
        _bundle_model().model_validate(bundle)
    except ValidationError as e:
        raise ImporterError(
            f"FHIR export of {patient_id}: invalid bundle ({e.errors()[0]})"
        ) from None
    return bundle


def _patient(record: PatientRecord, patient_id: str, encounter: dt.date) -> dict[str, Any]:
    """The Patient, marked complete (no comorbidity or allergy listed means none)."""
    return {
        "resourceType": "Patient",
        "id": patient_id,
        "gender": record.sex,
        "birthDate": _birth_date(encounter, record.age).isoformat(),
        "extension": [
            {"url": ETHNICITY_URL, "valueString": record.ethnicity},
            {"url": INSURANCE_URL, "valueString": record.insurance},
            {"url": COMPLETE_URL, "valueBoolean": True},
        ],
    }


def _diagnosis(cond: Condition, subject: dict, when: str) -> dict[str, Any]:
    """The encounter diagnosis: the record's condition by ICD-10-CM code and KB id."""
    return {
        "resourceType": "Condition",
        "category": [{"coding": [{"system": CATEGORY, "code": "encounter-diagnosis"}]}],
        "code": {
            "coding": [
                {"system": ICD10CM, "code": cond.icd10, "display": cond.name},
                {"system": KB_SYSTEM, "code": cond.id},
            ],
            "text": cond.name,
        },
        "subject": subject,
        "onsetDateTime": when,
    }


def _comorbidity_conditions(record: PatientRecord, subject: dict) -> list[dict[str, Any]]:
    """One problem-list Condition per comorbidity, by KB id."""
    return [
        {
            "resourceType": "Condition",
            "category": [{"coding": [{"system": CATEGORY, "code": "problem-list-item"}]}],
            "code": {"coding": [{"system": KB_SYSTEM, "code": cid}], "text": cid},
            "subject": subject,
        }
        for cid in record.comorbidities
    ]


def _chief_complaint(record: PatientRecord, subject: dict, when: str) -> dict[str, Any]:
    """The chief complaint as a LOINC 'Chief complaint - Reported' Observation."""
    return _obs(
        subject,
        when,
        [
            {"system": LOINC, "code": "8661-1", "display": "Chief complaint - Reported"},
            {"system": KB_SYSTEM, "code": CHIEF_COMPLAINT},
        ],
        valueCodeableConcept={"coding": [{"system": KB_SYSTEM, "code": record.chief_complaint}]},
    )


def _finding_observations(record: PatientRecord, subject: dict, when: str) -> list[dict]:
    """One boolean Observation per finding the record states (present or denied)."""
    return [
        _obs(subject, when, [{"system": KB_SYSTEM, "code": fid}], valueBoolean=bool(present))
        for fid, present in record.findings.items()
    ]


def _vital_observations(
    record: PatientRecord, kb: KnowledgeBase, subject: dict, when: str, loinc: Mapping[str, Any]
) -> list[dict]:
    """One numeric Observation per vital sign (LOINC-coded where the code maps know it)."""
    return [
        _quantity(subject, when, vid, value, kb.vitals[vid].unit, loinc.get(vid))
        for vid, value in record.vitals.items()
    ]


def _test_observations(
    record: PatientRecord, kb: KnowledgeBase, subject: dict, when: str, loinc: Mapping[str, Any]
) -> list[dict]:
    """One Observation per test result, numeric or a report, interpreted abnormal or normal."""
    out = []
    for tid, result in record.tests.items():
        test = kb.tests[tid]
        interp = {"coding": [{"system": INTERPRETATION, "code": "A" if result.abnormal else "N"}]}
        if result.value is not None:
            res = _quantity(subject, when, tid, result.value, test.unit or "1", loinc.get(tid))
        else:
            res = _obs(subject, when, [{"system": KB_SYSTEM, "code": tid}], valueString=result.text)
        res["interpretation"] = [interp]
        out.append(res)
    return out


def _genomic_markers(cond: Condition, subject: dict, when: str) -> list[dict]:
    """One Observation per causal variant of the condition ('GENE variant (zygosity)')."""
    return [
        _obs(
            subject,
            when,
            [{"system": KB_SYSTEM, "code": GENOMIC_MARKER}],
            valueString=f"{g.gene} {g.variant} ({g.zygosity})",
        )
        for g in cond.genetics
    ]


def _allergy_intolerances(record: PatientRecord, subject: dict) -> list[dict[str, Any]]:
    """One AllergyIntolerance per drug-allergy group."""
    return [
        {
            "resourceType": "AllergyIntolerance",
            "patient": subject,
            "code": {"coding": [{"system": KB_SYSTEM, "code": group}], "text": group},
        }
        for group in record.allergies
    ]


def _medication_statements(
    record: PatientRecord, kb: KnowledgeBase, subject: dict
) -> list[dict[str, Any]]:
    """One active MedicationStatement per drug the comorbidities bring (each drug once)."""
    meds = [
        m
        for c in kb.background.comorbidities
        if c.id in record.comorbidities
        for m in c.medications
    ]
    return [
        {
            "resourceType": "MedicationStatement",
            "status": "active",
            "subject": subject,
            "medicationCodeableConcept": {
                "coding": [{"system": KB_SYSTEM, "code": drug}],
                "text": kb.drugs[drug].name if drug in kb.drugs else drug,
            },
        }
        for drug in dict.fromkeys(meds)
    ]


def _obs(subject: dict, when: str, coding: list[dict], **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": coding},
        "subject": subject,
        "effectiveDateTime": when,
        **value,
    }


def _quantity(subject: dict, when: str, kb_id: str, value: float, unit: str, entry: Any) -> dict:
    """A numeric Observation: in the LOINC entry's UCUM unit when there is one, else in the KB's
    unit (as text only, since KB units are not all UCUM codes)."""
    coding = [{"system": KB_SYSTEM, "code": kb_id}]
    quantity: dict[str, Any] = {"value": float(value), "unit": unit}
    if entry is not None:
        coding.insert(0, {"system": LOINC, "code": entry.code, "display": entry.display})
        quantity = {
            "value": round(entry.from_kb(float(value)), 6),
            "unit": entry.unit,
            "system": UCUM,
            "code": entry.unit,
        }
    return _obs(subject, when, coding, valueQuantity=quantity)


def _birth_date(encounter: dt.date, age: int) -> dt.date:
    """A birth date that makes the patient `age` on `encounter` (the day after the birthday)."""
    try:
        birthday = encounter.replace(year=encounter.year - age)
    except ValueError:  # 29 February
        birthday = encounter.replace(year=encounter.year - age, day=28)
    return birthday - dt.timedelta(days=1)


def export_bundles(
    records: Iterable[tuple[str, PatientRecord]],
    kb: KnowledgeBase,
    out: Path | str,
    *,
    seed: int = 0,
    overwrite: bool = False,
) -> int:
    """Write one bundle per (patient id, record) to `out/<id>.json`, all or nothing."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ImporterError(f"{out} already exists; choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    n = 0
    try:
        codes = default_codes()
        for i, (pid, record) in enumerate(records):
            day = int(np.random.default_rng([seed, i, 2]).integers(365))
            encounter = dt.date(ENCOUNTER_YEAR, 1, 1) + dt.timedelta(days=day)
            bundle = record_bundle(record, pid, kb, encounter=encounter, codes=codes)
            (tmp / f"{pid}.json").write_text(json.dumps(bundle, indent=1) + "\n", "utf-8")
            n += 1
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return n


# --------------------------------------------------------------------------------------------
# Import


def read_bundles(
    paths: Iterable[Path | str],
    kb: KnowledgeBase,
    *,
    code_map: Mapping[str, str] | None = None,
    codes: CodeMaps | None = None,
) -> tuple[list[ImportedRow], dict[str, Any]]:
    """Read FHIR R4 bundles (files, or directories of *.json); one row per resolvable
    Condition. Raises ImporterError naming the file and resource on invalid input."""
    codes = codes or default_codes()
    cmap = {**codes.snomed_by_code(), **dict(code_map or {})}
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.json")))
        elif p.exists():
            files.append(p)
        else:
            raise ImporterError(f"{p}: no such file or directory")
    if not files:
        raise ImporterError("no FHIR bundle files (*.json) found")
    Bundle = _bundle_model()
    problems: list[str] = []
    rows: list[ImportedRow] = []
    stats: dict[str, Any] = {"bundles": 0, "unmapped_conditions": {}}
    for f in files:
        try:
            bundle = Bundle.model_validate_json(f.read_text(encoding="utf-8"))
        except ValidationError as e:
            err = e.errors()[0]
            problems.append(
                f"{f.name}: not a valid FHIR bundle (field '{'.'.join(map(str, err['loc']))}': "
                f"{err['msg']})"
            )
            continue
        except (OSError, ValueError) as e:
            problems.append(f"{f.name}: cannot read ({e})")
            continue
        stats["bundles"] += 1
        rows.extend(_rows(bundle, f.name, kb, cmap, codes, problems, stats))
    if problems:
        raise ImporterError(f"{len(problems)} problems:\n  " + "\n  ".join(problems[:20]))
    if not rows:
        raise ImporterError(
            "no Condition in the bundles maps to the KB (codes tried: ICD-10-CM, SNOMED CT via "
            "codes.yaml, the clinicgym KB system); map codes with --code-map"
        )
    return rows, stats


def _codings(concept: Any) -> list[tuple[str, str]]:
    if concept is None:
        return []
    return [(c.system or "", c.code or "") for c in (concept.coding or [])]


def _ref(reference: Any) -> str:
    return (reference.reference or "") if reference is not None else ""


def _rows(
    bundle: Any,
    fname: str,
    kb: KnowledgeBase,
    cmap: Mapping[str, str],
    codes: CodeMaps,
    problems: list[str],
    stats: dict[str, Any],
) -> list[ImportedRow]:
    """One row per diagnosis Condition of a bundle that maps to the KB, with its patient's facts
    from the resources about the same subject; unmapped codes are counted in `stats`, broken
    resources listed in `problems`."""
    resources = [(e.fullUrl or "", e.resource) for e in (bundle.entry or []) if e.resource]
    patients = _patients_by_reference(resources)
    by_subject: dict[str, list[Any]] = {}
    for _, r in resources:
        ref = _ref(getattr(r, "subject", None) or getattr(r, "patient", None))
        by_subject.setdefault(ref, []).append(r)
    loinc = codes.loinc_by_code()
    out: list[ImportedRow] = []
    for _, r in resources:
        if r.__resource_type__ != "Condition":
            continue
        if "problem-list-item" in _categories(r):
            continue
        cond, used = _diagnosis_of(r, kb, cmap)
        if cond is None:
            key = used or (r.code.text if r.code else "?")
            stats["unmapped_conditions"][key] = stats["unmapped_conditions"].get(key, 0) + 1
            continue
        row = _condition_row(r, used, patients, by_subject, kb, loinc, problems, fname)
        if row is not None:
            out.append(row)
    return out


def _patients_by_reference(resources: list[tuple[str, Any]]) -> dict[str, Any]:
    """Each Patient under every way a resource may refer to it (full URL, Patient/id, urn)."""
    patients = {}
    for url, r in resources:
        if r.__resource_type__ == "Patient":
            for key in (url, f"Patient/{r.id}", f"urn:uuid:{r.id}"):
                patients[key] = r
    return patients


def _categories(resource: Any) -> set[str]:
    """The category codes of a Condition (e.g. 'problem-list-item')."""
    return {code for cat in (resource.category or []) for _, code in _codings(cat)}


def _diagnosis_of(r: Any, kb: KnowledgeBase, cmap: Mapping[str, str]) -> tuple[Any, str]:
    """The KB condition a Condition's ICD-10-CM, SNOMED CT or KB coding names (None if none
    resolves), and the code last tried (to count it when unmapped)."""
    cond = None
    used = ""
    for system, code in _codings(r.code):
        if system in (ICD10CM, KB_SYSTEM) or system == SNOMED:
            cond, _ = resolve_condition(code, kb, cmap)
            used = code
            if cond is not None:
                break
    return cond, used


def _day(when: Any) -> Any:
    """A FHIR date or dateTime as a date (None stays None)."""
    return when.date() if isinstance(when, dt.datetime) else when


def _condition_row(
    r: Any,
    used: str,
    patients: Mapping[str, Any],
    by_subject: Mapping[str, list[Any]],
    kb: KnowledgeBase,
    loinc: Mapping[str, Any],
    problems: list[str],
    fname: str,
) -> ImportedRow | None:
    """The row of one mapped diagnosis: its Patient's age at onset, sex and demographics, and
    the facts around the onset; None (with a problem listed) when the Patient cannot say."""
    where = f"{fname}, Condition '{r.id}'"
    subject = _ref(r.subject)
    patient = patients.get(subject)
    if patient is None:
        problems.append(f"{where}: subject {subject!r} is no Patient in the bundle")
        return None
    onset = r.onsetDateTime or r.recordedDate
    if onset is None or patient.birthDate is None:
        problems.append(f"{where}: needs onsetDateTime (or recordedDate) and Patient.birthDate")
        return None
    onset_day = _day(onset)
    born = patient.birthDate
    age = onset_day.year - born.year - ((onset_day.month, onset_day.day) < (born.month, born.day))
    sex = normalise_sex(patient.gender or "")
    if sex is None:
        problems.append(f"{where}: Patient.gender {patient.gender!r} is not female or male")
        return None
    ext = {e.url: e.valueString for e in (patient.extension or [])}
    complete_record = any(
        e.url == COMPLETE_URL and e.valueBoolean for e in (patient.extension or [])
    )
    row: dict[str, Any] = {"findings": {}, "vitals": {}, "tests": {}}
    chief, comorbidities, allergies = _subject_facts(
        by_subject.get(subject, []), onset_day, complete_record, kb, loinc, row, problems, fname
    )
    return ImportedRow(
        where=where,
        age=age,
        sex=sex,
        condition=used,
        condition_column="Condition.code",
        ethnicity=ext.get(ETHNICITY_URL),
        insurance=ext.get(INSURANCE_URL),
        chief_complaint=chief,
        comorbidities=comorbidities,
        allergies=allergies,
        **row,
    )


def _subject_facts(
    others: list[Any],
    onset_day: dt.date,
    complete_record: bool,
    kb: KnowledgeBase,
    loinc: Mapping[str, Any],
    row: dict[str, Any],
    problems: list[str],
    fname: str,
) -> tuple[str | None, list[str] | None, list[str] | None]:
    """Read the subject's Observations within a day of onset into `row`, its problem-list
    Conditions and AllergyIntolerances; return (chief complaint, comorbidities, allergies),
    the lists None when the record neither lists any nor is marked complete."""
    chief = None
    comorbidities: list[str] | None = [] if complete_record else None
    allergies: list[str] | None = [] if complete_record else None
    comorbidity_ids = {c.id for c in kb.background.comorbidities}
    for other in others:
        kind = other.__resource_type__
        if kind == "Observation":
            eff_day = _day(other.effectiveDateTime)
            if eff_day is not None and abs((eff_day - onset_day).days) > 1:
                continue
            chief = _observation(other, kb, loinc, row, problems, fname) or chief
        elif kind == "Condition" and "problem-list-item" in _categories(other):
            comorbidities = comorbidities or []
            for _, code in _codings(other.code):
                if code in comorbidity_ids and code not in comorbidities:
                    comorbidities.append(code)
        elif kind == "AllergyIntolerance":
            allergies = allergies or []
            groups = [a.group for a in kb.background.allergies]
            text = " ".join([other.code.text or "", *(c for _, c in _codings(other.code))])
            allergies += [g for g in groups if g.lower() in text.lower() and g not in allergies]
    return chief, comorbidities, allergies


def _observation(
    obs: Any,
    kb: KnowledgeBase,
    loinc: Mapping[str, Any],
    row: dict[str, Any],
    problems: list[str],
    fname: str,
) -> str | None:
    """Put one Observation into the row; return a chief complaint finding id if it is one."""
    codings = _codings(obs.code)
    kb_codes = [c for s, c in codings if s == KB_SYSTEM]
    if CHIEF_COMPLAINT in kb_codes:
        values = [c for s, c in _codings(obs.valueCodeableConcept) if s == KB_SYSTEM]
        return values[0] if values else None
    if GENOMIC_MARKER in kb_codes:
        return None
    quantity = obs.valueQuantity
    for system, code in codings:
        if system == LOINC and code in loinc and quantity is not None:
            entry = loinc[code]
            unit = quantity.code or quantity.unit or ""
            if unit != entry.unit and not kb_codes:
                problems.append(
                    f"{fname}, Observation '{obs.id}': LOINC {code} in unit {unit!r}; "
                    f"expected {entry.unit!r}"
                )
                return None
            if unit == entry.unit:
                value = entry.to_kb(float(quantity.value))
                target = "vitals" if entry.kind == "vital" else "tests"
                row[target][entry.kb] = value
                return None
    for code in kb_codes:
        if code in kb.findings and obs.valueBoolean is not None:
            row["findings"][code] = bool(obs.valueBoolean)
        elif code in kb.vitals and quantity is not None:
            row["vitals"][code] = float(quantity.value)
        elif code in kb.tests:
            if quantity is not None:
                row["tests"][code] = float(quantity.value)
            else:
                interp = {c for i in (obs.interpretation or []) for _, c in _codings(i)}
                row["tests"][code] = "A" in interp
    return None
