"""Packing a finished run into a submission bundle, and the card a submitter declares.

A bundle is a zip of the run's `manifest.json`, `cases.jsonl`, `episodes.jsonl` (the
transcripts) and `summary.json` (the claimed numbers), plus `bundle.json` with each file's
sha256 and what the submitter declares (who they are, which model each agent is). A hidden
suite's bundle carries no `cases.jsonl`: its cases stay with the maintainer.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinicgym import __version__
from clinicgym.runs import layout
from clinicgym.runs.errors import LeaderboardError
from clinicgym.runs.store import RunStore

if TYPE_CHECKING:
    from clinicgym.runs.records import RunManifest

BUNDLE_FORMAT_VERSION = 1
BUNDLE_INDEX = "bundle.json"
BUNDLE_FILES = layout.BUNDLED
"""What a bundle carries besides its index: the manifest, cases, transcripts, summary."""
HIDDEN_WITHHELD = (layout.CASES,)
"""What a hidden suite's bundle leaves out: its cases, which only the maintainer regenerates."""
MODEL_CARD_FIELDS = ("model", "parameters", "url", "notes")
"""What a submitter may declare per agent (`clinicgym submit --card`); shown as declared."""


def sha256_hex(data: bytes) -> str:
    """The hex sha256 of `data`, as bundle.json records each file's."""
    return hashlib.sha256(data).hexdigest()


def read_card(path: Path | str) -> dict[str, Any]:
    """A submission card (YAML or JSON): `submitter` and, per agent spec, `model`,
    `parameters`, `url`, `notes`; every problem named at once."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise LeaderboardError(f"{path}: cannot read the card ({e})".replace("\n", " ")) from None
    problems = []
    if not isinstance(raw, dict):
        raise LeaderboardError(f"{path}: a card is a mapping with 'submitter' and 'models'")
    unknown = sorted(set(raw) - {"submitter", "models"})
    if unknown:
        problems.append(f"unknown fields {unknown}; a card has 'submitter' and 'models'")
    models = raw.get("models") or {}
    if not isinstance(models, dict):
        problems.append("'models' maps agent specs to {model, parameters, url, notes}")
        models = {}
    for agent, card in models.items():
        if not isinstance(card, dict):
            problems.append(f"models.{agent}: a mapping of {', '.join(MODEL_CARD_FIELDS)}")
            continue
        extra = sorted(set(card) - set(MODEL_CARD_FIELDS))
        if extra:
            problems.append(
                f"models.{agent}: unknown fields {extra}; allowed: {', '.join(MODEL_CARD_FIELDS)}"
            )
    if problems:
        raise LeaderboardError(f"{path} has {len(problems)} problems: " + "; ".join(problems))
    return {
        "submitter": raw.get("submitter"),
        "models": {str(a): {k: str(v) for k, v in c.items()} for a, c in models.items()},
    }


def _unsubmittable(store: RunStore, manifest: RunManifest, card: dict[str, Any]) -> list[str]:
    """Why this run cannot be packed yet: missing, unsealed, edited, incomplete, or a stray card."""
    problems = [f"no {n}" for n in BUNDLE_FILES if not (store.root / n).exists()]
    if not manifest.content:
        problems.append(f"the run was never finalised (no content hashes in {layout.MANIFEST})")
    changed = store.changed_since_sealed() if not problems else []
    if changed:
        problems.append(f"{', '.join(changed)} changed since the run was finalised")
    if not problems:
        summary = store.summary()
        planned, stored = summary.planned_episodes, summary.stored_episodes
        if planned != stored:
            problems.append(f"only {stored} of {planned} planned episodes are stored")
    agents = manifest.spec.agents
    stray = sorted(set(card.get("models", {})) - set(agents))
    if stray:
        problems.append(
            f"the card describes agents the run did not play: {stray}; it played {agents}"
        )
    return problems


def _bundle_index(
    manifest: RunManifest,
    run_id: str,
    files: dict[str, bytes],
    submitter: str | None,
    card: dict[str, Any],
) -> dict[str, Any]:
    """`bundle.json`: what was packed, when, by which clinicgym, file hashes, the declarations."""
    return {
        "format_version": BUNDLE_FORMAT_VERSION,
        "run_id": run_id,
        "packed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "clinicgym": __version__,
        "suite": manifest.suite.document() if manifest.suite is not None else None,
        "agents": manifest.spec.agents,
        "submission": {
            "submitter": submitter or card.get("submitter"),
            "models": card.get("models", {}),
        },
        "files": {n: {"sha256": sha256_hex(b), "bytes": len(b)} for n, b in files.items()},
    }


def _write_zip(out: Path, index: dict[str, Any], files: dict[str, bytes]) -> None:
    """Write the zip under a temporary name, then move it into place: never a half-written `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(BUNDLE_INDEX, json.dumps(index, indent=2) + "\n")
        for n, b in files.items():
            z.writestr(n, b)
    tmp.replace(out)


def pack(
    run_dir: Path | str,
    out: Path | str | None = None,
    *,
    submitter: str | None = None,
    card: dict[str, Any] | None = None,
) -> Path:
    """Write the submission bundle of a finished, sealed and unmodified run; returns its path.
    Default: `<run_id>.submission.zip` in the current directory. `submitter` and `card`
    (`read_card`) are declared metadata shown on the board; a hidden suite's cases are left
    out."""
    store = RunStore(Path(run_dir))
    if not store.manifest_path.exists():
        raise LeaderboardError(f"{run_dir}: not a run directory (no {layout.MANIFEST})")
    manifest = store.manifest()
    card = card or {}
    problems = _unsubmittable(store, manifest, card)
    if problems:
        raise LeaderboardError(
            f"cannot submit {run_dir}: " + "; ".join(problems) + " (finish or resume the run "
            "with the same `clinicgym run ... --out` first, or fix the card)"
        )
    hidden = manifest.suite is not None and manifest.suite.hidden
    names = [n for n in BUNDLE_FILES if not (hidden and n in HIDDEN_WITHHELD)]
    run_id = manifest.run_id or store.root.name
    out = Path(out) if out else Path(f"{run_id}.submission.zip")
    files = {n: (store.root / n).read_bytes() for n in names}
    _write_zip(out, _bundle_index(manifest, run_id, files, submitter, card), files)
    return out
