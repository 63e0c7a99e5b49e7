"""External case files -> Cases: detect the format (AgentClinic MedQA-shaped or NEJM-shaped
JSONL, or DDXPlus) and read it.

`clinicgym run --cases-from FILE` plays these cases instead of sampling the KB. A JSONL file is
never failed for one line: `import_cases` returns every case it could read and every problem by
file, line and field (`ImportReport`); `read_cases` warns them (`CaseImportWarning`); `strict`
fails the file if any line cannot be imported.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from clinicgym.patients.cases.case import Case
from clinicgym.patients.errors import ImporterError
from clinicgym.patients.importers.problems import ImportReport
from clinicgym.patients.knowledge.kb import KnowledgeBase


@dataclass(frozen=True)
class CaseFormat:
    """A written-case format: the module that reads it, by name. The module has
    `detects(path, head) -> bool` (`head` is a JSONL file's first record that parses, else None)
    and `read(path, kb, *, limit, images) -> ImportReport` (`images` only if `takes_images`)."""

    name: str
    module: str
    takes_images: bool = False

    def load(self) -> Any:
        """The format's module (imported on first use: a run imports only what it reads)."""
        return importlib.import_module(self.module)


FORMATS: dict[str, CaseFormat] = {
    f.name: f
    for f in (
        CaseFormat("agentclinic", "clinicgym.patients.importers.agentclinic"),
        CaseFormat(
            "agentclinic_nejm", "clinicgym.patients.importers.agentclinic_nejm", takes_images=True
        ),
        CaseFormat("ddxplus", "clinicgym.patients.importers.ddxplus"),
    )
}
"""The bundled formats, tried in this order by `detect_format`. A package adds its own under
the entry-point group `clinicgym.case_formats` (name = "module"; docs/importers.md)."""
ENTRY_POINT_GROUP = "clinicgym.case_formats"


def case_formats() -> dict[str, CaseFormat]:
    """The bundled formats and those other installed packages register."""
    found = dict(FORMATS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, CaseFormat(ep.name, ep.value))
    return found


def _head(path: Path) -> Any:
    """A JSONL file's first record that parses, else None."""
    try:
        with path.open(encoding="utf-8") as fh:
            for line in (x for x in fh if x.strip()):
                try:
                    return json.loads(line)
                except json.JSONDecodeError:
                    continue
    except (UnicodeDecodeError, IsADirectoryError):
        return None
    return None


def detect_format(path: Path | str) -> str:
    """The name of the first format whose module `detects` the file (AgentClinic MedQA- or
    NEJM-shaped JSONL by their keys, a DDXPlus release by its evidence file, ...)."""
    path = Path(path)
    if not path.exists():
        raise ImporterError(f"{path}: no such file or directory")
    head = None if path.is_dir() else _head(path)
    formats = case_formats()
    for fmt in formats.values():
        if fmt.load().detects(path, head):
            return fmt.name
    names = ", ".join(formats)
    if path.is_dir():
        raise ImporterError(
            f"{path}: a directory that no case format reads (a DDXPlus release has "
            f"release_evidences.json); pass a case file, or --cases-format, one of {names}"
        )
    if path.suffix.lower() in (".csv", ".zip"):
        raise ImporterError(
            f"{path}: a CSV/zip that no case format reads (DDXPlus patient files need the "
            f"release's evidence and condition files in the same directory); one of {names}"
        )
    raise ImporterError(
        f"{path}: cannot tell the format (not JSONL with 'OSCE_Examination' or with "
        "'question', 'patient_info' and 'answers', not a DDXPlus release); pass "
        f"--cases-format, one of {names}"
    )


def read_cases(
    path: Path | str,
    kb: KnowledgeBase,
    *,
    fmt: str | None = None,
    limit: int | None = None,
    strict: bool = False,
    images: Path | str | None = None,
) -> list[Case]:
    """The cases in an external file (the first `limit`, or all), in the given or detected
    format; each line's problem is a CaseImportWarning, or with `strict` fails the file."""
    report = import_cases(path, kb, fmt=fmt, limit=limit, images=images)
    report.check(strict)
    report.warn()
    return report.cases


def import_cases(
    path: Path | str,
    kb: KnowledgeBase,
    *,
    fmt: str | None = None,
    limit: int | None = None,
    images: Path | str | None = None,
) -> ImportReport:
    """The cases of an external file with every problem and note (see `ImportReport`);
    `images` is a local image file or folder for the NEJM-shaped cases."""
    formats = case_formats()
    name = fmt or detect_format(path)
    if name not in formats:
        raise ImporterError(f"unknown case format {name!r}; use one of {', '.join(formats)}")
    spec = formats[name]
    if images is not None and not spec.takes_images:
        raise ImporterError(
            f"{path}: --case-images is for formats whose cases reference images "
            f"({', '.join(f.name for f in formats.values() if f.takes_images)}), not {name!r}"
        )
    extra = {"images": images} if spec.takes_images else {}
    return spec.load().read(path, kb, limit=limit, **extra)
