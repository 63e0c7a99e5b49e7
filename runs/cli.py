"""The `clinicgym` command line: run benchmarks, inspect the knowledge base and cases."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from clinicgym import __version__
from clinicgym.errors import ClinicGymError

app = typer.Typer(
    help="clinicgym: benchmark a model that plays the clinician against grounded patients.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
kb_app = typer.Typer(help="Inspect and validate the clinical knowledge base.", no_args_is_help=True)
cases_app = typer.Typer(help="Sample and show synthetic cases.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
app.add_typer(cases_app, name="cases")
console = Console()
err_console = Console(stderr=True)

SUMMARY_COLUMNS = {
    "diagnostic_accuracy": "top-1",
    "top3_accuracy": "top-3",
    "inquiry_coverage": "coverage",
    "turns": "turns",
}


def _fmt_metric(m: dict[str, Any] | None, pct: bool) -> str:
    if not m or m.get("mean") is None:
        return "-"
    lo, hi = m["ci95"]
    if pct:
        return f"{m['mean'] * 100:.0f}% [{lo * 100:.0f}-{hi * 100:.0f}]"
    return f"{m['mean']:.1f} [{lo:.1f}-{hi:.1f}]"


def summary_table(summary: dict[str, Any]) -> Table:
    """A rich table of a summary.json: one row per agent, metrics with 95% intervals."""
    table = Table(
        title=f"run {summary.get('run_id', '')}: mean [95% CI]",
        caption="top-1/top-3: diagnostic accuracy; coverage: must-ask facts elicited",
    )
    table.add_column("agent", style="bold")
    table.add_column("episodes", justify="right")
    table.add_column("errors", justify="right")
    for label in SUMMARY_COLUMNS.values():
        table.add_column(label, justify="right")
    for agent, s in summary["agents"].items():
        cells = [_fmt_metric(s["metrics"].get(n), pct=n != "turns") for n in SUMMARY_COLUMNS]
        errors = str(s["errors"]) if not s["errors"] else f"[red]{s['errors']}[/red]"
        table.add_row(agent, str(s["episodes"]), errors, *cells)
    return table


def _fail(e: Exception) -> None:
    err_console.print(f"[red]error:[/red] {e}", highlight=False)
    raise typer.Exit(2)


@app.command()
def run(
    agent: Annotated[
        list[str],
        typer.Option(
            "--agent",
            "-a",
            help="Agent spec, repeatable: scripted, random, oracle, hf:smollm2, openai:MODEL@URL.",
        ),
    ],
    cases: Annotated[int, typer.Option(help="Number of cases to sample from the KB.")] = 30,
    seed: Annotated[
        int, typer.Option(help="Seed for cases and episodes: same seed, same run.")
    ] = 0,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run directory; the same --out again resumes it. Default: runs/run-<time>."
        ),
    ] = None,
    repeats: Annotated[
        int, typer.Option(help="Episodes per agent and case (different seeds).")
    ] = 1,
    max_turns: Annotated[int, typer.Option(help="Clinician turn budget per episode.")] = 20,
    concurrency: Annotated[int, typer.Option(help="Episodes in flight at once.")] = 8,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            help="Only conditions of this setting (primary_care, emergency, mental_health, "
            "paediatrics, rare_disease); repeatable."
        ),
    ] = None,
    condition: Annotated[
        list[str] | None, typer.Option(help="Only these KB condition ids; repeatable.")
    ] = None,
    weighting: Annotated[
        str,
        typer.Option(
            help="'balanced': every condition equally likely; 'population': by prevalence."
        ),
    ] = "balanced",
    kb: Annotated[
        Path | None,
        typer.Option(help="Use this knowledge-base directory instead of the bundled one."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar (for CI logs).")
    ] = False,
) -> None:
    """Run a benchmark: every agent plays every case; results go to the run directory."""
    from pydantic import ValidationError

    from clinicgym.runs.runner import execute, finalise, prepare
    from clinicgym.runs.spec import RunSpec
    from clinicgym.runs.store import RunStore

    out = out or Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")
    try:
        spec = RunSpec(
            agents=agent,
            cases=cases,
            seed=seed,
            repeats=repeats,
            max_turns=max_turns,
            concurrency=concurrency,
            settings=setting or [],
            conditions=condition or [],
            weighting=weighting,  # type: ignore[arg-type]
            kb_dir=str(kb) if kb else None,
            out=out,
        )
    except ValidationError as e:
        _fail(
            ValueError("; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()))
        )
        return
    try:
        ctx = prepare(spec)
        store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    except ClinicGymError as e:
        _fail(e)
        return
    done_before = len(store.finished_ids())
    total = len(ctx.plan)
    if store.recovered_bytes:
        err_console.print(
            f"[yellow]recovered:[/yellow] cut a torn last line ({store.recovered_bytes} bytes) "
            f"from {store.episodes_path}"
        )
    if done_before:
        console.print(f"Resuming {out}: {done_before} of {total} episodes already stored.")
    per_agent_total = {a: total // len(spec.agents) for a in spec.agents}
    done_per_agent = {a: 0 for a in spec.agents}
    for ep_id in store.finished_ids():
        a = ep_id.split("|", 1)[0]
        if a in done_per_agent:
            done_per_agent[a] += 1
    errors = {"n": 0}
    with Progress(
        TextColumn("{task.description:>16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("errors {task.fields[errors]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    ) as progress:
        tasks = {
            a: progress.add_task(
                a[:16], total=per_agent_total[a], completed=done_per_agent[a], errors=0
            )
            for a in spec.agents
        }
        agent_errors = {a: 0 for a in spec.agents}

        def on_episode(ep: Any) -> None:
            if ep.status == "error":
                agent_errors[ep.agent_id] += 1
                errors["n"] += 1
            progress.update(tasks[ep.agent_id], advance=1, errors=agent_errors[ep.agent_id])

        try:
            ran = asyncio.run(execute(ctx, store, on_episode))
        finally:
            store.close()
    summary = finalise(ctx, store)
    console.print(summary_table(summary))
    console.print(
        f"{ran} episodes run now, {summary['stored_episodes']} of {total} stored in {out}/ "
        "(manifest.json, cases.jsonl, episodes.jsonl, scores.parquet, summary.json)"
    )
    if errors["n"]:
        err_console.print(
            f"[yellow]{errors['n']} episodes ended in infrastructure errors; they are excluded "
            "from the metrics.[/yellow]"
        )


@app.command()
def summary(run_dir: Annotated[Path, typer.Argument(help="A run directory.")]) -> None:
    """Print a run's summary table (recomputed from its episodes)."""
    from clinicgym.runs.store import RunStore
    from clinicgym.runs.summary import score_table, summarise

    store = RunStore(run_dir)
    try:
        manifest = store.manifest()
        cases = {c.id: c for c in store.cases()}
        table = score_table(store.iter_episodes(), cases)
    except ClinicGymError as e:
        _fail(e)
        return
    console.print(summary_table(summarise(table, manifest["spec"]["agents"], store.root.name)))


@kb_app.command("validate")
def kb_validate(
    directory: Annotated[
        Path | None, typer.Argument(help="KB directory (default: the bundled KB).")
    ] = None,
) -> None:
    """Validate a knowledge base; list every problem with its file, item and field."""
    from clinicgym.patients.kb import load_kb

    try:
        kb = load_kb(directory)
    except ClinicGymError as e:
        _fail(e)
        return
    console.print(
        f"OK: {len(kb.conditions)} conditions, {len(kb.findings)} findings, {len(kb.tests)} tests, "
        f"{len(kb.drugs)} drugs (version {kb.version})"
    )


@kb_app.command("list")
def kb_list(
    directory: Annotated[Path | None, typer.Option("--kb", help="KB directory.")] = None,
) -> None:
    """List the KB's conditions with code, settings and age range."""
    from clinicgym.patients.kb import load_kb

    try:
        kb = load_kb(directory)
    except ClinicGymError as e:
        _fail(e)
        return
    table = Table(title=f"{len(kb.conditions)} conditions (KB {kb.version})")
    for col in ("id", "name", "ICD-10-CM", "settings", "age", "escalation"):
        table.add_column(col)
    for c in sorted(kb.conditions.values(), key=lambda c: (c.settings[0], c.id)):
        esc = f"{c.escalation.level} <= {c.escalation.within_turns} turns" if c.escalation else ""
        table.add_row(c.id, c.name, c.icd10, ", ".join(c.settings), f"{c.age[0]}-{c.age[1]}", esc)
    console.print(table)


@cases_app.command("sample")
def cases_sample(
    n: Annotated[int, typer.Option(help="How many cases.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print cases as JSON lines.")] = False,
    directory: Annotated[Path | None, typer.Option("--kb", help="KB directory.")] = None,
) -> None:
    """Sample cases from the KB and show them (ground truth: never shown to the model)."""
    from clinicgym.patients.kb import load_kb
    from clinicgym.patients.sampler import CaseSampler

    try:
        sampled = CaseSampler(load_kb(directory)).sample_many(n, seed)
    except ClinicGymError as e:
        _fail(e)
        return
    for case in sampled:
        if as_json:
            print(case.model_dump_json())
            continue
        console.rule(f"{case.id}: {case.diagnosis.name} ({case.diagnosis.code})")
        console.print(
            f"{case.age} y, {case.sex}, {case.setting}; persona {case.persona.model_dump()}; "
            f"{case.phi.name}"
        )
        for f in case.facts:
            mark = "+" if f.present else "-"
            console.print(
                f"  {mark} [{f.category}/{f.salience}] {f.concept}: {f.text}", highlight=False
            )


@app.command()
def version() -> None:
    """Print the clinicgym version."""
    console.print(__version__)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except ClinicGymError as e:
        err_console.print(f"[red]error:[/red] {e}", highlight=False)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
