"""History taking: coverage of the must-ask facts and the profile of what the clinician asked.

Each question is typed by what the patient's reply was about (the structured mirror of the
reply, `Event.result`), first match wins:

* `chief_complaint`: the reason for the visit;
* `known_symptoms`: a symptom the clinician already knew of (volunteered or told earlier);
* `accompanying_symptoms`: any other symptom (history of the present illness or review of
  systems), present or not: screening for what goes with the complaint;
* `history`: past medical history, medicines, allergies, family and social history;
* anything else (not understood, identity, small talk) is in none of the four.

The profile is each type's share of the clinician's questions.
"""

from __future__ import annotations

from clinicgym.envs.action import Ask
from clinicgym.envs.episode import Episode
from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.kb import KnowledgeBase

INQUIRY_TYPES = ("chief_complaint", "known_symptoms", "accompanying_symptoms", "history")
_SYMPTOM = ("hpi", "ros")
_HISTORY = ("pmh", "medication", "allergy", "family", "social")
_HISTORY_INTENTS = ("medications", "allergies", "pmh", "family", "social")


def coverage(episode: Episode, case: Case) -> float | None:
    """Share of the must-ask facts elicited after the opening; None if the opening gave all."""
    opening = {fid for e in episode.events if e.turn == 0 for fid in e.revealed}
    elicited = {fid for e in episode.events if e.turn > 0 for fid in e.revealed}
    must = {f.id for f in case.facts if f.salience == "must_ask"} - opening
    return len(must & elicited) / len(must) if must else None


def _category(concept: str, facts: dict[str, str], kb: KnowledgeBase) -> str | None:
    """The category of the case's first fact about `concept` (`facts`: `_first_categories`),
    else the KB's, else its prefix's."""
    if concept in facts:
        return facts[concept]
    finding = kb.findings.get(concept)
    if finding is not None:
        return finding.category
    if concept.startswith(("allergy.", "medication.", "pmh.")):
        return concept.split(".")[0]
    return None


def _first_categories(case: Case) -> dict[str, str]:
    """Concept -> the category of the case's first fact about it: one pass over the facts
    instead of one per answered concept."""
    out: dict[str, str] = {}
    for f in case.facts:
        out.setdefault(f.concept, f.category)
    return out


def question_types(episode: Episode, case: Case, kb: KnowledgeBase) -> list[str | None]:
    """The type of each clinician question, in order (None: none of the four)."""
    cc = {f.concept for f in case.facts if f.category == "chief_complaint"}
    known: set[str] = set()
    replies = {e.turn: e for e in episode.events if e.actor == "patient"}
    for e in episode.events:
        if e.turn == 0 and e.actor == "patient":
            known |= {str(a.get("concept")) for a in e.result.get("answers", [])}
    out: list[str | None] = []
    facts = _first_categories(case)
    for e in episode.events:
        if e.actor != "clinician" or not isinstance(e.action, Ask):
            continue
        reply = replies.get(e.turn)
        kind: str | None = None
        if reply is not None:
            concepts = [str(a.get("concept")) for a in reply.result.get("answers", [])]
            cats = [_category(c, facts, kb) for c in concepts]
            if any(c in cc for c in concepts):
                kind = "chief_complaint"
            elif any(c in known and cat in _SYMPTOM for c, cat in zip(concepts, cats, strict=True)):
                kind = "known_symptoms"
            elif any(cat in _SYMPTOM for cat in cats):
                kind = "accompanying_symptoms"
            elif reply.result.get("intent") in _HISTORY_INTENTS or any(
                cat in _HISTORY for cat in cats
            ):
                kind = "history"
            known |= {
                str(a.get("concept"))
                for a in reply.result.get("answers", [])
                if a.get("status") == "affirmed"
            }
        out.append(kind)
    return out


def profile(episode: Episode, case: Case, kb: KnowledgeBase) -> dict[str, float | None]:
    """Each inquiry type's share of the clinician's questions (None when it asked nothing)."""
    types = question_types(episode, case, kb)
    if not types:
        return dict.fromkeys(INQUIRY_TYPES)
    return {t: sum(x == t for x in types) / len(types) for t in INQUIRY_TYPES}
