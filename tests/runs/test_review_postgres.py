"""The annotation database on a real PostgreSQL server (a throwaway cluster on a Unix socket,
no TCP): the same records, history, sealing and JSONL round trip as on SQLite."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinicgym.runs.cli import app
from clinicgym.runs.review.annotation import (
    EpisodeLabel,
    PatientTurnLabel,
    ViolationLabel,
    event_hash,
    read_jsonl,
)
from clinicgym.runs.review.db import AnnotationDB
from tests.runs.review_support import annotation

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next((str(v / name) for v in versions if (v / name).exists()), None)


@pytest.fixture(scope="module")
def pg_url():
    """A PostgreSQL cluster of its own, listening only on a socket in a temporary directory."""
    pytest.importorskip("psycopg", reason="pip install 'clinicgym[review]' (psycopg)")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql)")
    root = Path(tempfile.mkdtemp(prefix="cg-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the postgres user
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        shutil.chown(root, user="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, sock = root / "data", root
    run = lambda *cmd: subprocess.run(  # noqa: E731
        [*as_user, *cmd], check=True, capture_output=True, text=True, timeout=60
    )
    try:
        run(initdb, "-D", str(data), "-A", "trust", "-U", "cg", "--no-sync")
        run(
            pg_ctl, "-D", str(data), "-w", "-l", str(root / "log"),
            "-o", f"-c listen_addresses='' -k {sock} -c fsync=off", "start",
        )  # fmt: skip
    except subprocess.CalledProcessError as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {e.stderr.strip()[:300]}")
    try:
        yield f"postgresql+psycopg://cg@/postgres?host={sock}"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "fast", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_the_database_works_the_same_on_postgresql(pg_url, tmp_path):
    db = AnnotationDB(pg_url)
    assert db.url.startswith("postgresql+psycopg://")
    old = db.add(annotation(EpisodeLabel(acceptable=False, comment="first")))
    new = db.add(annotation(EpisodeLabel(acceptable=True, diagnosis="asthma")))
    fix = db.add(
        annotation(PatientTurnLabel(verdict="unrealistic", fact_id="f02", correction="Ünï <b>"))
    )
    live = db.add(annotation(PatientTurnLabel(verdict="realistic"), who="dr.b", episode_hash=""))
    db.add(
        annotation(
            ViolationLabel(violation_index=0, rule_id="r1", pack="p@1", verdict="agree"),
            episode="scripted|c-2|r0",
        )
    )
    assert db.count() == 5
    # the newest label per key is current; the history stays
    mine = {a.id for a in db.for_episode("run1", "scripted|c-1|r0", annotator="dr.a")}
    assert mine == {new.id, fix.id} and old.id not in mine
    assert db.annotated_episodes("run1") == {
        "scripted|c-1|r0": {"dr.a", "dr.b"},
        "scripted|c-2|r0": {"dr.a"},
    }
    assert db.unsealed("run1") == {"scripted|c-1|r0"}
    hashes = {3: event_hash(1, "patient", "Yes, a cough.")}
    assert db.seal("run1", "scripted|c-1|r0", "d" * 64, hashes, {"acceptable": True}) == 1
    sealed = next(a for a in db.all() if a.id == live.id)
    assert sealed.episode_hash == "d" * 64 and sealed.context.auto.acceptable is True
    assert next(a for a in db.all() if a.id == fix.id).label.correction == "Ünï <b>"

    # export from PostgreSQL, import into SQLite and back into PostgreSQL: nothing changes
    runner = CliRunner()
    out = tmp_path / "pg.jsonl"
    r = runner.invoke(app, ["review", "export", str(out), "--db", pg_url])
    assert r.exit_code == 0 and "wrote 5 annotations" in r.output, r.output
    sqlite = tmp_path / "copy.sqlite"
    r = runner.invoke(app, ["review", "import", str(out), "--db", str(sqlite)])
    assert r.exit_code == 0, r.output
    lite = AnnotationDB(sqlite)
    dump = lambda d: sorted(a.model_dump_json() for a in d.all())  # noqa: E731
    assert dump(lite) == dump(db) == sorted(a.model_dump_json() for a in read_jsonl(out))
    assert db.import_many(lite.all()) == (0, 5)  # idempotent: same ids
    lite.close()
    db.close()
