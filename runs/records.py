"""The run directory's JSON files as typed records: `RunManifest` (manifest.json) and
`RunSummary` (summary.json), each with a `format_version`; an episode line is
`envs.episode.Episode`, and `runs/layout.py` names the files.

Reading is lenient where age explains a difference and strict where damage does:

* a field added since a file was written takes its default, and a missing `format_version` is
  format 1 (the first: the manifest had one from the start, summary.json did not until its
  format 2);
* a format newer than this install reads is refused with both formats named;
* a file that is not JSON, or a field of the wrong type, raises `RunFileError` naming the file
  and the field (`manifest.json: cases.0.id: Field required`).

Reading then writing keeps the file's keys, their order, and keys this version does not know:
a record dumps only the fields it was given or set (`exclude_unset`) in the order it read them,
so resealing a run written by an earlier release changes only what the reseal sets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from clinicgym.runs import layout
from clinicgym.runs.errors import StoreError

if TYPE_CHECKING:
    from clinicgym.runs.spec import RunSpec

MANIFEST_FORMAT_VERSION = 1
"""The manifest format this install writes and reads up to."""
SUMMARY_FORMAT_VERSION = 2
"""2: intervals are Wilson for 0/1 metrics and scipy BCa otherwise, each metric says which
(`method`), `ci95` is null where undefined (n equal values); `repeats` is recorded.
1 (no `format_version` in the file): the first releases' intervals, no `repeats`."""


R = TypeVar("R", bound="FileRecord")


class RunFileError(StoreError):
    """A run file that is not valid JSON or not the record it should be (names file and field)."""


class FileRecord(BaseModel):
    """A JSON object of a run file: unknown keys kept, and dumped in the order they were read."""

    model_config = ConfigDict(extra="allow")
    _keys: list[str] | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_keys(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Note the key order of the object read, so a rewrite keeps it."""
        record = handler(data)
        if isinstance(data, dict) and isinstance(record, FileRecord):
            record._keys = list(data)
        return record

    @model_serializer(mode="wrap")
    def _in_read_order(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Keys read come first, in their order; fields set since follow in declared order."""
        data = handler(self)
        if not self._keys or not isinstance(data, dict):
            return data
        rank = {k: i for i, k in enumerate(self._keys)}
        return dict(sorted(data.items(), key=lambda kv: rank.get(kv[0], len(rank))))

    def document(self) -> dict[str, Any]:
        """The record as its file holds it (fields never given stay out)."""
        return self.model_dump(mode="python", exclude_unset=True)

    def write(self, path: Path) -> None:
        """Write the record to `path` atomically (temporary file, fsync, rename)."""
        write_json_atomic(path, self.document())


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file, fsync, then rename over the target."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# ---- manifest.json -------------------------------------------------------------------------


class ManifestSpec(FileRecord):
    """The resolved run spec as the manifest records it (`RunSpec.model_dump`). Typed here are
    the fields other readers use; the rest are kept as they were written, so a spec from
    another version (fields added or removed since) still reads."""

    agents: list[str] = []
    names: dict[str, str] = {}
    cases: int | None = None
    repeats: int = 1
    kb_dir: str | None = None
    policy_packs: list[str] = []
    scenarios: list[str] = []
    prices: dict[str, list[float]] = {}
    patient: str = "grounded"
    suite: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    model_seed: int | None = None

    def price_table(self) -> dict[str, tuple[float, float]]:
        """USD per million prompt and completion tokens, by agent spec (`--price`)."""
        return {k: (float(v[0]), float(v[1])) for k, v in self.prices.items()}

    def run_spec(self) -> RunSpec:
        """The spec as a `RunSpec` (ValidationError: a spec this version cannot read)."""
        from clinicgym.runs.spec import RunSpec

        return RunSpec.model_validate(self.document())

    def display_names(self) -> dict[str, str]:
        """Agent spec -> display name ({} for a spec this version cannot read: the specs
        are shown as they are; older runs have no `names`)."""
        try:
            return self.run_spec().display_names()
        except ValueError:
            return {}


class ManifestVersions(FileRecord):
    """The versions a run was played with."""

    clinicgym: str = ""
    kb: str | None = None
    patient_lexicon: str | None = None
    """`patients.patient.lexicon_files.lexicon_version` (None: a run from before it)."""
    python: str = ""
    platform: str = ""


class CaseEntry(FileRecord):
    """One case of the run: its id and content hash (None until a generated case is realised)."""

    id: str
    hash: str | None = None


class SuiteRecord(FileRecord):
    """The suite a run played (`runs/suite.py` `suite_record`)."""

    ref: str | None = None
    name: str | None = None
    version: int | None = None
    hidden: bool = False
    cases_sha256: str | None = None
    frozen_sha256: str | None = None
    kb_version: str | None = None
    recipe: dict[str, Any] | None = None


class PackRecord(FileRecord):
    """A policy pack the run monitored (`PolicyPack.record`)."""

    ref: str
    id: str = ""
    version: int | str | None = None
    sha256: str = ""
    path: str | None = None

    def source(self) -> str:
        """What to load the pack from now: the file the run named, if it is still there,
        else its library reference."""
        return self.path if self.path and Path(self.path).is_file() else self.ref


class FileDigest(FileRecord):
    """sha256, size and line count of a sealed data file (`runs/store.py` `file_digest`)."""

    sha256: str
    bytes: int = 0
    lines: int = 0


class RunManifest(FileRecord):
    """manifest.json: what a run is (spec, identity, versions, cases, suite, packs), and once
    finalised, the sealed record of its data files."""

    format_version: int = 1
    run_id: str = ""
    created: str = ""
    spec: ManifestSpec = ManifestSpec()
    identity: dict[str, Any] = {}
    versions: ManifestVersions = ManifestVersions()
    cases: list[CaseEntry] = []
    cases_sha256: str | None = None
    suite: SuiteRecord | None = None
    policy_packs: list[PackRecord] = []
    command: list[str] = []
    content: dict[str, FileDigest] | None = None
    sealed: str | None = None

    def case_hashes(self) -> list[str | None]:
        """Each case's content hash, in order (None: not realised yet)."""
        return [c.hash for c in self.cases]

    def planned_episodes(self) -> int:
        """Cases x repeats x agents: how many episodes the run plans."""
        return len(self.cases) * self.spec.repeats * len(self.spec.agents)


def read_manifest(path: Path) -> RunManifest:
    """The manifest at `path`; `RunFileError` naming the file and field when it is damaged."""
    return parse_manifest(_read(path), str(path))


def parse_manifest(data: bytes | str, where: str = layout.MANIFEST) -> RunManifest:
    """A manifest from its bytes (`where` names it in errors: a path, or a bundle member)."""
    return _parse(RunManifest, data, where, MANIFEST_FORMAT_VERSION)


# ---- summary.json --------------------------------------------------------------------------


class AgentSummary(FileRecord):
    """One agent's numbers: episode counts, each metric's mean with its 95% interval
    (`scoring/stats.mean_ci`: {mean, ci95, n, method}), model usage, and aggregates such as
    pass^k (kept as written)."""

    episodes: int = 0
    completed: int = 0
    errors: int = 0
    metrics: dict[str, dict[str, Any]] = {}
    usage: dict[str, Any] = {}


class RunSummary(FileRecord):
    """summary.json: per agent spec, what the run claims; counts of planned and stored
    episodes, and the compliance summary when packs were monitored."""

    format_version: int = 1
    run_id: str = ""
    repeats: int = 1
    metric_descriptions: dict[str, str] = {}
    agents: dict[str, AgentSummary] = {}
    planned_episodes: int | None = None
    stored_episodes: int | None = None
    compliance: dict[str, Any] | None = None

    def compliance_agents(self) -> dict[str, Any]:
        """The compliance summary per agent ({} when no pack was monitored)."""
        return dict((self.compliance or {}).get("agents") or {})


def read_summary(path: Path) -> RunSummary:
    """The summary at `path`; `RunFileError` naming the file and field when it is damaged."""
    return parse_summary(_read(path), str(path))


def parse_summary(data: bytes | str, where: str = layout.SUMMARY) -> RunSummary:
    """A summary from its bytes (`where` names it in errors: a path, or a bundle member)."""
    return _parse(RunSummary, data, where, SUMMARY_FORMAT_VERSION)


# ---- reading -------------------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise RunFileError(f"{path}: no such file") from None


def _parse(kind: type[R], data: bytes | str, where: str, newest: int) -> R:
    """Parse and check one run file: JSON, an object, a format this install reads, the fields."""
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFileError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise RunFileError(f"{where}: not a JSON object (a {type(raw).__name__})")
    fmt = raw.get("format_version", 1)
    if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > newest:
        raise RunFileError(
            f"{where}: format_version {fmt} is newer than this clinicgym reads (up to {newest}); "
            "read it with the clinicgym that wrote it or a newer one"
        )
    try:
        return kind.model_validate(raw)
    except ValidationError as e:
        raise RunFileError(f"{where}: {field_errors(e)}") from None


def field_errors(e: ValidationError, most: int = 3) -> str:
    """The first problems of a validation error, each as 'field.path: message'."""
    parts = []
    for err in e.errors()[:most]:
        field = ".".join(str(x) for x in err["loc"]) or "(the whole object)"
        parts.append(f"{field}: {err['msg']}")
    more = e.error_count() - most
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
