"""Inquiry: must-ask coverage and the profile of question types."""

from __future__ import annotations

import pytest

from clinicgym.scoring.inquiry import profile, question_types


def test_question_types_follow_what_the_reply_was_about(sampler, play):
    case = sampler.sample(0, 0)  # migraine: headache is the chief complaint, nausea present
    ep, c = play(
        case,
        [
            "Tell me more about the headache.",
            "Do you feel sick or have you vomited?",
            "Do you feel sick?",
            "What medicines do you take?",
            "What's the weather like?",
            "DIAGNOSIS: migraine",
        ],
    )
    types = question_types(ep, c, sampler.kb)
    assert types[0] == "chief_complaint"
    assert types[1] == "accompanying_symptoms"
    assert types[2] == "known_symptoms"  # nausea was affirmed one turn earlier
    assert types[3] == "history"
    p = profile(ep, c, sampler.kb)
    assert sum(v for v in p.values() if v) == pytest.approx(4 / 5)


def test_profile_is_none_without_questions(sampler, play):
    ep, c = play(sampler.sample(0, 0), ["DIAGNOSIS: migraine"])
    assert all(v is None for v in profile(ep, c, sampler.kb).values())
