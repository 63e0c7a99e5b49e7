"""Submitted annotation forms -> labels, checked against the transcript they were made on.

Identifiers a form carries (the fact, the violation) are looked up in the event itself, so a
label can only name a fact the turn conveyed and a violation the monitors raised there; rule ids
and packs of a violation come from the event, never from the form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import ValidationError

from clinicgym.envs.episode import Event
from clinicgym.runs.review.annotation import (
    ClinicianTurnLabel,
    EpisodeLabel,
    Label,
    MissedViolationLabel,
    PatientTurnLabel,
    ViolationLabel,
)
from clinicgym.runs.review.errors import AnnotationError

ACTORS = {
    "patient_turn": ("patient",),
    "clinician_turn": ("clinician",),
    "missed_violation": ("clinician",),
    "violation": ("clinician", "patient", "third_party", "env"),
}


def turn_facts(event: Event) -> list[str]:
    """Fact ids a patient turn conveyed (revealed, or answered about), in order."""
    ids = list(event.revealed)
    for a in event.result.get("answers", []) or []:
        fid = a.get("fact_id") if isinstance(a, dict) else None
        if fid and fid not in ids:
            ids.append(fid)
    return ids


def _yes_no(form: Mapping[str, str], name: str) -> bool:
    value = form.get(name, "")
    if value not in ("yes", "no"):
        raise AnnotationError(f"field '{name}': choose yes or no (got {value!r})")
    return value == "yes"


def parse_label(kind: str, form: Mapping[str, str], event: Event | None) -> Label:
    """The label a form describes; AnnotationError says which field is wrong and why."""
    if kind != "episode":
        _check_turn(kind, event)
    parse = _PARSERS.get(kind)
    if parse is None:
        raise AnnotationError(f"unknown label kind {kind!r}")
    try:
        return parse(form, event)
    except ValidationError as e:
        raise AnnotationError(_validation_message(e)) from None


def _check_turn(kind: str, event: Event | None) -> None:
    """Refuse a turn label without a turn, or on a turn of an actor it cannot describe."""
    if event is None:
        raise AnnotationError(f"a '{kind}' label needs a turn")
    if event.actor not in ACTORS.get(kind, ()):
        raise AnnotationError(
            f"a '{kind}' label cannot be put on a {event.actor} turn (turn {event.turn})"
        )


def _patient_turn(form: Mapping[str, str], event: Event | None) -> Label:
    """A patient turn's verdict; its fact must be one the turn conveyed."""
    assert event is not None
    fact_id = form.get("fact_id") or None
    if fact_id is not None and fact_id not in turn_facts(event):
        raise AnnotationError(
            f"fact {fact_id!r} was not conveyed on this turn; choose one of "
            f"{', '.join(turn_facts(event)) or '(none)'}"
        )
    persona = form.get("persona_change", "")
    field_name, _, value = persona.partition("=")
    return PatientTurnLabel(
        verdict=form.get("verdict", ""),  # type: ignore[arg-type]
        fact_id=fact_id,
        correction=form.get("correction") or None,
        remove=form.get("remove") == "on",
        scope=form.get("scope") or "patient",  # type: ignore[arg-type]
        persona_field=field_name or None,
        persona_value=value or None,
        note=form.get("note", ""),
    )


def _clinician_turn(form: Mapping[str, str], event: Event | None) -> Label:
    """Whether a clinician turn was appropriate, and the harm it risked."""
    return ClinicianTurnLabel(
        appropriate=_yes_no(form, "appropriate"),
        harm=form.get("harm") or "none",  # type: ignore[arg-type]
        note=form.get("note", ""),
    )


def _violation(form: Mapping[str, str], event: Event | None) -> Label:
    """A verdict on a violation the monitors raised on the turn; its rule and pack come from
    the event, not the form."""
    assert event is not None
    try:
        i = int(form.get("violation_index", ""))
        v = event.violations[i]
    except (ValueError, IndexError):
        raise AnnotationError(
            f"violation_index {form.get('violation_index')!r}: turn {event.turn} has "
            f"{len(event.violations)} violation(s)"
        ) from None
    return ViolationLabel(
        violation_index=i,
        rule_id=v.rule_id,
        pack=v.pack,
        verdict=form.get("verdict", ""),  # type: ignore[arg-type]
        note=form.get("note", ""),
    )


def _missed_violation(form: Mapping[str, str], event: Event | None) -> Label:
    """A rule the monitors should have flagged on a clinician turn."""
    return MissedViolationLabel(
        rule_id=form.get("rule_id", ""),
        severity=form.get("severity") or "medium",  # type: ignore[arg-type]
        note=form.get("note", ""),
    )


def _episode(form: Mapping[str, str], event: Event | None) -> Label:
    """The whole consultation: acceptable or not, and the reviewer's diagnosis."""
    return EpisodeLabel(
        acceptable=_yes_no(form, "acceptable"),
        model_diagnosis_correct=form.get("model_diagnosis_correct") or "unsure",  # type: ignore[arg-type]
        diagnosis=form.get("diagnosis", ""),
        comment=form.get("comment", ""),
    )


_PARSERS: dict[str, Callable[[Mapping[str, str], Event | None], Label]] = {
    "patient_turn": _patient_turn,
    "clinician_turn": _clinician_turn,
    "violation": _violation,
    "missed_violation": _missed_violation,
    "episode": _episode,
}
"""Label kind -> the parser of its form."""


def _validation_message(e: ValidationError) -> str:
    """A label's validation errors as one line: each field and what is wrong with it."""
    parts = []
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where + ': ' if where else ''}{err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)
