"""Personas change how and when facts come out, never which facts are true."""

from __future__ import annotations

import pytest

from clinicgym.patients.cases.case import Fact, Persona
from clinicgym.patients.cases.persona import load_persona_book
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.errors import KBError
from clinicgym.patients.patient.patient import GroundedPatient


@pytest.fixture(scope="module")
def cases(small_kb):
    return CaseSampler(small_kb).sample_many(40, seed=3)


def _with(case, **persona):
    return case.model_copy(update={"persona": case.persona.model_copy(update=persona)})


def test_persona_is_seeded_and_recorded(small_kb):
    s = CaseSampler(small_kb)
    assert s.sample(8, 2).persona == s.sample(8, 2).persona
    styles = {c.persona.style for c in s.sample_many(60, seed=1)}
    assert len(styles) >= 5


def test_persona_never_changes_which_facts_are_true(cases, matcher, small_kb):
    questions = [f.question for f in small_kb.findings.values() if f.question]
    for case in cases[:10]:
        outcomes = []
        for persona in (
            Persona(style="plain"),
            Persona(style="reserved", reluctant=[f.id for f in case.facts if f.present]),
            Persona(style="anxious", biases=["minimising"], language_register="colloquial"),
            Persona(style="tangential", asides=["x", "y"], health_literacy="high"),
        ):
            p = GroundedPatient(case.model_copy(update={"persona": persona}), matcher)
            statuses = {}
            for q in questions:
                for _ in range(2):  # held-back facts come out on the second ask
                    r = p.answer(q)
                for a in r.answers:
                    statuses[a.concept] = a.status
            outcomes.append(statuses)
        assert all(o == outcomes[0] for o in outcomes[1:]), case.id


def test_held_back_fact_needs_a_second_ask(cases, matcher):
    case = next(
        c
        for c in cases
        if c.facts_by_concept().get("fever", [None])[0] is not None
        and c.facts_by_concept()["fever"][0].present
    )
    fever = case.facts_by_concept()["fever"][0]
    p = GroundedPatient(_with(case, style="reserved", reluctant=[fever.id]), matcher)
    first = p.answer("Have you had a fever?")
    assert first.answers[0].status == "withheld" and first.revealed == []
    assert not first.text.lower().startswith("no")
    second = p.answer("Have you had a fever at all?")
    assert second.answers[0].status == "affirmed" and fever.id in second.revealed


def test_volunteered_facts_come_with_the_opening(cases, matcher):
    case = next(c for c in cases if any(f.present and f.category == "hpi" for f in c.facts))
    extra = next(f for f in case.facts if f.present and f.category == "hpi")
    r = GroundedPatient(_with(case, style="anxious", volunteer=[extra.id]), matcher).opening()
    assert extra.id in r.revealed and "worried" in r.text


def test_low_literacy_patient_does_not_understand_jargon(cases, matcher):
    p = GroundedPatient(_with(cases[0], health_literacy="low"), matcher)
    r = p.answer("Any dyspnoea or photophobia?")
    assert r.intent == "jargon" and r.answers == [] and "dyspnoea" in r.text.lower()
    assert (
        GroundedPatient(_with(cases[0], health_literacy="high"), matcher)
        .answer("Any photophobia?")
        .answers
    )


def test_belief_is_a_look_alike_never_the_diagnosis(small_kb, matcher):
    s = CaseSampler(small_kb)
    beliefs = 0
    for c in s.sample_many(200, seed=9):
        if c.persona.belief and "internet_self_diagnosis" in c.persona.biases:
            beliefs += 1
            r = GroundedPatient(c, matcher).answer("What do you think is wrong?")
            assert "online" in r.text or r.guarded
            assert c.diagnosis.name.lower() not in r.text.lower()
    assert beliefs > 0


def test_adherence_is_said_with_the_medicines(cases, matcher):
    case = cases[0].model_copy(
        update={
            "facts": [f for f in cases[0].facts if f.category != "medication"]
            + [
                Fact(
                    id="m1",
                    category="medication",
                    concept="ramipril",
                    text="I take ramipril, 2.5 mg once daily.",
                )
            ]
        }
    )
    r = GroundedPatient(_with(case, adherence="poor"), matcher).answer(
        "What medicines do you take?"
    )
    assert "ramipril" in r.text and "haven't really been taking" in r.text


def test_bad_persona_file_names_the_field(tmp_path):
    bad = tmp_path / "personas.yaml"
    bad.write_text("schema_version: 1\nstyles: {plain: {weight: -1, personalities: []}}\n")
    with pytest.raises(KBError, match=r"field 'styles.plain.weight'"):
        load_persona_book(bad)
