"""Masking facts: the case as if the record did not hold them, for attribution probes.

A masked fact is removed from the case, and the patient answers questions about its concept
with "I don't know" (an open world for that concept only), instead of the denial a closed-world
case would give: a denial is information, a mask must not be. What masking means by kind of fact:

* told facts (history, medicines, allergies, family, social): the patient does not know;
* test results: the test is not on the chart ("not available");
* examination findings and vital signs: the examination does not report them (so an
  examination of that system reads as it would without the finding).

The chief complaint is never a player: the reason for the visit is always known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from clinicgym.patients.cases.artefacts import with_artefacts
from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.kb import KnowledgeBase
from clinicgym.patients.patient.matching import QuestionMatcher
from clinicgym.patients.patient.patient import GroundedPatient

PLAYER_SALIENCE = ("must_ask", "should_ask")
NEVER_PLAYERS = ("chief_complaint", "phi")


def default_players(case: Case) -> list[str]:
    """The facts attribution plays with by default: the case's must-ask and should-ask facts,
    not the chief complaint or identifiers (incidental normal results carry no weight)."""
    return [
        f.id
        for f in case.facts
        if f.salience in PLAYER_SALIENCE and f.category not in NEVER_PLAYERS
    ]


def mask_case(case: Case, fact_ids: Iterable[str], kb: KnowledgeBase | None = None) -> Case:
    """A copy of the case without these facts (artefacts rebuilt if they showed one)."""
    drop = set(fact_ids)
    if not drop:
        return case
    facts = [f for f in case.facts if f.id not in drop]
    persona = case.persona.model_copy(
        update={
            "volunteer": [i for i in case.persona.volunteer if i not in drop],
            "reluctant": [i for i in case.persona.reluctant if i not in drop],
        }
    )
    out = case.model_copy(update={"facts": facts, "persona": persona})
    if any(drop & set(a.fact_ids) for a in case.artefacts):
        out = with_artefacts(out, kb)
    return out


def masked_concepts(case: Case, fact_ids: Iterable[str]) -> frozenset[str]:
    """Concepts whose every fact is masked: the patient no longer knows them."""
    drop = set(fact_ids)
    kept = {f.concept for f in case.facts if f.id not in drop}
    return frozenset(f.concept for f in case.facts if f.id in drop and f.concept not in kept)


def masked_patient(case: Case, matcher: QuestionMatcher, masked: Iterable[str]) -> GroundedPatient:
    """A grounded patient that does not know the masked concepts (says "I don't know"), through
    the patient's public `unknown` hook."""
    return GroundedPatient(case, matcher, unknown=masked)


def masked_patient_factory(
    matcher: QuestionMatcher, masked: Iterable[str]
) -> Callable[[Case], GroundedPatient]:
    """A patient factory for `ConsultationEnv` that masks these concepts."""
    frozen = frozenset(masked)
    return lambda case: masked_patient(case, matcher, frozen)
