"""What an importer found wrong, line by line: reported, never a reason to drop a file.

An importer reads every line it can. A line it cannot turn into a case (not JSON, no diagnosis,
no age) is skipped and reported with its file, line and field; a line it imports with a caveat
(the record never says the patient's sex) is imported and reported too. `strict=True` makes any
skipped line fail the whole file (all or nothing), listing every problem at once.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinicgym.patients.cases.case import Case
from clinicgym.patients.errors import ImporterError

MAX_SHOWN = 20
"""At most this many problems are spelled out in one error or summary (the count is given)."""


class CaseImportWarning(UserWarning):
    """A problem with one line of a case file; the rest of the file was imported."""


@dataclass(frozen=True)
class ImportProblem:
    """One problem with one line: where (file, line, field), what, and whether the line was
    skipped (no case) or imported with a caveat."""

    file: str
    line: int | None
    field: str
    message: str
    skipped: bool = True
    unit: str = "line"
    """What `line` counts: a JSONL 'line' or a CSV 'row' (the header is row 1)."""

    def __str__(self) -> str:
        where = self.file + (f" {self.unit} {self.line}" if self.line is not None else "")
        what = f"field '{self.field}': " if self.field else ""
        tail = f" ({self.unit} skipped)" if self.skipped else " (imported)"
        return f"{where}: {what}{self.message}{tail}"


@dataclass
class ImportReport:
    """The cases read from a file, every problem found, and notes for the whole file (said
    once per run, e.g. that image cases play text-only)."""

    path: Path
    format: str
    cases: list[Case] = field(default_factory=list)
    problems: list[ImportProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lines: int = 0
    """Non-empty lines (records) read."""

    @property
    def skipped(self) -> list[ImportProblem]:
        """Problems that cost a case."""
        return [p for p in self.problems if p.skipped]

    def summary(self) -> str:
        """One line: how many records, cases, skipped lines and caveats."""
        skipped = len({p.line for p in self.skipped})
        caveats = len(self.problems) - len(self.skipped)
        return (
            f"{self.path.name}: {len(self.cases)} of {self.lines} cases imported"
            + (f", {skipped} line{'s' if skipped != 1 else ''} skipped" if skipped else "")
            + (f", {caveats} imported with a caveat" if caveats else "")
        )

    def check(self, strict: bool) -> None:
        """Strict: any skipped line fails the file, every problem listed. Always: a file with
        no case at all fails."""
        if strict and self.skipped:
            raise ImporterError(
                f"{self.path}: --strict and {len(self.skipped)} of {self.lines} lines cannot be "
                "imported:\n  " + "\n  ".join(_shown(self.skipped))
            )
        if not self.cases:
            why = ":\n  " + "\n  ".join(_shown(self.problems)) if self.problems else ""
            raise ImporterError(
                f"{self.path}: no cases"
                + (" (the file has no non-empty lines)" if not self.lines else "")
                + why
            )

    def warn(self) -> None:
        """Each problem as a CaseImportWarning (for callers that do not print the report)."""
        for p in self.problems:
            warnings.warn(CaseImportWarning(str(p)), stacklevel=3)


def _shown(problems: list[ImportProblem]) -> list[str]:
    out = [str(p) for p in problems[:MAX_SHOWN]]
    if len(problems) > MAX_SHOWN:
        out.append(f"... and {len(problems) - MAX_SHOWN} more")
    return out


def import_jsonl(
    path: Path | str,
    fmt: str,
    make: Callable[[Any, str, int, int], tuple[Case | None, list[ImportProblem]]],
    *,
    limit: int | None = None,
) -> ImportReport:
    """Read a JSONL case file line by line: `make(raw, file, line, index)` turns one record
    into a case (or None) and its problems; a line that is not JSON, or whose record cannot be
    made, is reported and skipped; `limit` stops after that many cases."""
    path = Path(path)
    report = ImportReport(path, fmt)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImporterError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImporterError(f"{path}: a directory, not a JSONL file") from None
    except UnicodeDecodeError as e:
        raise ImporterError(f"{path}: not UTF-8 text ({e})") from None
    index = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if limit is not None and len(report.cases) >= limit:
            break
        report.lines += 1
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            why = f"not valid JSON ({e.msg} at column {e.colno})"
            report.problems.append(ImportProblem(path.name, lineno, "", why))
            index += 1
            continue
        try:
            case, problems = make(raw, path.name, lineno, index)
        except ImporterError as e:  # a record the builder cannot finish
            case, problems = None, [ImportProblem(path.name, lineno, "", str(e))]
        report.problems.extend(problems)
        if case is not None:
            report.cases.append(case)
        index += 1
    return report
