"""The `clinicgym` typer app: `run`, `kb`, `cases` and `version` here, the other command groups
registered from their modules in this package (some lazily, so `--help` stays quick)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from clinicgym import __version__
from clinicgym.errors import ClinicGymError
from clinicgym.runs import layout
from clinicgym.runs.cli.cohort import cohort_app
from clinicgym.runs.cli.play import play
from clinicgym.runs.cli.policy import (
    compliance,
    policy_app,
    print_run_compliance,
    rescore,
)
from clinicgym.runs.cli.report import probe, report
from clinicgym.runs.cli.review import feedback_app, review_app
from clinicgym.runs.console import err_console, fail, summary_table

if TYPE_CHECKING:
    from clinicgym.runs.progress import RunProgress
    from clinicgym.runs.store import RunStore

app = typer.Typer(
    help="clinicgym: benchmark a model that plays the clinician against grounded patients.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
kb_app = typer.Typer(help="Inspect and validate the clinical knowledge base.", no_args_is_help=True)
cases_app = typer.Typer(
    help="Sample and show synthetic cases; audit an imported case file.", no_args_is_help=True
)
app.add_typer(kb_app, name="kb")
app.add_typer(cases_app, name="cases")
# piped or in CI, rich would wrap the results table at 80 columns and cut every header; a log
# has room (COLUMNS still wins)
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120)


@app.command()
def run(
    click_ctx: typer.Context,
    agent: Annotated[
        list[str] | None,
        typer.Option(
            "--agent",
            "-a",
            help="Agent spec, repeatable: a baseline (scripted, random, oracle, opening, unsafe, "
            "human) or a model: openai/gpt-4o, anthropic/MODEL, google/MODEL, vllm/MODEL, "
            "ollama/MODEL, hf/smollm2, openai:MODEL@URL (keys and base URLs from each "
            "provider's usual variables or ./.env; docs/agents.md); or your own class, "
            "module:Class#key=value, or a name in the clinicgym.agents entry-point group.",
        ),
    ] = None,
    name: Annotated[
        list[str] | None,
        typer.Option(
            "--name",
            help="Display name of an agent in tables, reports and boards, repeatable: one per "
            "--agent, in the same order (default: the spec without its base URL).",
        ),
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", hidden=True, help="Not an option: --agent.")
    ] = None,
    cases: Annotated[
        int,
        typer.Option(help="Cases to sample from the KB (with --cases-from: all, unless given)."),
    ] = 30,
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
            help=(
                "'presentation': a complaint and a setting, then a condition of its "
                "differential; 'balanced': every condition equally likely; 'population': by "
                "prevalence (the last two: condition-first, older suites); 'auto' (default): "
                "presentation where the KB has presentations, else balanced."
            )
        ),
    ] = "auto",
    kb: Annotated[
        Path | None,
        typer.Option(help="Use this knowledge-base directory instead of the bundled one."),
    ] = None,
    cohort: Annotated[
        Path | None,
        typer.Option(help="Play the first --cases rows of this synthetic cohort directory."),
    ] = None,
    cases_from: Annotated[
        Path | None,
        typer.Option(
            help="Play the cases of this file (all, or the first --cases): AgentClinic JSONL "
            "(MedQA- or NEJM-shaped), or a DDXPlus release directory or patients CSV/zip (see "
            "docs/importers.md). A line that cannot be imported is skipped and reported."
        ),
    ] = None,
    cases_format: Annotated[
        str | None,
        typer.Option(
            help="Format of --cases-from: agentclinic, agentclinic_nejm or ddxplus (default: "
            "detect)."
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="With --cases-from: fail if any line of the file cannot be imported (default: "
            "skip it, say which line and field, and play the rest).",
        ),
    ] = False,
    case_images: Annotated[
        Path | None,
        typer.Option(
            help="Local image file or folder for NEJM-shaped --cases-from cases (matched by the "
            "image id in image_url, the case id or the line); without it they play text-only."
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar (for CI logs).")
    ] = False,
    max_tokens: Annotated[
        int | None, typer.Option(help="Reply budget per model turn (model backends).")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help="Sampling temperature for model backends.")
    ] = None,
    model_seed: Annotated[
        int | None, typer.Option(help="Sampling seed for model backends (per episode, turn).")
    ] = None,
    price: Annotated[
        list[str] | None,
        typer.Option(
            help="Cost of an agent's tokens, repeatable: 'SPEC=IN,OUT' in USD per million "
            "prompt and completion tokens; adds cost_usd to the summary."
        ),
    ] = None,
    pack: Annotated[
        list[str] | None,
        typer.Option(help="Policy pack monitored at every step, repeatable: hipaa-privacy@2."),
    ] = None,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            help="Scenario in every episode, repeatable: crisis, suite, ... (see policy)."
        ),
    ] = None,
    judge: Annotated[
        str | None, typer.Option(help="LLM judge for judge checks: openai:MODEL@URL.")
    ] = None,
    patient: Annotated[
        str,
        typer.Option(
            help="'grounded' (template wording) or a model that words the patient's answers "
            "behind the answer guard: hf:smollm2, openai:MODEL@URL."
        ),
    ] = "grounded",
    patient_cache: Annotated[
        Path | None,
        typer.Option(help="Recorded patient wordings (SQLite); default OUT/patient_cache.sqlite."),
    ] = None,
    patient_cache_mode: Annotated[
        str,
        typer.Option(help="record (read-through), replay (fail on a miss: reproducible), off."),
    ] = "record",
    config: Annotated[
        Path | None,
        typer.Option(
            help="Run spec file (TOML; YAML if .yaml/.yml) whose keys are the spec fields these "
            "options set (docs/runs.md); options given here override it."
        ),
    ] = None,
    suite: Annotated[
        str | None,
        typer.Option(
            help="Play a named suite, NAME or NAME@VERSION (`clinicgym suite list`), or a suite "
            "directory; it fixes the cases, repeats, turns, scenarios, packs and modality."
        ),
    ] = None,
    modality: Annotated[
        str | None, typer.Option(help="How imaging results reach the model: text, image, both.")
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(help="local (asyncio in this process, default) or ray (extra 'ray')."),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join: auto, ray://HOST:10001 (default: a private one)."),
    ] = None,
    ray_workers: Annotated[
        int | None, typer.Option(help="Ray actors playing episodes (default: one per CPU).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Local executor: processes playing episodes, each on its own event loop "
            "(default: one per core for runs long enough to gain from them, else 1)."
        ),
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option(
            help="Times an errored episode is replayed (same seed) before it is stored as "
            "errored (default 2)."
        ),
    ] = None,
    agent_concurrency: Annotated[
        list[str] | None,
        typer.Option(
            help="Episodes in flight for one agent, repeatable: 'SPEC=N' (a rate-limited API)."
        ),
    ] = None,
    retry_errored: Annotated[
        bool | None,
        typer.Option(
            "--retry-errored/--no-retry-errored",
            help="On resume, play the stored errored episodes again (they are moved to "
            "errored.jsonl first).",
        ),
    ] = None,
    stop_after_errors: Annotated[
        int | None,
        typer.Option(
            help="Stop an agent whose first N episodes all errored; its other episodes are "
            "left for a resume (default 10; 0: never)."
        ),
    ] = None,
    max_error_rate: Annotated[
        float | None,
        typer.Option(
            help="Exit with status 1 when an agent's share of errored episodes (infrastructure "
            "errors) is above this (default 0.2)."
        ),
    ] = None,
) -> None:
    """Run a benchmark: every agent plays every case; results go to the run directory.
    Exit status: 0 done; 1 done, but an agent was stopped, had every episode errored or more
    than --max-error-rate of them; 2 the run cannot start or store (bad input, a full disk, a
    folder it cannot write, a damaged or edited run directory); 3 a bug inside clinicgym."""
    from clinicgym.agents.registry import check_agent_spec
    from clinicgym.runs.config import spec_from_cli
    from clinicgym.runs.errors import ConfigError, EpisodeBug, StoreError
    from clinicgym.runs.imported import cases_given, imported_run_cases
    from clinicgym.runs.store import os_error_message

    if model:
        fail(
            ConfigError(
                f"no such option: --model. The model under test is an agent: "
                f"--agent {model[0]} (e.g. --agent openai/gpt-4o --name gpt-4o; see "
                "`clinicgym run --help`)"
            )
        )
    spec = None
    try:
        spec = spec_from_cli(click_ctx, config)
        for a in spec.agents:  # a typo fails here, before cases are made or a model loads
            check_agent_spec(a)
        spec, imported = imported_run_cases(
            spec, given=cases_given(click_ctx, config), say=_say_import
        )
        _run(spec, quiet, imported)
    except EpisodeBug as bug:
        _report_bug(bug, spec)
    except ClinicGymError as e:
        fail(e)
    except OSError as e:  # the run directory: a full disk, a read-only folder
        fail(StoreError(os_error_message(e, spec.out if spec else "the run directory")))


def _load_matcher(kb: Any, quiet: bool) -> None:
    """Load the patient's question matcher before the progress bars, saying so and what it cost
    (the MiniLM encoder in NumPy and its cached row embeddings: well under a second when warm)."""
    import time

    from clinicgym.patients.patient.matching import matcher_for

    if quiet:
        matcher_for(kb)
        return
    t = time.perf_counter()
    with err_console.status("loading the patient's question matcher (MiniLM) ..."):
        matcher_for(kb)
    took = time.perf_counter() - t
    err_console.print(f"[dim]patient: question matcher (MiniLM) ready in {took:.1f} s[/dim]")


def _run(spec: Any, quiet: bool, cases: list[Any] | None = None) -> None:
    """`clinicgym run` once its spec is resolved: play, finalise, print, set the exit status
    (`cases`: the --cases-from file's, already imported)."""
    from clinicgym.patients.patient.encoder import minilm_path
    from clinicgym.runs.progress import RunProgress
    from clinicgym.runs.runner import execute, finalise, prepare
    from clinicgym.runs.store import RunStore

    minilm_path()  # the patient's weights: a light install without them fails before any work
    ctx = prepare(spec, cases=cases)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    done = store.finished_ids()
    total = len(ctx.plan)
    _print_store_state(store, spec.out, len(done), total)
    _load_matcher(ctx.kb, quiet)
    with RunProgress(
        ctx.plan, done, console, quiet=quiet, log=err_console, names=spec.display_names()
    ) as progress:
        try:
            ran = asyncio.run(execute(ctx, store, progress.on_episode))
        finally:
            store.close()
    summary = finalise(ctx, store)
    console.print(summary_table(summary, spec.display_names()))
    print_run_compliance(summary)
    written = (layout.MANIFEST, layout.CASES, layout.EPISODES, layout.SCORES, layout.SUMMARY)
    console.print(
        f"{ran} episodes run now, {summary['stored_episodes']} of {total} stored in {spec.out}/ "
        f"({', '.join(written)})"
    )
    _print_error_causes(spec, progress)
    stopped = _report_stopped(spec, progress)
    error_heavy = _report_error_heavy(spec, summary, progress)
    if stopped or error_heavy:
        raise typer.Exit(1)


def _print_store_state(store: RunStore, out: Path, done_before: int, total: int) -> None:
    """What opening the run directory found: a torn last line cut, errored or unreadable
    episodes set aside to be played again, episodes already stored (a resumed run)."""
    if store.recovered_bytes:
        err_console.print(
            f"[yellow]recovered:[/yellow] cut a torn last line ({store.recovered_bytes} bytes) "
            f"from {store.episodes_path}"
        )
    if store.set_aside:
        console.print(
            f"--retry-errored: {store.set_aside} errored episodes moved to "
            f"{store.root / layout.ERRORED}; they are played again."
        )
    if store.unreadable:
        err_console.print(
            f"[yellow]--retry-errored:[/yellow] {len(store.unreadable)} unreadable lines of "
            f"{store.episodes_path} (line {', '.join(map(str, store.unreadable[:5]))}) moved to "
            f"{store.root / layout.UNREADABLE}; their episodes are played again.",
            soft_wrap=True,
        )
    if done_before:
        console.print(f"Resuming {out}: {done_before} of {total} episodes already stored.")


def _print_error_causes(spec: Any, progress: RunProgress) -> None:
    """How many episodes ended in infrastructure errors, and their three commonest causes."""
    if not progress.total_errors:
        return
    err_console.print(
        f"[yellow]{progress.total_errors} episodes ended in infrastructure errors (after "
        f"{spec.episode_retries} retries); they are excluded from the metrics.[/yellow] "
        "Most common causes:"
    )
    for cause, n in progress.causes.most_common(3):
        err_console.print(f"  {n} x {cause}", markup=False, highlight=False)


def _report_stopped(spec: Any, progress: RunProgress) -> bool:
    """Say which agents were stopped after --stop-after-errors errored episodes in a row, and
    how to resume; True if any was."""
    for agent, left in progress.unplayed.items():
        err_console.print(
            f"[red]stopped {agent}:[/red] its first {spec.stop_after_errors} episodes all "
            f"errored, so its other {left} were not played. Fix the cause above and run the "
            "same command again: the unplayed episodes resume (add --retry-errored to replay "
            "the errored ones too).",
            highlight=False,
        )
    return bool(progress.unplayed)


def _report_error_heavy(spec: Any, summary: dict[str, Any], progress: RunProgress) -> bool:
    """Say which played agents' numbers are unusable: every episode errored, or more than
    --max-error-rate did; True if any."""
    incomplete = False
    for agent, s in summary["agents"].items():
        if agent in progress.unplayed or not s["errors"]:
            continue
        share = s["errors"] / max(s["episodes"], 1)
        if s["errors"] == s["episodes"]:
            why = "every one of its episodes errored"
        elif share > spec.max_error_rate:
            why = f"above --max-error-rate {spec.max_error_rate:.0%}"
        else:
            continue
        incomplete = True
        err_console.print(
            f"[red]incomplete {agent}:[/red] {s['errors']} of {s['episodes']} episodes "
            f"({share:.0%}) ended in infrastructure errors, {why}; its numbers leave them out. "
            "Fix the cause and run the same command with --retry-errored.",
            highlight=False,
            soft_wrap=True,
        )
    return incomplete


def _report_bug(bug: Any, spec: Any) -> None:
    """One line for a bug inside clinicgym (the traceback goes to RUN_DIR/bug.txt); exit 3."""
    where = ""
    if spec is not None:
        path = layout.RunPaths(spec.out).bug
        try:
            path.write_text(f"{bug}\n\n{bug.trace}\n", encoding="utf-8")
            where = f" The traceback is in {path}."
        except OSError:
            where = ""
    err_console.print(
        f"[red]bug:[/red] {bug}. The run stopped: this is an exception inside clinicgym, not "
        f"the model's failure, so no episode is left out to hide it.{where} Please report it; "
        "the same command resumes the run once it is fixed.",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(3)


def _say_import(report: Any) -> None:
    """Once per run: the case file's skipped lines, caveats and notes."""
    from clinicgym.runs.imported import report_lines

    for line in report_lines(report):
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)


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
        fail(e)
    spec = manifest.spec
    console.print(
        summary_table(
            summarise(table, spec.agents, store.root.name, spec.price_table()),
            spec.display_names(),
        )
    )


@kb_app.command("validate")
def kb_validate(
    directory: Annotated[
        Path | None, typer.Argument(help="KB directory (default: the bundled KB).")
    ] = None,
) -> None:
    """Validate a knowledge base; list every problem with its file, item and field."""
    from clinicgym.patients.knowledge.kb import load_kb

    try:
        kb = load_kb(directory)
    except ClinicGymError as e:
        fail(e)
    console.print(
        f"OK: {len(kb.conditions)} conditions, {len(kb.findings)} findings, {len(kb.tests)} tests, "
        f"{len(kb.drugs)} drugs (version {kb.version})"
    )


@kb_app.command("list")
def kb_list(
    directory: Annotated[Path | None, typer.Option("--kb", help="KB directory.")] = None,
) -> None:
    """List the KB's conditions with code, settings and age range."""
    from clinicgym.patients.knowledge.kb import load_kb

    try:
        kb = load_kb(directory)
    except ClinicGymError as e:
        fail(e)
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
    from clinicgym.patients.cases.presentation import default_sampler
    from clinicgym.patients.knowledge.kb import load_kb

    try:
        sampled = default_sampler(load_kb(directory)).sample_many(n, seed)
    except ClinicGymError as e:
        fail(e)
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


def _cases_audit() -> None:
    from clinicgym.runs.cli.cases import cases_audit

    cases_app.command("audit")(cases_audit)


_cases_audit()
app.add_typer(policy_app, name="policy")
app.command("rescore")(rescore)
app.command("compliance")(compliance)
app.add_typer(cohort_app, name="cohort")
app.command("play")(play)
app.command("report")(report)
app.command("probe")(probe)


def _bias_cli() -> None:
    from clinicgym.runs.cli.bias import probe_bias

    app.command("probe-bias")(probe_bias)


_bias_cli()


def _modality_cli() -> None:
    from clinicgym.runs.modality_probe import probe_modality

    app.command("probe-modality")(probe_modality)


_modality_cli()


def _patients_app() -> typer.Typer:
    from clinicgym.runs.cli.patients import patients_app

    return patients_app


app.add_typer(_patients_app(), name="patients")


def _rl_app() -> typer.Typer:
    from clinicgym.runs.rl.cli import rl_app

    return rl_app


app.add_typer(_rl_app(), name="rl")
app.add_typer(review_app, name="review")
app.add_typer(feedback_app, name="feedback")


def _scale_cli() -> None:
    from clinicgym.runs.cli.scale import leaderboard_app, runs_app, submit, suite_app

    app.add_typer(runs_app, name="runs")
    app.add_typer(suite_app, name="suite")
    app.command("submit")(submit)
    app.add_typer(leaderboard_app, name="leaderboard")


_scale_cli()


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
