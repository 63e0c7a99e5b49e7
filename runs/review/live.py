"""The live recorder: episodes in flight, one JSONL file each, for the review server to stream.

`LiveRecorder` has the env's `Monitor` shape and wraps the run's real monitors: it hands each
event to them, then writes the event with the violations they found to
`RUN_DIR/live/<key>.jsonl` (one line, flushed) and reports exactly what they reported, so the env
needs no change and a run that nobody watches pays one small write per event. When the episode
is stored the runner closes the recorder, which deletes the file: the stored episode replaces it.

Line 1 is a header (`type: start`: episode id, agent, case, started); every further line is
`type: event` with the event's position in the transcript and the event itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from clinicgym.envs.episode import Event, Violation
from clinicgym.envs.protocols import Monitor
from clinicgym.patients.cases.case import Case
from clinicgym.runs import layout

LIVE_DIR = layout.LIVE
"""Sub-directory of a run directory holding the episodes in flight."""


def episode_key(episode_id: str) -> str:
    """A short, URL- and file-safe key for an episode id (ids hold '|', ':' and '/')."""
    return hashlib.sha256(episode_id.encode()).hexdigest()[:20]


def clear_live(run_dir: Path) -> int:
    """Delete live files left by a crashed run (nothing is in flight when a run starts)."""
    d = Path(run_dir) / LIVE_DIR
    n = 0
    if d.is_dir():
        for p in d.glob("*.jsonl"):
            p.unlink(missing_ok=True)
            n += 1
    return n


def remove_live_dir(run_dir: Path) -> None:
    """Remove the live directory once it is empty (the run finished)."""
    d = Path(run_dir) / LIVE_DIR
    with contextlib.suppress(OSError):  # missing, or another process has an episode in flight
        d.rmdir()


class LiveRecorder:
    """A Monitor that records every event, with the wrapped monitors' violations, to a file."""

    name = "live"

    def __init__(
        self,
        run_dir: Path,
        *,
        episode_id: str,
        agent_id: str,
        monitors: Sequence[Monitor] = (),
    ) -> None:
        self.path = Path(run_dir) / LIVE_DIR / f"{episode_key(episode_id)}.jsonl"
        self.episode_id = episode_id
        self.agent_id = agent_id
        self.monitors = list(monitors)
        self._fh: IO[str] | None = None

    def reset(self, case: Case) -> None:
        for m in self.monitors:
            m.reset(case)
        self.close()
        try:  # the directory is there for every episode but a run's first: no mkdir each time
            self._fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        self._write(
            {
                "type": "start",
                "episode_id": self.episode_id,
                "agent_id": self.agent_id,
                "case_id": case.id,
                "started": time.time(),
            }
        )

    def observe(self, event: Event, history: Sequence[Event]) -> list[Violation]:
        found: list[Violation] = []
        for m in self.monitors:
            found.extend(m.observe(event, history))
        if self._fh is not None:
            shown = event.model_copy(update={"violations": found}) if found else event
            # the event serialised by pydantic, as the stored episode is (not dumped to a dict
            # and encoded again by json: an event carries the request's prompt)
            self._line(
                f'{{"type":"event","index":{len(history)},"event":{shown.model_dump_json()}}}'
            )
        return found

    def _write(self, obj: dict[str, Any]) -> None:
        self._line(json.dumps(obj, separators=(",", ":")))

    def _line(self, text: str) -> None:
        assert self._fh is not None
        self._fh.write(text + "\n")
        self._fh.flush()

    def close(self) -> None:
        """The episode is stored (or abandoned): close and delete its live file."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self.path.unlink(missing_ok=True)
