"""A feedback round end to end: a run on a cohort, a clinician's correction made in the review
server, `review export|import`, `feedback apply` (a new cohort whose lineage names the
annotation), a rerun on the new cohort in which the patient answers the corrected way, and
`feedback agreement` over the same labels."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from clinicgym.patients.cohorts.cohort import Cohort
from clinicgym.patients.cohorts.feedback import FEEDBACK_FILE
from clinicgym.patients.knowledge.kb import load_kb
from clinicgym.runs.cli import app
from clinicgym.runs.review.db import AnnotationDB
from clinicgym.runs.review.forms import turn_facts
from clinicgym.runs.review.live import episode_key
from clinicgym.runs.review.server import BackgroundServer, ServeSettings
from clinicgym.runs.store import RunStore
from tests.runs.review_support import SMALL_KB, csrf_of, forms, make_cohort, make_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

runner = CliRunner()
SAID = "Honestly it is the worst I have ever felt, I can hardly think straight."


def _first_fixable_turn(run_dir):
    """(episode, event index, fact) of the first patient turn that conveyed a present fact
    other than the chief complaint (what a clinician's rewording may change)."""
    store = RunStore(run_dir)
    cases = {c.id: c for c in store.cases()}
    for ep in store.iter_episodes():
        facts = {f.id: f for f in cases[ep.case_id].facts}
        for i, ev in enumerate(ep.events):
            if ev.actor != "patient":
                continue
            for fid in turn_facts(ev):
                f = facts.get(fid)
                if f is not None and f.present and f.category != "chief_complaint":
                    return ep, i, f
    raise AssertionError("no patient turn conveyed a present fact")


def _row(case_id: str) -> str:
    return case_id.rsplit("-", 1)[1]


def _said_by_row(run_dir) -> dict[str, list[str]]:
    """What the patients said, by cohort row."""
    store = RunStore(run_dir)
    out: dict[str, list[str]] = {}
    for ep in store.iter_episodes():
        texts = [e.text for e in ep.events if e.actor == "patient"]
        out.setdefault(_row(ep.case_id), []).extend(texts)
    return out


def _ok(result) -> str:
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # rich wraps long lines at the terminal width


def test_a_feedback_round_changes_what_the_patient_says_in_the_rerun(tmp_path):
    kb = load_kb(SMALL_KB)
    cohort = make_cohort(tmp_path / "c0", rows=6)
    run1 = make_run(tmp_path / "r1", ["asker"], cases=3, cohort=str(cohort), policy_packs=[])
    ep, index, fact = _first_fixable_turn(run1)
    row = _row(ep.case_id)
    assert not any(SAID in t for t in _said_by_row(run1)[row])
    key = episode_key(ep.episode_id)

    # the clinician rewords the fact in the review server, and labels the whole episode
    db_file = tmp_path / "ann.sqlite"
    db = AnnotationDB(db_file)
    with (
        BackgroundServer([run1], db, ServeSettings(port=0)) as url,
        httpx.Client(base_url=url, timeout=10) as c,
    ):
        csrf = csrf_of(c.get("/").text)
        c.post("/annotator", data={"csrf": csrf, "annotator": "dr.ng", "next": "/"})
        page = c.get(f"/runs/r1/episodes/{key}").text
        form = next(f for f in forms(page, "patient_turn") if f["event_index"] == str(index))
        assert fact.id in form["_facts"].split(",")
        fix = {**form, "verdict": "unrealistic", "fact_id": fact.id, "correction": SAID}
        r = c.post(
            f"/runs/r1/episodes/{key}/annotations",
            data=fix,
            headers={"Accept": "application/json"},
        )
        assert r.status_code == 200 and r.json()["ok"], r.text
        whole = {
            "csrf": csrf,
            "kind": "episode",
            "event_index": "-1",
            "acceptable": "no",
            "model_diagnosis_correct": "no",
            "diagnosis": "a diagnosis the case does not have",
        }
        r = c.post(
            f"/runs/r1/episodes/{key}/annotations",
            data=whole,
            headers={"Accept": "application/json"},
        )
        assert r.json()["ok"], r.text
    (fix_id,) = [a.id for a in db.all() if a.label.kind == "patient_turn"]
    stored = list(db.all())
    db.close()
    assert all(a.annotator == "dr.ng" and len(a.episode_hash) == 64 for a in stored)
    assert all(len(a.run_hash) == 64 and a.created for a in stored)

    # export, import into a fresh database, export again: the same lines
    export = tmp_path / "ann.jsonl"
    out = _ok(runner.invoke(app, ["review", "export", str(export), "--db", str(db_file)]))
    assert "wrote 2 annotations" in out
    other = tmp_path / "copy.sqlite"
    out = _ok(runner.invoke(app, ["review", "import", str(export), "--db", str(other)]))
    assert "imported 2 annotations" in out and "(0 already there)" in out
    out = _ok(runner.invoke(app, ["review", "import", str(export), "--db", str(other)]))
    assert "imported 0 annotations" in out and "(2 already there)" in out
    again = tmp_path / "again.jsonl"
    _ok(runner.invoke(app, ["review", "export", str(again), "--db", str(other)]))
    assert again.read_text() == export.read_text()
    first = json.loads(export.read_text().splitlines()[0])
    assert {"annotator", "created", "run_hash", "episode_hash", "case_hash"} <= set(first)

    # feedback apply: the new cohort carries the fix, names the annotation, queues the diagnosis
    c1 = tmp_path / "c1"
    out = _ok(
        runner.invoke(
            app,
            ["feedback", "apply", str(export), "--cohort", str(cohort), "--out", str(c1),
             "--kb", str(SMALL_KB)],
        )
    )  # fmt: skip
    assert "queued" in out and "a diagnosis the case does not have" in out
    new = Cohort.open(c1, kb)
    assert new.manifest.lineage["parent_cohort"] == "c0"
    assert new.manifest.lineage["feedback"]["annotations"] == [fix_id]
    assert FEEDBACK_FILE in new.manifest.files
    feedback = json.loads((c1 / FEEDBACK_FILE).read_text())
    assert [q["kind"] for q in feedback["queued"]] == ["diagnosis_differs"]
    changed = [c for c in new.cases() if c.lineage.annotations_applied]
    assert [_row(c.id) for c in changed] == [row]
    assert next(f for f in changed[0].facts if f.id == fact.id).text == SAID
    assert changed[0].lineage.annotations_applied == [fix_id]

    # the rerun on the new cohort: that patient now says it the corrected way, the others not
    run2 = make_run(tmp_path / "r2", ["asker"], cases=3, cohort=str(c1), policy_packs=[])
    said = _said_by_row(run2)
    assert any(SAID in t for t in said[row])
    assert not any(SAID in t for r, texts in said.items() if r != row for t in texts)
    rerun_case = next(c for c in RunStore(run2).cases() if _row(c.id) == row)
    assert rerun_case.lineage.annotations_applied == [fix_id]

    # agreement over the same labels: acceptance and diagnosis match are rated, one clinician
    report = tmp_path / "agreement.json"
    out = _ok(
        runner.invoke(
            app, ["feedback", "agreement", str(export), "--out", str(report), "--resamples", "50"]
        )
    )
    assert "acceptance: dr.ng vs auto on 1 items" in out
    rows = {r["verdict"]: r for r in json.loads(report.read_text())}
    assert rows["acceptance"]["raters"] == ["dr.ng"] and rows["acceptance"]["items"] == 1
    assert rows["acceptance"]["statistic"] == "cohen_kappa"
