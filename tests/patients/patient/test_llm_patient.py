"""The LLM-worded patient: good wordings pass, bad ones are caught and replaced, every catch is
counted, and recorded wordings replay exactly (or fail loudly)."""

from __future__ import annotations

import asyncio

import pytest

from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.errors import PatientReplayError
from clinicgym.patients.patient.guard import AnswerGuard
from clinicgym.patients.patient.llm_patient import LLMWordedPatient
from clinicgym.patients.patient.patient import GroundedPatient
from clinicgym.patients.patient.replay import ReplayCache


@pytest.fixture(scope="module")
def case(small_kb):
    s = CaseSampler(small_kb, conditions=["community_acquired_pneumonia"])
    return next(
        c
        for c in s.sample_many(100, seed=4)
        if c.facts_by_concept()["cough"][0].present and c.age >= 18
    )


class Script:
    """A chat callable that answers from a list, and records what it was asked."""

    def __init__(self, *outputs):
        self.outputs = list(outputs)
        self.calls = []

    async def __call__(self, messages):
        self.calls.append(messages)
        return self.outputs.pop(0) if len(self.outputs) > 1 else self.outputs[0]


def _patient(case, matcher, kb, chat, cache=None):
    return LLMWordedPatient(
        GroundedPatient(case, matcher),
        chat,
        AnswerGuard(case, matcher, kb),
        cache=cache,
        model_id="script",
    )


def test_faithful_wording_is_used(case, matcher, small_kb):
    chat = Script("Yeah, I keep coughing, it won't stop.")
    r = asyncio.run(_patient(case, matcher, small_kb, chat).aanswer("Do you have a cough?"))
    assert r.text == "Yeah, I keep coughing, it won't stop."
    assert r.guard == [] and not r.guarded and r.grounded_text
    assert "Never name a disease" in chat.calls[0][0]["content"]


def test_leaking_wording_is_caught_twice_then_replaced(case, matcher, small_kb):
    chat = Script("I cough a lot, it's pneumonia I reckon.")
    r = asyncio.run(_patient(case, matcher, small_kb, chat).aanswer("Do you have a cough?"))
    assert r.guarded and r.text == r.grounded_text
    assert [c["kind"] for c in r.guard] == ["leak", "leak"]
    assert "pneumonia" not in r.text.lower()
    assert "broke the rules" in chat.calls[1][-1]["content"]


def test_rewrite_that_fixes_the_problem_is_used(case, matcher, small_kb):
    chat = Script("I've coughed for three weeks solid.", "I keep coughing.")
    r = asyncio.run(_patient(case, matcher, small_kb, chat).aanswer("Do you have a cough?"))
    assert r.text == "I keep coughing." and not r.guarded
    assert [c["kind"] for c in r.guard] == ["unsupported"]


def test_identity_answers_are_not_reworded(case, matcher, small_kb):
    chat = Script("something else")
    r = asyncio.run(_patient(case, matcher, small_kb, chat).aanswer("What is your name?"))
    assert case.phi.name in r.text and chat.calls == []


def test_sync_answer_works_outside_an_event_loop(case, matcher, small_kb):
    r = _patient(case, matcher, small_kb, Script("I keep coughing.")).answer("Do you have a cough?")
    assert r.text == "I keep coughing."


def test_record_then_replay_is_identical_and_replay_misses_fail_loudly(
    case, matcher, small_kb, tmp_path
):
    db = tmp_path / "cache.sqlite"
    questions = ["Do you have a cough?", "Have you had a fever?", "Any shortness of breath?"]
    rec = ReplayCache(db, "record")
    p1 = _patient(
        case,
        matcher,
        small_kb,
        Script("I keep coughing.", "Yes, hot and shivery.", "Yes, I get puffed."),
        rec,
    )
    first = [asyncio.run(p1.aanswer(q, i + 1)).text for i, q in enumerate(questions)]
    rec.close()
    replay = ReplayCache(db, "replay")
    chat = Script("must not be called")
    p2 = _patient(case, matcher, small_kb, chat, replay)
    second = [asyncio.run(p2.aanswer(q, i + 1)).text for i, q in enumerate(questions)]
    assert first == second and chat.calls == [] and replay.hits >= 3
    with pytest.raises(PatientReplayError, match="no output for"):
        asyncio.run(p2.aanswer("Any chest pain when you breathe in?", 9))
    with pytest.raises(PatientReplayError, match="record one first"):
        ReplayCache(tmp_path / "missing.sqlite", "replay")
