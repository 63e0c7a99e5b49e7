"""Clinician feedback into patient generation: corrected wording, removed facts, persona fixes
and re-weighted sampling, kept in a cohort and applied whenever its cases are realised.

`runs` reads the annotation database and hands down plain fixes (this layer never reads
annotations or runs). `plan_feedback` sorts them against a parent cohort:

- a corrected answer becomes the fact's wording, for that patient or, with scope 'finding',
  for every patient of the cohort who has the finding and the same speaker (patient or parent);
- a fact flagged unrealistic is removed from that patient's record (never the chief complaint);
- a persona trait marked wrong for the patient is changed;
- conditions and subgroups where clinicians disagreed with the automatic verdicts get more of the
  rows the new cohort adds (the failure-weighted mix of `targeting`, fed with disagreements);
- what must not be applied silently is queued for review instead: a clinician's diagnosis that
  differs from the case's, a correction that would change what is true (of a denied fact), one
  naming the diagnosis, conflicting fixes, a flag without a fix, a patient of another cohort.

`write_feedback_cohort` writes the new cohort: the parent's rows in the parent's order (so its
patients are realised exactly as before, fixes applied), the rows it adds, `feedback.json` with
every override and the queue, and a manifest whose lineage names each annotation that changed
it. `Cohort.cases()` applies `feedback.json` to every case it realises, and each case's
`lineage.annotations_applied` names the annotations that changed that patient.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clinicgym.patients.cases.case import Case, Persona
from clinicgym.patients.cohorts.cohort import ID_COLUMN, Cohort, write_cohort
from clinicgym.patients.errors import CohortError
from clinicgym.patients.knowledge.kb import name_pattern

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


# ---- planning a round -------------------------------------------------------------------------


def _row_of(patient: str | None, cohort_ids: set[str]) -> str | None:
    """'cohort:<id>/<row>' -> row, when <id> is the parent cohort (or one of its ancestors
    whose rows it kept)."""
    if not patient or not patient.startswith("cohort:"):
        return None
    cid, _, row = patient.removeprefix("cohort:").partition("/")
    return row if cid in cohort_ids and row else None


def _lineage_ids(cohort: Cohort) -> set[str]:
    ids = {cohort.id}
    fb = cohort.manifest.lineage.get("feedback") or {}
    ids.update(fb.get("kept_rows_of", []))
    return ids


def plan_feedback(
    inputs: FeedbackInputs,
    parent: Cohort,
    *,
    strength: float = 0.7,
) -> tuple[CohortFeedback, Any]:
    """Sort fixes into overrides and the review queue; derive the disagreement-weighted mix.

    Returns (feedback, mix); mix is a `targeting.TargetMix`, or None when no reviewed episode
    was compared with the automatic verdicts."""
    parent_fb = load_feedback(parent.root)
    fb = CohortFeedback(
        parent_cohort=parent.id,
        round=(parent_fb.round + 1) if parent_fb else 1,
        patients={
            k: v.model_copy(deep=True) for k, v in (parent_fb.patients if parent_fb else {}).items()
        },
        findings=list(parent_fb.findings) if parent_fb else [],
    )
    rows = set(parent.table[ID_COLUMN].astype(str))
    cohort_ids = _lineage_ids(parent)
    queue = fb.queued

    def hold(kind: str, ids: Sequence[str], patient: str | None, detail: str) -> None:
        queue.append(
            QueuedItem(kind=kind, annotations=list(ids), patient=patient, detail=detail)  # type: ignore[arg-type]
        )

    # facts: check each fix, then group the fixes aimed at one target
    groups: dict[tuple[str, ...], list[FactFix]] = defaultdict(list)
    for fix in inputs.fact_fixes:
        row = _row_of(fix.patient, cohort_ids)
        if fix.scope == "patient" and (row is None or row not in rows):
            hold(
                "not_in_cohort",
                [fix.annotation_id],
                fix.patient,
                f"the patient is not a row of cohort {parent.id}; this fix cannot reach it",
            )
            continue
        if not fix.present:
            hold(
                "changes_truth",
                [fix.annotation_id],
                fix.patient,
                f"'{fix.concept}' is a denied finding in the record; changing it changes what is "
                "true of the patient, not how it is said",
            )
            continue
        if fix.action == "remove" and fix.category == "chief_complaint":
            hold(
                "chief_complaint",
                [fix.annotation_id],
                fix.patient,
                f"'{fix.concept}' is the reason for the visit; removing it makes another case",
            )
            continue
        leak = name_pattern(fix.diagnosis_names)
        if fix.action == "reword" and leak is not None and leak.search(fix.text or ""):
            hold(
                "names_diagnosis",
                [fix.annotation_id],
                fix.patient,
                f"the correction {fix.text!r} names the diagnosis; the patient never may",
            )
            continue
        key = (
            ("patient", row or "", fix.concept)
            if fix.scope == "patient"
            else ("finding", fix.concept, fix.speaker, fix.sex)
        )
        groups[key].append(fix)
    changed: list[str] = []
    for key, fixes in groups.items():
        versions = {(f.action, (f.text or "").strip()) for f in fixes}
        ids = [f.annotation_id for f in fixes]
        if len(versions) > 1:
            shown = "; ".join(f"{a} {t!r}" if t else a for a, t in sorted(versions))
            concept = key[1] if key[0] == "finding" else key[2]
            hold("conflicting_fixes", ids, fixes[0].patient, f"'{concept}': {shown}")
            continue
        action, text = versions.pop()
        if key[0] == "patient":
            po = fb.patients.setdefault(key[1], PatientOverrides())
            po.facts[key[2]] = FactOverride(
                concept=key[2],
                action=action,
                text=text or None,
                annotations=ids,  # type: ignore[arg-type]
            )
        else:
            if action == "remove":
                hold(
                    "no_fix_given",
                    ids,
                    None,
                    f"removing '{key[1]}' from every patient is a change to the knowledge base",
                )
                continue
            same = (key[1], key[2], key[3])
            fb.findings = [f for f in fb.findings if (f.concept, f.speaker, f.sex) != same]
            fb.findings.append(
                FindingOverride(
                    concept=key[1],
                    action="reword",
                    text=text,
                    speaker=key[2],  # type: ignore[arg-type]
                    sex=key[3],
                    annotations=ids,
                )
            )
        changed += ids
    # persona
    by_trait: dict[tuple[str, str], list[PersonaFix]] = defaultdict(list)
    for pf in inputs.persona_fixes:
        row = _row_of(pf.patient, cohort_ids)
        if row is None or row not in rows:
            where = f"persona {pf.field}: not a row of {parent.id}"
            hold("not_in_cohort", [pf.annotation_id], pf.patient, where)
            continue
        if pf.field not in PERSONA_TRAITS:
            where = f"unknown persona trait {pf.field!r}"
            hold("no_fix_given", [pf.annotation_id], pf.patient, where)
            continue
        by_trait[(row, pf.field)].append(pf)
    for (row, trait), fixes in by_trait.items():
        values = {f.value for f in fixes}
        ids = [f.annotation_id for f in fixes]
        if len(values) > 1:
            hold("conflicting_fixes", ids, fixes[0].patient, f"persona {trait}: {sorted(values)}")
            continue
        po = fb.patients.setdefault(row, PatientOverrides())
        po.persona[trait] = values.pop()
        po.persona_annotations = list(dict.fromkeys([*po.persona_annotations, *ids]))
        changed += ids
    for u in inputs.unfixed:
        hold("no_fix_given", [u.annotation_id], u.patient, u.detail)
    for d in inputs.diagnoses:
        if d.matches_case is False:
            hold(
                "diagnosis_differs",
                [d.annotation_id],
                d.patient,
                f"a clinician would diagnose {d.proposed!r}; the case says {d.case_diagnosis!r}",
            )
    mix = None
    if inputs.disagreements:
        from clinicgym.patients.cohorts.targeting import target_mix

        failures = pd.DataFrame(
            [
                {
                    "condition_id": d.condition_id,
                    "sex": d.sex,
                    "age_band": d.age_band,
                    "failed": d.disagreed,
                }
                for d in inputs.disagreements
            ]
        )
        train, _ = parent.seed_tables()
        mix = target_mix(failures, train, parent.schema, strength=strength)
        fb.weighting = mix.model_dump(mode="json")
        fb.weighting_annotations = list(
            dict.fromkeys(
                a for d in inputs.disagreements if d.disagreed > 0 for a in d.annotation_ids
            )
        )
    fb.annotations = list(dict.fromkeys([*(parent_fb.annotations if parent_fb else []), *changed]))
    return fb, mix


# ---- writing the new cohort -------------------------------------------------------------------


def write_feedback_cohort(
    parent: Cohort,
    feedback: CohortFeedback,
    mix: Any,
    out: Path,
    *,
    add: int = 0,
    seed: int | None = None,
    overwrite: bool = False,
) -> tuple[Cohort, dict[str, Any]]:
    """Write the new cohort: the parent's rows (same order, same seed: its patients are
    realised as before, fixes applied) plus `add` rows drawn from the parent's synthesizer
    with the disagreement-weighted mix. Returns the opened cohort and what was done."""
    from clinicgym import __version__

    m = parent.manifest
    table = parent.table.copy()
    train, hold = parent.seed_tables()
    added = 0
    counts = dict(m.counts)
    if add > 0:
        if mix is None:
            raise CohortError(
                "--add needs reviewed episodes to weight by (episode labels compared with the "
                "automatic verdicts); none were given"
            )
        from clinicgym.patients.cohorts.synthesis import (
            CohortSynthesizer,
            SynthesizerConfig,
            generate,
            plan_sampling,
        )

        config = SynthesizerConfig(
            **{k: v for k, v in m.synthesizer.items() if k in SynthesizerConfig.model_fields}
        )
        synth = CohortSynthesizer.load(parent.root, parent.schema, config)
        plan = plan_sampling(add, train, parent.schema, target=mix.plan_cells(parent.schema))
        new, stats = generate(
            synth,
            plan,
            seed=seed if seed is not None else m.seed + 1000 * feedback.round,
            train=train,
            id_prefix=f"r{feedback.round}-",
        )
        clash = set(new[ID_COLUMN]) & set(table[ID_COLUMN])
        if clash:
            raise CohortError(f"new row ids clash with the parent's: {sorted(clash)[:3]}")
        table = pd.concat([table, new], ignore_index=True)
        added = len(new)
        counts["feedback_added"] = stats.to_dict()
        feedback = feedback.model_copy(
            update={
                "added_prefix": f"r{feedback.round}-",
                "annotations": list(
                    dict.fromkeys([*feedback.annotations, *feedback.weighting_annotations])
                ),
            }
        )
    counts["kept"] = len(table)

    def extras(tmp: Path) -> None:
        for name in ("synthesizer.pkl", "metadata.json"):
            if (parent.root / name).exists():
                shutil.copy2(parent.root / name, tmp / name)
        (tmp / FEEDBACK_FILE).write_text(feedback.model_dump_json(indent=2) + "\n", "utf-8")

    parent_fb = (m.lineage.get("feedback") or {}) if m.lineage else {}
    manifest = m.model_copy(
        update={
            "cohort_id": Path(out).name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "clinicgym_version": __version__,
            "counts": counts,
            "lineage": {
                "parent_cohort": parent.id,
                "feedback": {
                    "round": feedback.round,
                    "file": FEEDBACK_FILE,
                    "annotations": feedback.annotations,
                    "queued": len(feedback.queued),
                    "rows_kept": len(parent.table),
                    "rows_added": added,
                    "kept_rows_of": sorted({parent.id, *parent_fb.get("kept_rows_of", [])}),
                },
            },
            "targeting": feedback.weighting,
        }
    )
    root = write_cohort(
        out,
        manifest=manifest,
        table=table,
        train=train,
        holdout=hold,
        save_synthesizer=extras,
        overwrite=overwrite,
    )
    summary = {
        "cohort": str(root),
        "round": feedback.round,
        "rows_kept": len(parent.table),
        "rows_added": added,
        "patients_changed": sum(1 for p in feedback.patients.values() if p.facts or p.persona),
        "finding_rewordings": len(feedback.findings),
        "annotations_applied": len(feedback.annotations),
        "queued": len(feedback.queued),
    }
    return Cohort.open(root, parent.schema.kb), summary


def queue_lines(feedback: CohortFeedback) -> list[str]:
    """The review queue as readable lines."""
    return [
        f"[{q.kind}] {q.patient or '-'}: {q.detail} (annotations {', '.join(q.annotations)})"
        for q in feedback.queued
    ]


def dump_queue(feedback: CohortFeedback) -> str:
    """The review queue as JSON lines."""
    return "".join(json.dumps(q.model_dump()) + "\n" for q in feedback.queued)
