"""Annotation records and their database: validation, current vs history, sealing, and a JSONL
export that imports back unchanged."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from clinicgym.runs.review.annotation import (
    Annotation,
    EpisodeLabel,
    MissedViolationLabel,
    PatientTurnLabel,
    ViolationLabel,
    current,
    event_hash,
    read_jsonl,
    write_jsonl,
)
from clinicgym.runs.review.db import AnnotationDB, database_url
from clinicgym.runs.review.errors import AnnotationError
from tests.runs.review_support import annotation as _ann


def test_labels_refuse_what_does_not_make_sense():
    with pytest.raises(ValidationError, match="realistic takes no correction"):
        PatientTurnLabel(verdict="realistic", fact_id="f01", correction="No.")
    with pytest.raises(ValidationError, match="only an unrealistic fact can be removed"):
        PatientTurnLabel(verdict="inconsistent", fact_id="f01", remove=True)
    with pytest.raises(ValidationError, match="must name the fact"):
        PatientTurnLabel(verdict="unrealistic", correction="It itches.")
    with pytest.raises(ValidationError, match="persona_value 'genius' for health_literacy"):
        PatientTurnLabel(
            verdict="wrong_for_persona", persona_field="health_literacy", persona_value="genius"
        )
    with pytest.raises(ValidationError, match="annotator"):
        _ann(EpisodeLabel(acceptable=True), who="dr lee; drop table")
    with pytest.raises(ValidationError, match="episode labels have event_index -1"):
        Annotation.model_validate(
            {**_ann(EpisodeLabel(acceptable=True)).model_dump(), "event_index": 2}
        )


def test_the_newest_label_per_key_is_current_and_history_stays(tmp_path):
    db = AnnotationDB(tmp_path / "a.sqlite")
    first = db.add(_ann(PatientTurnLabel(verdict="realistic"), created="2026-01-01T10:00:00Z"))
    second = db.add(
        _ann(
            PatientTurnLabel(verdict="unrealistic", fact_id="f01", correction="A dry cough."),
            created="2026-01-01T10:05:00Z",
        )
    )
    db.add(_ann(PatientTurnLabel(verdict="realistic"), who="dr.b"))
    m1 = db.add(_ann(MissedViolationLabel(rule_id="min-necessary"), index=4))
    m2 = db.add(_ann(MissedViolationLabel(rule_id="verify-identity"), index=4))
    mine = db.for_episode("run1", "scripted|c-1|r0", annotator="dr.a")
    assert {a.id for a in mine} >= {m1.id, m2.id}  # missed violations never replace each other
    patient = [a for a in mine if a.label.kind == "patient_turn"]
    assert [a.id for a in patient] == [second.id]  # one verdict per turn: the newest
    assert first.id in {a.id for a in db.all()}  # history is kept
    assert db.annotated_episodes("run1") == {"scripted|c-1|r0": {"dr.a", "dr.b"}}
    assert db.count() == 5


def test_a_newer_save_replaces_the_same_target():
    old = _ann(ViolationLabel(violation_index=0, rule_id="r", pack="p@1", verdict="agree"))
    new = old.model_copy(
        update={
            "id": "f" * 32,
            "created": "9999",
            "label": ViolationLabel(violation_index=0, rule_id="r", pack="p@1", verdict="disagree"),
        }
    )
    other = _ann(ViolationLabel(violation_index=1, rule_id="r", pack="p@1", verdict="agree"))
    assert [a.label.verdict for a in current([new, old, other])] == ["agree", "disagree"]


def test_export_imports_back_unchanged_and_import_is_idempotent(tmp_path):
    src = AnnotationDB(tmp_path / "src.sqlite")
    items = [
        _ann(EpisodeLabel(acceptable=False, diagnosis="asthma", comment="missed red flag")),
        _ann(PatientTurnLabel(verdict="unrealistic", fact_id="f02", correction="Ünïcödé <b>")),
        _ann(ViolationLabel(violation_index=0, rule_id="r1", pack="hipaa@2", verdict="agree")),
        _ann(EpisodeLabel(acceptable=True), episode_hash=""),  # made live, not sealed
    ]
    for a in items:
        src.add(a)
    path = tmp_path / "out.jsonl"
    assert write_jsonl(src.all(), path) == 4
    dst = AnnotationDB(f"sqlite:///{tmp_path / 'dst.sqlite'}")
    assert dst.import_many(read_jsonl(path)) == (4, 0)
    assert dst.import_many(read_jsonl(path)) == (0, 4)
    dump = lambda db: sorted(a.model_dump_json() for a in db.all())  # noqa: E731
    assert dump(dst) == dump(src) == sorted(a.model_dump_json() for a in items)
    again = tmp_path / "again.jsonl"
    write_jsonl(dst.all(), again)
    assert sorted(again.read_text().splitlines()) == sorted(path.read_text().splitlines())


def test_a_bad_annotations_file_lists_every_problem(tmp_path):
    good = _ann(EpisodeLabel(acceptable=True)).model_dump(mode="json")
    bad_kind = {**good, "label": {"kind": "mood", "acceptable": True}}
    bad_who = {**good, "id": "e" * 32, "annotator": ""}
    path = tmp_path / "bad.jsonl"
    path.write_text(
        "\n".join([json.dumps(good), "{not json", json.dumps(bad_kind), json.dumps(bad_who)])
    )
    with pytest.raises(AnnotationError) as e:
        read_jsonl(path)
    msg = str(e.value)
    assert "has 3 problem(s)" in msg and "line 2: not JSON" in msg
    assert "line 3, field 'label'" in msg and "line 4, field 'annotator'" in msg
    with pytest.raises(AnnotationError, match="no such annotations file"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_sealing_gives_live_labels_the_stored_hash_only_if_the_turn_is_unchanged(tmp_path):
    db = AnnotationDB(tmp_path / "s.sqlite")
    same = db.add(_ann(PatientTurnLabel(verdict="realistic"), episode_hash=""))
    moved = db.add(_ann(PatientTurnLabel(verdict="realistic"), episode_hash="", index=5, who="b"))
    whole = db.add(_ann(EpisodeLabel(acceptable=True), episode_hash="", who="c"))
    assert db.unsealed("run1") == {"scripted|c-1|r0"}
    hashes = {3: event_hash(1, "patient", "Yes, a cough."), 5: "something else"}
    auto = {"diagnostic_accuracy": 1.0, "acceptable": True, "clinician_turns": [1]}
    assert db.seal("run1", "scripted|c-1|r0", "d" * 64, hashes, auto) == 2
    got = {a.id: a for a in db.all()}
    assert got[same.id].episode_hash == got[whole.id].episode_hash == "d" * 64
    assert got[whole.id].context.auto.acceptable is True
    assert got[moved.id].episode_hash == ""


def test_database_urls():
    assert database_url("postgresql+psycopg://u@db/ann") == "postgresql+psycopg://u@db/ann"
    assert database_url("x.sqlite").startswith("sqlite:////") and database_url("x.sqlite").endswith(
        "/x.sqlite"
    )
