"""Re-deriving an episode from its transcript: actions re-parsed from the model's reply, the
outcome, turns and ending rebuilt as the env builds them, every stored difference named."""

from __future__ import annotations

from typing import Any

from clinicgym.envs.action import (
    Action,
    Ask,
    Diagnose,
    End,
    Prescribe,
    RankedDiagnosis,
    Refer,
)
from clinicgym.envs.episode import Episode, Event, Outcome, TerminationReason
from clinicgym.runs.rederive import rederive


def turn(n: int, action: Action | None, reply: Any = None, error: str | None = None) -> Event:
    """A clinician event as the env records it; `reply`: the model's own output (LLM agents)."""
    meta: dict[str, Any] = {}
    if isinstance(reply, str):
        meta["reply"] = {"text": reply, "tool_calls": []}
    elif isinstance(reply, dict):
        meta["reply"] = {"text": "", "tool_calls": [reply]}
    text = action.render() if action is not None else "???"
    return Event(turn=n, actor="clinician", text=text, action=action, error=error, meta=meta)


def episode(events: list[Event], **kw: Any) -> Episode:
    clinician = [e for e in events if e.actor == "clinician"]
    fields: dict[str, Any] = {
        "episode_id": "llm|c1|r0",
        "case_id": "c1",
        "agent_id": "llm",
        "seed": 1,
        "termination": TerminationReason.DIAGNOSED,
        "turns": len(clinician),
        "events": events,
        **kw,
    }
    return Episode(**fields)


def dx(*names: str) -> Diagnose:
    return Diagnose(diagnoses=[RankedDiagnosis(name=n) for n in names])


def test_an_honest_transcript_rederives_without_a_word():
    events = [
        turn(1, Ask(question="Any fever?"), "Any fever?"),
        turn(2, Prescribe(drug="paracetamol", dose="1 g"), "PRESCRIBE: paracetamol, 1 g"),
        turn(3, Refer(to="emergency department", urgency="emergency")),
        turn(4, dx("Migraine", "Tension headache"), "DIAGNOSIS: Migraine; Tension headache"),
    ]
    outcome = Outcome(
        diagnoses=dx("Migraine", "Tension headache").diagnoses,
        prescriptions=[{"drug": "paracetamol", "dose": "1 g", "turn": 2}],
        referrals=[{"to": "emergency department", "urgency": "emergency", "turn": 3}],
    )
    got = rederive(episode(events, outcome=outcome), max_turns=8)
    assert got.problems == []
    assert got.episode.outcome == outcome and got.episode.turns == 4


def test_a_tool_call_reply_is_reparsed():
    call = {"id": "c1", "name": "diagnose", "arguments": {"diagnoses": [{"name": "Migraine"}]}}
    ep = episode(
        [turn(1, dx("Migraine"), call)], outcome=Outcome(diagnoses=dx("Migraine").diagnoses)
    )
    assert rederive(ep, max_turns=8).problems == []
    other = {**call, "arguments": {"diagnoses": [{"name": "Stroke"}]}}
    ep = episode(
        [turn(1, dx("Migraine"), other)], outcome=Outcome(diagnoses=dx("Migraine").diagnoses)
    )
    parsed, outcome = rederive(ep, max_turns=8).problems
    assert "turn 1: the model's reply parses to 'DIAGNOSIS: Stroke'" in parsed
    assert "the transcript records 'DIAGNOSIS: Migraine'" in parsed
    assert "the stored outcome ranks [Migraine], its DIAGNOSIS at turn 1 ranks [Stroke]" in outcome


def test_an_outcome_that_is_not_the_transcripts_is_named():
    events = [turn(1, dx("Tension headache", "Sinusitis", "Migraine"))]
    promoted = Outcome(diagnoses=dx("Migraine", "Tension headache", "Sinusitis").diagnoses)
    got = rederive(episode(events, outcome=promoted), max_turns=8)
    assert got.problems == [
        "episode llm|c1|r0: the stored outcome ranks [Migraine; Tension headache; Sinusitis], "
        "its DIAGNOSIS at turn 1 ranks [Tension headache; Sinusitis; Migraine]"
    ]
    assert [d.name for d in got.episode.outcome.diagnoses][2] == "Migraine"  # what is scored


def test_a_dropped_prescription_is_named():
    events = [turn(1, Prescribe(drug="warfarin")), turn(2, End())]
    got = rederive(episode(events, termination=TerminationReason.ENDED), max_turns=8)
    assert got.problems == [
        "episode llm|c1|r0: the stored outcome holds 0 prescriptions, the transcript's "
        "PRESCRIBE actions give 1"
    ]


def test_turns_and_endings_follow_the_transcript_and_the_suites_budget():
    asks = [turn(i, Ask(question=f"q{i}")) for i in range(1, 4)]
    got = rederive(episode(asks, termination=TerminationReason.DIAGNOSED), max_turns=3)
    assert got.problems == [
        "episode llm|c1|r0: it is stored as ended by diagnosed; its transcript ends by "
        "turn_budget at turn 3"
    ]
    got = rederive(episode(asks, termination=TerminationReason.TURN_BUDGET), max_turns=2)
    assert "it took 3 clinician turns; the suite allows 2" in got.problems[0]
    got = rederive(episode(asks[:2], termination=TerminationReason.TURN_BUDGET), max_turns=3)
    assert "its transcript stops at turn 2 of 3 without a DIAGNOSIS" in got.problems[0]
    late = [turn(1, End()), turn(2, Ask(question="one more"))]
    got = rederive(episode(late, termination=TerminationReason.ENDED, turns=2), max_turns=8)
    assert "the transcript goes on after the consultation ended at turn 1" in got.problems[0]


def test_a_finished_consultation_stored_as_an_infrastructure_error_is_named():
    events = [turn(1, dx("Migraine"))]
    ep = episode(
        events,
        status="error",
        termination=TerminationReason.BACKEND_ERROR,
        outcome=Outcome(diagnoses=dx("Migraine").diagnoses),
    )
    (problem,) = rederive(ep, max_turns=8).problems
    assert "stored as an infrastructure error (backend_error)" in problem
    assert "a finished episode left out of the metrics" in problem
    unfinished = episode(
        [turn(1, Ask(question="q"))], status="error", termination=TerminationReason.BACKEND_ERROR
    )
    assert rederive(unfinished, max_turns=8).problems == []


def test_error_turns_and_unreadable_replies():
    err = turn(1, None, "{not json", error="malformed JSON")
    ep = episode(
        [err, turn(2, dx("Migraine"))], outcome=Outcome(diagnoses=dx("Migraine").diagnoses)
    )
    assert rederive(ep, max_turns=8).problems == []
    hidden_error = turn(
        1, Ask(question="{not json"), "{not json"
    )  # an error recorded as a question
    ep = episode([hidden_error, turn(2, End())], termination=TerminationReason.ENDED)
    (problem,) = rederive(ep, max_turns=8).problems
    assert "turn 1: the model's reply parses to an error" in problem
    odd = turn(1, End())
    odd.meta["reply"] = ["not", "an", "object"]
    ep = episode([odd], termination=TerminationReason.ENDED)
    assert "turn 1: meta.reply is not an object" in rederive(ep, max_turns=8).problems[0]
