"""`clinicgym run --cases-from FILE`: the file's cases, read once, with what went wrong said once.

Every case of the file plays unless `--cases N` is given (then the first N that import). A line
that cannot be imported is skipped and reported by file, line and field; `--strict` fails the
run instead. Notes for the whole file (NEJM cases playing text-only for want of their image)
are printed once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from clinicgym.patients.cases.case import Case
from clinicgym.patients.importers.problems import MAX_SHOWN, ImportReport
from clinicgym.runs.errors import RunError
from clinicgym.runs.spec import RunSpec


def cases_given(click_ctx: Any, config: Path | None) -> bool:
    """True if `--cases` was given on the command line or in the spec file."""
    from clinicgym.runs.config import flags_from_click, read_config

    if "cases" in flags_from_click(click_ctx):
        return True
    return bool(config is not None and "cases" in read_config(config))


def imported_run_cases(
    spec: RunSpec, *, given: bool, say: Callable[[ImportReport], None] | None = None
) -> tuple[RunSpec, list[Case] | None]:
    """The spec (its `cases` set to the number imported when not given) and the cases of
    `spec.cases_from`; (spec, None) when the run does not read a file (a suite, sampling)."""
    if not spec.cases_from or spec.suite:
        return spec, None
    if spec.cohort or spec.settings or spec.conditions:
        raise RunError(
            "--cases-from plays the cases in that file; it cannot be combined with --cohort, "
            "--setting or --condition"
        )
    from clinicgym.patients.importers.external import import_cases
    from clinicgym.patients.knowledge.kb import default_kb, load_kb

    kb = load_kb(spec.kb_dir) if spec.kb_dir else default_kb()
    report = import_cases(
        spec.cases_from,
        kb,
        fmt=spec.cases_format,
        limit=spec.cases if given else None,
        images=spec.case_images,
    )
    report.check(spec.strict_cases)
    if say is not None:
        say(report)
    if not given:
        spec = spec.model_copy(update={"cases": len(report.cases)})
    return spec, report.cases


def report_lines(report: ImportReport) -> list[str]:
    """What a run prints about its case file: the count, each problem (up to a limit) and the
    file's notes."""
    if not report.problems and not report.notes:
        return []
    lines = [report.summary()]
    lines += [f"  {p}" for p in report.problems[:MAX_SHOWN]]
    if len(report.problems) > MAX_SHOWN:
        lines.append(f"  ... and {len(report.problems) - MAX_SHOWN} more")
    lines += [f"note: {n}" for n in report.notes]
    return lines
