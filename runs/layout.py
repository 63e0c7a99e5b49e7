"""The files of a run directory, each named once: every reader and writer of a run takes the
name from here, so a file is renamed or added in one place.

`runs/<id>/` holds the manifest, the cases, the append-only episode log, and what finalise
writes (scores, summary, compliance reports); `RunPaths(root)` gives each as a path. What the
JSON files hold is typed in `runs/records.py` (`RunManifest`, `RunSummary`); an episode line is
`envs.episode.Episode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
"""The resolved spec, versions, case ids and hashes, and the sealed record (`RunManifest`)."""
CASES = "cases.jsonl"
"""One line per case: a recipe, a suite reference or the whole case (runs/casefile.py)."""
EPISODES = "episodes.jsonl"
"""The append-only episode log: one `Episode` per line."""
SUMMARY = "summary.json"
"""The claimed numbers per agent (`RunSummary`), written at finalise."""
SCORES = "scores.parquet"
"""One row per episode with every metric, written at finalise."""
ERRORED = "errored.jsonl"
"""Errored episodes set aside by `--retry-errored` so a resume replays them (an audit trail)."""
UNREADABLE = "unreadable.jsonl"
"""Lines of the episode log that were no readable episode, set aside by `--retry-errored`."""
BUG = "bug.txt"
"""The traceback of a bug inside clinicgym that stopped the run (exit status 3)."""
PROBES = "probes.json"
"""Explainability probe results (`clinicgym probe`), merged across calls."""
PATIENT_CACHE = "patient_cache.sqlite"
"""Recorded wordings of an LLM-worded patient (the default `--patient-cache`)."""
LIVE = "live"
"""A folder of episodes in flight, one JSON-lines file each (the review app's live view)."""
COMPLIANCE = "compliance"
"""Stem of the compliance report (`compliance.json`, `.md`, `.html`), and the folder
`clinicgym rescore` writes one report per pack version into."""
REPORT = "report"
"""Stem of the run report (`report.json`, `.md`, `.html`; `clinicgym report`)."""

SEALED = (CASES, EPISODES, SUMMARY)
"""The files finalise seals (their sha256 in the manifest): what was played, the transcripts,
the claimed numbers."""
BUNDLED = (MANIFEST, *SEALED)
"""What a leaderboard bundle carries besides its index."""


@dataclass(frozen=True)
class RunPaths:
    """The path of each file of the run directory at `root`."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def manifest(self) -> Path:
        """`manifest.json`."""
        return self.root / MANIFEST

    @property
    def cases(self) -> Path:
        """`cases.jsonl`."""
        return self.root / CASES

    @property
    def episodes(self) -> Path:
        """`episodes.jsonl`."""
        return self.root / EPISODES

    @property
    def summary(self) -> Path:
        """`summary.json`."""
        return self.root / SUMMARY

    @property
    def scores(self) -> Path:
        """`scores.parquet`."""
        return self.root / SCORES

    @property
    def bug(self) -> Path:
        """`bug.txt`."""
        return self.root / BUG

    @property
    def probes(self) -> Path:
        """`probes.json`."""
        return self.root / PROBES

    @property
    def live(self) -> Path:
        """The folder of episodes in flight."""
        return self.root / LIVE

    def is_run(self) -> bool:
        """True if `root` is a run directory (it holds a manifest)."""
        return self.manifest.is_file()


def is_run_dir(path: Path | str) -> bool:
    """True if `path` is a run directory (it holds a manifest): how run folders are found."""
    return RunPaths(Path(path)).is_run()
