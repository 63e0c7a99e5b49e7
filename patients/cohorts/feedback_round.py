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

import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from clinicgym.patients.cohorts.cohort import ID_COLUMN, Cohort, write_cohort
from clinicgym.patients.cohorts.feedback import (
    FEEDBACK_FILE,
    PERSONA_TRAITS,
    CohortFeedback,
    FactFix,
    FactOverride,
    FeedbackInputs,
    FindingOverride,
    PatientOverrides,
    PersonaFix,
    QueuedItem,
    load_feedback,
)
from clinicgym.patients.cohorts.targeting import TargetMix, target_mix
from clinicgym.patients.errors import CohortError
from clinicgym.patients.knowledge.kb import name_pattern

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
    fb = _next_round(parent, parent_fb)
    rows = set(parent.table[ID_COLUMN].astype(str))
    cohort_ids = _lineage_ids(parent)
    groups = _group_fact_fixes(inputs.fact_fixes, fb.queued, parent.id, rows, cohort_ids)
    changed = _apply_fact_groups(groups, fb)
    changed += _apply_persona_fixes(inputs.persona_fixes, fb, parent.id, rows, cohort_ids)
    _queue_for_review(inputs, fb.queued)
    mix = _disagreement_mix(inputs, parent, fb, strength)
    fb.annotations = list(dict.fromkeys([*(parent_fb.annotations if parent_fb else []), *changed]))
    return fb, mix


def _next_round(parent: Cohort, parent_fb: CohortFeedback | None) -> CohortFeedback:
    """The new round's feedback, starting from a copy of the parent's overrides (if any)."""
    return CohortFeedback(
        parent_cohort=parent.id,
        round=(parent_fb.round + 1) if parent_fb else 1,
        patients={
            k: v.model_copy(deep=True) for k, v in (parent_fb.patients if parent_fb else {}).items()
        },
        findings=list(parent_fb.findings) if parent_fb else [],
    )


def _hold(
    queue: list[QueuedItem], kind: str, ids: Sequence[str], patient: str | None, detail: str
) -> None:
    """Queue annotations for review instead of applying them."""
    queue.append(
        QueuedItem(kind=kind, annotations=list(ids), patient=patient, detail=detail)  # type: ignore[arg-type]
    )


def _fact_fix_held(
    fix: FactFix, row: str | None, rows: set[str], parent_id: str
) -> tuple[str, str] | None:
    """Why a fact fix must be reviewed rather than applied (queue kind, detail), or None."""
    if fix.scope == "patient" and (row is None or row not in rows):
        return (
            "not_in_cohort",
            f"the patient is not a row of cohort {parent_id}; this fix cannot reach it",
        )
    if not fix.present:
        return (
            "changes_truth",
            f"'{fix.concept}' is a denied finding in the record; changing it changes what is "
            "true of the patient, not how it is said",
        )
    if fix.action == "remove" and fix.category == "chief_complaint":
        return (
            "chief_complaint",
            f"'{fix.concept}' is the reason for the visit; removing it makes another case",
        )
    leak = name_pattern(fix.diagnosis_names)
    if fix.action == "reword" and leak is not None and leak.search(fix.text or ""):
        return (
            "names_diagnosis",
            f"the correction {fix.text!r} names the diagnosis; the patient never may",
        )
    return None


def _group_fact_fixes(
    fixes: Sequence[FactFix],
    queue: list[QueuedItem],
    parent_id: str,
    rows: set[str],
    cohort_ids: set[str],
) -> dict[tuple[str, ...], list[FactFix]]:
    """Queue the fact fixes that cannot apply; group the rest by the fact they change (one
    patient's concept, or a finding for a speaker and sex across the cohort)."""
    groups: dict[tuple[str, ...], list[FactFix]] = defaultdict(list)
    for fix in fixes:
        row = _row_of(fix.patient, cohort_ids)
        held = _fact_fix_held(fix, row, rows, parent_id)
        if held is not None:
            _hold(queue, held[0], [fix.annotation_id], fix.patient, held[1])
            continue
        key = (
            ("patient", row or "", fix.concept)
            if fix.scope == "patient"
            else ("finding", fix.concept, fix.speaker, fix.sex)
        )
        groups[key].append(fix)
    return groups


def _apply_fact_groups(
    groups: dict[tuple[str, ...], list[FactFix]], fb: CohortFeedback
) -> list[str]:
    """Turn each group of agreeing fixes into an override (conflicts and cohort-wide removals
    are queued); return the annotations applied."""
    changed: list[str] = []
    for key, fixes in groups.items():
        versions = {(f.action, (f.text or "").strip()) for f in fixes}
        ids = [f.annotation_id for f in fixes]
        if len(versions) > 1:
            shown = "; ".join(f"{a} {t!r}" if t else a for a, t in sorted(versions))
            concept = key[1] if key[0] == "finding" else key[2]
            _hold(fb.queued, "conflicting_fixes", ids, fixes[0].patient, f"'{concept}': {shown}")
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
        elif action == "remove":
            detail = f"removing '{key[1]}' from every patient is a change to the knowledge base"
            _hold(fb.queued, "no_fix_given", ids, None, detail)
            continue
        else:
            _reword_finding(fb, key, text, ids)
        changed += ids
    return changed


def _reword_finding(fb: CohortFeedback, key: tuple[str, ...], text: str, ids: list[str]) -> None:
    """Set the cohort-wide wording of a finding for one speaker and sex, replacing any earlier."""
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


def _apply_persona_fixes(
    fixes: Sequence[PersonaFix],
    fb: CohortFeedback,
    parent_id: str,
    rows: set[str],
    cohort_ids: set[str],
) -> list[str]:
    """Set each patient's corrected persona traits (queueing other cohorts' patients, unknown
    traits and conflicts); return the annotations applied."""
    by_trait: dict[tuple[str, str], list[PersonaFix]] = defaultdict(list)
    for pf in fixes:
        row = _row_of(pf.patient, cohort_ids)
        if row is None or row not in rows:
            where = f"persona {pf.field}: not a row of {parent_id}"
            _hold(fb.queued, "not_in_cohort", [pf.annotation_id], pf.patient, where)
            continue
        if pf.field not in PERSONA_TRAITS:
            where = f"unknown persona trait {pf.field!r}"
            _hold(fb.queued, "no_fix_given", [pf.annotation_id], pf.patient, where)
            continue
        by_trait[(row, pf.field)].append(pf)
    changed: list[str] = []
    for (row, trait), group in by_trait.items():
        values = {f.value for f in group}
        ids = [f.annotation_id for f in group]
        if len(values) > 1:
            detail = f"persona {trait}: {sorted(values)}"
            _hold(fb.queued, "conflicting_fixes", ids, group[0].patient, detail)
            continue
        po = fb.patients.setdefault(row, PatientOverrides())
        po.persona[trait] = values.pop()
        po.persona_annotations = list(dict.fromkeys([*po.persona_annotations, *ids]))
        changed += ids
    return changed


def _queue_for_review(inputs: FeedbackInputs, queue: list[QueuedItem]) -> None:
    """Queue flags that came without a fix and clinicians' diagnoses that differ from the case."""
    for u in inputs.unfixed:
        _hold(queue, "no_fix_given", [u.annotation_id], u.patient, u.detail)
    for d in inputs.diagnoses:
        if d.matches_case is False:
            _hold(
                queue,
                "diagnosis_differs",
                [d.annotation_id],
                d.patient,
                f"a clinician would diagnose {d.proposed!r}; the case says {d.case_diagnosis!r}",
            )


def _disagreement_mix(
    inputs: FeedbackInputs, parent: Cohort, fb: CohortFeedback, strength: float
) -> TargetMix | None:
    """The failure-weighted mix fed with the clinicians' disagreements, recorded in `fb`; None
    when no reviewed episode was compared with the automatic verdicts."""
    if not inputs.disagreements:
        return None
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
        dict.fromkeys(a for d in inputs.disagreements if d.disagreed > 0 for a in d.annotation_ids)
    )
    return mix


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
    table = parent.table.copy()
    train, hold = parent.seed_tables()
    added = 0
    counts = dict(parent.manifest.counts)
    if add > 0:
        new, stats = _draw_added_rows(parent, feedback, mix, add, seed, train)
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
    root = write_cohort(
        out,
        manifest=_round_manifest(parent, feedback, out, counts, added),
        table=table,
        train=train,
        holdout=hold,
        save_synthesizer=partial(_copy_round_files, parent, feedback),
        overwrite=overwrite,
    )
    return Cohort.open(root, parent.schema.kb), _round_summary(root, parent, feedback, added)


def _draw_added_rows(
    parent: Cohort,
    feedback: CohortFeedback,
    mix: TargetMix | None,
    add: int,
    seed: int | None,
    train: pd.DataFrame,
) -> tuple[pd.DataFrame, Any]:
    """`add` new rows (ids `r<round>-...`) from the parent's synthesizer, sampled towards the
    disagreement-weighted mix; with their sampling stats."""
    m = parent.manifest
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
    return generate(
        synth,
        plan,
        seed=seed if seed is not None else m.seed + 1000 * feedback.round,
        train=train,
        id_prefix=f"r{feedback.round}-",
    )


def _copy_round_files(parent: Cohort, feedback: CohortFeedback, tmp: Path) -> None:
    """Into the cohort being written: the parent's synthesizer and metadata, and the feedback."""
    for name in ("synthesizer.pkl", "metadata.json"):
        if (parent.root / name).exists():
            shutil.copy2(parent.root / name, tmp / name)
    (tmp / FEEDBACK_FILE).write_text(feedback.model_dump_json(indent=2) + "\n", "utf-8")


def _round_manifest(
    parent: Cohort, feedback: CohortFeedback, out: Path, counts: dict[str, Any], added: int
) -> Any:
    """The parent's manifest renamed and re-dated, its lineage naming the round's feedback."""
    from clinicgym import __version__

    m = parent.manifest
    parent_fb = (m.lineage.get("feedback") or {}) if m.lineage else {}
    return m.model_copy(
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


def _round_summary(
    root: Path, parent: Cohort, feedback: CohortFeedback, added: int
) -> dict[str, Any]:
    """What the round did, for the caller to show."""
    return {
        "cohort": str(root),
        "round": feedback.round,
        "rows_kept": len(parent.table),
        "rows_added": added,
        "patients_changed": sum(1 for p in feedback.patients.values() if p.facts or p.persona),
        "finding_rewordings": len(feedback.findings),
        "annotations_applied": len(feedback.annotations),
        "queued": len(feedback.queued),
    }
