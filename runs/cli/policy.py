"""`clinicgym policy ...`, `clinicgym rescore` and `clinicgym compliance`: packs and reports.

* `policy list|show|validate|diff|scenarios|checks`: inspect and validate packs, compare two
  versions (and, given run directories, see which stored episodes change verdict);
* `rescore RUN_DIR --pack hipaa-privacy@2`: re-judge stored transcripts under other pack
  versions, without re-running the model; writes a compliance report in the run directory;
* `compliance RUN_DIR`: the report of the violations recorded while the run played.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clinicgym.errors import ClinicGymError
from clinicgym.runs import layout
from clinicgym.runs.console import ci_cell, err_console, fail

if TYPE_CHECKING:
    from clinicgym.policies.diff import PackDiff, VerdictChange

policy_app = typer.Typer(
    help="Policy packs: list, show, validate and diff them; list scenarios and checks.",
    no_args_is_help=True,
)
console = Console()


def _progress(total: int, label: str, quiet: bool) -> Progress:
    p = Progress(
        TextColumn(f"{label:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )
    p.add_task(label, total=total)
    return p


def print_run_compliance(summary: dict[str, Any]) -> None:
    """After `clinicgym run`: one line per agent from the run summary's compliance section."""
    comp = summary.get("compliance")
    if not comp:
        return
    for agent, c in comp["agents"].items():
        m = c["pass_rate"]
        rate = "-" if m.get("mean") is None else f"{m['mean'] * 100:.0f}%"
        sev = ", ".join(f"{k} {v}" for k, v in c["by_severity"].items() if v)
        console.print(
            f"compliance {agent}: pass {rate}, {c['violations']} violations"
            + (f" ({sev})" if sev else "")
            + (f", {c['errors']} undecided" if c["errors"] else ""),
            highlight=False,
        )
    console.print("compliance report: " + ", ".join(comp["files"]), highlight=False)


def compliance_table(report: Any) -> Table:
    """A rich table: one row per agent, pass rate and violations by severity."""
    from clinicgym.envs.severity import SEVERITIES

    title = f"compliance of {report.run_id} ({report.mode}): " + ", ".join(
        p["ref"] for p in report.packs
    )
    table = Table(title=title)
    for col in ("agent", "episodes", "pass", "fail", "error", "pass rate [95% CI]"):
        table.add_column(col, justify="left" if col == "agent" else "right", no_wrap=True)
    for sev in SEVERITIES[::-1]:
        table.add_column(sev, justify="right")
    for a in report.agents.values():
        rate = ci_cell(a.pass_rate, pct=True)
        table.add_row(
            a.agent,
            str(a.episodes),
            str(a.passed),
            str(a.failed),
            str(a.errors),
            rate,
            *(str(a.by_severity[s]) for s in SEVERITIES[::-1]),
        )
    return table


# ---- policy commands ----------------------------------------------------------------------------


@policy_app.command("list")
def policy_list() -> None:
    """List the packs found (bundled and in CLINICGYM_PACKS), every version."""
    from clinicgym.policies.library import available, load

    table = Table(title="policy packs")
    for col in ("pack", "title", "jurisdiction", "effective", "rules", "sha256"):
        table.add_column(col, no_wrap=col in ("pack", "effective", "sha256"))
    problems = []
    for pid, versions in available().items():
        for v in versions:
            try:
                p = load(f"{pid}@{v}")
            except ClinicGymError as e:
                problems.append(str(e))
                table.add_row(f"{pid}@{v}", "[red]invalid[/red]", "", "", "", "")
                continue
            table.add_row(
                p.ref, p.title, p.jurisdiction, str(p.effective), str(len(p.rules)), p.sha256[:12]
            )
    console.print(table)
    for msg in problems:
        err_console.print(f"[red]invalid pack:[/red] {msg}", highlight=False)
    if problems:
        raise typer.Exit(2)


@policy_app.command("show")
def policy_show(
    ref: Annotated[str, typer.Argument(help="'hipaa-privacy@2', 'gdpr' or a file.")],
) -> None:
    """Show a pack's rules: source, watched events, check, severity."""
    from clinicgym.policies.library import load
    from clinicgym.policies.monitor import check_kind

    try:
        p = load(ref)
    except ClinicGymError as e:
        fail(e)
    console.print(f"[bold]{p.ref}[/bold]: {p.title} ({p.jurisdiction}, effective {p.effective})")
    console.print(" ".join(p.summary.split()), highlight=False)
    if p.changes:
        console.print(f"[italic]changes:[/italic] {' '.join(p.changes.split())}", highlight=False)
    table = Table()
    for col in ("rule", "title", "severity", "source", "watches", "check"):
        table.add_column(col, no_wrap=col in ("rule", "severity", "check"))
    for r in p.rules:
        table.add_row(
            r.id,
            r.title,
            r.severity,
            r.source.cite(),
            ", ".join(r.watches),
            f"{r.check.name} ({check_kind(r, p)})",
        )
    console.print(table)


@policy_app.command("validate")
def policy_validate(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Pack files or directories (default: every pack found)."),
    ] = None,
) -> None:
    """Validate packs; list every problem with its file, rule and field."""
    from clinicgym.policies.library import available
    from clinicgym.policies.pack import load_pack

    files: list[Path] = []
    for path in paths or []:
        files += sorted(path.glob("**/*.yaml")) if path.is_dir() else [path]
    if not paths:
        files = [f for versions in available().values() for f in versions.values()]
    bad = 0
    for f in files:
        try:
            p = load_pack(f)
        except ClinicGymError as e:
            bad += 1
            err_console.print(f"[red]FAIL[/red] {e}", highlight=False)
            continue
        console.print(f"OK   {p.ref}: {len(p.rules)} rules ({f})", highlight=False)
    if bad:
        err_console.print(f"{bad} of {len(files)} packs failed validation")
        raise typer.Exit(2)


@policy_app.command("diff")
def policy_diff(
    old: Annotated[str, typer.Argument(help="The pack before, e.g. 'hipaa-privacy@1'.")],
    new: Annotated[str, typer.Argument(help="The pack after, e.g. 'hipaa-privacy@2'.")],
    run: Annotated[
        list[Path] | None,
        typer.Option(help="Run directory whose stored episodes are re-scored under both."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What changed between two packs; with --run, which stored episodes change verdict."""
    from clinicgym.policies.diff import diff_packs
    from clinicgym.policies.library import load
    from clinicgym.runs.rescoring import run_verdict_changes

    try:
        a, b = load(old), load(new)
        d = diff_packs(a, b)
        changed = {str(run_dir): run_verdict_changes(run_dir, a, b) for run_dir in run or []}
    except ClinicGymError as e:
        fail(e)
    if as_json:
        out = d.model_dump()
        out["runs"] = {
            k: {"episodes": n, "changed": [c.model_dump() for c in cs]}
            for k, (n, cs) in changed.items()
        }
        print(json.dumps(out, indent=2))
        return
    console.print(f"[bold]{d.old} -> {d.new}[/bold]")
    for m in d.meta:
        console.print(f"  {m}", highlight=False)
    console.print(_rule_changes_table(d) if d.rules else "  no rule changes")
    for run_dir, (n, changes) in changed.items():
        console.print(_verdict_changes_table(run_dir, n, changes))


def _rule_changes_table(d: PackDiff) -> Table:
    """One row per rule added, removed or changed, with what changed."""
    table = Table(title="rule changes")
    for col in ("change", "rule", "severity", "what"):
        table.add_column(col, no_wrap=col in ("change", "severity"))
    for r in d.rules:
        colour = {"added": "green", "removed": "red", "changed": "yellow"}[r.kind]
        table.add_row(
            f"[{colour}]{r.kind}[/{colour}]",
            f"{r.rule_id}: {r.title}",
            r.severity,
            "\n".join(r.changes),
        )
    return table


def _verdict_changes_table(run_dir: str, n: int, changes: list[VerdictChange]) -> Table:
    """A run's episodes that change verdict or rules, titled with the count of each move."""
    moves = Counter(f"{c.old} -> {c.new}" for c in changes if c.old != c.new)
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(moves.items())) or "same verdicts"
    t = Table(
        title=f"{run_dir}: {len(changes)} of {n} stored episodes change verdict or rules "
        f"({summary})"
    )
    for col in ("episode", "agent", "verdict", "now violates", "no longer violates"):
        t.add_column(col, no_wrap=col in ("episode", "verdict"))
    for c in changes:
        t.add_row(
            c.episode_id,
            c.agent_id,
            f"{c.old} -> {c.new}",
            ", ".join(c.added),
            ", ".join(c.removed),
        )
    return t


@policy_app.command("scenarios")
def policy_scenarios() -> None:
    """List the scenarios that put policy under stress, and the suite."""
    from clinicgym.policies.scenario import SUITE, known_scenarios

    table = Table(title="scenarios (--scenario NAME or NAME:key=value,...)")
    table.add_column("name")
    table.add_column("what it does")
    for name, doc in known_scenarios().items():
        table.add_row(name, doc)
    console.print(table)
    console.print("suite = " + ", ".join(SUITE), highlight=False)


@policy_app.command("checks")
def policy_checks() -> None:
    """List the registered checks packs can use, with their kind and settings."""
    from clinicgym.policies.check import registered_checks

    table = Table(title="checks")
    for col in ("check", "kind", "settings", "what it checks"):
        table.add_column(col)
    for name, info in sorted(registered_checks().items()):
        table.add_row(name, info.kind, ", ".join(info.args.model_fields), info.doc)
    console.print(table)


# ---- rescore, compliance ------------------------------------------------------------------------


def _stem(refs: list[str]) -> str:
    """'rescore-hipaa-privacy@2+gdpr@2'; a pack file <id>/<version>.yaml counts as id@version."""
    names = []
    for r in refs:
        p = Path(r)
        if r.endswith((".yaml", ".yml")):
            names.append(f"{p.parent.name}@{p.stem}" if p.stem.isdigit() else p.stem)
        else:
            names.append(r.replace("/", "_"))
    return "rescore-" + "+".join(names)


def rescore(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    pack: Annotated[
        list[str],
        typer.Option("--pack", "-p", help="Pack to judge under, repeatable: 'hipaa-privacy@2'."),
    ],
    out: Annotated[
        Path | None, typer.Option(help="Directory for the report (default: RUN_DIR/compliance).")
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(help="LLM judge for judge checks: 'openai:MODEL@http://127.0.0.1:8000/v1'."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Re-judge a run's stored transcripts under other pack versions (the model is not re-run)."""
    from clinicgym.runs.judge import judge_from_spec
    from clinicgym.runs.rescoring import rescore_run
    from clinicgym.runs.store import load_run

    t0 = time.perf_counter()
    try:
        stored = load_run(run_dir)
        with _progress(len(stored.episodes), "rescore", quiet) as progress:
            report, verdicts = rescore_run(
                stored,
                pack,
                judge=judge_from_spec(judge),
                on_verdict=lambda _: progress.advance(progress.task_ids[0]),
            )
    except ClinicGymError as e:
        fail(e)
    from clinicgym.scoring.compliance import write_report

    paths = write_report(report, verdicts, out or run_dir / layout.COMPLIANCE, _stem(pack))
    console.print(compliance_table(report))
    for n in report.notes:
        err_console.print(f"[yellow]note:[/yellow] {n}", highlight=False)
    console.print(
        f"re-scored {len(verdicts)} episodes in {time.perf_counter() - t0:.1f} s; wrote "
        + ", ".join(str(p) for p in paths.values()),
        highlight=False,
    )


def compliance(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    out: Annotated[
        Path | None, typer.Option(help="Directory for the report (default: RUN_DIR).")
    ] = None,
) -> None:
    """Report the violations recorded while a run played (its packs, as run)."""
    from clinicgym.policies import load_packs
    from clinicgym.policies.rescore import live_verdicts
    from clinicgym.runs.store import load_run
    from clinicgym.scoring.compliance import build_report, write_report

    try:
        stored = load_run(run_dir)
        records = stored.manifest.policy_packs
        if not records:
            raise ClinicGymError(
                f"{run_dir}: the run monitored no policy packs; use `clinicgym rescore {run_dir} "
                "--pack ...` to judge its transcripts"
            )
        packs = load_packs([r.source() for r in records])
        notes = list(stored.notes)
        for r, p in zip(records, packs, strict=True):
            if r.sha256 != p.sha256:
                notes.append(
                    f"{r.ref} changed since the run (sha256 {r.sha256[:12]} -> "
                    f"{p.sha256[:12]}); violations are as recorded, rule titles as now."
                )
        verdicts = live_verdicts(stored.episodes, stored.cases, stored.scenarios, stored.kb)
        report = build_report(
            verdicts,
            packs,
            run_id=stored.root.name,
            mode="live",
            agents=stored.agents or None,
            kb_version=stored.kb.version,
            notes=notes,
        )
    except ClinicGymError as e:
        fail(e)
    paths = write_report(report, verdicts, out or run_dir, layout.COMPLIANCE)
    console.print(compliance_table(report))
    console.print("wrote " + ", ".join(str(p) for p in paths.values()), highlight=False)
