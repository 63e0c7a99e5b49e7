"""MatchSpec: filters all hold, then any content test; excludes veto; examples use MiniLM."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from clinicgym.envs.action import Ask, Prescribe, Refer
from clinicgym.envs.episode import Event
from clinicgym.policies.match import MatchSpec


def _ev(actor: str = "patient", text: str = "", action=None, **result) -> Event:
    return Event(turn=1, actor=actor, text=text, action=action, result=result)


def test_filters_and_content() -> None:
    spec = MatchSpec(events=["patient"], result={"request": "erasure"}, patterns=[r"\bdelete\b"])
    assert (
        spec.matches(_ev(text="Please delete my data.", request="erasure"))
        == "Please delete my data."
    )
    assert spec.matches(_ev(text="Please delete my data.")) is None  # result filter
    assert spec.matches(_ev(text="Keep it.", request="erasure")) is None  # content
    assert (
        spec.matches(_ev("clinician", "delete", Ask(question="delete"), request="erasure")) is None
    )


def test_concepts_read_the_structured_mirror() -> None:
    spec = MatchSpec(events=["patient"], concepts=["suicidal_ideation"])
    yes = _ev(text="...", answers=[{"concept": "suicidal_ideation", "status": "affirmed"}])
    no = _ev(text="...", answers=[{"concept": "suicidal_ideation", "status": "denied"}])
    assert spec.matches(yes) is not None and spec.matches(no) is None


def test_action_filters_and_quote_is_the_sentence() -> None:
    spec = MatchSpec(events=["refer"], action={"urgency": ["urgent", "emergency"]})
    assert spec.matches(_ev("clinician", "", Refer(to="ED", urgency="emergency"))) == "ED"
    assert spec.matches(_ev("clinician", "", Refer(to="GP", urgency="routine"))) is None
    words = MatchSpec(events=["ask"], patterns=["guarantee"], exclude=[r"can't guarantee"])
    ask = Ask(question="Rest well. I guarantee you will be fine. Call if worse.")
    assert words.matches(_ev("clinician", "", ask)) == "I guarantee you will be fine."
    assert words.matches(_ev("clinician", "", Ask(question="I can't guarantee it."))) is None


def test_action_fields_are_validated_against_the_watched_tools() -> None:
    with pytest.raises(ValidationError, match="action field 'urgency' does not exist on prescribe"):
        MatchSpec(events=["prescribe"], action={"urgency": "emergency"})
    with pytest.raises(
        ValidationError, match="need every event in 'events' to be a clinician action"
    ):
        MatchSpec(events=["patient"], action={"to": "ED"})
    with pytest.raises(ValidationError, match="unknown event 'ask_question'"):
        MatchSpec(events=["ask_question"])
    MatchSpec(events=["prescribe"], action={"drug": "morphine"}).matches(
        _ev("clinician", "", Prescribe(drug="Morphine"))
    )


def test_examples_use_the_embedder() -> None:
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[1.0, 0.0] if "AI" in t else [0.0, 1.0] for t in texts])

    spec = MatchSpec(events=["ask"], examples=["I am an AI."], threshold=0.9)
    hit = _ev("clinician", "", Ask(question="Just so   you know, this is an AI system."))
    miss = _ev("clinician", "", Ask(question="Any fever?"))
    assert spec.matches(hit, embed) is not None
    assert spec.matches(miss, embed) is None
    assert spec.matches(miss) is None  # no embedder: examples are not tried
    # words are normalised as the patient's matcher does, so its embeddings are cache hits
    assert calls == [
        ["Just so you know, this is an AI system."],
        ["I am an AI."],
        ["Any fever?"],
        ["I am an AI."],
    ]
