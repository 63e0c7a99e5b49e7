"""Clinicians' annotations applied to a cohort: the work behind `clinicgym feedback apply`.

`load_annotations` reads annotations from a JSONL export or an annotation database;
`apply_feedback` writes a new cohort whose patients answer the corrected way, with more rows
where reviewed episodes disagreed with the scores (diagnoses and truth-changing fixes are
queued for review, not applied), and returns what it did for the caller to show.

Heavy modules (the cohort's synthesizer, pandas) load only when a function runs, so importing
this module stays cheap for the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinicgym.errors import ClinicGymError

if TYPE_CHECKING:
    from clinicgym.patients.cohorts.cohort import Cohort
    from clinicgym.patients.cohorts.feedback import CohortFeedback, FeedbackInputs
    from clinicgym.runs.review.annotation import Annotation


def load_annotations(source: str) -> list[Annotation]:
    """Annotations from a JSONL export (a .jsonl file) or a database (a path or a URL)."""
    from clinicgym.runs.review.annotation import read_jsonl

    path = Path(source)
    if path.suffix == ".jsonl" or (path.is_file() and path.read_bytes()[:1] == b"{"):
        return read_jsonl(path)
    if "://" not in source and not path.exists():
        from clinicgym.runs.review.errors import ReviewError

        raise ReviewError(f"{source}: no such annotations file or database")
    from clinicgym.runs.review.db import AnnotationDB

    db = AnnotationDB(source)
    try:
        return list(db.all())
    finally:
        db.close()


@dataclass
class FeedbackRound:
    """What `apply_feedback` did: the parent cohort, the feedback (overrides and the review
    queue), the disagreement-weighted mix (None when it has none) and the new cohort's summary."""

    parent: Cohort
    feedback: CohortFeedback
    mix: Any
    summary: dict[str, Any]


def apply_feedback(
    annotations: str,
    cohort: Path,
    out: Path,
    *,
    add: int | None = None,
    strength: float = 0.7,
    seed: int | None = None,
    kb: Path | None = None,
    overwrite: bool = False,
) -> FeedbackRound:
    """Apply the annotations in `annotations` (see `load_annotations`) to the cohort at `cohort`
    and write the new cohort to `out`, adding `add` disagreement-weighted rows (None: see
    `default_added_rows`) that lean `strength` (0..1) towards disagreement."""
    from clinicgym.patients.cohorts.cohort import Cohort
    from clinicgym.patients.cohorts.feedback_round import plan_feedback, write_feedback_cohort
    from clinicgym.patients.knowledge.kb import load_kb
    from clinicgym.runs.review.verdicts import feedback_inputs

    if out.exists() and not overwrite:
        raise ClinicGymError(f"{out} already exists; choose another --out or pass --overwrite")
    parent = Cohort.open(cohort, load_kb(kb) if kb else None)
    inputs = feedback_inputs(load_annotations(annotations))
    feedback, mix = plan_feedback(inputs, parent, strength=strength)
    if add is None:
        add = default_added_rows(parent, inputs, mix)
    _, summary = write_feedback_cohort(
        parent, feedback, mix, out, add=add, seed=seed, overwrite=overwrite
    )
    return FeedbackRound(parent=parent, feedback=feedback, mix=mix, summary=summary)


def default_added_rows(parent: Cohort, inputs: FeedbackInputs, mix: Any) -> int:
    """A quarter of the parent's rows (at least one) when reviewed episodes disagreed with a
    score and the parent kept its synthesizer to draw them; otherwise none."""
    has_synth = (parent.root / "synthesizer.pkl").exists()
    differ = any(d.disagreed > 0 for d in inputs.disagreements)
    return max(1, len(parent) // 4) if (mix is not None and differ and has_synth) else 0
