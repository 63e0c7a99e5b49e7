"""Record and replay of patient LLM outputs, so reruns and RL rewards are reproducible.

Outputs are stored in a SQLite file keyed by a hash of everything that determines them: the
case's content hash, the persona, the dialogue state (what has been said so far), the question,
the grounded answer being worded, the attempt number and the wording model's id. Modes:

* `record` (default): read through; a miss calls the model and stores its output;
* `replay`: read only; a miss raises `PatientReplayError`, loudly, instead of calling a model;
* `off`: no cache.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Literal

from clinicgym.patients.errors import PatientReplayError

CacheMode = Literal["record", "replay", "off"]


def cache_key(**parts: Any) -> str:
    """A stable sha256 over the JSON of the parts (sorted keys)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class ReplayCache:
    """A SQLite-backed map from cache keys to model outputs, safe across threads."""

    def __init__(self, path: Path | str, mode: CacheMode = "record") -> None:
        if mode not in ("record", "replay", "off"):
            raise ValueError(f"cache mode must be record, replay or off, got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if mode != "off":
            if mode == "replay" and not self.path.exists():
                raise PatientReplayError(
                    f"{self.path}: no patient replay cache here; record one first "
                    "(--patient-cache-mode record) or point --patient-cache at it"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outputs (key TEXT PRIMARY KEY, model TEXT, "
                "prompt TEXT, output TEXT, created REAL)"
            )
            self._db.commit()

    def get(self, key: str, *, describe: str = "") -> str | None:
        """The stored output, None on a miss (record mode); a miss in replay mode raises."""
        if self._db is None:
            return None
        with self._lock:
            row = self._db.execute("SELECT output FROM outputs WHERE key = ?", (key,)).fetchone()
        if row is not None:
            self.hits += 1
            return str(row[0])
        self.misses += 1
        if self.mode == "replay":
            raise PatientReplayError(
                f"{self.path}: replay-only patient cache has no output for {describe or key[:12]}; "
                "the dialogue differs from the recorded one (a different agent, seed or version)"
            )
        return None

    def put(self, key: str, output: str, *, model: str = "", prompt: Any = None) -> None:
        """Store an output (record mode only)."""
        if self._db is None or self.mode != "record":
            return
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO outputs VALUES (?, ?, ?, ?, ?)",
                (key, model, json.dumps(prompt, default=str), output, time.time()),
            )
            self._db.commit()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
