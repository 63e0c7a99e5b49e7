"""Re-deriving an episode from its transcript: what verification believes instead of the stored
fields.

A stored episode carries fields that can be edited without touching the transcript: `outcome`,
`turns` and `termination` (and `violations`, which `runs/leaderboard/rescore.py` re-derives by
replaying the monitors). `rederive` rebuilds the first three from the clinician's events the way
`ConsultationEnv` builds them, and names every difference. Each clinician action is re-parsed
from the model's own reply where the agent recorded it (the LLM clinician keeps it in the
event's `meta["reply"]`); for agents that hand the env a parsed action (the baselines) the
stored action must be the one its transcript text renders.

This proves that the stored numbers follow from the transcript. It cannot prove that the
transcript is what a model said: a bundle is not signed (docs/runs.md, "Limits").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from clinicgym.envs.action import (
    Action,
    ActionError,
    Diagnose,
    Disclose,
    End,
    Prescribe,
    Refer,
    parse_action,
)
from clinicgym.envs.episode import Episode, Event, Outcome, TerminationReason

MAX_LISTED = 5
"""Differences quoted per episode; the rest are counted."""
INFRASTRUCTURE_ENDINGS = frozenset({TerminationReason.BACKEND_ERROR, TerminationReason.AGENT_ERROR})
"""Errored episodes the runner ends before the env steps again (`AGENT_ERROR`: older stores)."""


@dataclass
class Rederived:
    """An episode with `outcome`, `turns` and `termination` taken from its transcript, and
    where the stored episode differs (`problems`, each naming the episode and turn)."""

    episode: Episode
    problems: list[str] = field(default_factory=list)


def model_reply(event: Event) -> tuple[Any, str | None]:
    """(what the model sent the env, why it cannot be read) for a clinician event: the tool call
    as an OpenAI `tool_calls` entry or the reply text, from `meta["reply"]`; (None, None) when
    the agent recorded no reply (baselines)."""
    reply = event.meta.get("reply")
    if reply is None:
        return None, None
    if not isinstance(reply, dict):
        return None, "meta.reply is not an object"
    calls = reply.get("tool_calls") or []
    if calls:
        call = calls[0] if isinstance(calls, list) else None
        if not (
            isinstance(call, dict)
            and isinstance(call.get("name"), str)
            and isinstance(call.get("arguments", {}), dict)
        ):
            return None, "meta.reply.tool_calls[0] is not a tool call"
        return {
            "id": str(call.get("id") or ""),
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call.get("arguments", {}))},
        }, None
    text = reply.get("text", "")
    if not isinstance(text, str):
        return None, "meta.reply.text is not text"
    return text, None


def _show(action: Action | ActionError | None) -> str:
    if action is None:
        return "no action"
    if isinstance(action, ActionError):
        return f"an error ({action.message})"
    return repr(action.render())


def clinician_actions(ep: Episode) -> tuple[list[tuple[int, Action | None]], list[str]]:
    """The clinician's turns in order as (turn, action or None for an unusable output), re-parsed
    from the model's reply where recorded; and every way the stored events disagree."""
    out: list[tuple[int, Action | None]] = []
    problems: list[str] = []
    turns = [e.turn for e in ep.events if e.actor == "clinician"]
    if turns != list(range(1, len(turns) + 1)):
        problems.append(f"its clinician turns are numbered {turns[:12]}, not 1, 2, 3, ...")
    for ev in ep.events:
        if ev.actor != "clinician":
            continue
        stored: Action | ActionError | None = ev.action
        if stored is None and ev.error is not None:
            stored = ActionError(message=ev.error, raw="")
        if stored is None:
            problems.append(f"turn {ev.turn}: the clinician event holds neither action nor error")
        raw, unreadable = model_reply(ev)
        if unreadable:
            problems.append(f"turn {ev.turn}: {unreadable}")
        if raw is not None:
            parsed = parse_action(raw)
            same = (
                isinstance(parsed, ActionError) and isinstance(stored, ActionError)
            ) or parsed == stored
            if not same:
                problems.append(
                    f"turn {ev.turn}: the model's reply parses to {_show(parsed)}, the "
                    f"transcript records {_show(stored)}"
                )
            action = None if isinstance(parsed, ActionError) else parsed
        else:
            action = ev.action
            if action is not None and ev.text != action.render():
                problems.append(
                    f"turn {ev.turn}: the transcript says {ev.text[:80]!r}, but its action "
                    f"renders as {action.render()[:80]!r}"
                )
        out.append((ev.turn, action))
    return out, problems


def _ranked(diagnoses: list[Any]) -> str:
    return "[" + "; ".join(d.name for d in diagnoses) + "]"


def _outcome_problems(stored: Outcome, derived: Outcome, last_dx: int | None) -> list[str]:
    out = []
    if stored.diagnoses != derived.diagnoses:
        where = f"its DIAGNOSIS at turn {last_dx}" if last_dx else "no DIAGNOSIS in the transcript"
        out.append(
            f"the stored outcome ranks {_ranked(stored.diagnoses)}, {where} ranks "
            f"{_ranked(derived.diagnoses)}"
        )
    for name, what in (
        ("prescriptions", "PRESCRIBE"),
        ("referrals", "REFER"),
        ("disclosures", "DISCLOSE"),
    ):
        have, want = getattr(stored, name), getattr(derived, name)
        if have != want:
            out.append(
                f"the stored outcome holds {len(have)} {name}, the transcript's {what} actions "
                f"give {len(want)}" + (" that differ" if len(have) == len(want) else "")
            )
    return out


@dataclass
class _Replay:
    """What the clinician's actions add up to, built as `ConsultationEnv` builds it."""

    outcome: Outcome = field(default_factory=Outcome)
    reason: TerminationReason | None = None
    ended_at: int | None = None
    last_dx: int | None = None
    """The turn of the last DIAGNOSIS."""


def _replay(
    actions: list[tuple[int, Action | None]], *, end_on_diagnose: bool
) -> tuple[_Replay, list[str]]:
    """The outcome and ending the actions give; a problem if the transcript runs on past its end."""
    r = _Replay()
    problems = []
    for turn, action in actions:
        if r.ended_at is not None:
            problems.append(
                f"the transcript goes on after the consultation ended at turn {r.ended_at}"
            )
            break
        if isinstance(action, Diagnose):
            r.outcome.diagnoses = list(action.diagnoses)
            r.last_dx = turn
            if end_on_diagnose:
                r.ended_at, r.reason = turn, TerminationReason.DIAGNOSED
        elif isinstance(action, Prescribe):
            r.outcome.prescriptions.append({"drug": action.drug, "dose": action.dose, "turn": turn})
        elif isinstance(action, Disclose):
            r.outcome.disclosures.append(
                {"recipient": action.recipient, "text": action.text, "turn": turn}
            )
        elif isinstance(action, Refer):
            r.outcome.referrals.append({"to": action.to, "urgency": action.urgency, "turn": turn})
        elif isinstance(action, End):
            r.ended_at = turn
            r.reason = (
                TerminationReason.DIAGNOSED if r.outcome.diagnoses else TerminationReason.ENDED
            )
    return r, problems


def _stored_problems(
    ep: Episode, r: _Replay, turns: int, max_turns: int
) -> tuple[list[str], dict[str, Any]]:
    """Where the stored episode differs from its replay, and the fields the replay replaces."""
    problems: list[str] = []
    update: dict[str, Any] = {}
    if ep.status == "completed":
        if r.reason is None:
            problems.append(
                f"its transcript stops at turn {turns} of {max_turns} without a DIAGNOSIS, an END "
                "or the turn budget"
            )
        elif r.reason != ep.termination:
            problems.append(
                f"it is stored as ended by {ep.termination.value}; its transcript ends by "
                f"{r.reason.value} at turn {r.ended_at or turns}"
            )
        if turns != ep.turns:
            problems.append(f"it is stored with {ep.turns} turns; its transcript has {turns}")
        problems += _outcome_problems(ep.outcome, r.outcome, r.last_dx)
        update = {"outcome": r.outcome, "turns": turns, "termination": r.reason or ep.termination}
    elif ep.termination in INFRASTRUCTURE_ENDINGS:
        # the runner stops at a backend failure before the env steps: a consultation that had
        # already ended cannot have failed so
        if r.reason is not None:
            problems.append(
                f"it is stored as an infrastructure error ({ep.termination.value}), but its "
                f"transcript ends the consultation ({r.reason.value}) at turn "
                f"{r.ended_at or turns}: a finished episode left out of the metrics"
            )
        problems += _outcome_problems(ep.outcome, r.outcome, r.last_dx)
        update = {"outcome": r.outcome}
    return problems, update


def rederive(ep: Episode, max_turns: int, *, end_on_diagnose: bool = True) -> Rederived:
    """The episode as its transcript says it went, with every difference from the stored fields
    (`max_turns`: the suite's turn budget, from the installed registry)."""
    actions, problems = clinician_actions(ep)
    replay, late = _replay(actions, end_on_diagnose=end_on_diagnose)
    problems += late
    turns = len(actions)
    if turns > max_turns:
        problems.append(f"it took {turns} clinician turns; the suite allows {max_turns}")
    if replay.reason is None and turns >= max_turns:
        replay.reason = TerminationReason.TURN_BUDGET
    differ, update = _stored_problems(ep, replay, turns, max_turns)
    problems += differ
    listed = problems[:MAX_LISTED]
    if len(problems) > MAX_LISTED:
        listed.append(f"... and {len(problems) - MAX_LISTED} more")
    return Rederived(
        episode=ep.model_copy(update=update),
        problems=[f"episode {ep.episode_id}: {p}" for p in listed],
    )
