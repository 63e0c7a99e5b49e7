"""`clinicgym report RUN_DIR` and `clinicgym probe RUN_DIR`: the run report and the probes.

* `report RUN_DIR`: scores every stored episode again (against the case as played), then writes
  `report.json`, `report.md` and a standalone `report.html` (accuracy and risk per agent with
  intervals, violations by regulation, subgroup gaps, calibration and pass^k, attribution bars,
  one transcript excerpt per failure type). `--probes` runs the probes first; a `probes.json`
  already in the run directory is included either way.
* `probe RUN_DIR`: fact attribution, self-explanation faithfulness and counterfactual flips for
  the run's agents over its first `--cases` cases; writes (merges into) `probes.json`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clinicgym.errors import ClinicGymError
from clinicgym.runs import layout
from clinicgym.runs.console import ci_cell, fail

if TYPE_CHECKING:
    from clinicgym.scoring.probes.suite import ProbeResults

console = Console()


def _probe_progress(quiet: bool) -> tuple[Progress, Callable[[str, int], Callable[..., None]]]:
    """A progress display with one bar per probed agent, and the `on_agent` hook that adds it."""
    progress = Progress(
        TextColumn("{task.description:>28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )

    def on_agent(agent: str, steps: int) -> Callable[..., None]:
        task = progress.add_task(f"probe {agent}", total=steps)
        return lambda *_: progress.advance(task)

    return progress, on_agent


def probe_tables(results: ProbeResults) -> list[Table]:
    """Attribution and self-explanation per agent; counterfactual flips per agent and attribute."""
    first = Table(title=f"probes of {results.run_id}: attribution and self-explanation")
    for col in ("agent", "attribution ok/err", "KB alignment", "explained ok/other", "faithful"):
        first.add_column(col, justify="left" if col == "agent" else "right", no_wrap=True)
    flips = Table(title="counterfactual flips (control: same case, another seed)")
    for col in ("agent", "attribute", "pairs", "errors", "flip rate", "risk change"):
        flips.add_column(col, justify="left" if col in ("agent", "attribute") else "right")
    any_first = False
    for agent, p in results.agents.items():
        at = p.summary.get("attribution", {})
        se = p.summary.get("self_explanation", {})
        any_first = any_first or bool(at or se)
        other = sum(se.get(k, 0) for k in ("error", "no_explanation", "unmapped", "no_attribution"))
        first.add_row(
            agent,
            f"{at.get('ok', 0)}/{at.get('errors', 0)}" if at else "-",
            ci_cell(at.get("alignment")) if at else "-",
            f"{se.get('ok', 0)}/{other}" if se else "-",
            ci_cell(se.get("faithfulness"), pct=True) if se else "-",
        )
        for attr, v in p.summary.get("counterfactual", {}).items():
            flips.add_row(
                agent,
                attr,
                str(v.get("pairs", 0)),
                str(v.get("errors", 0)),
                ci_cell(v.get("flip_rate"), pct=True),
                ci_cell(v.get("risk_delta")),
            )
    tables = [first] if any_first else []  # no empty table when only flips were probed
    return [*tables, flips] if flips.row_count else tables


def probe(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    agent: Annotated[
        list[str] | None,
        typer.Option(
            "--agent", "-a", help="Agent spec of the run to probe, repeatable (default: all)."
        ),
    ] = None,
    cases: Annotated[int, typer.Option(help="Probe the run's first N cases.")] = 5,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            help="attribution, self_explanation, counterfactual; repeatable (default: all)."
        ),
    ] = None,
    value: Annotated[
        str, typer.Option(help="Attribution value: confidence (stated) or frequency (sampling).")
    ] = "confidence",
    samples: Annotated[int, typer.Option(help="Consultations per coalition (frequency).")] = 1,
    permutations: Annotated[int, typer.Option(help="Shapley permutations per case.")] = 4,
    attribute: Annotated[
        list[str] | None,
        typer.Option(help="Counterfactual attribute, repeatable: sex, ethnicity, insurance, name."),
    ] = None,
    header: Annotated[
        bool, typer.Option(help="Open probe consultations with a registration line (name, ...).")
    ] = True,
    concurrency: Annotated[int, typer.Option(help="Consultations in flight.")] = 4,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run explainability probes on a run's agents; results go to RUN_DIR/probes.json."""
    from clinicgym.runs.reporting import run_probes_on
    from clinicgym.runs.store import load_run
    from clinicgym.scoring.probes.counterfactual import ATTRIBUTES
    from clinicgym.scoring.probes.suite import PROBE_KINDS

    t0 = time.perf_counter()
    try:
        run = load_run(run_dir)
        progress, on_agent = _probe_progress(quiet)
        with progress:
            results = run_probes_on(
                run,
                agents=agent or run.agents,
                cases=cases,
                kinds=kind or list(PROBE_KINDS),
                value=value,
                samples=samples,
                permutations=permutations,
                attributes=attribute or list(ATTRIBUTES),
                header=header,
                concurrency=concurrency,
                on_agent=on_agent,
            )
    except ClinicGymError as e:
        fail(e)
    _print_probes(results, run_dir / layout.PROBES, t0)


def _print_probes(results: ProbeResults, written: Path, t0: float) -> None:
    """The probes' tables; the counterfactual attributes skipped as not applicable (so a
    missing flip rate is not read as no flips); where the results went and how long the
    probes took since `t0` (a `time.perf_counter()`)."""
    for table in probe_tables(results):
        console.print(table)
    for name, p in results.agents.items():
        if p.counterfactual is not None and p.counterfactual.skipped:
            skipped = ", ".join(f"{a} on {n}" for a, n in p.counterfactual.skipped.items())
            console.print(
                f"{name}: flips not applicable, skipped: {skipped} case(s) (sex only where it "
                "is irrelevant to the condition, see docs/scoring.md)"
            )
    took = time.perf_counter() - t0
    console.print(f"probes written to {written} in {took:.1f} s")


def report_table(rep: Any) -> Table:
    """One row per agent: episodes, errors (infrastructure/judge, kept apart), accuracy, risk
    and calibration error with intervals."""
    table = Table(title=f"report of {rep.run_id}")
    for col in ("agent", "eps", "err i/j", "top-1", "risk", "ECE"):
        table.add_column(col, justify="left" if col == "agent" else "right", no_wrap=True)
    for a in rep.agents:
        s = rep.summary["agents"].get(a, {})
        m = s.get("metrics", {})
        errors = str(s.get("errors", 0))
        table.add_row(
            a,
            str(s.get("episodes", 0)),
            (f"[red]{errors}[/red]" if s.get("errors") else errors)
            + f"/{s.get('judge_errors', 0)}",
            ci_cell(m.get("diagnostic_accuracy"), pct=True),
            ci_cell(m.get("risk_score")),
            ci_cell(s.get("calibration", {}).get("ece")),
        )
    return table


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    out: Annotated[
        Path | None, typer.Option(help="Directory for the report (default: RUN_DIR).")
    ] = None,
    probes: Annotated[
        bool, typer.Option("--probes", help="Run the probes first (see `clinicgym probe`).")
    ] = False,
    probe_cases: Annotated[int, typer.Option(help="Cases to probe with --probes.")] = 5,
    probe_agent: Annotated[
        list[str] | None, typer.Option(help="Agent to probe with --probes, repeatable.")
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="A risk-weights YAML file (default: the bundled one).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Write report.json, report.md and a standalone report.html for a run."""
    from clinicgym.runs.reporting import build_run_report, run_probes_on
    from clinicgym.runs.store import load_run
    from clinicgym.scoring.probes.counterfactual import ATTRIBUTES
    from clinicgym.scoring.probes.suite import PROBE_KINDS
    from clinicgym.scoring.report import write_report

    t0 = time.perf_counter()
    try:
        run = load_run(run_dir)
        if probes:
            progress, on_agent = _probe_progress(quiet)
            with progress:
                run_probes_on(
                    run,
                    agents=probe_agent or run.agents,
                    cases=probe_cases,
                    kinds=list(PROBE_KINDS),
                    value="confidence",
                    samples=1,
                    permutations=4,
                    attributes=list(ATTRIBUTES),
                    header=True,
                    concurrency=4,
                    on_agent=on_agent,
                )
        rep = build_run_report(run, weights=weights)
        paths = write_report(rep, out or run_dir, layout.REPORT)
    except ClinicGymError as e:
        fail(e)
    console.print(report_table(rep))
    console.print(
        f"report: {', '.join(str(p) for p in paths.values())} "
        f"({len(rep.failures)} failure excerpts; {time.perf_counter() - t0:.1f} s)"
    )
