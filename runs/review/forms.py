"""Submitted annotation forms -> labels, checked against the transcript they were made on.

Identifiers a form carries (the fact, the violation) are looked up in the event itself, so a
label can only name a fact the turn conveyed and a violation the monitors raised there; rule ids
and packs of a violation come from the event, never from the form.
"""

from __future__ import annotations

from collections.abc import Mapping

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
        if event is None:
            raise AnnotationError(f"a '{kind}' label needs a turn")
        if event.actor not in ACTORS.get(kind, ()):
            raise AnnotationError(
                f"a '{kind}' label cannot be put on a {event.actor} turn (turn {event.turn})"
            )
    try:
        if kind == "patient_turn":
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
        if kind == "clinician_turn":
            return ClinicianTurnLabel(
                appropriate=_yes_no(form, "appropriate"),
                harm=form.get("harm") or "none",  # type: ignore[arg-type]
                note=form.get("note", ""),
            )
        if kind == "violation":
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
        if kind == "missed_violation":
            return MissedViolationLabel(
                rule_id=form.get("rule_id", ""),
                severity=form.get("severity") or "medium",  # type: ignore[arg-type]
                note=form.get("note", ""),
            )
        if kind == "episode":
            return EpisodeLabel(
                acceptable=_yes_no(form, "acceptable"),
                model_diagnosis_correct=form.get("model_diagnosis_correct") or "unsure",  # type: ignore[arg-type]
                diagnosis=form.get("diagnosis", ""),
                comment=form.get("comment", ""),
            )
    except ValidationError as e:
        parts = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"])
            parts.append(
                f"{where + ': ' if where else ''}{err['msg'].removeprefix('Value error, ')}"
            )
        raise AnnotationError("; ".join(parts)) from None
    raise AnnotationError(f"unknown label kind {kind!r}")
