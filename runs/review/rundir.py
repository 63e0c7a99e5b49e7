"""Run directories as the review server sees them: episodes indexed for filters, read one at a
time, episodes in flight read from their live files, and the snapshot an annotation keeps.

The episode log is read incrementally (only the bytes appended since the last look), and each
episode's byte range is remembered, so opening one transcript reads one line however large the
run. Nothing here writes to a run directory.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinicgym.envs.episode import Episode, Event
from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.bands import age_band
from clinicgym.runs import layout
from clinicgym.runs.casefile import read_case_lines
from clinicgym.runs.records import RunFileError, RunManifest, read_manifest
from clinicgym.runs.review.annotation import AnnotationContext, AutoVerdicts, FactRef, event_hash
from clinicgym.runs.review.errors import ReviewError
from clinicgym.runs.review.live import episode_key
from clinicgym.scoring.agreement import auto_acceptable

KEY = re.compile(r"^[0-9a-f]{20}$")
"""An episode key (`live.episode_key`): checked before it is ever part of a path."""
OUTCOMES = ("correct", "wrong", "no_diagnosis", "error")


@dataclass
class EpisodeRow:
    """One stored episode as the run page lists and filters it."""

    key: str
    episode_id: str
    episode_hash: str
    agent: str
    case_id: str
    repeat: int
    status: str
    termination: str
    outcome: str
    """'correct', 'wrong', 'no_diagnosis' or 'error'."""
    rules: tuple[str, ...]
    """Rule ids of the violations the monitors raised."""
    turns: int
    condition_id: str | None
    sex: str | None
    age_band: str | None
    ethnicity: str | None
    insurance: str | None
    offset: int
    length: int


@dataclass
class LiveEpisode:
    """An episode in flight: its live file's header and the events recorded so far."""

    key: str
    episode_id: str
    agent_id: str
    case_id: str
    started: float
    events: list[Event] = field(default_factory=list)


class RunView:
    """One run directory, read-only."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.paths = layout.RunPaths(self.root)
        if not self.paths.is_run():
            raise ReviewError(f"{root}: not a run directory (no {layout.MANIFEST})")
        try:
            self.manifest: RunManifest = read_manifest(self.paths.manifest)
        except RunFileError as e:
            raise ReviewError(str(e)) from None
        self.run_id = self.root.name
        self.run_hash = run_hash(self.manifest)
        self.episodes_path = self.paths.episodes
        self.cases: dict[str, Case] = {}
        cases_path = self.paths.cases
        if cases_path.exists():  # whole cases, or generated ones' recipes (runs/casefile.py)
            with open(cases_path, encoding="utf-8") as fh:
                for c in read_case_lines(fh, where=str(cases_path)):
                    self.cases[c.id] = c
        self._rows: dict[str, EpisodeRow] = {}
        self._order: list[str] = []
        self._read_to = 0
        self._scores: dict[str, dict[str, Any]] = {}
        self._scores_mtime: float | None = None

    # ---- the episode log ----------------------------------------------------------------

    def refresh(self) -> None:
        """Index episodes appended since the last look (a torn last line waits for more)."""
        if not self.episodes_path.exists():
            return
        with open(self.episodes_path, "rb") as fh:
            fh.seek(self._read_to)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        pos = self._read_to
        for line in data[:end].split(b"\n")[:-1]:
            start, pos = pos, pos + len(line) + 1
            if not line.strip():
                continue
            try:
                ep = Episode.model_validate_json(line)
            except ValueError as e:
                raise ReviewError(
                    f"{self.episodes_path} at byte {start}: not an episode ({e})"
                ) from None
            key = episode_key(ep.episode_id)
            if key in self._rows:
                continue  # first copy wins, as in the run store
            self._rows[key] = self._row(ep, key, hashlib.sha256(line).hexdigest(), start, len(line))
            self._order.append(key)
        self._read_to += end

    def _row(self, ep: Episode, key: str, digest: str, offset: int, length: int) -> EpisodeRow:
        case = self.cases.get(ep.case_id)
        if ep.status != "completed":
            outcome = "error"
        elif not ep.outcome.diagnoses:
            outcome = "no_diagnosis"
        else:
            outcome = "correct" if ep.metrics.get("diagnostic_accuracy") == 1.0 else "wrong"
        return EpisodeRow(
            key=key,
            episode_id=ep.episode_id,
            episode_hash=digest,
            agent=ep.agent_id,
            case_id=ep.case_id,
            repeat=ep.repeat,
            status=ep.status,
            termination=str(ep.termination),
            outcome=outcome,
            rules=tuple(dict.fromkeys(v.rule_id for v in ep.violations)),
            turns=ep.turns,
            condition_id=case.diagnosis.condition_id if case else None,
            sex=case.sex if case else None,
            age_band=age_band(case.age) if case else None,
            ethnicity=case.extra.get("ethnicity") if case else None,
            insurance=case.extra.get("insurance") if case else None,
            offset=offset,
            length=length,
        )

    def rows(self) -> list[EpisodeRow]:
        """Stored episodes in the order they were stored."""
        self.refresh()
        return [self._rows[k] for k in self._order]

    def row(self, key: str) -> EpisodeRow | None:
        self.refresh()
        return self._rows.get(key)

    def episode(self, key: str) -> tuple[Episode, EpisodeRow] | None:
        """A stored episode by key (reads its one line), or None."""
        row = self.row(key)
        if row is None:
            return None
        with open(self.episodes_path, "rb") as fh:
            fh.seek(row.offset)
            line = fh.read(row.length)
        return Episode.model_validate_json(line), row

    def metrics(self, episode: Episode) -> dict[str, Any]:
        """The episode's metrics: scores.parquet's row when the run was finalised (scored with
        the run's packs and scenarios), else what the runner stored with the episode."""
        path = self.paths.scores
        if path.exists() and path.stat().st_mtime != self._scores_mtime:
            import pandas as pd

            table = pd.read_parquet(path)
            self._scores = {
                str(r["episode_id"]): {k: (None if pd.isna(v) else v) for k, v in r.items()}
                for r in table.to_dict("records")
            }
            self._scores_mtime = path.stat().st_mtime
        row = self._scores.get(episode.episode_id)
        if row is None:
            return dict(episode.metrics)
        return {k: v for k, v in row.items() if isinstance(v, int | float) or v is None}

    # ---- episodes in flight -------------------------------------------------------------

    @property
    def live_dir(self) -> Path:
        return self.paths.live

    def live_path(self, key: str) -> Path:
        if not KEY.match(key):
            raise ReviewError(f"episode key {key!r} is not 20 hex digits")
        return self.live_dir / f"{key}.jsonl"

    def live(self) -> list[LiveEpisode]:
        """Episodes in flight (a live file whose episode is not stored yet), oldest first."""
        self.refresh()
        out = []
        if not self.live_dir.is_dir():
            return out
        for p in self.live_dir.glob("*.jsonl"):
            key = p.stem
            if not KEY.match(key) or key in self._rows:
                continue
            ep = self.read_live(key, with_events=False)
            if ep is not None:
                out.append(ep)
        return sorted(out, key=lambda e: (e.started, e.key))

    def read_live(self, key: str, *, with_events: bool = True) -> LiveEpisode | None:
        """An episode in flight with the events recorded so far, or None if there is none."""
        lines, _ = self.live_lines(key, 0)
        if not lines or lines[0].get("type") != "start":
            return None
        head = lines[0]
        ep = LiveEpisode(
            key=key,
            episode_id=str(head["episode_id"]),
            agent_id=str(head["agent_id"]),
            case_id=str(head["case_id"]),
            started=float(head.get("started", 0.0)),
        )
        if with_events:
            ep.events = [
                Event.model_validate(x["event"]) for x in lines[1:] if x["type"] == "event"
            ]
        return ep

    def live_lines(self, key: str, offset: int) -> tuple[list[dict[str, Any]], int]:
        """Complete lines of a live file from `offset` on, and the offset after them. A missing
        file gives ([], -1)."""
        path = self.live_path(key)
        try:
            with open(path, "rb") as fh:
                size = fh.seek(0, 2)
                if size < offset:
                    offset = 0  # the episode was restarted (a resumed run)
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return [], -1
        end = data.rfind(b"\n") + 1
        out = []
        for line in data[:end].split(b"\n"):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        return out, offset + end

    # ---- what an annotation keeps -------------------------------------------------------

    def auto_verdicts(self, episode: Episode) -> AutoVerdicts:
        """The automatic verdicts on a stored episode, as a reviewer sees them beside it."""
        metrics = self.metrics(episode)
        acc = metrics.get("diagnostic_accuracy")
        dx = episode.outcome.diagnoses
        return AutoVerdicts(
            diagnostic_accuracy=None if acc is None else float(acc),
            acceptable=auto_acceptable(metrics, [v.severity for v in episode.violations])
            if episode.status == "completed"
            else None,
            model_diagnosis=dx[0].name if dx else None,
            clinician_turns=sorted({e.turn for e in episode.events if e.actor == "clinician"}),
            violation_turns=sorted({e.turn for e in episode.events if e.violations}),
        )

    def context(
        self,
        *,
        agent_id: str,
        case: Case,
        events: list[Event],
        event_index: int,
        episode: Episode | None,
        fact_id: str | None = None,
        violation_index: int | None = None,
    ) -> AnnotationContext:
        """The snapshot stored with an annotation: patient subgroup and lineage, the event and
        fact judged, and the automatic verdicts (none yet for a live episode)."""
        event = events[event_index] if event_index >= 0 else None
        fact = next((f for f in case.facts if f.id == fact_id), None) if fact_id else None
        violation = None
        if event is not None and violation_index is not None:
            violation = event.violations[violation_index].model_dump()
        auto = (
            self.auto_verdicts(episode)
            if episode is not None
            else AutoVerdicts(
                clinician_turns=sorted({e.turn for e in events if e.actor == "clinician"}),
                violation_turns=sorted({e.turn for e in events if e.violations}),
            )
        )
        return AnnotationContext(
            agent_id=agent_id,
            condition_id=case.diagnosis.condition_id,
            diagnosis=case.diagnosis,
            sex=case.sex,
            age_band=age_band(case.age),
            ethnicity=case.extra.get("ethnicity"),
            insurance=case.extra.get("insurance"),
            speaker=case.persona.speaker,
            lineage=list(case.lineage.parent_ids),
            actor=event.actor if event else None,
            turn=event.turn if event else None,
            event_text=event.text[:2000] if event else "",
            fact=FactRef(
                id=fact.id,
                concept=fact.concept,
                category=fact.category,
                text=fact.text,
                present=fact.present,
            )
            if fact
            else None,
            violation=violation,
            auto=auto,
        )


def run_hash(manifest: RunManifest) -> str:
    """sha256 of what makes a run that run: its id, creation time, spec identity, case hashes
    and policy packs (not the manifest's bytes, which finalising re-seals), as the file holds
    them, so annotations keep pointing at runs written by earlier releases."""
    held = manifest.model_dump(mode="json", exclude_unset=True)
    core = {k: held.get(k) for k in ("run_id", "created", "identity", "cases", "policy_packs")}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()


def event_hashes(events: list[Event]) -> dict[int, str]:
    """Transcript index -> `event_hash` of each event."""
    return {i: event_hash(e.turn, e.actor, e.text) for i, e in enumerate(events)}


def open_runs(dirs: list[Path]) -> dict[str, RunView]:
    """Run id -> view for each directory; two directories with one name are refused (the id is
    what URLs name, never a path)."""
    views: dict[str, RunView] = {}
    for d in dirs:
        view = RunView(d)
        if view.run_id in views:
            raise ReviewError(
                f"two run directories are both called '{view.run_id}': "
                f"{views[view.run_id].root} and {view.root}; rename one"
            )
        views[view.run_id] = view
    if not views:
        raise ReviewError("give at least one run directory")
    return views
