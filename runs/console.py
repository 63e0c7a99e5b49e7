"""What every `clinicgym` command shares on the terminal: the error console, how a command
fails (one red `error:` line on stderr, exit status 2), how a table cell shows an interval, and
the run summary table (`clinicgym run`, `runs show`)."""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clinicgym.scoring.metric_registry import PERCENT, shown_in
from clinicgym.scoring.stats import format_ci

err_console = Console(stderr=True)


def fail(e: Exception, code: int = 2) -> NoReturn:
    """Print `error: <e>` on stderr and exit with `code` (2: bad input or a failed check)."""
    # escaped: a message may hold brackets rich would take for markup ("clinicgym[local]")
    err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def ci_cell(m: Any, **kw: Any) -> str:
    """`format_ci` for a rich table cell: `[undefined]` escaped, or rich takes it for markup
    and prints nothing."""
    return escape(format_ci(m, **kw))


SUMMARY_COLUMNS = {m.name: m.short for m in shown_in("summary")}


def summary_table(summary: dict[str, Any], names: dict[str, str] | None = None) -> Table:
    """A rich table of a summary.json: one row per agent (by its display name in `names`),
    metrics with 95% intervals, and pass^k for the run's k repeats per case when it has more
    than one."""
    names = names or {}
    repeats = int(summary.get("repeats") or 1)
    pass_k = f"pass^{repeats}" if repeats > 1 else None
    caption = (
        "top-1/top-3: diagnostic accuracy; coverage: must-ask facts elicited; sim. faults: "
        "share of failed episodes where the patient lost information"
        + (f"; {pass_k}: chance that all {repeats} tries at a case are right" if pass_k else "")
        + "\n95% CI: Wilson for 0/1 outcomes, BCa bootstrap otherwise (docs/scoring.md)"
    )
    table = Table(title=f"run {summary.get('run_id', '')}: mean [95% CI]", caption=caption)
    table.add_column("agent", style="bold")
    table.add_column("episodes", justify="right")
    table.add_column("errors", justify="right")
    for label in SUMMARY_COLUMNS.values():
        table.add_column(label, justify="right")
    if pass_k:
        table.add_column(pass_k, justify="right")
    usage = any(s.get("usage", {}).get("requests") for s in summary["agents"].values())
    if usage:  # model agents: tokens in/out and, where priced, cost
        table.add_column("tokens in/out", justify="right")
    for agent, s in summary["agents"].items():
        cells = [
            ci_cell(s["metrics"].get(n), pct=n in PERCENT, spec=".1f") for n in SUMMARY_COLUMNS
        ]
        if pass_k:
            cells.append(ci_cell(s.get("pass_k", {}).get(pass_k), pct=True))
        errors = str(s["errors"]) if not s["errors"] else f"[red]{s['errors']}[/red]"
        if usage:
            u = s.get("usage", {})
            cost = f" ${u['cost_usd']:.4f}" if u.get("cost_usd") is not None else ""
            cells.append(
                f"{u['prompt_tokens']}/{u['completion_tokens']}{cost}" if u.get("requests") else "-"
            )
        table.add_row(names.get(agent, agent), str(s["episodes"]), errors, *cells)
    return table
