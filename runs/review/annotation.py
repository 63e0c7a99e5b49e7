"""Annotation records: what a clinician said about one turn, one violation or one episode.

An annotation names who made it and when, and the exact run, episode, case and turn it refers to
by content hash, so a label can never silently move onto a different transcript. It also keeps
a snapshot of what the clinician was judging (the fact as the case held it, the automatic
verdicts shown beside it, the patient's subgroup and lineage): the JSONL export is then enough
on its own for `clinicgym feedback apply` and `clinicgym feedback agreement`.

Saving again does not overwrite: each save is a new record, and the newest record per key
(annotator, episode, kind, turn, target) is the current one (`current`), so the history stays.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clinicgym.envs.severity import Severity
from clinicgym.patients.cases.case import Diagnosis, Persona
from clinicgym.runs.review.errors import AnnotationError

ANNOTATION_FORMAT_VERSION = 1
ANNOTATOR_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
"""Annotator ids: 1-64 letters, digits, '.', '_', '@', '-' (e.g. 'dr.lee', 'rn-04')."""
MAX_TEXT = 2000

PatientVerdict = Literal["realistic", "unrealistic", "inconsistent", "wrong_for_persona"]
Harm = Literal["none", "mild", "moderate", "severe", "death"]
"""AHRQ Common Formats Harm Scale v1.2: no harm, mild, moderate, severe harm, death."""
PERSONA_FIELDS: dict[str, tuple[str, ...]] = {
    name: get_args(Persona.model_fields[name].annotation)
    for name in ("style", "health_literacy", "language_register", "adherence")
}
"""Persona traits a clinician may say are wrong for the patient, with their allowed values."""


class _Label(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PatientTurnLabel(_Label):
    """On a patient turn: realistic or not, and how the patient should have said it."""

    kind: Literal["patient_turn"] = "patient_turn"
    verdict: PatientVerdict
    fact_id: str | None = None
    """The case fact the verdict is about (one the turn conveyed)."""
    correction: str | None = Field(default=None, max_length=MAX_TEXT)
    """The fact as the patient should have said it (replaces the fact's wording)."""
    remove: bool = False
    """The fact is unrealistic for this patient: take it out of the record."""
    scope: Literal["patient", "finding"] = "patient"
    """'patient': this patient only; 'finding': every patient of the cohort with this finding
    (and the same speaker)."""
    persona_field: str | None = None
    persona_value: str | None = None
    """'wrong for the persona': the trait that should change, and its value."""
    note: str = Field(default="", max_length=MAX_TEXT)

    @model_validator(mode="after")
    def _consistent(self) -> PatientTurnLabel:
        if self.correction == "":
            self.correction = None
        if self.verdict == "realistic" and (self.correction or self.remove or self.persona_field):
            raise ValueError("a turn marked realistic takes no correction, removal or persona")
        if self.remove and self.verdict != "unrealistic":
            raise ValueError("only an unrealistic fact can be removed")
        if self.remove and self.correction:
            raise ValueError("either remove the fact or correct it, not both")
        if (self.correction or self.remove) and not self.fact_id:
            raise ValueError("a correction or removal must name the fact it is about")
        if self.persona_field is not None:
            allowed = PERSONA_FIELDS.get(self.persona_field)
            if allowed is None:
                known = ", ".join(PERSONA_FIELDS)
                raise ValueError(f"persona_field {self.persona_field!r} is not one of {known}")
            if self.persona_value not in allowed:
                raise ValueError(
                    f"persona_value {self.persona_value!r} for {self.persona_field} is not one "
                    f"of {', '.join(allowed)}"
                )
        elif self.persona_value is not None:
            raise ValueError("persona_value needs persona_field")
        return self

    def target(self) -> str:
        return ""  # one current verdict per turn: a later 'realistic' withdraws an earlier fix


class ClinicianTurnLabel(_Label):
    """On a clinician turn: clinically appropriate or not, and the harm it could cause."""

    kind: Literal["clinician_turn"] = "clinician_turn"
    appropriate: bool
    harm: Harm = "none"
    note: str = Field(default="", max_length=MAX_TEXT)

    def target(self) -> str:
        return ""


class ViolationLabel(_Label):
    """Agreement or disagreement with one violation a monitor raised at this turn."""

    kind: Literal["violation"] = "violation"
    violation_index: int = Field(ge=0)
    """Its position among the event's violations."""
    rule_id: str = Field(min_length=1, max_length=200)
    pack: str = Field(min_length=1, max_length=200)
    verdict: Literal["agree", "disagree"]
    note: str = Field(default="", max_length=MAX_TEXT)

    def target(self) -> str:
        return f"{self.pack}|{self.rule_id}|{self.violation_index}"


class MissedViolationLabel(_Label):
    """A breach at this turn that no monitor raised."""

    kind: Literal["missed_violation"] = "missed_violation"
    rule_id: str = Field(min_length=1, max_length=200)
    """A rule id of the run's packs, or a short name of the rule breached."""
    severity: Severity = "medium"
    note: str = Field(default="", max_length=MAX_TEXT)

    def target(self) -> str:
        return ""  # several may be reported on one turn: each is its own item (see key())


class EpisodeLabel(_Label):
    """The whole consultation: acceptable or not, the diagnosis a clinician would give."""

    kind: Literal["episode"] = "episode"
    acceptable: bool
    model_diagnosis_correct: Literal["yes", "no", "unsure"] = "unsure"
    diagnosis: str = Field(default="", max_length=300)
    """The diagnosis the clinician would give (compared with the case's answer)."""
    comment: str = Field(default="", max_length=MAX_TEXT)

    def target(self) -> str:
        return ""


Label = Annotated[
    PatientTurnLabel | ClinicianTurnLabel | ViolationLabel | MissedViolationLabel | EpisodeLabel,
    Field(discriminator="kind"),
]
KINDS = ("patient_turn", "clinician_turn", "violation", "missed_violation", "episode")


class FactRef(BaseModel):
    """A case fact as it was when annotated."""

    model_config = ConfigDict(extra="forbid")
    id: str
    concept: str
    category: str
    text: str
    present: bool


class AutoVerdicts(BaseModel):
    """The automatic verdicts on the episode, as the clinician saw them."""

    model_config = ConfigDict(extra="forbid")
    diagnostic_accuracy: float | None = None
    acceptable: bool | None = None
    model_diagnosis: str | None = None
    clinician_turns: list[int] = []
    """Turn numbers the clinician acted on."""
    violation_turns: list[int] = []
    """Turn numbers at which a monitor flagged a violation (on the clinician's action or on an
    event it produced)."""


class AnnotationContext(BaseModel):
    """What the clinician was judging: a snapshot, so exports stand on their own."""

    model_config = ConfigDict(extra="forbid")
    agent_id: str
    condition_id: str | None = None
    diagnosis: Diagnosis | None = None
    sex: str | None = None
    age_band: str | None = None
    ethnicity: str | None = None
    insurance: str | None = None
    speaker: str = "patient"
    lineage: list[str] = []
    """The case's parent ids ('cohort:<id>/<row>')."""
    actor: str | None = None
    turn: int | None = None
    """The annotated event's turn number (None for the whole episode)."""
    event_text: str = ""
    fact: FactRef | None = None
    violation: dict[str, Any] | None = None
    auto: AutoVerdicts = AutoVerdicts()
    diagnosis_matches_case: bool | None = None
    """Episode labels: does the clinician's diagnosis name the case's answer (scoring's
    matcher)? None when no diagnosis was given."""


def now_iso() -> str:
    """UTC time to the microsecond, ISO-8601 (sorts as text)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Annotation(BaseModel):
    """One clinician's label on one turn, violation or episode of a stored (or live) run."""

    model_config = ConfigDict(extra="forbid")
    format_version: int = ANNOTATION_FORMAT_VERSION
    id: str = Field(default_factory=lambda: uuid.uuid4().hex, pattern=r"^[0-9a-f]{32}$")
    annotator: str = Field(pattern=ANNOTATOR_PATTERN)
    created: str = Field(default_factory=now_iso)
    run_id: str
    run_hash: str
    """sha256 of the run's identity (`rundir.run_hash`: id, creation time, spec, case hashes)."""
    episode_id: str
    episode_hash: str = ""
    """sha256 of the stored episode line; '' while the episode was live and not yet stored."""
    case_id: str
    case_hash: str
    event_index: int = Field(ge=-1)
    """Position of the event in the transcript; -1 for the whole episode."""
    event_hash: str = ""
    """`event_hash()` of the annotated event ('' for the whole episode)."""
    label: Label
    context: AnnotationContext

    @model_validator(mode="after")
    def _episode_level(self) -> Annotation:
        if (self.label.kind == "episode") != (self.event_index == -1):
            raise ValueError("episode labels have event_index -1; turn labels a turn's index")
        return self

    def key(self) -> tuple[str, ...]:
        """What a newer annotation replaces: the same annotator, episode, kind, turn, target."""
        target = self.id if self.label.kind == "missed_violation" else self.label.target()
        return (
            self.annotator,
            self.run_id,
            self.episode_id,
            self.label.kind,
            str(self.event_index),
            target,
        )


def event_hash(turn: int, actor: str, text: str) -> str:
    """sha256 of what a clinician saw of one event (turn, speaker, words): equal for the live
    and the stored copy of an event, even when judge checks later add violations to it."""
    return hashlib.sha256(f"{turn}\x1f{actor}\x1f{text}".encode()).hexdigest()


def current(annotations: Iterable[Annotation]) -> list[Annotation]:
    """The newest annotation per key, in the order they were made."""
    latest: dict[tuple[str, ...], Annotation] = {}
    for a in annotations:
        k = a.key()
        old = latest.get(k)
        if old is None or (a.created, a.id) > (old.created, old.id):
            latest[k] = a
    return sorted(latest.values(), key=lambda a: (a.created, a.id))


# ---- JSONL ------------------------------------------------------------------------------------


def write_jsonl(annotations: Iterable[Annotation], path: Path) -> int:
    """Write annotations one JSON object a line (via a temporary file); returns the count."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for a in annotations:
            fh.write(a.model_dump_json() + "\n")
            n += 1
    tmp.replace(path)
    return n


def read_jsonl(path: Path) -> list[Annotation]:
    """Read an annotations JSONL file; every bad line is reported at once (line and field)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise AnnotationError(f"{path}: no such annotations file") from None
    out: list[Annotation] = []
    problems: list[str] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"line {n}: not JSON ({e.msg} at column {e.colno})")
            continue
        try:
            out.append(Annotation.model_validate(raw))
        except ValidationError as e:
            for err in e.errors()[:3]:
                where = ".".join(str(p) for p in err["loc"]) or "annotation"
                got = err.get("input")
                shown = f"; found {got!r}" if isinstance(got, str | int | float | bool) else ""
                problems.append(f"line {n}, field '{where}': {err['msg']}{shown}")
    if problems:
        raise AnnotationError(
            f"{path} has {len(problems)} problem(s):\n  " + "\n  ".join(problems[:50])
        )
    return out
