"""Feedback into a cohort: fixes become overrides applied at realisation, the rest is queued,
disagreements weight the mix, and every changed case names the annotations that changed it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.cohorts.cohort import (
    Cohort,
    CohortManifest,
    CohortSchema,
    SourceInfo,
    row_ids,
    write_cohort,
)
from clinicgym.patients.cohorts.feedback import (
    FEEDBACK_FILE,
    DiagnosisProposal,
    Disagreement,
    FactFix,
    FeedbackInputs,
    PersonaFix,
    Unfixed,
    load_feedback,
)
from clinicgym.patients.cohorts.feedback_round import plan_feedback, write_feedback_cohort
from clinicgym.patients.errors import CohortError
from clinicgym.patients.knowledge.bands import age_band
from clinicgym.patients.patient.patient import GroundedPatient
from tests.extras import needs

SMALL_KB = Path(__file__).parents[2] / "data" / "kb_small"


@pytest.fixture(scope="module")
def parent(small_kb, tmp_path_factory) -> Cohort:
    """A cohort directory built straight from KB records (no synthesizer needed here)."""
    schema = CohortSchema.for_kb(small_kb)
    sampler = CaseSampler(small_kb)
    records = [sampler.sample_record(np.random.default_rng([5, i])) for i in range(40)]
    seed = schema.table(records, row_ids("s", 40))
    table = schema.table(records[:16], row_ids("p", 16))
    root = tmp_path_factory.mktemp("cohorts") / "c0"
    write_cohort(
        root,
        manifest=CohortManifest(
            cohort_id="c0",
            created="2026-01-01T00:00:00Z",
            clinicgym_version="0",
            sdv_version="0",
            kb_version=small_kb.version,
            kb_dir=str(SMALL_KB.resolve()),
            source=SourceInfo(kind="kb", rows=40, kb_seed=5),
            synthesizer={"name": "gaussian_copula"},
            seed=5,
            split={"train": 32, "holdout": 8},
            plan={},
            counts={"kept": 16},
        ),
        table=table,
        train=seed.iloc[:32],
        holdout=seed.iloc[32:],
    )
    return Cohort.open(root, small_kb)


@pytest.fixture(scope="module")
def cases(parent):
    return parent.cases()


def _row(case) -> str:
    return case.lineage.parent_ids[0]


def _fact(case, concept):
    return next(f for f in case.facts if f.concept == concept)


def _fix(case, concept, aid, **kw) -> FactFix:
    f = _fact(case, concept)
    base = {
        "annotation_id": aid,
        "patient": _row(case),
        "concept": concept,
        "category": f.category,
        "present": f.present,
        "original": f.text,
        "action": "reword",
        "diagnosis_names": [case.diagnosis.name, *case.diagnosis.synonyms],
    }
    return FactFix(**{**base, **kw})


def _by_condition(cases, condition):
    return [c for c in cases if c.diagnosis.condition_id == condition]


def test_a_correction_rewords_the_fact_and_the_patient_says_it(parent, cases, tmp_path, matcher):
    case = next(
        c for c in _by_condition(cases, "migraine_without_aura") if _fact(c, "photophobia").present
    )
    said = "Bright lights make it much worse, I keep the curtains shut."
    inputs = FeedbackInputs(fact_fixes=[_fix(case, "photophobia", "a1", text=said)])
    fb, mix = plan_feedback(inputs, parent)
    assert mix is None and not fb.queued and fb.annotations == ["a1"]
    new, summary = write_feedback_cohort(parent, fb, mix, tmp_path / "c1")
    assert summary["patients_changed"] == 1 and summary["rows_kept"] == len(parent)
    assert new.manifest.lineage["parent_cohort"] == "c0"
    assert new.manifest.lineage["feedback"]["annotations"] == ["a1"]
    assert FEEDBACK_FILE in new.manifest.files
    again = {c.lineage.parent_ids[-1]: c for c in new.cases()}
    changed = again[f"cohort:c0/{_row(case).rsplit('/', 1)[1]}"]
    assert _fact(changed, "photophobia").text == said
    assert changed.lineage.annotations_applied == ["a1"]
    # everything else about the patient is as before: same row, same seed, same realisation
    before = {f.id: f.text for f in case.facts if f.concept != "photophobia"}
    assert {f.id: f.text for f in changed.facts if f.concept != "photophobia"} == before
    assert changed.persona == case.persona and changed.phi == case.phi
    reply = GroundedPatient(changed, matcher).answer("Does light bother your eyes?", turn=1)
    assert said in reply.text
    untouched = [c for c in new.cases() if c.id != changed.id]
    assert all(not c.lineage.annotations_applied for c in untouched)


def test_finding_scope_rewords_every_patient_with_the_finding(parent, cases, tmp_path):
    with_cough = [
        c
        for c in cases
        if c.persona.speaker == "patient"
        and any(f.concept == "cough" and f.present for f in c.facts)
    ]
    assert len(with_cough) >= 2
    said = "I've had this hacking cough that won't go away."
    fix = _fix(with_cough[0], "cough", "a2", text=said, scope="finding")
    fb, _ = plan_feedback(FeedbackInputs(fact_fixes=[fix]), parent)
    new, _ = write_feedback_cohort(parent, fb, None, tmp_path / "c2")
    for c in new.cases():
        cough = next((f for f in c.facts if f.concept == "cough"), None)
        if cough is not None and cough.present and c.persona.speaker == "patient":
            assert cough.text == said and "a2" in c.lineage.annotations_applied
        elif cough is not None and cough.present:  # a parent speaking for a child: "He's ..."
            assert cough.text != said and not c.lineage.annotations_applied
        elif cough is not None:
            assert cough.text != said  # a denial keeps its wording: nothing was said about it


def test_removal_and_persona_fix(parent, cases, tmp_path):
    case = next(c for c in cases if any(f.concept == "nausea" and f.present for f in c.facts))
    inputs = FeedbackInputs(
        fact_fixes=[_fix(case, "nausea", "a3", action="remove", text=None)],
        persona_fixes=[
            PersonaFix(annotation_id="a4", patient=_row(case), field="health_literacy", value="low")
        ],
    )
    fb, _ = plan_feedback(inputs, parent)
    new, _ = write_feedback_cohort(parent, fb, None, tmp_path / "c3")
    changed = next(c for c in new.cases() if c.lineage.annotations_applied)
    assert not any(f.concept == "nausea" for f in changed.facts)
    assert changed.persona.health_literacy == "low"
    assert set(changed.lineage.annotations_applied) == {"a3", "a4"}
    assert all(fid in {f.id for f in changed.facts} for fid in changed.persona.volunteer)


def test_what_must_not_be_applied_is_queued(parent, cases):
    mig = next(
        c for c in _by_condition(cases, "migraine_without_aura") if _fact(c, "photophobia").present
    )
    denied = next(f for f in mig.facts if not f.present and f.category == "hpi")
    conflict = [
        _fix(mig, "photophobia", "c1", text="Light hurts."),
        _fix(mig, "photophobia", "c2", text="Sunlight is unbearable."),
    ]
    inputs = FeedbackInputs(
        fact_fixes=[
            _fix(mig, denied.concept, "t1", text="Actually yes, I have that."),
            _fix(mig, "photophobia", "n1", text="It feels like my migraine again."),
            _fix(mig, "headache", "cc", action="remove", text=None),
            _fix(mig, "photophobia", "x1", text="Light hurts.", patient="cohort:other/p000001"),
            *conflict,
        ],
        unfixed=[Unfixed(annotation_id="u1", patient=_row(mig), detail="inconsistent")],
        diagnoses=[
            DiagnosisProposal(
                annotation_id="d1",
                patient=_row(mig),
                case_diagnosis=mig.diagnosis.name,
                proposed="tension-type headache",
                matches_case=False,
            ),
            DiagnosisProposal(
                annotation_id="d2",
                patient=_row(mig),
                case_diagnosis=mig.diagnosis.name,
                proposed="migraine",
                matches_case=True,
            ),
        ],
    )
    fb, _ = plan_feedback(inputs, parent)
    kinds = {q.kind: q for q in fb.queued}
    assert set(kinds) == {
        "changes_truth",
        "names_diagnosis",
        "chief_complaint",
        "not_in_cohort",
        "conflicting_fixes",
        "no_fix_given",
        "diagnosis_differs",
    }
    assert kinds["conflicting_fixes"].annotations == ["c1", "c2"]
    assert kinds["diagnosis_differs"].annotations == ["d1"]
    assert "tension-type headache" in kinds["diagnosis_differs"].detail
    assert not fb.patients and not fb.annotations  # nothing was applied


def test_disagreements_weight_the_mix_towards_their_conditions(parent, cases):
    rows = []
    for i, c in enumerate(cases):
        disagreed = 1.0 if c.diagnosis.condition_id == "community_acquired_pneumonia" else 0.0
        rows.append(
            Disagreement(
                annotation_ids=[f"e{i}"],
                condition_id=c.diagnosis.condition_id,
                sex=c.sex,
                age_band=age_band(c.age),
                disagreed=disagreed,
            )
        )
    fb, mix = plan_feedback(FeedbackInputs(disagreements=rows), parent)
    shares = {c.condition_id: c.target_share for c in mix.conditions}
    assert shares["community_acquired_pneumonia"] > 1 / 3 > shares["migraine_without_aura"]
    assert fb.weighting is not None
    cap = {
        f"e{i}"
        for i, c in enumerate(cases)
        if c.diagnosis.condition_id == "community_acquired_pneumonia"
    }
    assert set(fb.weighting_annotations) == cap
    assert not fb.annotations  # the weights change the cohort only through rows it adds


def test_a_second_round_keeps_the_first_rounds_fixes(parent, cases, tmp_path):
    case = _by_condition(cases, "lower_urinary_tract_infection")[0]
    fb1, _ = plan_feedback(
        FeedbackInputs(fact_fixes=[_fix(case, "dysuria", "r1", text="Passing water stings.")]),
        parent,
    )
    c1, _ = write_feedback_cohort(parent, fb1, None, tmp_path / "round1")
    again = next(c for c in c1.cases() if c.lineage.annotations_applied)
    other = _by_condition(c1.cases(), "migraine_without_aura")[0]
    fix2 = _fix(other, "headache", "r2", text="My head is pounding on one side.")
    assert fix2.patient.startswith("cohort:round1/")  # a case of round 1 names its row there
    fb2, _ = plan_feedback(FeedbackInputs(fact_fixes=[fix2]), c1)
    assert fb2.round == 2 and fb2.annotations == ["r1", "r2"]
    c2, _ = write_feedback_cohort(c1, fb2, None, tmp_path / "round2")
    by_row = {c.id.split("-", 1)[1]: c for c in c2.cases()}
    row1 = again.id.split("-", 1)[1]
    assert _fact(by_row[row1], "dysuria").text == "Passing water stings."
    assert c2.manifest.lineage["feedback"]["kept_rows_of"] == ["c0", "round1"]


def test_a_bad_feedback_file_names_the_field(parent, tmp_path):
    fb, _ = plan_feedback(FeedbackInputs(), parent)
    c, _ = write_feedback_cohort(parent, fb, None, tmp_path / "bad")
    (c.root / FEEDBACK_FILE).write_text('{"parent_cohort": "c0", "round": "two"}')
    with pytest.raises(CohortError, match=r"(?s)feedback.json has 1 problem.*field 'round'"):
        load_feedback(c.root)
    with pytest.raises(CohortError, match="--add needs reviewed episodes"):
        write_feedback_cohort(parent, fb, None, tmp_path / "more", add=3)


@pytest.mark.slow
@pytest.mark.integration
@needs("cohorts", "sdv")
def test_added_rows_lean_to_where_clinicians_disagreed(small_kb, tmp_path):
    """A parent with a fitted GaussianCopula: the rows a round adds are drawn with the
    disagreement-weighted mix, so the disputed condition gets far more than its parent share."""
    from clinicgym.patients.cohorts.synthesis import CohortSynthesizer

    schema = CohortSchema.for_kb(small_kb)
    sampler = CaseSampler(small_kb)
    records = [sampler.sample_record(np.random.default_rng([9, i])) for i in range(300)]
    seed = schema.table(records, row_ids("s", 300))
    synth = CohortSynthesizer(schema).fit(seed.iloc[:240])
    root = write_cohort(
        tmp_path / "g0",
        manifest=CohortManifest(
            cohort_id="g0",
            created="2026-01-01T00:00:00Z",
            clinicgym_version="0",
            sdv_version="0",
            kb_version=small_kb.version,
            kb_dir=str(SMALL_KB.resolve()),
            source=SourceInfo(kind="kb", rows=300, kb_seed=9),
            synthesizer={"name": "gaussian_copula"},
            seed=9,
            split={"train": 240, "holdout": 60},
            plan={},
            counts={"kept": 30},
        ),
        table=schema.table(records[:30], row_ids("p", 30)),
        train=seed.iloc[:240],
        holdout=seed.iloc[240:],
        save_synthesizer=synth.save,
    )
    parent = Cohort.open(root, small_kb)
    disputed = "lower_urinary_tract_infection"
    rows = [
        Disagreement(
            annotation_ids=[f"e{i}"],
            condition_id=c.diagnosis.condition_id,
            sex=c.sex,
            age_band=age_band(c.age),
            disagreed=1.0 if c.diagnosis.condition_id == disputed else 0.0,
        )
        for i, c in enumerate(parent.cases())
    ]
    fb, mix = plan_feedback(FeedbackInputs(disagreements=rows), parent, strength=0.9)
    new, summary = write_feedback_cohort(parent, fb, mix, tmp_path / "g1", add=60, seed=3)
    assert summary["rows_added"] == 60 and len(new) == 90
    added = new.table[new.table["patient_id"].str.startswith("r1-")]
    share = float((added["condition_id"] == disputed).mean())
    parent_share = float((parent.table["condition_id"] == disputed).mean())
    assert share > 0.55 > parent_share + 0.15, (share, parent_share)
    print(f"disputed condition: {share:.0%} of added rows, {parent_share:.0%} of the parent's")
    weighted = {f"e{i}" for i, r in enumerate(rows) if r.disagreed}
    assert weighted <= set(new.manifest.lineage["feedback"]["annotations"])
    assert new.manifest.targeting is not None  # the mix is kept with the cohort
    # the parent's patients are realised exactly as before
    before = {c.id.split("-", 1)[1]: (c.facts, c.persona) for c in parent.cases()}
    after = {c.id.split("-", 1)[1]: (c.facts, c.persona) for c in new.cases(30)}
    assert after == before
    assert all(f"cohort:g0/{c.id.split('-', 1)[1]}" in c.lineage.parent_ids for c in new.cases(30))
