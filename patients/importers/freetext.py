"""Free text -> atomic case facts, shared by the AgentClinic and DDXPlus importers.

`clauses` splits a passage into atomic statements (sentences, and the items of a list such as
"denies fever, chills or weight loss"), each marked present or negated. `KBLinker` maps a
statement to a KB finding, test, vital sign, drug, allergy group or condition only where the
match is clear: exact names and synonyms first, then MiniLM similarity above a stated threshold
with a margin over the runner-up. What does not match stays a free-text fact (concept
'text.<n>') with a short text the patient can say. `CaseBuilder` numbers facts and assembles the
Case, with synthetic PHI (imported cases never carry a real person's identity).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from faker import Faker

from clinicgym import __version__
from clinicgym.patients.cases.artefacts import build_artefacts
from clinicgym.patients.cases.case import PHI, AgeDetail, Case, Diagnosis, Fact, Lineage, Persona
from clinicgym.patients.importers.text import PREPOSITION_END, Clause, humanise, norm, slug
from clinicgym.patients.knowledge.bands import age_band
from clinicgym.patients.knowledge.kb import CHILD_AGE, EXAM_SYSTEMS, Condition, KnowledgeBase
from clinicgym.patients.patient.chart import SYSTEM_ALIASES
from clinicgym.patients.patient.encoder import SentenceEncoder, default_encoder
from clinicgym.patients.patient.matching import cached_embeddings

FINDING_THRESHOLD = 0.72
"""MiniLM cosine at or above which a statement is taken to be a KB finding..."""
FINDING_MARGIN = 0.04
"""...and by which it must beat the best different finding (else it stays free text)."""
TEST_THRESHOLD = 0.86
"""MiniLM cosine at or above which a test name is taken to be a KB test (after exact names)."""

_NEGATION = re.compile(
    r"^\s*(?:(?:the\s+)?patient\s+|he\s+|she\s+|they\s+|"
    r"there\s+(?:is|was|are|were|has\s+been|have\s+been|had\s+been)\s+)?"
    r"(?:(?:has|have|had)\s+(?=no\b))?"
    r"(?:(?:no|not|never|denies|denied|denying|without|nil)\b|negative for\b|absence of\b)\s*",
    re.IGNORECASE,
)
_NONE = re.compile(
    r"^\s*(?:none|nil|no|n/?a|nothing|unremarkable|non-contributory|noncontributory|"
    r"no significant (?:past )?(?:medical )?history|no known \w+(?: \w+)?|nkda|nkfa)\s*\.?\s*$",
    re.IGNORECASE,
)
_SENTENCES = re.compile(r"(?<!\d)[.;](?!\d)\s*|\n+")
_COMMAS = re.compile(r"\s*,\s*(?:and\s+|or\s+)?")
_LAST_AND = re.compile(r"\s+(?:and|or|nor)\s+", re.IGNORECASE)
MAX_ITEM_WORDS = 5
_IMAGING = re.compile(
    r"x.?ray|radiograph|\bct\b|computed tomography|\bmri\b|magnetic resonance|ultraso|"
    r"sonogra|\becho|doppler|\bscan\b|angiogra|imaging|radiolog|mammogra|\bpet\b|fluoroscop|"
    r"\bcxr\b|\bkub\b",
    re.IGNORECASE,
)


def clauses(passage: Any) -> list[Clause]:
    """Atomic statements of a passage (a string, a number or a list of them).

    Sentences split at '.', ';' and newlines (not decimal points). A list splits into its
    items when every item is short: "Denies fever, chills or night sweats" gives three negated
    clauses, "Neck stiffness, vomiting, dislike of bright light" three present ones, but "and"
    alone never splits ("Swollen hands and feet", "Pupils equal and reactive" stay whole), nor
    does a qualifier ("Pain in the right lower quadrant, worse on walking" has a long item).
    A negated sentence that is not a list keeps its own words ("Never smoked").
    """
    if passage is None:
        return []
    if isinstance(passage, list | tuple):
        return [c for item in passage for c in clauses(item)]
    if isinstance(passage, dict):
        return [c for v in passage.values() for c in clauses(v)]
    out: list[Clause] = []
    for sentence in _SENTENCES.split(str(passage)):
        sentence = sentence.strip(" ,:-\t")
        if not sentence:
            continue
        m = _NEGATION.match(sentence)
        negated = bool(m and len(sentence) > m.end())
        body = sentence[m.end() :] if negated and m else sentence
        if negated:
            body = re.sub(r"^(?:any|a|an|history of|h/o|complaints? of)\s+", "", body, flags=re.I)
        items = _items(body, negated)
        if len(items) > 1:
            out.extend(Clause(i, negated) for i in items)
        elif negated:
            out.append(Clause(sentence, True))
        else:
            out.append(Clause(sentence))
    return out


def _items(body: str, negated: bool) -> list[str]:
    """The items of a list ('A, B and C'; negated: also 'A or B'), or [body] if not a list."""
    parts = [p for p in _COMMAS.split(body) if p]
    if len(parts) > 1 or negated:
        last = [p for p in _LAST_AND.split(parts[-1]) if p]
        if len(last) > 1 and not PREPOSITION_END.search(last[0]):
            parts = parts[:-1] + last
    if len(parts) > 1 and all(len(p.split()) <= MAX_ITEM_WORDS for p in parts):
        return [p.strip() for p in parts]
    return [body.strip()]


def is_none(text: Any) -> bool:
    """True for 'None', 'Nil', 'No significant past medical history', 'NKDA' and the like."""
    return bool(_NONE.match(str(text)))


_SUBJECT = re.compile(
    r"^(?:the\s+)?(?:patient|pt|he|she|they)\s+"
    r"(reports|reported|states|stated|describes|described|complains of|complained of|notes|"
    r"noted|mentions|mentioned|endorses|endorsed|admits to|admitted to|presents with|"
    r"has been|has had|has|had|is|was|\w+ed|\w+s)\b\s*",
    re.IGNORECASE,
)
_REPORTING = [
    "reports",
    "reported",
    "states",
    "stated",
    "describes",
    "described",
    "notes",
    "noted",
    "mentions",
    "mentioned",
    "endorses",
    "endorsed",
]
_FIRST_PERSON = {
    "has been": "I've been",
    "has had": "I've had",
    "has": "I have",
    "had": "I had",
    "is": "I'm",
    "was": "I was",
    "drinks": "I drink",
    "smokes": "I smoke",
    "works": "I work",
    "worked": "I worked",
    "lives": "I live",
    "lived": "I lived",
    "takes": "I take",
    "took": "I took",
    "uses": "I use",
    "used": "I used",
    "experiences": "I get",
    "experienced": "I had",
    "feels": "I feel",
    "felt": "I felt",
    "noticed": "I noticed",
}


def patient_text(statement: str, *, caregiver: bool = False) -> str:
    """A short text the patient can say for a record's statement.

    Third-person chart wording becomes first person ("She has had a cough for 3 weeks" ->
    "I've had a cough for 3 weeks"; "Patient reports chest pain" -> "Chest pain"); noun phrases
    stay as they are ("Fever for 3 days."). A caregiver speaks about the child, so the third
    person stays. The content is never changed: only the frame.
    """
    s = " ".join(statement.split()).strip(" .")
    if not s:
        return s
    if not caregiver:
        m = _SUBJECT.match(s)
        if m:
            verb = " ".join(m.group(1).lower().split())
            rest = s[m.end() :]
            if verb in _FIRST_PERSON:
                lead = _FIRST_PERSON[verb]
            elif verb in _REPORTING or " " in verb:
                lead = ""  # 'Patient reports chest pain' -> 'Chest pain'
            elif verb.endswith("ed"):
                lead = f"I {verb}"  # 'She vomited twice' -> 'I vomited twice'
            else:
                lead = f"I {verb[:-1]}"  # 'He gets headaches' -> 'I get headaches'
            s = f"{lead} {rest}".strip()
            s = re.sub(r"\b(his|her|their)\b", "my", s, flags=re.IGNORECASE)
        elif re.match(r"^(his|her)\s", s, re.IGNORECASE):
            s = re.sub(r"^(his|her)\b", "My", s, flags=re.IGNORECASE)
    s = s[:1].upper() + s[1:]
    return s if s.endswith(("?", "!")) else s + "."


def abnormal(text: str) -> bool:
    """A free-text result or finding is abnormal if it names an abnormality no negation covers
    ('no consolidation', 'soft and non-tender' and 'shifting dullness absent' are normal);
    numeric results are flagged by reference ranges instead (`results.flag_result`)."""
    from clinicgym.patients.importers.results import text_abnormal

    return text_abnormal(text)


def is_imaging(name: str) -> bool:
    """True if a test name reads like an imaging study."""
    return bool(_IMAGING.search(name.replace("_", " ")))


# ---- KB linking ---------------------------------------------------------------------------


_VITAL_ALIASES = {
    "temperature": ("temperature", "temp", "t"),
    "heart_rate": ("heart rate", "pulse", "hr", "pulse rate"),
    "resp_rate": ("respiratory rate", "rr", "respirations", "resp rate", "breathing rate"),
    "blood_pressure": ("blood pressure", "bp"),
    "spo2": (
        "oxygen saturation",
        "spo2",
        "sao2",
        "o2 sat",
        "o2 saturation",
        "sats",
        "pulse oximetry",
        "saturation",
    ),
}
_EXAM_EXTRA = {
    "heent": "ent",
    "head": "ent",
    "lymph": "general",
    "extremit": "musculoskeletal",
    "limb": "musculoskeletal",
    "spine": "musculoskeletal",
    "musculo": "musculoskeletal",
    "cardio": "cardiovascular",
    "pulmonary": "respiratory",
    "respir": "respiratory",
    "gastro": "abdominal",
    "neurolog": "neurological",
    "cranial": "neurological",
    "reflex": "neurological",
    "motor": "neurological",
    "sensory": "neurological",
    "gait": "neurological",
    "dermat": "skin",
    "integument": "skin",
    "ophthalm": "eyes",
    "visual": "eyes",
    "psychiatr": "mental_state",
    "mental": "mental_state",
    "pelvi": "genitourinary",
    "genital": "genitourinary",
    "breast": "general",
    "appearance": "general",
    "general": "general",
}


class KBLinker:
    """Maps record text to KB ids where the match is clear; built once per KB and encoder."""

    def __init__(self, kb: KnowledgeBase, encoder: SentenceEncoder | None = None) -> None:
        self.kb = kb
        self.encoder = encoder or default_encoder()
        self._history = [f for f in kb.findings.values() if f.category != "exam"]
        self._exam = [f for f in kb.findings.values() if f.category == "exam"]
        self._rows: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
        names: dict[str, str] = {}
        for t in kb.tests.values():
            for n in (t.id, t.id.replace("_", " "), t.name, *t.synonyms):
                names.setdefault(norm(n), t.id)
        self._test_names = names
        self._test_matrix: np.ndarray | None = None
        self._test_ids = sorted(kb.tests)
        self._drugs: dict[str, str] = {}
        for d in kb.drugs.values():
            for n in (d.name, *d.synonyms):
                self._drugs.setdefault(norm(n), d.id)
        self._groups = sorted(
            {d.allergy_group for d in kb.drugs.values() if d.allergy_group}, key=len, reverse=True
        )
        self._conditions: dict[str, Condition] = {}
        for c in kb.conditions.values():
            for n in (c.name, *c.synonyms):
                self._conditions.setdefault(norm(n), c)

    def _table(self, kind: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(target ids, row-start offsets, unit row embeddings) for findings of one kind."""
        if kind not in self._rows:
            pool = self._history if kind == "history" else self._exam
            rows: list[str] = []
            targets: list[str] = []
            starts: list[int] = []
            for f in pool:
                starts.append(len(rows))
                rows.extend(dict.fromkeys([f.name, *f.synonyms, f.text]))
                if f.question:
                    rows.append(f.question)
                targets.append(f.id)
            self._rows[kind] = (targets, np.array(starts), cached_embeddings(self.encoder, rows))
        return self._rows[kind]

    def findings(self, texts: list[str], kind: str) -> list[str | None]:
        """The KB finding each text clearly states (history or exam findings), or None."""
        if not texts:
            return []
        targets, starts, matrix = self._table(kind)
        sims = np.maximum.reduceat(self.encoder.encode(texts) @ matrix.T, starts, axis=1)
        out: list[str | None] = []
        for row in sims:
            order = np.argsort(-row)
            best, second = row[order[0]], row[order[1]] if len(order) > 1 else 0.0
            ok = best >= FINDING_THRESHOLD and best - second >= FINDING_MARGIN
            out.append(targets[int(order[0])] if ok else None)
        return out

    def test(self, name: str) -> str | None:
        """A KB test id for a test name: exact name, synonym or id, then a close MiniLM match."""
        n = norm(name)
        if n in self._test_names:
            return self._test_names[n]
        if not self._test_ids:
            return None
        labels = list(self._test_names)
        if self._test_matrix is None:
            self._test_matrix = cached_embeddings(self.encoder, labels)
        sims = self._test_matrix @ self.encoder.encode([name.replace("_", " ")])[0]
        j = int(sims.argmax())
        return self._test_names[labels[j]] if sims[j] >= TEST_THRESHOLD else None

    def vital(self, name: str) -> str | None:
        """'Heart_Rate' -> 'heart_rate'; 'Blood_Pressure' -> 'blood_pressure' (two KB vitals)."""
        n = norm(name)
        for vid, aliases in _VITAL_ALIASES.items():
            if n in aliases or any(len(a) > 3 and a in n for a in aliases):
                return vid
        return None

    def drug(self, text: str) -> str | None:
        """The KB drug a medication line names (whole-word name or synonym), or None."""
        t = f" {norm(text)} "
        hits = [(len(n), d) for n, d in self._drugs.items() if f" {n} " in t]
        return max(hits)[1] if hits else None

    def allergy_group(self, text: str) -> str | None:
        """The KB allergy group a line names ('penicillin', 'nsaid', ...), or None."""
        t = norm(text)
        for g in self._groups:
            if re.search(rf"\b{re.escape(norm(g))}", t):
                return g
        drug = self.drug(text)
        return self.kb.drugs[drug].allergy_group if drug else None

    def comorbidity(self, text: str) -> str | None:
        """The KB background comorbidity a past-history line names as whole words ('Type 2
        diabetes on metformin' -> 'type_2_diabetes'), or None."""
        t = f" {norm(text)} "
        for c in self.kb.background.comorbidities:
            for n in (c.id.replace("_", " "), c.name):
                if f" {norm(n)} " in t:
                    return c.id
        return None

    def condition(self, name: str, code: str = "") -> Condition | None:
        """The KB condition a diagnosis names: exact ICD-10 code, or exact name or synonym."""
        code = code.strip().upper()
        if code:
            for c in self.kb.conditions.values():
                if c.icd10.upper() == code:
                    return c
        return self._conditions.get(norm(name))

    def exam_system(self, key: str) -> str:
        """The exam system a section heading names ('Abdominal_Examination' -> 'abdominal')."""
        q = norm(key).replace("examination", "").replace("exam", "").strip()
        if q.replace(" ", "_") in EXAM_SYSTEMS:
            return q.replace(" ", "_")
        for alias, system in sorted(SYSTEM_ALIASES.items(), key=lambda kv: -len(kv[0])):
            if re.search(rf"\b{re.escape(alias)}\b", q):
                return system
        for stem, system in _EXAM_EXTRA.items():
            if stem in q:
                return system
        for system in EXAM_SYSTEMS:
            if system.split("_")[0] in q:
                return system
        return "general"


_LINKERS: dict[str, KBLinker] = {}


def linker_for(kb: KnowledgeBase) -> KBLinker:
    """One shared linker per KB version in this process."""
    hit = _LINKERS.get(kb.version)
    if hit is None:
        hit = _LINKERS[kb.version] = KBLinker(kb)
    return hit


# ---- vital signs --------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_VITAL_LABELS = {
    "temperature": "Temperature",
    "heart_rate": "Heart rate",
    "resp_rate": "Respiratory rate",
    "blood_pressure": "Blood pressure",
    "spo2": "Oxygen saturation",
}
_VITAL_PART = re.compile(
    r"^\s*([A-Za-z][A-Za-z0-9_.]*(?:\s+[A-Za-z][A-Za-z0-9_.]*)*?)\s*(?:[:=]\s*|\s+)(-?\d.*)$"
)


def parse_vitals(raw: Any) -> dict[str, str]:
    """Vital signs from a dict ({'Heart_Rate': '110 bpm'}) or a string ('HR 110, BP 120/80')."""
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items() if v not in (None, "")}
    out: dict[str, str] = {}
    for part in re.split(r"[;,\n]+", str(raw or "")):
        m = _VITAL_PART.match(part)
        if m:
            out[m.group(1).strip()] = m.group(2).strip()
    return out


def vital_facts(
    raw: Any, kb: KnowledgeBase, linker: KBLinker, age: int, source: str
) -> list[dict[str, Any]]:
    """Fact fields for the vital signs in `raw`: KB vitals with numeric values (blood pressure
    split into systolic and diastolic, temperature in degrees Celsius), others as text."""
    out: list[dict[str, Any]] = []
    band = age_band(age)
    for key, value in parse_vitals(raw).items():
        vid = linker.vital(key)
        shown = humanise(key.replace(".", " "))  # 'Blood_Pressure.Sitting': a nested reading
        label = shown if len(key) > 4 or vid is None else _VITAL_LABELS.get(vid, key)
        base = {
            "category": "vital",
            "how_revealed": "examine",
            "salience": "incidental",
            "source": f"{source}.{key}",
        }
        if vid == "blood_pressure":
            m = re.search(r"(\d{2,3})\s*/\s*(\d{2,3})", value)
            if m:
                for vid2, num in (("systolic_bp", m.group(1)), ("diastolic_bp", m.group(2))):
                    v = kb.vitals.get(vid2)
                    lo, hi = v.normal[band] if v else (float("-inf"), float("inf"))  # type: ignore[index]
                    out.append(
                        {
                            **base,
                            "concept": vid2,
                            "text": f"{label} {value}",
                            "value": float(num),
                            "unit": "mmHg",
                            "abnormal": not lo <= float(num) <= hi,
                        }
                    )
                continue
        if vid is not None and vid in kb.vitals:
            num = _vital_number(vid, value)
            v = kb.vitals[vid]
            lo, hi = v.normal[band]  # type: ignore[index]
            shown = f"{value} {v.unit}" if re.fullmatch(r"[\d.]+", value.strip()) else value
            out.append(
                {
                    **base,
                    "concept": vid,
                    "text": f"{label} {shown}",
                    "value": num,
                    "unit": v.unit if num is not None else None,
                    "abnormal": num is not None and not lo <= num <= hi,
                }
            )
            continue
        out.append({**base, "concept": f"vital.{slug(key)}", "text": f"{label} {value}"})
    return out


def _vital_number(vid: str, value: str) -> float | None:
    """The number in a vital-sign value, temperature converted to Celsius if given in F."""
    if vid == "temperature":
        c = re.search(r"(-?\d+(?:\.\d+)?)\s*°?\s*C\b", value)
        if c:
            return float(c.group(1))
        f = re.search(r"(-?\d+(?:\.\d+)?)\s*°?\s*F\b", value)
        if f:
            return round((float(f.group(1)) - 32) * 5 / 9, 1)
    m = _NUMBER.search(value)
    if m is None:
        return None
    num = float(m.group(0))
    if vid == "temperature" and num > 50:  # a bare Fahrenheit number
        return round((num - 32) * 5 / 9, 1)
    return num


# ---- assembling a case --------------------------------------------------------------------


@dataclass
class CaseBuilder:
    """Collects fact fields, numbers them, links free text to the KB, and builds the Case."""

    kb: KnowledgeBase
    linker: KBLinker
    age: int
    sex: str
    facts: list[dict[str, Any]] = field(default_factory=list)
    _text_n: int = 0
    age_detail: AgeDetail | None = None
    """An infant's age in hours, days, weeks or months, as the record gives it."""

    @property
    def caregiver(self) -> bool:
        """A young child's caregiver answers, so history stays in the third person."""
        return self.age < CHILD_AGE

    def add(self, **fields: Any) -> None:
        """One fact (fields as for `Fact`, without id)."""
        self.facts.append(fields)

    def add_statement(
        self,
        text: str,
        *,
        category: str,
        salience: str,
        source: str,
        negated: bool = False,
        link: bool = True,
        label: str = "",
    ) -> None:
        """One history statement as a fact, linked to a KB finding when the match is clear (the
        KB id becomes its concept; the record's words stay its text). A negated list item is
        said as 'No <item>.'; `label` prefixes a bare value with its heading ('Occupation:
        Teacher.')."""
        if negated and not _NEGATION.match(text):
            said = f"No {text[:1].lower() + text[1:]}".rstrip(".") + "."
        else:
            said = patient_text(text, caregiver=self.caregiver)
        if label:
            said = f"{label}: {said[:1].lower() + said[1:] if said[:2] != 'I ' else said}"
        concept = ""
        if category == "pmh" and not negated:  # comorbidities the policies know by KB id
            cid = self.linker.comorbidity(text)
            if cid is not None and all(f["concept"] != cid for f in self.facts):
                concept = cid
        self.add(
            category=category,
            concept=concept,
            text=said,
            present=not negated,
            salience=salience,
            how_revealed="ask",
            source=source,
            _link=(f"{label} {_NEGATION.sub('', text)}".strip()) if link else None,
            _kind="history",
        )

    def add_statements(
        self,
        passage: Any,
        *,
        category: str,
        salience: str,
        source: str,
        link: bool = True,
        label: str = "",
    ) -> None:
        """Each atomic statement of a history passage as a fact (see `add_statement`)."""
        for c in clauses(passage):
            self.add_statement(
                c.text,
                category=category,
                salience=salience,
                source=source,
                negated=c.negated,
                link=link,
                label=label,
            )

    def add_exam(self, passage: Any, *, system: str, source: str, label: str = "") -> None:
        """Each finding of an examination section as an exam fact of `system`. An absent
        finding ('No crackles', 'shifting dullness absent') is a fact with present=False, linked
        to the KB finding it denies; a normal statement ('Clear breath sounds') links to no KB
        finding (KB exam findings are abnormal signs); an abnormal one links where the KB
        finding means the same (`exam_text.meaning_matches`)."""
        from clinicgym.patients.importers.exam_text import finding_clauses, said_as_absent
        from clinicgym.patients.importers.record_history import is_meta
        from clinicgym.patients.importers.results import without_meta

        for c in finding_clauses(passage):
            if is_meta(f"No {c.text}" if c.negated else c.text):  # 'No details provided'
                continue
            if not c.negated:  # 'Data not provided', '..., details not specified': no finding
                c = Clause(without_meta(c.text))
                if not c.text:
                    continue
            said = said_as_absent(c) if c.negated else c.text
            body = said[:1].upper() + said[1:]
            text = f"{label}: {body}" if label else body
            bad = not c.negated and abnormal(c.text)
            self.add(
                category="exam",
                concept="",
                text=text.rstrip(".") + ".",
                present=not c.negated,
                abnormal=bad,
                salience="should_ask",
                how_revealed="examine",
                system=system,
                source=source,
                _link=c.text if c.negated or bad else None,
                _kind="exam",
            )

    def open_with_first_symptom(self) -> bool:
        """Whether the case has a chief complaint, making the first present symptom of the
        history one when it has none; False when there is nothing to open with."""
        if any(f["category"] == "chief_complaint" for f in self.facts):
            return True
        first = next((f for f in self.facts if f["category"] == "hpi" and f["present"]), None)
        if first is None:
            return False
        first["category"], first["salience"] = "chief_complaint", "must_ask"
        return True

    def _resolve_concepts(self) -> None:
        """Give every fact its concept: KB findings where linked (first use wins), else
        'text.<n>'."""
        used = {f["concept"] for f in self.facts if f.get("concept")}
        rank = {"must_ask": 0, "should_ask": 1, "incidental": 2}
        for kind in ("history", "exam"):
            todo = [f for f in self.facts if f.get("_kind") == kind and not f["concept"]]
            todo.sort(key=lambda f: rank.get(f["salience"], 3))  # must-ask facts link first
            linked = (
                self.linker.findings([f["_link"] or "" for f in todo if f["_link"]], kind)
                if todo
                else []
            )
            it = iter(linked)
            for f in todo:
                kb_id = next(it) if f["_link"] else None
                if kb_id is not None and kind == "exam" and not self._means(f["_link"], kb_id):
                    kb_id = None  # a wrong link is worse than none
                if kb_id is not None and kb_id not in used:
                    f["concept"] = kb_id
                    used.add(kb_id)
        for f in self.facts:
            if not f.get("concept"):
                f["concept"] = f"text.{self._text_n}"
                self._text_n += 1

    def _means(self, text: str, kb_id: str) -> bool:
        from clinicgym.patients.importers.exam_text import meaning_matches

        finding = self.kb.findings.get(kb_id)
        return finding is not None and meaning_matches(text, [finding.name, *finding.synonyms])

    def build(
        self,
        *,
        case_id: str,
        setting: str,
        diagnosis: Diagnosis,
        differential: list[Diagnosis],
        lineage: Lineage,
        extra: dict[str, Any],
    ) -> Case:
        """The Case: facts numbered f00.., synthetic PHI, open world, artefacts built."""
        self._resolve_concepts()
        phi = synthetic_phi(case_id, self.sex, self.age)
        facts: list[Fact] = []
        for i, f in enumerate(self.facts):
            fields = {k: v for k, v in f.items() if not k.startswith("_")}
            facts.append(Fact(id=f"f{i:02d}", **fields))
        for key in ("name", "date_of_birth", "address", "phone"):
            facts.append(
                Fact(
                    id=f"f{len(facts):02d}",
                    category="phi",
                    concept=f"phi.{key}",
                    text=getattr(phi, key),
                    source="faker",
                )
            )
        case = Case(
            id=case_id,
            age=self.age,
            age_detail=self.age_detail,
            sex=self.sex,  # type: ignore[arg-type]
            setting=setting,
            facts=facts,
            diagnosis=diagnosis,
            differential=differential,
            persona=Persona(speaker="caregiver" if self.caregiver else "patient"),
            closed_world=False,
            phi=phi,
            lineage=lineage,
            extra=extra,
        )
        case.artefacts = build_artefacts(case, self.kb)
        return case


def synthetic_phi(case_id: str, sex: str, age: int) -> PHI:
    """Faker identity seeded by the case id: the same imported case, the same made-up person."""
    seed = int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:4], "big")
    fake = Faker("en_US")
    fake.seed_instance(seed)
    names = {"female": fake.name_female, "male": fake.name_male}
    name = names.get(sex, fake.name_nonbinary)()
    year = 2025 - age
    dob = f"{year:04d}-{1 + seed % 12:02d}-{1 + seed % 28:02d}"
    return PHI(
        name=name,
        date_of_birth=dob,
        mrn=fake.bothify("MRN-########"),
        address=fake.address().replace("\n", ", "),
        phone=fake.numerify("555-###-####"),
        email=f"{name.split()[0].lower()}.{fake.bothify('????##').lower()}@example.com",
        insurance_id=fake.bothify("INS-??-######").upper(),
    )


def lineage(source: str, where: str, index: int) -> Lineage:
    """Lineage of an imported case: the format, the file and line it came from."""
    return Lineage(
        source=f"import:{source}",
        generator_version=__version__,
        index=index,
        parent_ids=[where],
    )


def diagnosis_for(name: str, linker: KBLinker, code: str = "") -> Diagnosis:
    """A KB diagnosis if the name or code is the KB's, else a named diagnosis outside the KB
    (code may be empty) that scoring matches by name, spelling and paraphrase."""
    cond = linker.condition(name, code)
    if cond is not None:
        return Diagnosis(
            code=cond.icd10, name=cond.name, synonyms=list(cond.synonyms), condition_id=cond.id
        )
    return Diagnosis(code=code.strip(), name=" ".join(name.split()))
