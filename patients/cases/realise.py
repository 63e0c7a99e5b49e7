"""Realisation: records -> Cases, for one sampled patient or a cohort of ten thousand.

A record says what is true of a patient; realising it fixes everything else a Case holds that
is drawn at random (synthetic PHI, persona, background pharmacogenomic results) and words its
facts. Both the KB sampler and SDV cohorts go through here, so a cohort row and a sampled
record with the same content and draws become the same Case.

Records are held column by column (`Records`): a cohort decodes straight into arrays, and
realising it (`realise`) draws each case's PHI, persona and PGx results from that case's own row
of uniforms. Worded facts, pydantic validation and artefacts are built when a case is read from
the `CaseTable` (about 1.3 ms a case): an episode pays for its own case, and a 10,000-row cohort is
ready in less time than SDV takes to sample it (bench/cohort.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple, overload

import numpy as np

from clinicgym import __version__
from clinicgym.patients.cases.artefacts import build_artefacts
from clinicgym.patients.cases.case import PHI, Case, Difficulty, Lineage, Persona
from clinicgym.patients.cases.persona import default_persona_book, persona_draws, sample_persona
from clinicgym.patients.cases.pgx import PgxGene, PgxResult, default_panel, draw, pgx_fact_rows
from clinicgym.patients.cases.phi import PHI_DRAWS, draw_phi
from clinicgym.patients.cases.posterior import look_alikes, measured, model_for
from clinicgym.patients.cases.record import PatientRecord, TestOutcome
from clinicgym.patients.errors import CaseError
from clinicgym.patients.knowledge.bands import AGE_BANDS, age_band
from clinicgym.patients.knowledge.kb import CHILD_AGE, Condition, Finding, KnowledgeBase
from clinicgym.patients.knowledge.uniforms import Uniforms

NORMAL, ABNORMAL, ABSENT = 1, 2, 0
"""`Records.test_state` values: a test's result in the record, or no result at all."""
PHI_FIELDS = ("name", "date_of_birth", "address", "phone")
"""The PHI a patient can be asked for; each becomes a `phi` fact."""


def realise_draws() -> int:
    """Uniforms one case's realisation takes: PHI, then persona, then one per PGx gene."""
    return PHI_DRAWS + persona_draws(default_persona_book()) + len(default_panel().genes)


@dataclass(frozen=True)
class Layout:
    """The findings of a group of records, in record order, with what the KB says of each."""

    cond: Condition
    ids: tuple[str, ...]
    defs: tuple[Finding, ...]
    link_salience: tuple[str | None, ...]
    """The condition's salience for each finding; None for pertinent negatives and background."""

    @classmethod
    def of(cls, kb: KnowledgeBase, cond: Condition, ids: tuple[str, ...]) -> Layout:
        links = {link.id: link.salience for link in cond.findings}
        defs = []
        for fid in ids:
            fd = kb.findings.get(fid)
            if fd is None:
                raise CaseError(f"unknown finding id '{fid}' in record of {cond.id}")
            defs.append(fd)
        return cls(cond, ids, tuple(defs), tuple(links.get(f) for f in ids))


@dataclass
class Records:
    """`n` patient records held column by column; columns follow the KB's order of vitals,
    tests, comorbidities and allergy groups. What `PatientRecord` says of one, for many."""

    kb: KnowledgeBase
    condition: list[str]
    age: list[int]
    sex: list[str]
    ethnicity: list[str]
    insurance: list[str]
    chief_complaint: list[str]
    layouts: list[Layout]
    layout: np.ndarray
    """(n,) index into `layouts`."""
    present: np.ndarray
    """(n, longest layout) bool: finding j of the row's layout is present."""
    vitals: np.ndarray
    """(n, vitals) float; NaN where the record has no such vital."""
    test_state: np.ndarray
    """(n, tests) int8: NORMAL, ABNORMAL or ABSENT."""
    test_value: np.ndarray
    """(n, tests) float; NaN where the result is a report, not a number."""
    comorbidities: list[tuple[str, ...]]
    allergies: list[tuple[str, ...]]
    test_text: dict[tuple[int, int], str | None]
    """(row, test) -> report text, where it differs from what the KB reports for that result."""
    setting: list[str | None] = field(default_factory=list)
    """Where each patient is seen (presentation-first records); empty: the condition's first."""
    presentation: list[str | None] = field(default_factory=list)
    atypical: list[bool] = field(default_factory=list)
    source: list[Any] = field(default_factory=list)
    """The records the columns were built from (`from_records`), which realising reads as they
    are instead of rebuilding each row's; empty for columns decoded otherwise."""

    def presented(self, i: int) -> tuple[str | None, str | None]:
        """Row `i`'s presentation and setting, or (None, None) for records drawn otherwise."""
        if not self.presentation:
            return None, None
        return self.presentation[i], self.setting[i]

    def __len__(self) -> int:
        return len(self.condition)

    @classmethod
    def from_records(cls, kb: KnowledgeBase, records: Sequence[Any]) -> Records:
        """Columns from `PatientRecord`s (findings keep their record order)."""
        vitals = {vid: j for j, vid in enumerate(kb.vitals)}
        tests = {tid: j for j, tid in enumerate(kb.tests)}
        n = len(records)
        layouts: dict[tuple[str, tuple[str, ...]], int] = {}
        shapes: list[Layout] = []
        layout = np.zeros(n, dtype=np.int32)
        width = max((len(r.findings) for r in records), default=0)
        present = np.zeros((n, width), dtype=bool)
        vit = np.full((n, len(vitals)), np.nan)
        state = np.zeros((n, len(tests)), dtype=np.int8)
        value = np.full((n, len(tests)), np.nan)
        texts: dict[tuple[int, int], str | None] = {}
        for i, r in enumerate(records):
            cond = kb.conditions.get(r.condition_id)
            if cond is None:
                raise CaseError(f"record {i}: unknown condition id '{r.condition_id}'")
            key = (cond.id, tuple(r.findings))
            if key not in layouts:
                layouts[key] = len(shapes)
                shapes.append(Layout.of(kb, cond, key[1]))
            layout[i] = layouts[key]
            present[i, : len(r.findings)] = list(r.findings.values())
            for vid, v in r.vitals.items():
                if vid not in kb.vitals:
                    raise CaseError(f"record {i}: unknown vital id '{vid}'")
                vit[i, vitals[vid]] = v
            specs = {t.id: t for t in cond.tests}
            for tid, out in r.tests.items():
                if tid not in kb.tests:
                    raise CaseError(f"record {i}: unknown test id '{tid}'")
                j = tests[tid]
                state[i, j] = ABNORMAL if out.abnormal else NORMAL
                if out.value is not None:
                    value[i, j] = out.value
                if out.text != _report(kb, specs.get(tid), tid, out.abnormal):
                    texts[(i, j)] = out.text
        return cls(
            kb=kb,
            condition=[r.condition_id for r in records],
            age=[int(r.age) for r in records],
            sex=[r.sex for r in records],
            ethnicity=[r.ethnicity for r in records],
            insurance=[r.insurance for r in records],
            chief_complaint=[r.chief_complaint for r in records],
            layouts=shapes,
            layout=layout,
            present=present,
            vitals=vit,
            test_state=state,
            test_value=value,
            comorbidities=[tuple(r.comorbidities) for r in records],
            allergies=[tuple(r.allergies) for r in records],
            test_text=texts,
            setting=[getattr(r, "setting", None) for r in records],
            presentation=[getattr(r, "presentation", None) for r in records],
            atypical=[bool(getattr(r, "atypical", False)) for r in records],
            source=list(records),
        )

    def record(self, i: int) -> Any:
        """Row `i` as a `PatientRecord`."""
        kb = self.kb
        shape = self.layouts[self.layout[i]]
        specs = {t.id: t for t in shape.cond.tests}
        tests: dict[str, TestOutcome] = {}
        for j, tid in enumerate(kb.tests):
            st = self.test_state[i, j]
            if st == ABSENT:
                continue
            v = self.test_value[i, j]
            text = self.test_text.get((i, j), _report(kb, specs.get(tid), tid, st == ABNORMAL))
            tests[tid] = TestOutcome(
                abnormal=bool(st == ABNORMAL), value=None if math.isnan(v) else float(v), text=text
            )
        return PatientRecord(
            age=self.age[i],
            sex=self.sex[i],  # type: ignore[arg-type]
            ethnicity=self.ethnicity[i],
            insurance=self.insurance[i],
            condition_id=self.condition[i],
            chief_complaint=self.chief_complaint[i],
            findings=dict(zip(shape.ids, self.present[i, : len(shape.ids)].tolist(), strict=True)),
            vitals={
                vid: float(v)
                for vid, v in zip(kb.vitals, self.vitals[i].tolist(), strict=True)
                if not math.isnan(v)
            },
            tests=tests,
            comorbidities=list(self.comorbidities[i]),
            allergies=list(self.allergies[i]),
            **(
                {
                    "setting": self.setting[i],
                    "presentation": self.presentation[i],
                    "atypical": self.atypical[i],
                }
                if self.presentation
                else {}
            ),
        )

    def __iter__(self) -> Iterator[Any]:
        return (self.record(i) for i in range(len(self)))

    @cached_property
    def comorbidity_defs(self) -> dict[str, Any]:
        """Comorbidity id -> its KB entry."""
        return {c.id: c for c in self.kb.background.comorbidities}

    @cached_property
    def reactions(self) -> dict[str, str]:
        """Allergy group -> the reaction a patient describes."""
        return {a.group: a.reaction for a in self.kb.background.allergies}


class _AskFact(NamedTuple):
    """What persona sampling reads of a fact the patient can be asked about."""

    id: str
    category: str
    concept: str
    salience: str
    how_revealed: str = "ask"
    present: bool = True


@dataclass(frozen=True)
class _Drawn:
    """What realisation drew for one case."""

    phi: PHI
    persona: Persona
    pgx: list[tuple[PgxGene, PgxResult | None]]


class CaseTable(Sequence[Case]):
    """Realised cases, built into `Case` objects (facts, artefacts) as they are read."""

    def __init__(
        self,
        records: Records,
        ids: Sequence[str],
        drawn: list[_Drawn],
        lineage: Callable[[int], Lineage],
    ) -> None:
        self.records = records
        self.ids = list(ids)
        self._drawn = drawn
        self._lineage = lineage

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, i: int) -> Case: ...
    @overload
    def __getitem__(self, i: slice) -> list[Case]: ...
    def __getitem__(self, i: int | slice) -> Case | list[Case]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"case {i} of {len(self)}")
        return self._case(i)

    def _case(self, i: int) -> Case:
        r, kb, d = self.records, self.records.kb, self._drawn[i]
        shape = r.layouts[r.layout[i]]
        cond = shape.cond
        facts = [*_finding_facts(r, i, shape), *_vital_facts(r, i), *_test_facts(r, i, cond)]
        facts += _tail_facts(r, i, cond)
        facts += [
            {"category": "phi", "concept": f"phi.{k}", "text": getattr(d.phi, k), "source": "faker"}
            for k in PHI_FIELDS
        ]
        for k, f in enumerate(facts):
            f["id"] = f"f{k:02d}"
        facts += pgx_fact_rows(d.pgx, {f["concept"] for f in facts}, start=len(facts))
        presentation, setting = r.presented(i)
        hardness: Difficulty | None = None
        if presentation is None:
            differential = [_diagnosis(kb.conditions[c]) for c in cond.differential]
        else:  # must-ask: what tells this case from its look-alikes
            record = r.source[i] if r.source else r.record(i)
            must, hardness = measured(kb, record)
            for f in facts:
                if f["category"] in ("chief_complaint", "phi", "genomics"):
                    continue
                if f["concept"] in must:
                    f["salience"] = "must_ask"
                elif f.get("salience") == "must_ask":
                    f["salience"] = "should_ask"
            differential = [_diagnosis(kb.conditions[c]) for c in look_alikes(kb, record)]
        case = Case.model_validate(
            {
                "id": self.ids[i],
                "age": r.age[i],
                "sex": r.sex[i],
                "setting": setting or cond.settings[0],
                "presentation": presentation,
                "difficulty": hardness if presentation else None,
                "facts": facts,
                "diagnosis": _diagnosis(cond),
                "differential": differential,
                "required_actions": _required(cond),
                "persona": d.persona,
                "closed_world": True,
                "phi": d.phi,
                "lineage": self._lineage(i),
                "extra": {"ethnicity": r.ethnicity[i], "insurance": r.insurance[i]},
            }
        )
        case.artefacts = build_artefacts(case, kb)
        return case


def realise(
    records: Records,
    ids: Sequence[str],
    draws: np.ndarray,
    lineage: Callable[[int], Lineage] | None = None,
    *,
    seed: int | None = None,
) -> CaseTable:
    """Draw each record's PHI, persona and PGx results from its row of `draws` (shape
    (n, `realise_draws()`)); the cases are worded when read from the returned table."""
    if len(ids) != len(records) or draws.shape != (len(records), realise_draws()):
        raise ValueError(
            f"realise: {len(records)} records need {len(records)} ids and draws of shape "
            f"({len(records)}, {realise_draws()}); got {len(ids)} ids, draws {draws.shape}"
        )
    kb, panel, book = records.kb, default_panel(), default_persona_book()
    drawn: list[_Drawn] = []
    for i, row in enumerate(draws.tolist()):
        u = Uniforms(row)
        shape = records.layouts[records.layout[i]]
        age, sex = records.age[i], records.sex[i]
        phi = draw_phi(age, sex, u)
        asked = _ask_facts(records, i, shape)
        presentation, setting = records.presented(i)
        safe = (
            model_for(kb).opening_safe(presentation, setting)
            if presentation is not None and setting is not None
            else None
        )
        persona = sample_persona(
            kb,
            shape.cond,
            asked,
            age,
            sex,
            u,
            caregiver=age < CHILD_AGE,
            book=book,
            opening_safe=safe,
        )
        drawn.append(_Drawn(phi, persona, draw(panel, u)))

    def default(i: int) -> Lineage:
        return Lineage(
            source="kb-sampler", generator_version=__version__, kb_version=kb.version, seed=seed
        )

    return CaseTable(records, ids, drawn, lineage or default)


# ---- facts, in case order: findings, vitals, tests, history, genomics, PHI, PGx --------------


def _pronouns(sex: str) -> dict[str, str]:
    if sex == "female":
        return {"She": "She", "she": "she", "her": "her", "Her": "Her", "him": "her"}
    return {"She": "He", "she": "he", "her": "his", "Her": "His", "him": "him"}


def finding_text(fd: Finding, present: bool, child: bool, slots: dict[str, str]) -> str:
    """How a generated case words a finding: its denial when absent, the examination's report,
    or the patient's (a caregiver's for a child) sentence with the patient's pronouns."""
    if not present:
        return f"No {fd.name}."
    if fd.category == "exam":
        return fd.text
    return (fd.text_child if child and fd.text_child else fd.text).format(**slots)


def history_wordings(kb: KnowledgeBase) -> list[str]:
    """Every wording `finding_text` can give a KB history finding (absent or present, adult or
    child, either sex), once each, in KB order: the texts most facts of generated cases hold,
    for callers that embed them once instead of case by case."""
    out: dict[str, None] = {}
    for fd in kb.findings.values():
        if fd.category == "exam":
            continue
        for present in (False, True):
            for child in (False, True):
                for sex in ("female", "male"):
                    out[finding_text(fd, present, child, _pronouns(sex))] = None
    return list(out)


def _finding_facts(r: Records, i: int, shape: Layout) -> list[dict[str, Any]]:
    child, slots, cc = r.age[i] < CHILD_AGE, _pronouns(r.sex[i]), r.chief_complaint[i]
    out = []
    for fid, fd, link, present in zip(
        shape.ids, shape.defs, shape.link_salience, r.present[i].tolist(), strict=False
    ):
        exam = fd.category == "exam"
        category, salience = _role(fid, fd, link, present, cc)
        text = finding_text(fd, present, child, slots)
        out.append(
            {
                "category": category,
                "concept": fid,
                "text": text,
                "present": present,
                "abnormal": present and exam,
                "salience": salience,
                "how_revealed": "examine" if exam else "ask",
                "system": fd.system,
                "source": f"kb:findings.{fid}",
            }
        )
    return out


def _role(fid: str, fd: Finding, link: str | None, present: bool, cc: str) -> tuple[str, str]:
    """A finding fact's category and salience: the chief complaint is must-ask; otherwise the
    condition's salience, and a finding the condition does not link is a should-ask pertinent
    negative when absent, incidental when present."""
    if fid == cc:
        return "chief_complaint", "must_ask"
    return fd.category, link or ("incidental" if present else "should_ask")


def _ask_facts(r: Records, i: int, shape: Layout) -> list[_AskFact]:
    """The present facts the patient can be asked about, with their case ids (persona input)."""
    cc, out = r.chief_complaint[i], []
    for k, (fid, fd, link, present) in enumerate(
        zip(shape.ids, shape.defs, shape.link_salience, r.present[i].tolist(), strict=False)
    ):
        if present and fd.category != "exam":
            category, salience = _role(fid, fd, link, present, cc)
            out.append(_AskFact(f"f{k:02d}", category, fid, salience))
    start = len(shape.ids) + _count_vitals(r, i) + int((r.test_state[i] != ABSENT).sum())
    for k, f in enumerate(_tail_facts(r, i, shape.cond), start):
        if f.get("present", True) and f.get("how_revealed", "ask") == "ask":
            out.append(_AskFact(f"f{k:02d}", f["category"], f["concept"], f["salience"]))
    return out


def _count_vitals(r: Records, i: int) -> int:
    return int((~np.isnan(r.vitals[i])).sum())


def _vital_facts(r: Records, i: int) -> list[dict[str, Any]]:
    kb, cond = r.kb, r.layouts[r.layout[i]].cond
    band = age_band(r.age[i])
    out = []
    for v, value in zip(kb.vitals.values(), r.vitals[i].tolist(), strict=True):
        if math.isnan(value):
            continue
        lo, hi = v.normal[band]  # type: ignore[index]
        out.append(
            {
                "category": "vital",
                "concept": v.id,
                "text": f"{v.name.capitalize()} {value:.{v.decimals}f} {v.unit}",
                "value": value,
                "unit": v.unit,
                "abnormal": not lo <= value <= hi,
                "salience": "should_ask" if v.id in cond.vitals else "incidental",
                "how_revealed": "examine",
                "source": f"kb:vitals.{v.id}",
            }
        )
    return out


def _test_facts(r: Records, i: int, cond: Condition) -> list[dict[str, Any]]:
    specs = {t.id: t for t in cond.tests}
    out = []
    states, values = r.test_state[i].tolist(), r.test_value[i].tolist()
    for j, t in enumerate(r.kb.tests.values()):
        st, value = states[j], values[j]
        if st == ABSENT:
            continue
        abnormal = st == ABNORMAL
        ref = t.reference(r.age[i], r.sex[i])
        if ref is not None and not math.isnan(value):
            lo, hi = ref
            flag = " HIGH" if value > hi else " LOW" if value < lo else ""
            unit = f" {t.unit}" if t.unit else ""
            d = t.decimals
            text = f"{t.name}: {value:.{d}f}{unit} (reference {lo:.{d}f}-{hi:.{d}f}){flag}"
        else:
            report = r.test_text.get((i, j), _report(r.kb, specs.get(t.id), t.id, abnormal))
            text = f"{t.name}: {report}"
        out.append(
            {
                "category": "imaging" if t.kind == "imaging" else "lab",
                "concept": t.id,
                "text": text,
                "value": None if math.isnan(value) else value,
                "unit": t.unit,
                "abnormal": abnormal,
                "salience": "should_ask" if t.id in specs else "incidental",
                "how_revealed": "order",
                "source": f"kb:tests.{t.id}",
            }
        )
    return out


def _tail_facts(r: Records, i: int, cond: Condition) -> list[dict[str, Any]]:
    """History the patient is asked about (conditions, medicines, allergies), then genomics."""
    child, slots = r.age[i] < CHILD_AGE, _pronouns(r.sex[i])
    out, meds = _condition_facts(r, i, child, slots)
    out += _medication_facts(r.kb, meds, child, slots)
    out += _allergy_facts(r, i, child, slots)
    out += _genomics_facts(cond)
    return out


def _condition_facts(
    r: Records, i: int, child: bool, slots: dict[str, str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Row `i`'s long-term conditions (or their denial), and the medicines they bring, once
    each in order."""
    out: list[dict[str, Any]] = []
    meds: list[str] = []
    for cid in r.comorbidities[i]:
        cm = r.comorbidity_defs[cid]
        out.append(
            {
                "category": "pmh",
                "concept": cid,
                "text": "{She} has {name}.".format(name=cm.name, **slots) if child else cm.text,
                "salience": "should_ask",
                "source": f"kb:background.{cid}",
            }
        )
        meds.extend(m for m in cm.medications if m not in meds)
    if not r.comorbidities[i]:
        out.append(_none("pmh", "pmh.none", "No long-term conditions.", "should_ask"))
    return out, meds


def _medication_facts(
    kb: KnowledgeBase, meds: list[str], child: bool, slots: dict[str, str]
) -> list[dict[str, Any]]:
    """The regular medicines, as the patient (or a child's caregiver) says them, or none."""
    who = "{She} takes".format(**slots) if child else "I take"
    out: list[dict[str, Any]] = []
    for m in meds:
        d = kb.drugs[m]
        dose = f", {d.typical_dose}" if d.typical_dose else ""
        out.append(
            {
                "category": "medication",
                "concept": m,
                "text": f"{who} {d.name}{dose}.",
                "salience": "should_ask",
                "source": f"kb:drugs.{m}",
            }
        )
    if not meds:
        out.append(_none("medication", "medication.none", "No regular medicines.", "should_ask"))
    return out


def _allergy_facts(r: Records, i: int, child: bool, slots: dict[str, str]) -> list[dict[str, Any]]:
    """Row `i`'s drug allergies with the reaction an adult describes, or none known."""
    out: list[dict[str, Any]] = []
    for group in r.allergies[i]:
        text = (
            "{She}'s allergic to {group}.".format(group=group, **slots)
            if child
            else f"I'm allergic to {group}. {r.reactions.get(group, '')}".strip()
        )
        out.append(
            {
                "category": "allergy",
                "concept": f"allergy.{group}",
                "text": text,
                "value": group,
                "salience": "must_ask",
                "source": f"kb:background.allergies.{group}",
            }
        )
    if not r.allergies[i]:
        out.append(_none("allergy", "allergy.none", "No known drug allergies.", "must_ask"))
    return out


def _genomics_facts(cond: Condition) -> list[dict[str, Any]]:
    """The condition's genetic basis, each a variant revealed by ordering genetic testing."""
    return [
        {
            "category": "genomics",
            "concept": f"gene.{g.gene}",
            "text": f"{g.gene} {g.variant}, {g.zygosity.replace('_', ' ')}",
            "modality": "variants",
            "abnormal": True,
            "salience": "should_ask",
            "how_revealed": "order",
            "source": f"kb:conditions.{cond.id}.genetics",
        }
        for g in cond.genetics
    ]


def _none(category: str, concept: str, text: str, salience: str) -> dict[str, Any]:
    return {
        "category": category,
        "concept": concept,
        "text": text,
        "present": False,
        "salience": salience,
    }


def _report(kb: KnowledgeBase, spec: Any, tid: str, abnormal: bool) -> str | None:
    """The report text the KB gives a test result: the condition's text if abnormal."""
    return spec.text if abnormal and spec is not None else kb.tests[tid].normal_text


def _diagnosis(cond: Condition) -> dict[str, Any]:
    return {
        "code": cond.icd10,
        "name": cond.name,
        "synonyms": list(cond.synonyms),
        "condition_id": cond.id,
    }


def _required(cond: Condition) -> list[dict[str, Any]]:
    e = cond.escalation
    if e is None:
        return []
    return [
        {
            "action": "refer",
            "to": e.to,
            "level": e.level,
            "within_turns": e.within_turns,
            "source": f"kb:conditions.{cond.id}.escalation",
        }
    ]


def band_index(ages: np.ndarray) -> np.ndarray:
    """Index into `AGE_BANDS` of each age (as `age_band` gives it)."""
    highs = np.array([hi for _, hi in AGE_BANDS.values()])
    return np.minimum(np.searchsorted(highs, ages, side="left"), len(highs) - 1)
