"""Reading clinicians' verdicts out of annotations: the fixes `patients.cohorts.feedback`
applies, and the ratings table `scoring.agreement` compares with the automatic verdicts.

Only current annotations count (the newest per annotator, episode, kind, turn and target).
An episode counts as reviewed by a clinician when that clinician labelled the whole episode;
for the violations verdict every clinician turn of a reviewed episode is an item: flagged or
not by the monitors, breached or not in the clinician's view (agreeing with a flagged violation
or reporting a missed one says breached; disagreeing with every flagged one says not; a flagged
turn the clinician gave no verdict on is left out, not guessed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import pandas as pd

from clinicgym.patients.cohorts.feedback import (
    DiagnosisProposal,
    Disagreement,
    FactFix,
    FeedbackInputs,
    PersonaFix,
    Unfixed,
)
from clinicgym.runs.review.annotation import Annotation, current
from clinicgym.scoring.agreement import AUTO, COLUMNS


def cohort_row(a: Annotation) -> str | None:
    """The case's cohort row ('cohort:<id>/<row>'), if it came from a cohort."""
    return next((p for p in a.context.lineage if p.startswith("cohort:")), None)


def feedback_inputs(annotations: Iterable[Annotation]) -> FeedbackInputs:
    """The fixes, flags, diagnoses and disagreements the annotations hold."""
    anns = current(annotations)
    out = FeedbackInputs()
    for a in anns:
        lab, ctx = a.label, a.context
        if lab.kind == "patient_turn" and lab.verdict != "realistic":
            patient = cohort_row(a)
            fact = ctx.fact
            if fact is not None and (lab.correction or lab.remove):
                out.fact_fixes.append(
                    FactFix(
                        annotation_id=a.id,
                        patient=patient,
                        concept=fact.concept,
                        category=fact.category,
                        present=fact.present,
                        original=fact.text,
                        action="remove" if lab.remove else "reword",
                        text=lab.correction,
                        scope=lab.scope,
                        speaker=ctx.speaker,  # type: ignore[arg-type]
                        sex=(ctx.sex or "any") if ctx.speaker == "caregiver" else "any",
                        diagnosis_names=[ctx.diagnosis.name, *ctx.diagnosis.synonyms]
                        if ctx.diagnosis
                        else [],
                    )
                )
            if lab.persona_field and lab.persona_value:
                out.persona_fixes.append(
                    PersonaFix(
                        annotation_id=a.id,
                        patient=patient,
                        field=lab.persona_field,
                        value=lab.persona_value,
                    )
                )
            if not (lab.correction or lab.remove or lab.persona_field):
                out.unfixed.append(
                    Unfixed(
                        annotation_id=a.id,
                        patient=patient,
                        detail=f"{lab.verdict.replace('_', ' ')} answer at turn {ctx.turn} with "
                        f"no fix: {ctx.event_text[:120]!r}"
                        + (f" ({lab.note})" if lab.note else ""),
                    )
                )
        elif lab.kind == "episode" and lab.diagnosis:
            out.diagnoses.append(
                DiagnosisProposal(
                    annotation_id=a.id,
                    patient=cohort_row(a),
                    case_diagnosis=ctx.diagnosis.name if ctx.diagnosis else "",
                    proposed=lab.diagnosis,
                    matches_case=ctx.diagnosis_matches_case,
                )
            )
    out.disagreements = _disagreements(anns, ratings_table(anns))
    return out


def _clinician_turn_verdicts(anns: list[Annotation]) -> dict[tuple[str, str], dict[int, bool]]:
    """(annotator, episode item) -> turn -> breached in the clinician's view (where decided)."""
    agree: dict[tuple[str, str, int], list[bool]] = defaultdict(list)
    missed: set[tuple[str, str, int]] = set()
    for a in anns:
        item = f"{a.run_id}|{a.episode_id}"
        if a.label.kind == "violation" and a.context.turn is not None:
            agree[(a.annotator, item, a.context.turn)].append(a.label.verdict == "agree")
        elif a.label.kind == "missed_violation" and a.context.turn is not None:
            missed.add((a.annotator, item, a.context.turn))
    out: dict[tuple[str, str], dict[int, bool]] = defaultdict(dict)
    for (who, item, turn), verdicts in agree.items():
        out[(who, item)][turn] = any(verdicts)
    for who, item, turn in missed:
        out[(who, item)][turn] = True
    return out


def ratings_table(annotations: Iterable[Annotation]) -> pd.DataFrame:
    """(verdict, item, rater, value) rows for `scoring.agreement`: the automatic verdicts as
    rater `auto`, each clinician by annotator id; `episode` names the item's episode. Only
    reviewed episodes count."""
    anns = current(annotations)
    turn_views = _clinician_turn_verdicts(anns)
    rows: list[dict[str, object]] = []
    auto_done: set[tuple[str, str]] = set()

    def add(verdict: str, item: str, rater: str, value: object, episode: str) -> None:
        if rater == AUTO:
            if (verdict, item) in auto_done:
                return
            auto_done.add((verdict, item))
        rows.append(
            {"verdict": verdict, "item": item, "rater": rater, "value": value, "episode": episode}
        )

    for a in anns:
        if a.label.kind != "episode":
            continue
        lab, av = a.label, a.context.auto
        ep = f"{a.run_id}|{a.episode_id}"
        if av.acceptable is not None:
            add("acceptance", ep, AUTO, "yes" if av.acceptable else "no", ep)
            add("acceptance", ep, a.annotator, "yes" if lab.acceptable else "no", ep)
        if av.diagnostic_accuracy is not None and lab.model_diagnosis_correct != "unsure":
            add("diagnosis_match", ep, AUTO, "yes" if av.diagnostic_accuracy == 1.0 else "no", ep)
            add("diagnosis_match", ep, a.annotator, lab.model_diagnosis_correct, ep)
        if av.acceptable is None and av.diagnostic_accuracy is None:
            continue  # the stored episode's verdicts are not known yet (made live, unsealed)
        flagged = set(av.violation_turns)
        seen = turn_views.get((a.annotator, ep), {})
        for turn in av.clinician_turns:
            item = f"{ep}|turn {turn}"
            add("violations", item, AUTO, "yes" if turn in flagged else "no", ep)
            if turn in seen:
                add("violations", item, a.annotator, "yes" if seen[turn] else "no", ep)
            elif turn not in flagged:
                add("violations", item, a.annotator, "no", ep)
            # flagged, and this clinician said nothing about it: left out, not guessed
    return pd.DataFrame(rows, columns=[*COLUMNS, "episode"])


def _disagreements(anns: list[Annotation], ratings: pd.DataFrame) -> list[Disagreement]:
    """Per reviewed episode and clinician: did they disagree with any automatic verdict?"""
    if ratings.empty:
        return []
    auto_values = ratings[ratings["rater"] == AUTO].set_index(["verdict", "item"])["value"]
    out = []
    for a in anns:
        if a.label.kind != "episode" or a.context.condition_id is None:
            continue
        item = f"{a.run_id}|{a.episode_id}"
        mine = ratings[(ratings["rater"] == a.annotator) & (ratings["episode"] == item)]
        if mine.empty:
            continue
        differ = any(
            auto_values.get((r.verdict, r.item)) not in (None, r.value) for r in mine.itertuples()
        )
        ids = [
            x.id
            for x in anns
            if x.annotator == a.annotator
            and f"{x.run_id}|{x.episode_id}" == item
            and x.label.kind in ("episode", "violation", "missed_violation")
        ]
        out.append(
            Disagreement(
                annotation_ids=ids,
                condition_id=a.context.condition_id,
                sex=a.context.sex or "",
                age_band=a.context.age_band or "",
                ethnicity=a.context.ethnicity,
                disagreed=1.0 if differ else 0.0,
            )
        )
    return out
