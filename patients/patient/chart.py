"""The patient's chart: examination findings and test results, read from the case's facts.

`examine` and `order` are the env's tools, but what they return is ground truth about the patient,
so it lives here beside the patient. A KB-sampled case's exam and test facts are complete by
construction (every test has a result; an exam system without abnormal facts is normal), so a
normal report is grounded too.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field

from clinicgym.patients.cases.case import Case, Fact
from clinicgym.patients.knowledge.kb import EXAM_SYSTEMS, KnowledgeBase

SYSTEM_ALIASES: dict[str, str] = {
    "vitals": "vitals",
    "vital signs": "vitals",
    "observations": "vitals",
    "obs": "vitals",
    "general": "general",
    "general appearance": "general",
    "heart": "cardiovascular",
    "cardiac": "cardiovascular",
    "cvs": "cardiovascular",
    "pulse": "cardiovascular",
    "chest": "respiratory",
    "lungs": "respiratory",
    "lung": "respiratory",
    "breathing": "respiratory",
    "resp": "respiratory",
    "abdomen": "abdominal",
    "tummy": "abdominal",
    "belly": "abdominal",
    "stomach": "abdominal",
    "abdo": "abdominal",
    "neuro": "neurological",
    "nervous system": "neurological",
    "neck": "neurological",
    "skin": "skin",
    "rash": "skin",
    "ears": "ent",
    "ear": "ent",
    "throat": "ent",
    "nose": "ent",
    "mouth": "ent",
    "head and neck": "ent",
    "eyes": "eyes",
    "eye": "eyes",
    "fundoscopy": "eyes",
    "joints": "musculoskeletal",
    "msk": "musculoskeletal",
    "legs": "musculoskeletal",
    "back": "musculoskeletal",
    "mental state": "mental_state",
    "mental status": "mental_state",
    "mse": "mental_state",
    "psychiatric": "mental_state",
    "genitals": "genitourinary",
    "gu": "genitourinary",
    "pelvic": "genitourinary",
    "testes": "genitourinary",
}
GENETIC_QUERIES = ("genetic", "gene", "dna", "genome", "exome", "genotype", "pharmacogenomic")
IDENTITY_WORDS = frozenset(
    [
        "stimulation",
        "suppression",
        "challenge",
        "tolerance",
        "provocation",
        "antibody",
        "antibodies",
        "autoantibodies",
        "antigen",
        "culture",
        "cultures",
        "biopsy",
        "aspirate",
        "aspiration",
        "stain",
        "urine",
        "urinary",
        "csf",
        "fluid",
        "stool",
        "sputum",
        "saliva",
        "free",
        "ratio",
        "clearance",
        "receptor",
        "index",
        "electrophoresis",
        "smear",
        "swab",
    ]
)
"""Words that make a name another test ('ACTH stimulation test' is not 'ACTH')."""


@dataclass
class ChartResult:
    """What an examination or test returned: the report text and the facts it revealed."""

    ok: bool
    text: str
    revealed: list[str] = field(default_factory=list)
    target: str | None = None
    """The resolved system or test id."""
    answers: list[dict[str, str]] = field(default_factory=list)
    """Structured mirror of the report: {'concept', 'status'} with status affirmed/denied
    (exam findings) or abnormal/normal (tests)."""
    artefacts: list[str] = field(default_factory=list)
    """Ids of the case's artefacts (lab table, image, variant table) this result shows."""
    delay: int = 0
    """Turns until this result comes back (the env holds it until then)."""


_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=1 << 16)
def _norm(text: str) -> str:
    # cached: every reset builds a chart over the KB's test names and synonyms (hundreds)
    return _NON_ALNUM.sub(" ", text.lower()).strip()


def _loose(name: str) -> str:
    """A normalised name without the small words that do not change the test."""
    return " ".join(w for w in name.split() if w not in ("of", "the", "a", "an", "please"))


class Chart:
    """Exam and test look-ups over one case."""

    def __init__(self, case: Case, kb: KnowledgeBase) -> None:
        self.case = case
        self.kb = kb
        self._tests: dict[str, Fact] = {
            f.concept: f
            for f in case.facts
            if f.how_revealed == "order" and f.category != "genomics"
        }
        self._names: dict[str, str] = {}
        for tid in self._tests:
            t = kb.tests.get(tid)
            for name in (tid, tid.replace("_", " "), *(([t.name, *t.synonyms]) if t else ())):
                self._names.setdefault(_norm(name), tid)
        # an imported record's own test names and their synonyms (importers/record_tests.py)
        # win over the KB's looser synonyms ('FBC' is the whole count, not the white cells)
        own: dict[str, str] = {}
        named = [
            (t, n) for t, n in (case.extra.get("test_names") or {}).items() if t in self._tests
        ]
        for tid, names in named:  # each test's own name first, then the synonyms
            if names:
                own.setdefault(_norm(names[0]), tid)
        for tid, names in named:
            for name in names:
                own.setdefault(_norm(name), tid)
        self._names.update(own)

    def resolve_system(self, query: str) -> str | None:
        """An exam system id for 'chest', 'abdomen', 'vitals', 'cardiovascular', ... or None."""
        q = _norm(query).replace("examination", "").replace("exam", "").strip()
        q = q.removeprefix("the ").removeprefix("check ").strip()
        if q.replace(" ", "_") in EXAM_SYSTEMS:
            return q.replace(" ", "_")
        if q in SYSTEM_ALIASES:
            return SYSTEM_ALIASES[q]
        for alias, system in SYSTEM_ALIASES.items():
            if re.search(rf"\b{re.escape(alias)}\b", q):
                return system
        for system in EXAM_SYSTEMS:
            if system.split("_")[0] in q:
                return system
        return None

    def examine(self, query: str) -> ChartResult:
        """Examine one system, or take the vital signs."""
        system = self.resolve_system(query)
        if system is None:
            options = ", ".join(("vitals", *EXAM_SYSTEMS))
            return ChartResult(False, f"Unknown examination '{query}'. Examine one of: {options}.")
        if system == "vitals":
            return self._vitals()
        facts = [f for f in self.case.facts if f.category == "exam" and f.system == system]
        # an open-world (imported) record's absent findings are its own words ("No crackles.")
        found = [f.text for f in facts if f.present or not self.case.closed_world]
        label = system.replace("_", " ")
        if found:
            body = " ".join(found)
        elif facts or self.case.closed_world:
            body = "No abnormality found."  # complete by construction, or normal findings recorded
        else:
            body = "No findings are recorded for this examination."  # open world: not known
        answers = [
            {"concept": f.concept, "status": "affirmed" if f.present else "denied"} for f in facts
        ]
        return ChartResult(
            True, f"Examination ({label}): {body}", [f.id for f in facts], system, answers
        )

    def _vitals(self) -> ChartResult:
        vit = {f.concept: f for f in self.case.facts if f.category == "vital"}
        parts = []
        for vid, f in vit.items():
            if vid == "diastolic_bp":
                continue
            if vid == "systolic_bp" and "diastolic_bp" in vit:
                parts.append(f"Blood pressure {f.value:g}/{vit['diastolic_bp'].value:g} mmHg")
            else:
                parts.append(f.text)
        body = "; ".join(parts) if parts else "not recorded"
        answers = [
            {"concept": f.concept, "status": "abnormal" if f.abnormal else "normal"}
            for f in vit.values()
        ]
        return ChartResult(
            True, f"Observations: {body}.", [f.id for f in vit.values()], "vitals", answers
        )

    def resolve_test(self, query: str) -> str | None:
        """The test id for a name, abbreviation or synonym; None if not on this chart."""
        q = _norm(query)
        q = re.sub(r"^(order|request|check|a|an|the)\s+", "", q)
        if q in self._names:
            return self._names[q]
        loose = _loose(q)  # 'X-ray of the neck' is the 'X-ray neck' the record names
        for name, tid in self._names.items():
            if loose and _loose(name) == loose:
                return tid
        for name, tid in sorted(self._names.items(), key=lambda kv: -len(kv[0])):
            if len(name) >= 3 and re.search(rf"\b{re.escape(name)}\b", q):
                if self._other_test(q, name, tid):
                    continue  # 'ACTH stimulation test' is not plasma ACTH
                return tid
        close = difflib.get_close_matches(q, list(self._names), n=1, cutoff=0.85)
        return self._names[close[0]] if close else None

    def _other_test(self, query: str, name: str, tid: str) -> bool:
        """True if the query's words beyond `name` make it another test: a word that changes
        what is measured ('stimulation', 'urine', 'antibodies') that no name of `tid` has."""
        extra = set(query.replace(name, " ").split()) & IDENTITY_WORDS
        if not extra:
            return False
        own = {w for n, t in self._names.items() if t == tid for w in n.split()}
        return bool(extra - own)

    def order(self, query: str) -> ChartResult:
        """A test's result report from the chart; unknown tests are an error, not a guess."""
        q = _norm(query)
        if any(g in q.split() or q.startswith(g) for g in GENETIC_QUERIES):
            variants = [f for f in self.case.facts if f.category == "genomics"]
            if variants:
                body = "; ".join(f.text for f in variants)
            else:
                body = "no pathogenic or pharmacogenomic variants reported"
            ids = [f.id for f in variants]
            return ChartResult(
                True, f"Genetic testing: {body}.", ids, "genetic_testing", [], self._shown(ids)
            )
        tid = self.resolve_test(query)
        if tid is None:
            known = sorted(
                {self.kb.tests[t].name if t in self.kb.tests else t for t in self._tests}
            )
            return ChartResult(
                False,
                f"Test '{query}' is not available. Available tests: {', '.join(known)}.",
            )
        f = self._tests[tid]
        delay = 0
        if self.case.presentation is not None:  # generated cases: tests as in practice
            test, setting = self.kb.tests[tid], self.case.setting
            if setting not in test.settings:
                where = ", ".join(s.replace("_", " ") for s in test.settings)
                return ChartResult(
                    False,
                    f"{test.name[:1].upper()}{test.name[1:]} cannot be done in this setting "
                    f"({setting.replace('_', ' ')}); it is available in: {where}.",
                    target=tid,
                )
            delay = test.delay.get(setting, 0)  # type: ignore[call-overload]
        text = f.text[:1].upper() + f.text[1:]
        status = "abnormal" if f.abnormal else "normal"
        return ChartResult(
            True,
            f"Result: {text}",
            [f.id],
            tid,
            [{"concept": tid, "status": status}],
            self._shown([f.id]),
            delay,
        )

    def _shown(self, revealed: list[str]) -> list[str]:
        """The artefacts that show any of these facts."""
        ids = set(revealed)
        return [a.id for a in self.case.artefacts if ids & set(a.fact_ids)]
