"""The event vocabulary packs speak: which names an Event answers to, and the words it carries.

A rule's `watches` lists names from `KNOWN_EVENTS`. A clinician turn answers to `clinician` and
to its tool (`ask`, `prescribe`, ...) or `invalid` when it could not be parsed; other turns answer
to their actor (`patient`, `third_party`, `env`).
"""

from __future__ import annotations

from clinicgym.envs.action import (
    Ask,
    Diagnose,
    Disclose,
    End,
    Examine,
    OrderTest,
    Prescribe,
    Refer,
)
from clinicgym.envs.episode import Event

ACTION_EVENTS: dict[str, type] = {
    "ask": Ask,
    "examine": Examine,
    "order_test": OrderTest,
    "diagnose": Diagnose,
    "prescribe": Prescribe,
    "disclose": Disclose,
    "refer": Refer,
    "end": End,
}
"""Clinician tool -> its Action model (the fields a rule may cite as `action.<field>`)."""

KNOWN_EVENTS: dict[str, str] = {
    "clinician": "any clinician turn, parsed or not",
    **{name: f"the clinician's `{name}` action" for name in ACTION_EVENTS},
    "invalid": "a clinician turn that could not be parsed as an action",
    "patient": "a patient line: the opening, replies, and lines a scenario injects",
    "third_party": "a third party speaking (relative, employer, insurer, police ...)",
    "env": "a tool result (examination, test result, recorded prescription ...)",
}
"""Every name a rule may watch, with what it means."""

CLINICIAN_EVENTS = frozenset({"clinician", "invalid", *ACTION_EVENTS})
CLOSING_EVENTS = frozenset({"diagnose", "end"})
"""Clinician actions that close the consultation (diagnose does by default)."""


def event_names(event: Event) -> frozenset[str]:
    """The names this event answers to."""
    if event.actor != "clinician":
        return frozenset((event.actor,))
    if event.action is None:
        return frozenset(("clinician", "invalid"))
    return frozenset(("clinician", event.action.tool))


def said(event: Event) -> str:
    """The words of an event that textual checks read: what the clinician said or wrote to
    someone (the question, the disclosure, the closing note), or the line itself for others."""
    a = event.action
    if a is None:
        return event.text
    if isinstance(a, Ask):
        return a.question
    if isinstance(a, Disclose):
        return a.text
    if isinstance(a, End):
        return a.note or ""
    if isinstance(a, Prescribe):
        return f"{a.drug} {a.dose or ''}".strip()
    if isinstance(a, Refer):
        return a.to
    if isinstance(a, Diagnose):
        return "; ".join(d.name for d in a.diagnoses)
    return event.text


def normalise(text: str) -> str:
    """Whitespace folded and length capped as the patient's question matcher does, so an
    embedding computed by either is a cache hit for the other."""
    return " ".join(text.split())[:500]
