"""Leaderboard submissions: pack a finished run into a bundle, verify a bundle, build the site.

A bundle is a zip of the run's `manifest.json`, `cases.jsonl`, `episodes.jsonl` (the
transcripts) and `summary.json` (the claimed numbers), plus `bundle.json` with each file's
sha256 and what the submitter declares (who they are, which model each agent is). A hidden
suite's bundle carries no `cases.jsonl`: its cases stay with the maintainer.

`verify` trusts nothing in a bundle but the transcripts, and those only as the submitter's
claim. The suite version, its frozen cases hash and its recipe (case count, turn budget,
repeats, run seed, scenarios, pinned packs, modality) come from this install's registry
(`runs/suites.yaml`), never from the bundle's manifest; an unknown suite or version is
rejected. Every score is re-derived: each clinician action re-parsed from the stored events,
the outcome, turn count and ending rebuilt from them (`runs/rederive.py`), the registry's
policy packs replayed over the transcript, the episodes scored again and summarised; any
difference from a stored outcome, violation list or the claimed summary is a rejection reason.
Every reason is collected. What this cannot catch: a transcript edited consistently (the
model's reply, the action and the outcome alike) with every hash recomputed. Bundles are not
signed; the hidden suite, run by the maintainer, is the answer to that (docs/runs.md).

The work is split by what it does, one module each: `bundle` packs a run (`pack`,
`read_card`), `verify` checks a bundle against the registry (`verify`, `Verdict`),
`rescore` re-derives its scores and compares them with the claimed summary, and
`site` builds the board (`build`, `write_site`, `board_rows`). This module is their
face: every public name is importable from here.
"""

from __future__ import annotations

from clinicgym.runs.leaderboard.bundle import (
    BUNDLE_FILES,
    BUNDLE_FORMAT_VERSION,
    BUNDLE_INDEX,
    HIDDEN_WITHHELD,
    MODEL_CARD_FIELDS,
    pack,
    read_card,
)
from clinicgym.runs.leaderboard.rescore import MAX_EPISODE_REASONS
from clinicgym.runs.leaderboard.site import (
    BOARD_METRICS,
    KNOWN_PARAMETERS,
    PERCENT_METRICS,
    RANK_METRIC,
    REFERENCE_AGENTS,
    agent_kind,
    agent_label,
    board_rows,
    build,
    is_reference,
    model_meta,
    write_site,
)
from clinicgym.runs.leaderboard.verify import SPEC_MUST, Verdict, bundle_info, verify

__all__ = [
    "BOARD_METRICS",
    "BUNDLE_FILES",
    "BUNDLE_FORMAT_VERSION",
    "BUNDLE_INDEX",
    "HIDDEN_WITHHELD",
    "KNOWN_PARAMETERS",
    "MAX_EPISODE_REASONS",
    "MODEL_CARD_FIELDS",
    "PERCENT_METRICS",
    "RANK_METRIC",
    "REFERENCE_AGENTS",
    "SPEC_MUST",
    "Verdict",
    "agent_kind",
    "agent_label",
    "board_rows",
    "build",
    "bundle_info",
    "is_reference",
    "model_meta",
    "pack",
    "read_card",
    "verify",
    "write_site",
]
