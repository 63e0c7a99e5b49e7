"""Clinician feedback a cohort keeps (`feedback.json`): the fixes `runs` hands down, the
per-patient and per-finding overrides, and the review queue. `Cohort.cases()` loads it
(`load_feedback`) and applies it (`CohortFeedback.apply`) to every case it realises.

Planning a round against a parent cohort and writing the new cohort is `feedback_round`, which
imports `cohort`; `cohort` imports this module, so the two stay apart and neither imports the
other back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clinicgym.patients.cases.case import Case, Persona
from clinicgym.patients.errors import CohortError

FEEDBACK_FILE = "feedback.json"
FEEDBACK_FORMAT_VERSION = 1
PERSONA_TRAITS = ("style", "health_literacy", "language_register", "adherence")
Speaker = Literal["patient", "caregiver"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- what runs hands down ---------------------------------------------------------------------


class FactFix(_Model):
    """A clinician's fix to how one patient states one fact."""

    annotation_id: str
    patient: str | None
    """The case's cohort row, 'cohort:<id>/<row>' (None: the case came from elsewhere)."""
    concept: str
    category: str
    present: bool
    """Whether the fact was present (affirmed) in the case; fixes to denials change truth."""
    original: str
    """The fact's wording when it was annotated."""
    action: Literal["reword", "remove"]
    text: str | None = None
    scope: Literal["patient", "finding"] = "patient"
    speaker: Speaker = "patient"
    sex: str = "any"
    diagnosis_names: list[str] = []
    """The case's diagnosis name and synonyms: a correction may not name them."""


class PersonaFix(_Model):
    """A persona trait a clinician found wrong for one patient, and its right value."""

    annotation_id: str
    patient: str | None
    field: str
    value: str


class Unfixed(_Model):
    """A flag with nothing to apply (an inconsistent answer, no correction given)."""

    annotation_id: str
    patient: str | None
    detail: str


class DiagnosisProposal(_Model):
    """The diagnosis a clinician would give a case, and whether it names the case's answer."""

    annotation_id: str
    patient: str | None
    case_diagnosis: str
    proposed: str
    matches_case: bool | None


class Disagreement(_Model):
    """One reviewed episode: its patient's subgroup and whether the clinician disagreed with
    any automatic verdict (acceptance, diagnosis match, a violation flagged or missed)."""

    annotation_ids: list[str]
    condition_id: str
    sex: str
    age_band: str
    ethnicity: str | None = None
    disagreed: float = Field(ge=0, le=1)


class FeedbackInputs(_Model):
    """Everything `runs` read out of the annotations, for one feedback round."""

    fact_fixes: list[FactFix] = []
    persona_fixes: list[PersonaFix] = []
    unfixed: list[Unfixed] = []
    diagnoses: list[DiagnosisProposal] = []
    disagreements: list[Disagreement] = []


# ---- what a cohort keeps ----------------------------------------------------------------------


class FactOverride(_Model):
    """A fact of one patient (or of every patient with a finding): new wording, or removed."""

    concept: str
    action: Literal["reword", "remove"]
    text: str | None = None
    annotations: list[str]


class FindingOverride(FactOverride):
    """New wording of a finding for every patient who has it, with this speaker (and, for a
    parent speaking for a child, this sex: the wording has pronouns)."""

    speaker: Speaker = "patient"
    sex: str = "any"


class PatientOverrides(_Model):
    """Everything changed for one cohort row."""

    facts: dict[str, FactOverride] = {}
    """Concept -> override."""
    persona: dict[str, str] = {}
    persona_annotations: list[str] = []


class QueuedItem(_Model):
    """Feedback held back for a person to decide on; never applied silently."""

    kind: Literal[
        "diagnosis_differs",
        "changes_truth",
        "names_diagnosis",
        "conflicting_fixes",
        "no_fix_given",
        "chief_complaint",
        "not_in_cohort",
    ]
    annotations: list[str]
    patient: str | None = None
    detail: str


class CohortFeedback(_Model):
    """feedback.json: the overrides a cohort applies when realising cases, and the queue."""

    format_version: int = FEEDBACK_FORMAT_VERSION
    parent_cohort: str
    round: int = 1
    """1 for the first feedback round on a generated cohort, 2 for the next, ..."""
    patients: dict[str, PatientOverrides] = {}
    """Cohort row id -> overrides. Rows of earlier rounds keep theirs."""
    findings: list[FindingOverride] = []
    queued: list[QueuedItem] = []
    annotations: list[str] = []
    """Every annotation that changed the cohort (overrides and re-weighting)."""
    weighting: dict[str, Any] | None = None
    """The disagreement-weighted mix (targeting.TargetMix) for the rows this round adds."""
    weighting_annotations: list[str] = []
    """Episode labels that disagreed with an automatic verdict: they weighted the mix."""
    added_prefix: str | None = None
    """Row ids this round added start with it (they have no row in the parent cohort)."""

    def apply(self, case: Case, row_id: str) -> Case:
        """The case with this cohort's overrides for its row; its lineage names the
        annotations that changed it and the row it came from in the parent cohort."""
        mine = self.patients.get(row_id)
        speaker = case.persona.speaker
        sex = case.sex if speaker == "caregiver" else "any"
        wide = {
            f.concept: f for f in self.findings if f.speaker == speaker and f.sex in ("any", sex)
        }
        applied: list[str] = []
        facts = []
        removed: set[str] = set()
        for f in case.facts:
            ov: FactOverride | None = (mine.facts.get(f.concept) if mine else None) or wide.get(
                f.concept
            )
            if ov is None or not f.present or f.how_revealed != "ask":
                facts.append(f)
                continue
            applied += ov.annotations
            if ov.action == "remove":
                removed.add(f.id)
                continue
            facts.append(f.model_copy(update={"text": ov.text}))
        persona = case.persona
        if removed:
            persona = persona.model_copy(
                update={
                    "volunteer": [x for x in persona.volunteer if x not in removed],
                    "reluctant": [x for x in persona.reluctant if x not in removed],
                }
            )
        if mine and mine.persona:
            persona = Persona.model_validate({**persona.model_dump(), **mine.persona})
            applied += mine.persona_annotations
        parents = list(case.lineage.parent_ids)
        if not (self.added_prefix and row_id.startswith(self.added_prefix)):
            parents.append(f"cohort:{self.parent_cohort}/{row_id}")
        lineage = case.lineage.model_copy(
            update={
                "parent_ids": list(dict.fromkeys(parents)),
                "annotations_applied": list(
                    dict.fromkeys([*case.lineage.annotations_applied, *applied])
                ),
            }
        )
        return case.model_copy(update={"facts": facts, "persona": persona, "lineage": lineage})


def load_feedback(root: Path) -> CohortFeedback | None:
    """A cohort directory's feedback.json, validated, or None when it has none."""
    path = Path(root) / FEEDBACK_FILE
    if not path.exists():
        return None
    try:
        return CohortFeedback.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as e:
        problems = [
            f"field '{'.'.join(map(str, err['loc']))}': {err['msg']}" for err in e.errors()[:10]
        ]
        raise CohortError(
            f"{path} has {e.error_count()} problem(s):\n  " + "\n  ".join(problems)
        ) from None


def queue_lines(feedback: CohortFeedback) -> list[str]:
    """The review queue as readable lines."""
    return [
        f"[{q.kind}] {q.patient or '-'}: {q.detail} (annotations {', '.join(q.annotations)})"
        for q in feedback.queued
    ]


def dump_queue(feedback: CohortFeedback) -> str:
    """The review queue as JSON lines."""
    return "".join(json.dumps(q.model_dump()) + "\n" for q in feedback.queued)
