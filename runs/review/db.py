"""The annotation database: SQLAlchemy over a SQLite file by default, any SQLAlchemy URL else.

One table, `annotations`, append-only: a row per saved annotation (the newest per key is the
current one, see `annotation.current`). Indexed columns carry what is queried (run, episode,
annotator, kind); the label and its context snapshot are JSON. A lab can point `--db` at
PostgreSQL (`postgresql+psycopg://user@host/db`; psycopg comes with the `review` extra).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from clinicgym.runs.review.annotation import ANNOTATION_FORMAT_VERSION, Annotation, current
from clinicgym.runs.review.errors import ReviewDependencyError, ReviewError

try:
    from sqlalchemy import (
        JSON,
        Integer,
        String,
        Text,
        create_engine,
        event,
        func,
        select,
        update,
    )
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ReviewDependencyError(
        "the annotation database needs SQLAlchemy: run `pip install 'clinicgym[review]'`"
    ) from e


class _Base(DeclarativeBase):
    pass


class AnnotationRow(_Base):
    """One saved annotation."""

    __tablename__ = "annotations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    format_version: Mapped[int] = mapped_column(Integer)
    annotator: Mapped[str] = mapped_column(String(64), index=True)
    created: Mapped[str] = mapped_column(String(40), index=True)
    run_id: Mapped[str] = mapped_column(String(255), index=True)
    run_hash: Mapped[str] = mapped_column(String(64))
    episode_id: Mapped[str] = mapped_column(String(1024), index=True)
    episode_hash: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[str] = mapped_column(String(255))
    case_hash: Mapped[str] = mapped_column(String(64))
    event_index: Mapped[int] = mapped_column(Integer)
    event_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    target: Mapped[str] = mapped_column(Text)
    label: Mapped[dict[str, Any]] = mapped_column(JSON)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)


def database_url(db: str | Path) -> str:
    """A SQLAlchemy URL for `db`: a URL as given, or a file path as a SQLite URL."""
    text = str(db)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def _row(a: Annotation) -> AnnotationRow:
    return AnnotationRow(
        id=a.id,
        format_version=a.format_version,
        annotator=a.annotator,
        created=a.created,
        run_id=a.run_id,
        run_hash=a.run_hash,
        episode_id=a.episode_id,
        episode_hash=a.episode_hash,
        case_id=a.case_id,
        case_hash=a.case_hash,
        event_index=a.event_index,
        event_hash=a.event_hash,
        kind=a.label.kind,
        target=a.label.target(),
        label=a.label.model_dump(mode="json"),
        context=a.context.model_dump(mode="json"),
    )


def _annotation(r: AnnotationRow) -> Annotation:
    return Annotation.model_validate(
        {
            "format_version": r.format_version,
            "id": r.id,
            "annotator": r.annotator,
            "created": r.created,
            "run_id": r.run_id,
            "run_hash": r.run_hash,
            "episode_id": r.episode_id,
            "episode_hash": r.episode_hash,
            "case_id": r.case_id,
            "case_hash": r.case_hash,
            "event_index": r.event_index,
            "event_hash": r.event_hash,
            "label": r.label,
            "context": r.context,
        }
    )


class AnnotationDB:
    """The annotation store behind the review server and the export/import commands."""

    def __init__(self, db: str | Path) -> None:
        self.url = database_url(db)
        sqlite = self.url.startswith("sqlite")
        try:
            self.engine = create_engine(
                self.url,
                connect_args={"check_same_thread": False, "timeout": 30} if sqlite else {},
            )
            if sqlite:
                event.listen(self.engine, "connect", _sqlite_pragmas)
            _Base.metadata.create_all(self.engine)
        except (SQLAlchemyError, ImportError) as e:
            raise ReviewError(f"annotation database {self.url}: cannot open it ({e})") from None

    def close(self) -> None:
        self.engine.dispose()

    # ---- writing ------------------------------------------------------------------------

    def add(self, annotation: Annotation) -> Annotation:
        """Store one annotation (a new row; it supersedes older ones with the same key)."""
        with Session(self.engine) as s, s.begin():
            s.add(_row(annotation))
        return annotation

    def import_many(self, annotations: Iterable[Annotation]) -> tuple[int, int]:
        """Store annotations whose id is not stored yet: (added, already there). Idempotent."""
        added = skipped = 0
        with Session(self.engine) as s, s.begin():
            for a in annotations:
                if a.format_version > ANNOTATION_FORMAT_VERSION:
                    raise ReviewError(
                        f"annotation {a.id}: format_version {a.format_version} is newer than "
                        f"this clinicgym reads ({ANNOTATION_FORMAT_VERSION}); upgrade clinicgym"
                    )
                if s.get(AnnotationRow, a.id) is not None:
                    skipped += 1
                    continue
                s.add(_row(a))
                added += 1
        return added, skipped

    def seal(
        self,
        run_id: str,
        episode_id: str,
        episode_hash: str,
        event_hashes: dict[int, str],
        auto: dict[str, Any],
    ) -> int:
        """Give annotations made while an episode was live the stored episode's hash and its
        automatic verdicts (a live episode has none yet), where the event they label is
        unchanged; returns how many were sealed."""
        n = 0
        with Session(self.engine) as s, s.begin():
            rows = s.scalars(
                select(AnnotationRow).where(
                    AnnotationRow.run_id == run_id,
                    AnnotationRow.episode_id == episode_id,
                    AnnotationRow.episode_hash == "",
                )
            ).all()
            for r in rows:
                if r.event_index == -1 or event_hashes.get(r.event_index) == r.event_hash:
                    s.execute(
                        update(AnnotationRow)
                        .where(AnnotationRow.id == r.id)
                        .values(episode_hash=episode_hash, context={**r.context, "auto": auto})
                    )
                    n += 1
        return n

    # ---- reading ------------------------------------------------------------------------

    def all(self) -> Iterator[Annotation]:
        """Every stored annotation, oldest first (history included)."""
        with Session(self.engine) as s:
            rows = s.scalars(
                select(AnnotationRow).order_by(AnnotationRow.created, AnnotationRow.id)
            )
            for r in rows:
                yield _annotation(r)

    def for_episode(
        self, run_id: str, episode_id: str, annotator: str | None = None
    ) -> list[Annotation]:
        """The current annotations of one episode (one annotator's, or everyone's)."""
        q = select(AnnotationRow).where(
            AnnotationRow.run_id == run_id, AnnotationRow.episode_id == episode_id
        )
        if annotator is not None:
            q = q.where(AnnotationRow.annotator == annotator)
        with Session(self.engine) as s:
            return current(_annotation(r) for r in s.scalars(q))

    def annotated_episodes(self, run_id: str) -> dict[str, set[str]]:
        """episode id -> annotators who labelled anything in it."""
        q = (
            select(AnnotationRow.episode_id, AnnotationRow.annotator)
            .where(AnnotationRow.run_id == run_id)
            .distinct()
        )
        out: dict[str, set[str]] = {}
        with Session(self.engine) as s:
            for episode_id, annotator in s.execute(q):
                out.setdefault(episode_id, set()).add(annotator)
        return out

    def unsealed(self, run_id: str) -> set[str]:
        """Episodes of a run with annotations made while they were live, not yet sealed."""
        q = (
            select(AnnotationRow.episode_id)
            .where(AnnotationRow.run_id == run_id, AnnotationRow.episode_hash == "")
            .distinct()
        )
        with Session(self.engine) as s:
            return set(s.scalars(q))

    def count(self) -> int:
        with Session(self.engine) as s:
            return int(s.scalar(select(func.count()).select_from(AnnotationRow)) or 0)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets the server read while another process (an import) writes."""
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
