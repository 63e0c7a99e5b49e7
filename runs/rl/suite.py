"""Pinned case suites: a fixed list of cases on disk, with hashes, so a reward curve reproduces.

`pin_suite` samples `n` cases from the KB (seed, settings, conditions) and writes
`<dir>/cases.jsonl` and `<dir>/suite.json` (the manifest: KB version, sampler settings, each
case's content hash and the suite's hash). `load_suite` reads them back and refuses a suite
whose cases no longer match their hashes or whose KB version differs from the one in use, so
a curve is never silently reproduced on other cases.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from clinicgym import __version__
from clinicgym.patients.cases.case import Case
from clinicgym.patients.cases.presentation import make_sampler
from clinicgym.patients.knowledge.kb import KnowledgeBase, default_kb
from clinicgym.runs.rl.errors import RLError

SUITE_FORMAT_VERSION = 1
CASES_FILE = "cases.jsonl"
MANIFEST_FILE = "suite.json"


class SuiteManifest(BaseModel):
    """What a pinned suite holds and how it was made."""

    model_config = ConfigDict(extra="forbid")
    format_version: int = SUITE_FORMAT_VERSION
    clinicgym: str
    kb_version: str
    seed: int
    n: int
    weighting: str
    settings: list[str] = []
    conditions: list[str] = []
    case_ids: list[str]
    case_hashes: list[str]
    suite_hash: str
    """sha256 over the case hashes in order: one id for the whole suite."""


def suite_hash(cases: Sequence[Case]) -> str:
    """sha256 over the cases' content hashes, in order."""
    h = hashlib.sha256()
    for c in cases:
        h.update(c.content_hash().encode())
    return h.hexdigest()


def pin_suite(
    directory: Path | str,
    n: int,
    *,
    seed: int = 0,
    kb: KnowledgeBase | None = None,
    weighting: str = "auto",
    settings: Sequence[str] = (),
    conditions: Sequence[str] = (),
) -> SuiteManifest:
    """Sample and write a suite of `n` cases; returns its manifest."""
    if n < 1:
        raise RLError(f"a suite needs at least one case, got n={n}")
    kb = kb or default_kb()
    sampler = make_sampler(
        kb, weighting, settings=list(settings) or None, conditions=list(conditions) or None
    )
    cases = sampler.sample_many(n, seed, prefix=f"suite{seed}-")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with (out / CASES_FILE).open("w", encoding="utf-8") as fh:
        for c in cases:
            fh.write(c.model_dump_json() + "\n")
    manifest = SuiteManifest(
        clinicgym=__version__,
        kb_version=kb.version,
        seed=seed,
        n=n,
        weighting=weighting,
        settings=list(settings),
        conditions=list(conditions),
        case_ids=[c.id for c in cases],
        case_hashes=[c.content_hash() for c in cases],
        suite_hash=suite_hash(cases),
    )
    (out / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return manifest


def load_suite(
    directory: Path | str, kb: KnowledgeBase | None = None
) -> tuple[list[Case], SuiteManifest]:
    """The cases of a pinned suite and its manifest, after checking every hash and the KB."""
    root = Path(directory)
    mpath, cpath = root / MANIFEST_FILE, root / CASES_FILE
    for p in (mpath, cpath):
        if not p.is_file():
            raise RLError(f"{p}: missing; pin a suite with `clinicgym rl pin-suite {root}`")
    try:
        manifest = SuiteManifest.model_validate(json.loads(mpath.read_text(encoding="utf-8")))
    except (ValidationError, json.JSONDecodeError) as e:
        raise RLError(f"{mpath}: not a suite manifest: {e}".replace("\n", " ")) from None
    problems: list[str] = []
    cases: list[Case] = []
    for i, line in enumerate(cpath.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            cases.append(Case.model_validate_json(line))
        except ValidationError as e:
            problems.append(f"line {i}: not a case: {e.errors()[0]['msg']}")
    if len(cases) != manifest.n and not problems:
        problems.append(f"holds {len(cases)} cases, the manifest says {manifest.n}")
    for i, (c, want) in enumerate(zip(cases, manifest.case_hashes, strict=False), start=1):
        if c.content_hash() != want:
            problems.append(f"line {i}: case '{c.id}' does not match its hash {want[:12]}...")
    kb = kb or default_kb()
    if manifest.kb_version != kb.version:
        problems.append(
            f"was pinned with KB {manifest.kb_version}, the KB in use is {kb.version}; "
            "re-pin it or load the KB it was made with"
        )
    if problems:
        raise RLError(f"suite {root} has {len(problems)} problems:\n  " + "\n  ".join(problems))
    return cases, manifest
