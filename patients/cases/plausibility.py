"""Clinical plausibility of a generated case: nothing in it contradicts the patient's age and sex.

A benchmark loses trust the first time a reader meets a 0-year-old who "lives alone" or an adult
reference range on an infant's blood count. `violations` checks a case against rules written
from the demographics, independently of how the generator avoids them, and names each breach
as 'rule: detail'. bench/validity.py counts them over thousands of generated cases.
"""

from __future__ import annotations

import re

from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.bands import age_band
from clinicgym.patients.knowledge.kb import CHILD_AGE, KnowledgeBase

ADULT_ONLY_AGE = 10
"""Below this age a child has no social history of their own (smoking, drink, drugs, living
alone, occupation): such a fact present or denied is implausible, unless the KB words it for
a caregiver (`text_child`, e.g. ill contacts at nursery)."""
_FIRST_PERSON = re.compile(r"^(I|I'm|I've|I'd|I'll)\b")
"""A child's told fact in the child's own voice ('My ...' is fine: a parent says 'My brother')."""
_REFERENCE = re.compile(r"\(reference ([-\d.]+)-([-\d.]+)\)")
_TOLD = ("chief_complaint", "hpi", "ros", "pmh", "medication", "allergy", "family")


def violations(case: Case, kb: KnowledgeBase) -> list[str]:
    """Every way this case contradicts its demographics; empty when it is plausible."""
    out: list[str] = []
    age, sex = case.age, case.sex
    cid = case.diagnosis.condition_id
    cond = kb.conditions.get(cid) if cid else None
    if cond is not None:
        if cond.sex not in ("any", sex):
            out.append(f"condition-sex: {cond.id} is {cond.sex}-only, patient is {sex}")
        if not cond.age[0] <= age <= cond.age[1]:
            out.append(f"condition-age: {cond.id} occurs at {list(cond.age)}, patient is {age}")
    if case.presentation is not None:
        pres = kb.presentations.get(case.presentation)
        if pres is None:
            out.append(f"presentation: unknown '{case.presentation}'")
        elif not pres.age[0] <= age <= pres.age[1]:
            out.append(f"presentation-age: {pres.id} covers {list(pres.age)}, patient is {age}")
        elif case.setting not in pres.settings:
            out.append(f"presentation-setting: {pres.id} is not seen in {case.setting}")
    if age < CHILD_AGE and case.persona.speaker != "caregiver":
        out.append(f"speaker: a {age}-year-old answers for themself")
    band = age_band(age)
    comorbid = {c.id: c for c in kb.background.comorbidities}
    for f in case.facts:
        where = f"{f.id} '{f.text[:60]}'"
        fd = kb.findings.get(f.concept)
        if fd is not None and fd.applies is not None and not fd.applies.admits(age, sex):
            out.append(f"finding-demographics: {where} does not apply to a {age}-year-old {sex}")
        worded_for_child = fd is not None and fd.text_child is not None
        if age < ADULT_ONLY_AGE and f.category == "social" and not worded_for_child:
            out.append(f"child-social: {where} in a {age}-year-old")
        if age < CHILD_AGE and f.category in _TOLD and f.present and _FIRST_PERSON.match(f.text):
            out.append(f"child-first-person: {where} is worded as the child speaking")
        pmh = comorbid.get(f.concept) if f.category == "pmh" else None
        if pmh is not None and pmh.p.get(band, 0.0) <= 0:  # type: ignore[call-overload]
            out.append(f"comorbidity-age: {where} never occurs at age {age}")
        if f.category == "medication" and f.concept in kb.drugs:
            d = kb.drugs[f.concept]
            if d.min_age is not None and age < d.min_age:
                out.append(f"medication-age: {where}; {d.name} is not for under {d.min_age}")
        if f.category in ("lab", "imaging") and f.concept in kb.tests:
            out += _test_violations(case, kb, f.concept, f.text, f.value, f.abnormal, where)
        if f.category == "vital" and f.concept in kb.vitals and isinstance(f.value, float | int):
            lo, hi = kb.vitals[f.concept].normal[band]  # type: ignore[index]
            if f.abnormal != (not lo <= f.value <= hi):
                out.append(f"vital-flag: {where} flagged {f.abnormal} against {lo}-{hi} ({band})")
    return out


def _test_violations(
    case: Case,
    kb: KnowledgeBase,
    tid: str,
    text: str,
    value: object,
    abnormal: bool,
    where: str,
) -> list[str]:
    t = kb.tests[tid]
    out = []
    if t.applies is not None and not t.applies.admits(case.age, case.sex):
        out.append(f"test-demographics: {where} is not done for a {case.age}-year-old {case.sex}")
    ref = t.reference(case.age, case.sex)
    if ref is None or not isinstance(value, float | int):
        return out
    lo, hi = ref
    if abnormal != (not lo <= value <= hi):
        out.append(f"lab-flag: {where} flagged {abnormal} against {lo}-{hi}")
    m = _REFERENCE.search(text)
    if m and (float(m.group(1)), float(m.group(2))) != (float(lo), float(hi)):
        out.append(f"lab-reference: {where} shows {m.group(0)}, the patient's range is {lo}-{hi}")
    return out
