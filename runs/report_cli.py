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

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clinicgym.errors import ClinicGymError
from clinicgym.runs.console import ci_cell, fail

if TYPE_CHECKING:
    from clinicgym.runs.policy_cli import StoredRun
    from clinicgym.scoring.probes.suite import ProbeResults

console = Console()
PROBES_FILE = "probes.json"


# ---- probes ---------------------------------------------------------------------------------


def run_probes_on(
    run: StoredRun,
    *,
    agents: list[str],
    cases: int,
    kinds: list[str],
    value: str,
    samples: int,
    permutations: int,
    attributes: list[str],
    header: bool,
    concurrency: int,
    quiet: bool,
) -> ProbeResults:
    """Probe `agents` of a loaded run on its first `cases` cases; merge into its probes.json."""
    from clinicgym.agents.registry import make_agent_factory
    from clinicgym.runs.spec import RunSpec
    from clinicgym.scoring.errors import ProbeError
    from clinicgym.scoring.probes.suite import ProbeResults, new_results, run_probes

    unknown = [a for a in agents if a not in run.agents]
    if unknown:
        raise ProbeError(f"agent(s) {unknown} are not in {run.root}; its agents: {run.agents}")
    spec = RunSpec.model_validate(run.manifest["spec"])
    sample = list(run.cases.values())[:cases]
    if not sample:
        raise ProbeError(f"{run.root} holds no cases to probe")
    settings = {
        "cases": len(sample),
        "kinds": kinds,
        "value": value,
        "samples": samples,
        "permutations": permutations,
        "attributes": attributes,
        "header": header,
        "max_turns": spec.max_turns,
    }
    path = run.root / PROBES_FILE
    results = ProbeResults.read(path) if path.exists() else new_results(run.root.name, settings)
    results.settings = settings
    steps = len(agents) * (len(sample) * ("attribution" in kinds or "self_explanation" in kinds))
    steps += len(agents) * ("counterfactual" in kinds)
    progress = Progress(
        TextColumn("{task.description:>28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )

    async def main() -> None:
        for agent in agents:
            factory = make_agent_factory(agent, run.kb, spec.agent_options())
            task = progress.add_task(f"probe {agent}", total=steps // max(len(agents), 1))
            try:
                results.agents[agent] = await run_probes(
                    factory,
                    sample,
                    run.kb,
                    agent=agent,
                    kinds=kinds,
                    value=value,  # type: ignore[arg-type]
                    samples=samples,
                    permutations=permutations,
                    attributes=attributes,
                    header=header,
                    max_turns=spec.max_turns,
                    seed=spec.seed,
                    concurrency=concurrency,
                    on_case=lambda *_, t=task: progress.advance(t),
                )
            finally:
                if hasattr(factory, "aclose"):
                    await factory.aclose()

    with progress:
        asyncio.run(main())
    results.write(path)
    return results


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
    from clinicgym.runs.policy_cli import load_run
    from clinicgym.scoring.probes.counterfactual import ATTRIBUTES
    from clinicgym.scoring.probes.suite import PROBE_KINDS

    t0 = time.perf_counter()
    try:
        run = load_run(run_dir)
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
            quiet=quiet,
        )
    except ClinicGymError as e:
        fail(e)
    for table in probe_tables(results):
        console.print(table)
    for name, p in results.agents.items():
        if p.counterfactual is not None and p.counterfactual.skipped:
            skipped = ", ".join(f"{a} on {n}" for a, n in p.counterfactual.skipped.items())
            console.print(
                f"{name}: flips not applicable, skipped: {skipped} case(s) (sex only where it "
                "is irrelevant to the condition, see docs/scoring.md)"
            )
    console.print(f"probes written to {run_dir / PROBES_FILE} in {time.perf_counter() - t0:.1f} s")


# ---- the report -----------------------------------------------------------------------------


def build_run_report(run: StoredRun, *, weights: Path | None = None) -> Any:
    """Score a loaded run and assemble its report (probes.json included if present)."""
    from clinicgym.runs.summary import score_table, summarise
    from clinicgym.scoring.metrics import EpisodeScorer
    from clinicgym.scoring.probes.suite import ProbeResults
    from clinicgym.scoring.report import build_report
    from clinicgym.scoring.risk import load_weights, summarise_risk

    w = load_weights(weights) if weights else None
    packs = run.manifest.get("policy_packs", [])
    scorer = EpisodeScorer(run.kb, run.scenarios, monitored=bool(packs), weights=w)
    table = score_table(run.episodes, run.cases, scorer)
    prices = {k: tuple(v) for k, v in run.manifest["spec"].get("prices", {}).items()}
    summary = summarise(table, run.agents, run.root.name, prices)  # type: ignore[arg-type]
    risk = summarise_risk(table, run.agents, w)
    compliance = _compliance(run) if packs else None
    path = run.root / PROBES_FILE
    probes = ProbeResults.read(path) if path.exists() else None
    notes = list(run.notes)
    if run.scenarios:
        notes.append(
            f"Scenarios {run.scenarios} were applied; every episode is scored against its case "
            "as played. Probes replay the stored cases without scenarios."
        )
    return build_report(
        run_id=run.root.name,
        agents=run.agents,
        summary=summary,
        risk=risk,
        episodes=run.episodes,
        cases=run.cases,
        scorer=scorer,
        compliance=compliance,
        probes=probes,
        notes=notes,
    )


def _compliance(run: StoredRun) -> dict[str, Any]:
    """The run's live compliance: per agent pass rate, failures and undecided episodes."""
    from clinicgym.policies import load_packs
    from clinicgym.policies.rescore import live_verdicts
    from clinicgym.scoring.compliance import build_report as compliance_report

    records = run.manifest.get("policy_packs", [])
    # a pack the run named by file (not in the library) is reloaded from that file
    packs = load_packs(
        [r["path"] if Path(r.get("path") or "").is_file() else r["ref"] for r in records]
    )
    verdicts = live_verdicts(run.episodes, run.cases, run.scenarios, run.kb)
    rep = compliance_report(verdicts, packs, run_id=run.root.name, mode="live", agents=run.agents)
    return {
        "packs": [p.ref for p in packs],
        "agents": {
            a: {
                "pass_rate": c.pass_rate,
                "failed": c.failed,
                "errors": c.errors,
                "skipped": c.skipped,
                "violations": c.violations,
            }
            for a, c in rep.agents.items()
        },
    }


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
    from clinicgym.runs.policy_cli import load_run
    from clinicgym.scoring.probes.counterfactual import ATTRIBUTES
    from clinicgym.scoring.probes.suite import PROBE_KINDS
    from clinicgym.scoring.report import write_report

    t0 = time.perf_counter()
    try:
        run = load_run(run_dir)
        if probes:
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
                quiet=quiet,
            )
        rep = build_run_report(run, weights=weights)
        paths = write_report(rep, out or run_dir)
    except ClinicGymError as e:
        fail(e)
    console.print(report_table(rep))
    console.print(
        f"report: {', '.join(str(p) for p in paths.values())} "
        f"({len(rep.failures)} failure excerpts; {time.perf_counter() - t0:.1f} s)"
    )
