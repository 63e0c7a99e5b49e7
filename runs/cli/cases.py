"""`clinicgym cases audit FILE`: how faithfully a written case file imports, case by case.

For each case: the source sentences and where they went (a fact, correctly no fact, or not
placed), the facts by category, the tests with the names they are orderable by, the KB links,
and what could not be placed; then a total line. `--json` prints everything as JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from clinicgym.errors import ClinicGymError
from clinicgym.runs.console import err_console, fail

if TYPE_CHECKING:
    from clinicgym.patients.importers.audit import CaseAudit


def cases_audit(
    path: Annotated[
        Path, typer.Argument(help="An AgentClinic JSONL file (MedQA- or NEJM-shaped).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole audit as JSON.")] = False,
    cases_format: Annotated[
        str | None,
        typer.Option(help="agentclinic or agentclinic_nejm (default: detect)."),
    ] = None,
    case_images: Annotated[
        Path | None, typer.Option(help="Local image file or folder for NEJM-shaped cases.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail if any line of the file cannot be imported.")
    ] = False,
    detail: Annotated[
        bool,
        typer.Option("--detail", help="List every source sentence, not only those not placed."),
    ] = False,
    kb_dir: Annotated[Path | None, typer.Option("--kb", help="KB directory.")] = None,
) -> None:
    """Audit the import of a written case file: sentences mapped, facts by category, tests and
    their names, KB links, and what could not be placed."""
    from clinicgym.patients.importers.audit import audit_file
    from clinicgym.patients.knowledge.kb import default_kb, load_kb

    try:
        kb = load_kb(kb_dir) if kb_dir else default_kb()
        report = audit_file(path, kb, fmt=cases_format, images=case_images, strict=strict)
    except ClinicGymError as e:
        fail(e)
    if as_json:
        print(report.to_json())
        return
    out = Console(width=120, highlight=False)
    for p in report.problems:
        err_console.print(f"[yellow]{p}[/yellow]", highlight=False)
    for c in report.cases:
        _print_case(out, c, detail)
    _print_totals(out, report.totals())


def _print_case(out: Console, c: CaseAudit, detail: bool) -> None:
    """One case's audit: sentences placed, facts by category, tests, KB links, then the
    sentences not placed (every sentence with `detail`) and facts made from text about the
    record."""
    placed = sum(1 for s in c.sentences if s.status != "unplaced")
    cats = ", ".join(f"{k} {v}" for k, v in sorted(c.facts_by_category.items()))
    out.rule(f"{c.case_id} (line {c.line}): {c.diagnosis}")
    out.print(f"sentences placed {placed}/{len(c.sentences)}; facts: {cats}", markup=False)
    tests = ", ".join(
        f"{t.name}{' [abnormal]' if t.abnormal else ''}{'' if t.orderable else ' [NAME LOST]'}"
        for t in c.tests
    )
    out.print(f"tests ({len(c.tests)}): {tests or '-'}", markup=False)
    links = ", ".join(
        f"{k['concept']}{'' if k['present'] == 'True' else ' (absent)'}" for k in c.kb_links
    )
    out.print(f"KB links ({len(c.kb_links)}): {links or '-'}", markup=False)
    for s in c.sentences if detail else c.unplaced:
        mark = {"fact": "+", "not a fact": "~", "unplaced": "!"}[s.status]
        why = f" ({s.why})" if s.why else ""
        out.print(f"  {mark} [{s.field}] {s.text}{why}", markup=False)
    for d in c.meta_denials:
        out.print(f"  ! a denial made from text about the record: {d}", markup=False)
    for d in c.meta_facts:
        out.print(f"  ! a fact made from text about the record: {d}", markup=False)


def _print_totals(out: Console, t: dict[str, Any]) -> None:
    """The file's total line: cases imported, sentences placed and how, tests, KB links."""
    out.rule("total")
    out.print(
        f"{t['cases']} of {t['lines']} cases imported ({t['skipped_lines']} lines skipped); "
        f"{t['placed']}/{t['sentences']} source sentences placed ({t['placed_share']:.1%}): "
        f"{t['as_facts']} as facts, {t['not_facts']} correctly no fact, {t['unplaced']} not "
        f"placed; {t['tests']} tests, {t['lost_test_names']} lost test names; "
        f"{t['kb_links']} KB links; {t['meta_denials']} 'no mention' denials, "
        f"{t['meta_facts']} facts made from text about the record",
        markup=False,
    )
