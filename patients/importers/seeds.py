"""Cohort seeds from data you hold: one registry of seed formats and one `import_seed`.

A seed format is a reader that turns a source (a file, a directory, several files) into
`ImportedRow`s for `completion.complete`, which resolves their condition codes and draws what
the source lacks from the KB. `SEED_FORMATS` names each format once: the kind the cohort
manifest records (`SourceInfo.kind`), the command-line option that gives it, and the reader.
Adding a format is a reader module (`read_seed(paths, kb, *, code_map, options)` returning
`(rows, stats)`) plus one `SeedFormat` entry here.

Every error is an `ImporterError` naming the file, line or field.
"""

from __future__ import annotations

import csv
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, model_validator

from clinicgym.patients.errors import ImporterError

if TYPE_CHECKING:
    from clinicgym.patients.importers.completion import ImportedRow
    from clinicgym.patients.knowledge.kb import KnowledgeBase

SeedReader = Callable[..., "tuple[list[ImportedRow], dict[str, Any]]"]
"""`reader(paths, kb, *, code_map, options) -> (rows, stats)`; stats may count
`unmapped_conditions` (source condition -> rows skipped because the KB lacks it)."""


@dataclass(frozen=True)
class SeedFormat:
    """A cohort seed format: `name` is the manifest's `source.kind`, `option` the command-line
    option that names a source of it, `reader` "module:function" (imported on first use) or
    the function itself."""

    name: str
    option: str
    reader: str | SeedReader
    many: bool = False
    """Takes several paths (FHIR bundle files or folders); otherwise exactly one."""
    hashed: bool = False
    """The manifest records the source file's sha256 (a single file)."""

    def load(self) -> SeedReader:
        if callable(self.reader):
            return self.reader
        module, _, func = self.reader.partition(":")
        return getattr(importlib.import_module(module), func)


def _read_csv(
    paths: Sequence[Path], kb: KnowledgeBase, *, code_map: Mapping[str, str], options: Any
) -> tuple[list[ImportedRow], dict[str, Any]]:
    from clinicgym.patients.importers.plain_csv import parse_mapping, read_csv

    mapping = parse_mapping(list(options.mapping))
    return read_csv(paths[0], kb, mapping=mapping, ignore_extra=options.ignore_extra), {}


def _read_synthea(
    paths: Sequence[Path], kb: KnowledgeBase, *, code_map: Mapping[str, str], options: Any
) -> tuple[list[ImportedRow], dict[str, Any]]:
    from clinicgym.patients.importers.synthea import read_synthea

    return read_synthea(paths[0], kb, code_map=code_map)


def _read_fhir(
    paths: Sequence[Path], kb: KnowledgeBase, *, code_map: Mapping[str, str], options: Any
) -> tuple[list[ImportedRow], dict[str, Any]]:
    from clinicgym.patients.importers.fhir import read_bundles

    return read_bundles(paths, kb, code_map=code_map)


_HERE = "clinicgym.patients.importers.seeds"
SEED_FORMATS: dict[str, SeedFormat] = {
    f.name: f
    for f in (
        SeedFormat("csv", "--from", f"{_HERE}:_read_csv", hashed=True),
        SeedFormat("synthea", "--from-synthea", f"{_HERE}:_read_synthea"),
        SeedFormat("fhir", "--from-fhir", f"{_HERE}:_read_fhir", many=True),
    )
}
"""The seed formats by kind; `SeedSource.from_options` reads them in this order."""


class SeedSource(BaseModel):
    """Where an imported seed comes from, and how to read it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str
    """A name in `SEED_FORMATS`."""
    paths: tuple[Path, ...]
    mapping: tuple[str, ...] = ()
    """Column mapping OUR=THEIRS (CSV)."""
    ignore_extra: bool = False
    """Ignore columns that map to nothing (CSV)."""
    code_map: Path | None = None
    """A CSV of `code,condition_id` lines for source codes."""
    drop_inconsistent: bool = False
    """Drop (and count) rows that break the KB instead of failing."""

    @model_validator(mode="after")
    def _known(self) -> SeedSource:
        fmt = seed_format(self.kind)
        if not self.paths or (len(self.paths) > 1 and not fmt.many):
            raise ImporterError(f"{fmt.option}: give one path, got {len(self.paths)}")
        return self

    @classmethod
    def from_options(
        cls, given: Mapping[str, Path | Sequence[Path] | None], **options: Any
    ) -> SeedSource | None:
        """The one source among `given` (kind -> path(s), None when not given), or None when
        none is; two at once is an error naming the options."""
        named = {k: v for k, v in given.items() if v}
        for kind in named:
            seed_format(kind)
        if len(named) > 1:
            opts = [f.option for f in SEED_FORMATS.values()]
            raise ImporterError(
                f"give one seed source: {', '.join(opts[:-1])} or {opts[-1]}"
                if len(opts) > 1
                else f"give one seed source: {opts[0]}"
            )
        if not named:
            return None
        ((kind, value),) = named.items()
        paths = (value,) if isinstance(value, str | Path) else tuple(value)
        return cls(kind=kind, paths=tuple(map(Path, paths)), **options)

    def describe(self) -> str:
        """The source as the manifest names it: the path, or the paths joined."""
        return ", ".join(map(str, self.paths))


def seed_format(kind: str) -> SeedFormat:
    """The registered format of this kind, or an ImporterError naming the known ones."""
    fmt = SEED_FORMATS.get(kind)
    if fmt is None:
        raise ImporterError(f"unknown seed format {kind!r}; use one of {', '.join(SEED_FORMATS)}")
    return fmt


def read_code_map(path: Path | None) -> dict[str, str]:
    """A CSV of `code,condition_id` lines (a header line is allowed)."""
    if path is None:
        return {}
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            for n, row in enumerate(csv.reader(fh), start=1):
                if not row or row[0].strip().lower() in ("code", ""):
                    continue
                if len(row) != 2:
                    raise ImporterError(f"{path} line {n}: expected 'code,condition_id', got {row}")
                out[row[0].strip()] = row[1].strip()
    except FileNotFoundError:
        raise ImporterError(f"--code-map {path}: no such file") from None
    return out


@dataclass
class ImportedSeed:
    """A seed read from a source: the cohort table, the manifest's `source` description and
    what was skipped (source condition -> rows outside the KB)."""

    table: Any
    source: dict[str, Any]
    skipped_conditions: dict[str, int] = field(default_factory=dict)

    def notes(self) -> list[str]:
        """What a caller should tell the user (the CLI prints these as notes)."""
        if not self.skipped_conditions:
            return []
        top = ", ".join(list(self.skipped_conditions)[:3])
        total = sum(self.skipped_conditions.values())
        return [f"skipped conditions outside the KB: {total} (top: {top})"]


def import_seed(source: SeedSource, kb: KnowledgeBase, *, seed: int) -> ImportedSeed:
    """Read `source` with its format's reader, complete the rows from the KB (seeded) and build
    the cohort table (rows `s000000`, ...)."""
    from clinicgym.patients.cohorts.cohort import CohortSchema, file_sha256, row_ids
    from clinicgym.patients.importers.completion import complete

    fmt = seed_format(source.kind)
    cmap = read_code_map(source.code_map)
    rows, stats = fmt.load()(list(source.paths), kb, code_map=cmap, options=source)
    path = source.describe()
    records, filled, dropped = complete(
        rows, kb, seed=seed, code_map=cmap, drop_inconsistent=source.drop_inconsistent, source=path
    )
    table = CohortSchema.for_kb(kb).table(records, row_ids("s", len(records)))
    described = {
        "kind": fmt.name,
        "path": path,
        "sha256": file_sha256(source.paths[0]) if fmt.hashed else None,
        "rows": len(records),
        "completed_from_kb": dict(filled),
        "dropped": dict(dropped),
    }
    return ImportedSeed(table, described, dict(stats.get("unmapped_conditions") or {}))
