"""Masking: a masked fact is unknown to the patient, not denied; other answers are unchanged."""

from __future__ import annotations

from clinicgym.scoring.probes.masking import (
    default_players,
    mask_case,
    masked_concepts,
    masked_patient,
)


def test_players_leave_out_the_chief_complaint_identifiers_and_incidentals(sampler):
    case = sampler.sample(0, 0)
    by_id = {f.id: f for f in case.facts}
    players = default_players(case)
    assert players and all(by_id[p].salience in ("must_ask", "should_ask") for p in players)
    assert not any(by_id[p].category in ("chief_complaint", "phi") for p in players)


def test_masked_concept_is_unknown_while_others_keep_their_answers(sampler, matcher):
    case = sampler.sample(0, 0)  # closed world: unlisted findings are denied
    nausea = next(f for f in case.facts if f.concept == "nausea")
    fever = next(f for f in case.facts if f.concept == "fever")
    masked = mask_case(case, [nausea.id, fever.id], sampler.kb)
    assert {nausea.id, fever.id}.isdisjoint(f.id for f in masked.facts)
    assert len(masked.facts) == len(case.facts) - 2 and len(case.facts) > len(masked.facts)
    p = masked_patient(masked, matcher, masked_concepts(case, [nausea.id, fever.id]))
    for question, concept in (("Do you feel sick?", "nausea"), ("Any fever?", "fever")):
        reply = p.answer(question)
        assert [(a.concept, a.status) for a in reply.answers] == [(concept, "unknown")]
        assert reply.revealed == []
    reply = p.answer("Have you got a cough?")  # a pertinent negative, not masked
    assert [(a.concept, a.status) for a in reply.answers] == [("cough", "denied")]


def test_masking_a_told_list_fact_makes_the_list_unknown(sampler, matcher):
    case = sampler.sample(0, 0)
    allergy = next(f for f in case.facts if f.category == "allergy")
    masked = mask_case(case, [allergy.id])
    p = masked_patient(masked, matcher, masked_concepts(case, [allergy.id]))
    reply = p.answer("Do you have any allergies to medicines?")
    assert all(a.status == "unknown" for a in reply.answers) and reply.revealed == []


def test_unknown_hook_overrides_a_present_fact_every_time(sampler, matcher):
    """The patient's public hook, not a subclass: a concept it is told not to know is unknown
    even when the case holds it as present, and asking again is not a repeat of a told fact."""
    from clinicgym.patients.patient.patient import GroundedPatient

    case = sampler.sample(0, 0)
    nausea = next(f for f in case.facts if f.concept == "nausea" and f.present)
    plain = GroundedPatient(case, matcher)
    assert [a.status for a in plain.answer("Do you feel sick?").answers] == ["affirmed"]
    p = GroundedPatient(case, matcher, unknown={"nausea"})
    for turn in (1, 2):
        reply = p.answer("Do you feel sick?", turn)
        assert [(a.concept, a.status) for a in reply.answers] == [("nausea", "unknown")]
        assert reply.revealed == [] and not reply.repeated and nausea.id not in p.told
