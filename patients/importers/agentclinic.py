"""AgentClinic OSCE cases (JSONL, one `OSCE_Examination` per line) -> Cases.

AgentClinic's MedQA-style cases are free text under varying sub-keys: `Objective_for_Doctor`,
`Patient_Actor` (Demographics, History, Symptoms with Primary_Symptom / Secondary_Symptoms,
Past_Medical_History, Social_History, Review_of_Systems, ... in any combination),
`Physical_Examination_Findings` (Vital_Signs and per-system sections, strings or nested dicts),
`Test_Results` (nested dicts of panels and single tests, sometimes plain strings) and
`Correct_Diagnosis`. Each becomes atomic facts:

- the primary symptom is the chief complaint (must ask), secondary symptoms must-ask history,
  the other Patient_Actor sections history of their kind (unknown sections count as history);
- exam sections become exam facts of the system their heading names;
- every test becomes a lab or imaging fact the chart resolves by its name (a KB test id where
  the name is the KB's, so synonyms work); a panel (a dict of results) is also orderable whole,
  its rows kept in `case.extra["panels"]` for the lab table;
- the diagnosis is the KB's if its name is, else a named diagnosis outside the KB.

Cases are open-world (`closed_world=False`): the patient says "I don't know" for what the
record lacks. An examination of a system the record does not mention reports no abnormality,
as AgentClinic's measurement agent does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from clinicgym.patients.case import Case
from clinicgym.patients.errors import ImporterError
from clinicgym.patients.importers.completion import MAX_LISTED
from clinicgym.patients.importers.freetext import (
    CaseBuilder,
    KBLinker,
    abnormal,
    clauses,
    diagnosis_for,
    humanise,
    is_imaging,
    is_none,
    lineage,
    linker_for,
    slug,
    vital_facts,
)
from clinicgym.patients.kb import KnowledgeBase

FORMAT = "agentclinic"
_HISTORY_SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("present_illness", "hpi", "should_ask"),
    ("presenting_illness", "hpi", "should_ask"),
    ("hpi", "hpi", "should_ask"),
    ("secondary", "hpi", "must_ask"),
    ("associated", "hpi", "must_ask"),
    ("primary", "chief_complaint", "must_ask"),
    ("chief", "chief_complaint", "must_ask"),
    ("presenting", "chief_complaint", "must_ask"),
    ("review", "ros", "should_ask"),
    ("ros", "ros", "should_ask"),
    ("family", "family", "should_ask"),
    ("social", "social", "should_ask"),
    ("lifestyle", "social", "should_ask"),
    ("habit", "social", "should_ask"),
    ("sexual", "social", "should_ask"),
    ("occupation", "social", "should_ask"),
    ("travel", "social", "should_ask"),
    ("medication", "medication", "should_ask"),
    ("drug", "medication", "should_ask"),
    ("allerg", "allergy", "must_ask"),
    ("past", "pmh", "should_ask"),
    ("medical", "pmh", "should_ask"),
    ("surgical", "pmh", "should_ask"),
    ("obstetric", "pmh", "should_ask"),
    ("gyn", "pmh", "should_ask"),
    ("menstrual", "pmh", "should_ask"),
    ("immuni", "pmh", "should_ask"),
    ("vaccin", "pmh", "should_ask"),
    ("developmental", "pmh", "should_ask"),
    ("birth", "pmh", "should_ask"),
    ("symptom", "hpi", "must_ask"),
    ("history", "hpi", "should_ask"),
)
"""Heading stem -> (fact category, salience), first match wins; anything else is history."""
_CATEGORY_KEYS = re.compile(
    r"^(blood|blood_?tests?|blood_?work|labs?|laborator\w*|tests?|investigations?|imaging|"
    r"radiolog\w*|other|others|additional|additional_?tests?|results?|bedside|microbiology)$",
    re.IGNORECASE,
)
_DEMOGRAPHICS_AGE = re.compile(
    r"(\d+(?:\.\d+)?)\s*[- ]?(year|yr|y/o|yo|month|mo|week|wk|day)s?", re.IGNORECASE
)
_FEMALE = re.compile(r"\b(female|woman|girl|lady|she|her|mother|pregnant)\b", re.IGNORECASE)
_MALE = re.compile(r"\b(male|man|boy|gentleman|he|his|father)\b", re.IGNORECASE)


def read_agentclinic(
    path: Path | str, kb: KnowledgeBase, *, limit: int | None = None
) -> list[Case]:
    """Read an AgentClinic OSCE JSONL file into Cases (the first `limit` lines, or all); every
    problem in the file is listed in one ImporterError naming the line and field."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ImporterError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise ImporterError(f"{path}: not UTF-8 text ({e})") from None
    linker = linker_for(kb)
    cases: list[Case] = []
    problems: list[str] = []
    index = 0
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if limit is not None and index >= limit:
            break
        where = f"{path.name} line {lineno}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{where}: not valid JSON ({e.msg} at column {e.colno})")
            index += 1
            continue
        try:
            cases.append(case_from_osce(raw, kb, linker, where=where, index=index))
        except ImporterError as e:
            problems.append(str(e))
        index += 1
    if problems:
        shown = problems[:MAX_LISTED]
        more = (
            f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        )
        noun = "problem" if len(problems) == 1 else "problems"
        raise ImporterError(
            f"{path}: {len(problems)} {noun} reading AgentClinic cases:\n  "
            + "\n  ".join(shown)
            + more
        )
    if not cases:
        raise ImporterError(f"{path}: no cases (the file has no non-empty lines)")
    return cases


def _section(key: str) -> tuple[str, str]:
    k = key.lower()
    for stem, category, salience in _HISTORY_SECTIONS:
        if stem in k:
            return category, salience
    return "hpi", "should_ask"


def parse_demographics(text: str) -> tuple[int | None, str | None]:
    """'45-year-old man' -> (45, 'male'); '6-month-old girl' -> (0, 'female')."""
    age: int | None = None
    m = _DEMOGRAPHICS_AGE.search(text)
    if m:
        n, unit = float(m.group(1)), m.group(2).lower()
        age = int(n) if unit.startswith(("y", "yr")) else 0
    else:
        m2 = re.search(r"\bage\D{0,3}(\d{1,3})\b", text, re.IGNORECASE)
        if m2:
            age = int(m2.group(1))
    female, male = bool(_FEMALE.search(text)), bool(_MALE.search(text))
    sex = "female" if female and not male else "male" if male and not female else None
    if female and male:  # "female ... her husband": take the first word that says
        f, mm = _FEMALE.search(text), _MALE.search(text)
        sex = "female" if f and mm and f.start() < mm.start() else "male"
    return age, sex


def case_from_osce(
    raw: Any, kb: KnowledgeBase, linker: KBLinker, *, where: str, index: int
) -> Case:
    """One AgentClinic OSCE case -> Case; ImporterError names `where` and the field."""
    osce = raw.get("OSCE_Examination", raw) if isinstance(raw, dict) else None
    if not isinstance(osce, dict):
        raise ImporterError(f"{where}: expected a JSON object with 'OSCE_Examination'")
    problems: list[str] = []
    actor = osce.get("Patient_Actor")
    if not isinstance(actor, dict):
        problems.append(
            f"field 'Patient_Actor': expected an object, got {type(actor).__name__} "
            f"({str(actor)[:40]!r})"
        )
        actor = {}
    dx_raw = osce.get("Correct_Diagnosis")
    if isinstance(dx_raw, list):
        dx_raw = dx_raw[0] if dx_raw else None
    if not isinstance(dx_raw, str) or not dx_raw.strip():
        problems.append(f"field 'Correct_Diagnosis': expected a diagnosis name, got {dx_raw!r}")
    demo = " ".join(
        str(v) for k, v in actor.items() if "demograph" in k.lower() or k.lower() in ("age", "sex")
    )
    age, sex = parse_demographics(demo)
    if sex is None:  # fall back to the history's pronouns
        _, sex = parse_demographics(json.dumps(actor.get("History", "")))
    if age is None:
        problems.append(
            f"field 'Patient_Actor.Demographics': no age in {demo[:60]!r}; expected e.g. "
            "'45-year-old woman'"
        )
    if sex is None:
        problems.append(
            f"field 'Patient_Actor.Demographics': no sex in {demo[:60]!r}; expected e.g. "
            "'45-year-old woman'"
        )
    if problems:
        raise ImporterError(f"{where}: " + "; ".join(problems))
    assert age is not None and sex is not None and isinstance(dx_raw, str)
    b = CaseBuilder(kb, linker, min(age, 120), sex)
    _history(b, actor)
    if not any(f["category"] == "chief_complaint" for f in b.facts):
        first = next((f for f in b.facts if f["category"] == "hpi" and f["present"]), None)
        if first is None:
            raise ImporterError(
                f"{where}: field 'Patient_Actor': no symptom to open with (expected "
                "'Symptoms.Primary_Symptom' or a 'History')"
            )
        first["category"], first["salience"] = "chief_complaint", "must_ask"
    _exam(b, osce.get("Physical_Examination_Findings"))
    panels = _tests(b, linker, osce.get("Test_Results"))
    objective = str(osce.get("Objective_for_Doctor", "") or "")
    emergency = re.search(r"emergency|\bED\b|A&E", objective, re.IGNORECASE)
    setting = "emergency" if emergency else "primary_care"
    return b.build(
        case_id=f"{FORMAT}-{index:04d}",
        setting=setting,
        diagnosis=diagnosis_for(dx_raw, linker),
        differential=[],
        lineage=lineage(FORMAT, where, index),
        extra={"objective": objective, "panels": panels, "format": FORMAT},
    )


def _history(b: CaseBuilder, actor: dict[str, Any]) -> None:
    for key, value in actor.items():
        k = key.lower()
        if "demograph" in k or k in ("age", "sex", "gender", "name"):
            continue
        category, salience = _section(key)
        if isinstance(value, dict):
            for sub, v in value.items():
                known = any(stem in sub.lower() for stem, _, _ in _HISTORY_SECTIONS)
                sub_cat, sub_sal = _section(sub) if known else (category, salience)
                label = "" if known and sub_cat in ("chief_complaint", "hpi") else humanise(sub)
                src = f"agentclinic:Patient_Actor.{key}.{sub}"
                _add_history(b, v, sub_cat, sub_sal, src, label)
            continue
        label = "" if _GENERIC.search(key) else humanise(key)
        _add_history(b, value, category, salience, f"agentclinic:Patient_Actor.{key}", label)


_GENERIC = re.compile(
    r"history|symptom|complaint|review|ros|medical|medication|drug|allerg|social|family",
    re.IGNORECASE,
)
"""Headings whose statements stand alone; other headings ('Occupation', 'Immunisations')
prefix their values, which are often bare ('Teacher', 'Up to date')."""


def _add_history(
    b: CaseBuilder, value: Any, category: str, salience: str, source: str, label: str = ""
) -> None:
    if category == "chief_complaint":
        texts = [str(t).strip() for t in (value if isinstance(value, list) else [value])]
        texts = [t for t in texts if t]
        has_cc = any(f["category"] == "chief_complaint" for f in b.facts)
        for t in texts:  # the first primary symptom, said whole, is the reason for the visit
            cat = "hpi" if has_cc else "chief_complaint"
            b.add_statement(t, category=cat, salience="must_ask", source=source)
            has_cc = True
        return
    who = ("She" if b.sex == "female" else "He") if b.caregiver else "I"
    if category == "medication":
        for c in _items(value):
            none = is_none(c)
            drug = None if none else b.linker.drug(c)
            takes = f"{who} takes" if b.caregiver else "I take"
            b.add(
                category="medication",
                concept=drug or ("medication.none" if none else f"medication.{slug(c)[:40]}"),
                text="No regular medicines." if none else f"{takes} {c}.",
                present=not none,
                salience=salience,
                source=source,
            )
        return
    if category == "allergy":
        for c in _items(value):
            none = is_none(c) or bool(re.match(r"^no (known )?(drug )?allerg", c, re.I))
            group = None if none else b.linker.allergy_group(c)
            b.add(
                category="allergy",
                concept="allergy.none" if none else f"allergy.{group or slug(c)[:40]}",
                text="No known drug allergies."
                if none
                else f"{who}'m allergic to {c}.".replace("He'm", "He's").replace("She'm", "She's"),
                value=group,
                present=not none,
                salience="must_ask",
                source=source,
            )
        return
    if category == "pmh" and is_none(value):
        b.add(
            category="pmh",
            concept="pmh.none",
            text="No long-term conditions.",
            present=False,
            salience=salience,
            source=source,
        )
        return
    b.add_statements(value, category=category, salience=salience, source=source, label=label)


def _items(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    if isinstance(value, dict):
        return [f"{humanise(k)} {v}".strip() for k, v in value.items()]
    return [p.strip(" .") for p in re.split(r"[;,\n]+", str(value or "")) if p.strip(" .")]


def _exam(b: CaseBuilder, exam: Any) -> None:
    if exam is None:
        return
    if not isinstance(exam, dict):
        b.add_exam(exam, system="general", source="agentclinic:Physical_Examination_Findings")
        return
    for key, value in exam.items():
        src = f"agentclinic:Physical_Examination_Findings.{key}"
        if "vital" in key.lower():
            for f in vital_facts(value, b.kb, b.linker, b.age, src):
                b.add(**f)
            continue
        system = b.linker.exam_system(key)
        if isinstance(value, dict):
            for sub, v in value.items():
                sub_system = b.linker.exam_system(sub) if system == "general" else system
                if isinstance(v, dict):
                    for leaf, lv in v.items():
                        b.add_exam(
                            lv,
                            system=sub_system,
                            source=f"{src}.{sub}.{leaf}",
                            label=humanise(leaf),
                        )
                else:
                    b.add_exam(v, system=sub_system, source=f"{src}.{sub}", label=humanise(sub))
        else:
            b.add_exam(value, system=system, source=src)


def _tests(b: CaseBuilder, linker: KBLinker, tests: Any) -> dict[str, list[dict[str, Any]]]:
    """Add a fact per test and per panel; return the panels' table rows by concept."""
    panels: dict[str, list[dict[str, Any]]] = {}
    used: set[str] = set()
    if tests is None:
        return panels
    if not isinstance(tests, dict):
        tests = _named_results(tests)

    def concept_for(name: str, path: str, kb_ok: bool = True) -> str:
        kb_id = linker.test(name) if kb_ok else None
        if kb_id is not None and kb_id not in used:
            used.add(kb_id)
            return kb_id
        c = slug(name)
        if c in used or c in b.kb.tests:
            c = slug(f"{path} {name}") if path else f"{c}_2"
        n = 2
        base = c
        while c in used:
            c, n = f"{base}_{n}", n + 1
        used.add(c)
        return c

    def leaf(name: str, value: Any, path: str, src: str) -> None:
        text_value = _scalar(value)
        category = "imaging" if is_imaging(f"{path} {name}") else "lab"
        concept = concept_for(name, path)
        b.add(
            category=category,
            concept=concept,
            text=f"{humanise(name)}: {text_value}",
            value=text_value,
            abnormal=abnormal(text_value),
            salience="should_ask" if abnormal(text_value) else "incidental",
            how_revealed="order",
            modality="text" if category == "imaging" else "table",
            source=src,
        )

    def walk(node: dict[str, Any], path: str, src: str) -> None:
        for key, value in node.items():
            here = f"{src}.{key}"
            if isinstance(value, dict):
                scalar = all(not isinstance(v, dict) for v in value.values())
                if scalar and not _CATEGORY_KEYS.match(key) and len(value) > 1:
                    rows = [
                        {
                            "test": humanise(k),
                            "result": _scalar(v),
                            "unit": "",
                            "reference": "",
                            "flag": "ABNORMAL" if abnormal(_scalar(v)) else "",
                        }
                        for k, v in value.items()
                    ]
                    concept = concept_for(key, path, kb_ok=False)  # KB tests are single analytes
                    body = "; ".join(f"{r['test']} {r['result']}" for r in rows)
                    category = "imaging" if is_imaging(f"{path} {key}") else "lab"
                    b.add(
                        category=category,
                        concept=concept,
                        text=f"{humanise(key)}: {body}",
                        abnormal=any(r["flag"] for r in rows),
                        salience="should_ask" if any(r["flag"] for r in rows) else "incidental",
                        how_revealed="order",
                        modality="table",
                        source=here,
                    )
                    panels[concept] = rows
                walk(value, key if not _CATEGORY_KEYS.match(key) else path, here)
            else:
                leaf(key, value, path, here)

    walk(tests, "", "agentclinic:Test_Results")
    return panels


def _named_results(text: Any) -> dict[str, str]:
    """A plain-text Test_Results paragraph -> {test name: result}: 'Lumbar puncture: protein
    1.8 g/L' and 'Nerve conduction studies show demyelination' each name their test."""
    out: dict[str, str] = {}
    for c in clauses(text):
        name, sep, result = c.text.partition(":")
        if not sep:
            m = re.match(
                r"^(.{3,60}?)\s+(?:shows?|showed|reveals?|revealed|demonstrates?|was|is|are)\s+(.+)$",
                c.text,
            )
            name, result = (m.group(1), m.group(2)) if m else (" ".join(c.text.split()[:3]), c.text)
        out.setdefault(name.strip() or "Result", result.strip())
    return out


def _scalar(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "; ".join(_scalar(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{humanise(k)} {_scalar(v)}" for k, v in value.items())
    return " ".join(str(value).split())
