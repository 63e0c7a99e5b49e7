"""The answer guard catches leaks, contradictions, unsupported claims and overshares, and
passes the grounded patient's own answers."""

from __future__ import annotations

import pytest

from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.patient.guard import AnswerGuard
from clinicgym.patients.patient.patient import GroundedPatient


@pytest.fixture(scope="module")
def case(small_kb):
    s = CaseSampler(small_kb, conditions=["community_acquired_pneumonia"])
    for c in s.sample_many(100, seed=2):
        by = c.facts_by_concept()
        if by["cough"][0].present and by["fever"][0].present and 18 <= c.age <= 70:
            return c
    raise AssertionError


@pytest.fixture(scope="module")
def guard(case, matcher, small_kb):
    return AnswerGuard(case, matcher, small_kb)


def _kinds(catches):
    return sorted({c.kind for c in catches})


def test_template_answers_pass(case, matcher, guard, small_kb):
    p = GroundedPatient(case, matcher)
    told: set[str] = set()
    for f in small_kb.findings.values():
        if not f.question:
            continue
        r = p.answer(f.question)
        allowed = {a.concept for a in r.answers}
        assert guard.check(r.text, grounded_text=r.text, allowed=allowed, told=told) == [], r.text
        told |= allowed


def test_leak_is_caught(guard):
    assert _kinds(guard.check("Honestly I think it's pneumonia.", allowed={"cough"})) == ["leak"]


def test_denying_a_present_symptom_is_a_contradiction(guard):
    assert "contradiction" in _kinds(
        guard.check("No, I haven't had a fever at all.", allowed={"fever"})
    )


def test_claiming_an_absent_symptom_is_a_contradiction(guard):
    found = guard.check(
        "I've had a terrible sudden headache, the worst of my life.", allowed={"cough"}
    )
    assert "contradiction" in _kinds(found)


def test_invented_duration_is_unsupported(guard, case):
    text = case.facts_by_concept()["cough"][0].text
    found = guard.check(
        f"{text} It's been going on for three weeks.", grounded_text=text, allowed={"cough"}
    )
    assert _kinds(found) == ["unsupported"]


def test_open_world_claims_outside_the_record_are_unsupported(case, matcher, small_kb):
    open_case = case.model_copy(update={"closed_world": False})
    g = AnswerGuard(open_case, matcher, small_kb)
    assert "unsupported" in _kinds(g.check("It burns when I pee.", allowed={"cough"}))


def test_true_fact_not_yet_told_is_an_overshare(guard, case):
    fever = case.facts_by_concept()["fever"][0].text
    assert _kinds(guard.check(fever, allowed={"cough"})) == ["overshare"]
    assert guard.check(fever, allowed={"cough"}, told={"fever"}) == []


def test_wording_that_drops_the_answer_is_an_omission(guard, case):
    cough = case.facts_by_concept()["cough"][0].text
    assert guard.check(cough, allowed={"cough"}, expected={"cough": "affirmed"}) == []
    found = guard.check(
        "Things are fine, doctor.", allowed={"cough"}, expected={"cough": "affirmed"}
    )
    assert _kinds(found) == ["omission"]
    assert _kinds(guard.check("Yes, I have.", allowed={"rash"}, expected={"rash": "denied"})) == [
        "omission"
    ]
    assert guard.check("No, never.", allowed={"rash"}, expected={"rash": "denied"}) == []


def test_role_breaks_and_flipped_record_facts_are_caught(guard, case):
    assert _kinds(guard.check("You're a patient, and I'm a doctor.", allowed={"cough"})) == ["role"]
    cough = case.facts_by_concept()["cough"][0].text
    negated = (
        "I'm not " + cough[0].lower() + cough[1:]
        if not cough.startswith("I")
        else cough.replace("I've", "I haven't", 1).replace("I'm", "I'm not", 1)
    )
    assert "contradiction" in _kinds(
        guard.check(negated, allowed={"cough"}, expected={"cough": "affirmed"})
    )
    assert _kinds(
        guard.check("You're not sure what to do.", allowed={"rash"}, expected={"rash": "denied"})
    ) == ["omission"]
    assert guard.check("No.", allowed={"rash"}, expected={"rash": "denied"}) == []
