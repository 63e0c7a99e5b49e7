"""Grounding of the clinician's claims: statements about the patient that the record does not
support.

A claim is a declarative sentence of the clinician's (a question, a turn's text ending in '?',
asks instead of claims) that refers to the patient ('you', 'your', 'the patient', 'he', 'she')
and names a KB finding, a drug the patient would take, or an allergy group, e.g. "Given your
fever and the cough, ..." or "You are not allergic to penicillin.". A negation word within the
four words before the name ('no', 'not', "n't", 'without', 'denies', 'never') makes it a claim of
absence. A claim is supported when the case holds it: a present fact for a claim of presence; a
pertinent negative, or (closed-world cases) no fact at all, for a claim of absence. A drug the
clinician prescribed earlier supports "your <drug>" too.

Lexical, so it finds claims that use the KB's words (names and synonyms), not paraphrases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clinicgym.envs.action import Ask, Disclose, End, Prescribe
from clinicgym.envs.episode import Episode
from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.kb import KnowledgeBase

_SENTENCES = re.compile(r"(?<=[.!?;])\s+|\n+")
_PATIENT = re.compile(
    r"\b(you|your|you'?re|you'?ve|yourself|the patient|patient'?s|he|she|his|her|him)\b",
    re.IGNORECASE,
)
_QUESTION_START = re.compile(
    r"^\s*(do|does|did|are|is|was|were|have|has|had|can|could|would|will|should|any|when|where|"
    r"what|which|who|how|why|tell me|please tell|may i|let me ask)\b",
    re.IGNORECASE,
)
_NEGATION = re.compile(
    r"n't\b|\b(no|not|without|denies|denied|never|negative for|free of)\b", re.IGNORECASE
)
NEGATION_WINDOW = 4
"""Words before a name in which a negation makes the claim one of absence."""


@dataclass(frozen=True)
class Claim:
    """One statement about the patient found in the clinician's words."""

    turn: int
    concept: str
    """A KB finding id, a drug id, or 'allergy.<group>'."""
    present: bool
    supported: bool
    sentence: str


@dataclass(frozen=True)
class _Lexicon:
    pattern: re.Pattern[str] | None
    concepts: dict[str, str]


_LEXICONS: dict[str, _Lexicon] = {}


def _lexicon(kb: KnowledgeBase) -> _Lexicon:
    """Names -> concepts and one regex over them, built once per KB version."""
    if kb.version in _LEXICONS:
        return _LEXICONS[kb.version]
    concepts: dict[str, str] = {}
    for f in kb.findings.values():
        for name in (f.name, *f.synonyms):
            if len(name) >= 4:
                concepts.setdefault(name.lower(), f.id)
    for d in kb.drugs.values():
        for name in (d.name, *d.synonyms):
            if len(name) >= 4:
                concepts.setdefault(name.lower(), d.id)
    for a in kb.background.allergies:
        concepts.setdefault(f"{a.group} allergy", f"allergy.{a.group}")
        concepts.setdefault(f"allergic to {a.group}", f"allergy.{a.group}")
    names = sorted(concepts, key=len, reverse=True)
    pattern = (
        re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b", re.IGNORECASE)
        if names
        else None
    )
    _LEXICONS[kb.version] = _Lexicon(pattern, concepts)
    return _LEXICONS[kb.version]


def _statements(episode: Episode) -> list[tuple[int, str]]:
    out = []
    for e in episode.events:
        if e.actor != "clinician" or e.action is None:
            continue
        a = e.action
        text = (
            a.question
            if isinstance(a, Ask)
            else a.text
            if isinstance(a, Disclose)
            else a.note or ""
            if isinstance(a, End)
            else ""
        )
        for s in _SENTENCES.split(text):
            s = s.strip()
            if s and not s.endswith("?") and not _QUESTION_START.match(s):
                out.append((e.turn, s))
    return out


def _supported(concept: str, present: bool, case: Case, prescribed: set[str]) -> bool:
    facts = [f for f in case.facts if f.concept == concept]
    if present:
        return any(f.present for f in facts) or concept in prescribed
    if facts:
        return any(not f.present for f in facts)
    return case.closed_world


def claims(episode: Episode, case: Case, kb: KnowledgeBase) -> list[Claim]:
    """Every claim about the patient in the clinician's declarative sentences."""
    lex = _lexicon(kb)
    if lex.pattern is None:
        return []
    prescribed: set[str] = set()
    rx_turns = {
        e.turn: e.action.drug
        for e in episode.events
        if e.actor == "clinician" and isinstance(e.action, Prescribe)
    }
    out = []
    for turn, sentence in _statements(episode):
        prescribed |= {
            lex.concepts.get(d.lower(), d.lower()) for t, d in rx_turns.items() if t < turn
        }
        if not _PATIENT.search(sentence):
            continue
        for m in lex.pattern.finditer(sentence):
            concept = lex.concepts[m.group(0).lower()]
            before = sentence[: m.start()].split()[-NEGATION_WINDOW:]
            present = not _NEGATION.search(" ".join(before))
            out.append(
                Claim(
                    turn,
                    concept,
                    present,
                    _supported(concept, present, case, prescribed),
                    sentence[:300],
                )
            )
    return out
