"""`clinicgym runs ...`, `suite ...`, `submit` and `leaderboard ...`: many runs, named suites,
and verifiable leaderboard submissions (docs/runs.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clinicgym.errors import ClinicGymError
from clinicgym.runs.console import err_console, fail
from clinicgym.scoring.stats import format_interval

if TYPE_CHECKING:
    from clinicgym.runs.catalog import MetricDiff

runs_app = typer.Typer(help="Many run directories at once: list and compare.", no_args_is_help=True)
suite_app = typer.Typer(help="Named, versioned case suites.", no_args_is_help=True)
leaderboard_app = typer.Typer(help="Verify submissions; build the site.", no_args_is_help=True)
console = Console()


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


# ---- runs ----------------------------------------------------------------------------------


def _rel(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


@runs_app.command("list")
def runs_list(
    roots: Annotated[
        list[Path] | None, typer.Argument(help="Run directories or folders holding them.")
    ] = None,
    sql: Annotated[
        str | None,
        typer.Option(help="Instead of the table: any DuckDB SQL over `runs` and `scores`."),
    ] = None,
) -> None:
    """List the runs under the given folders (default ./runs) with their state and suite."""
    from clinicgym.runs.catalog import RunCatalog

    try:
        catalog = RunCatalog(roots or [Path("runs")])
        df = catalog.query(sql) if sql else catalog.runs()
    except ClinicGymError as e:
        fail(e)
    if not sql:  # the path names a run (ids repeat across folders); versions fit in `sql`
        df = df.assign(run=[_rel(p) for p in df["path"]], episodes=df["stored"].astype(str))
        df["episodes"] = df["episodes"] + "/" + df["planned"].astype(str)
        df = df[["run", "created", "suite", "agents", "episodes", "errors", "state"]]
    table = Table(title=f"{len(df)} rows" if sql else f"{len(catalog.dirs)} runs")
    for col in df.columns:
        table.add_column(str(col), overflow="fold")
    for row in df.itertuples(index=False):
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


@runs_app.command("compare")
def runs_compare(
    run_a: Annotated[Path, typer.Argument(help="Baseline run directory (A).")],
    run_b: Annotated[Path, typer.Argument(help="Run directory compared with it (B).")],
    agent: Annotated[
        list[str] | None, typer.Option("--agent", "-a", help="Agent(s) to compare.")
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="Metric(s); default all.")
    ] = None,
    allow_different_cases: Annotated[
        bool,
        typer.Option(
            "--allow-different-cases",
            help="Compare runs over different case sets (as independent samples); refused "
            "without it.",
        ),
    ] = False,
) -> None:
    """Per agent and metric: mean in A and B, B - A and its 95% interval (a bootstrap over
    case and repeat pairs when both runs played the same cases; docs/scoring.md). Runs over
    different case sets are refused unless --allow-different-cases is given."""
    from clinicgym.runs.catalog import compare

    try:
        diffs = compare(
            run_a,
            run_b,
            agents=agent or (),
            metrics=metric or (),
            allow_different_cases=allow_different_cases,
        )
    except ClinicGymError as e:
        fail(e)
    console.print(_compare_table(diffs))


def _compare_table(diffs: list[MetricDiff]) -> Table:
    """One row per agent and metric: A, B, B - A (* when its interval excludes 0), the
    interval ("i" when paired runs fell back to the independent one) and the sample sizes."""
    paired = diffs[0].paired if diffs else False
    table = Table(
        title=f"B - A ({'paired by case' if paired else 'independent samples'}); "
        "* the 95% interval excludes 0"
    )
    for col in ("agent", "metric", "A", "B", "B - A", "95% CI", "n A/B"):
        table.add_column(col, justify="left" if col in ("agent", "metric") else "right")
    apart = False  # paired runs where every pair differed alike: the independent interval
    for d in diffs:
        ci = escape(format_interval(d.ci95, spec=".3f", sep=", ")) if d.diff is not None else "-"
        if d.ci95 is not None and d.method.endswith(", independent"):
            ci, apart = ci + " i", True
        mark = " *" if d.clear else ""
        table.add_row(
            d.agent,
            d.metric,
            _num(d.mean_a),
            _num(d.mean_b),
            _num(d.diff) + mark,
            ci,
            f"{d.n_a}/{d.n_b}",
        )
    if apart:
        table.caption = (
            "i: every pair differed by the same amount, so the pairs show no spread; the "
            "interval treats the runs as independent samples (wider)"
        )
    return table


# ---- suites --------------------------------------------------------------------------------


@suite_app.command("list")
def suite_list() -> None:
    """The known suites, their frozen versions and the cases' hash of each."""
    from clinicgym.runs.suite import load_suites

    try:
        suites = load_suites()
    except ClinicGymError as e:
        fail(e)
    table = Table(title=f"{len(suites)} suites")
    for col in ("suite", "cases", "turns", "packs", "hidden", "versions", "description"):
        table.add_column(col, overflow="fold")
    for name, (s, _path) in sorted(suites.items()):
        versions = ", ".join(f"@{v.version} {v.cases_sha256[:12]}" for v in s.versions) or "-"
        table.add_row(
            name,
            str(s.recipe.cases),
            str(s.recipe.max_turns),
            str(len(s.recipe.policy_packs)),
            "yes" if s.hidden else "",
            versions,
            s.description,
        )
    console.print(table)


@suite_app.command("freeze")
def suite_freeze(
    name: Annotated[str, typer.Argument(help="Suite name.")],
    seed: Annotated[int | None, typer.Option(help="Seed (public suites; default random).")] = None,
    registry: Annotated[
        Path | None, typer.Option(help="Registry file to write (default: the suite's own).")
    ] = None,
    kb: Annotated[
        Path | None, typer.Option(help="KB directory (default: the bundled one).")
    ] = None,
) -> None:
    """Freeze the suite's current recipe as its next version (hidden suites: from the secret
    in $CLINICGYM_HIDDEN_SEED)."""
    from clinicgym.patients.knowledge.kb import load_kb
    from clinicgym.runs.suite import freeze

    try:
        v = freeze(name, registry=registry, seed=seed, kb=load_kb(kb) if kb else None)
    except ClinicGymError as e:
        fail(e)
    if v is None:
        console.print(f"{name}: the latest version still reproduces its recipe; nothing to do.")
    else:
        console.print(f"froze {name}@{v.version}: cases_sha256 {v.cases_sha256}")


@suite_app.command("export")
def suite_export(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")],
    directory: Annotated[Path, typer.Argument(help="Directory to write the cases to.")],
    kb: Annotated[
        Path | None, typer.Option(help="KB directory (default: the bundled one).")
    ] = None,
) -> None:
    """Write a suite version's cases to a directory that `clinicgym run --suite DIR` plays."""
    from clinicgym.patients.knowledge.kb import load_kb
    from clinicgym.runs.suite import export

    try:
        out = export(ref, directory, kb=load_kb(kb) if kb else None)
    except ClinicGymError as e:
        fail(e)
    console.print(f"wrote {out}/cases.jsonl, suite.json, named_suite.json")


@suite_app.command("check")
def suite_check(
    kb: Annotated[
        Path | None, typer.Option(help="KB directory (default: the bundled one).")
    ] = None,
) -> None:
    """Does every frozen version still generate the cases it was frozen with? (exit 1 if one
    does not and is not marked superseded)"""
    from clinicgym.patients.knowledge.kb import load_kb
    from clinicgym.runs.suite import check

    try:
        rows = check(load_kb(kb) if kb else None)
    except ClinicGymError as e:
        fail(e)
    for r in rows:
        colour = {"reproduces": "green", "skipped": "yellow", "superseded": "yellow"}.get(
            r["status"], "red"
        )
        console.print(f"[{colour}]{r['status']:>10}[/{colour}] {r['suite']}", highlight=False)
        if r["status"] in ("changed", "superseded"):
            console.print(f"           {r['detail']}", highlight=False)
    if any(r["status"] == "changed" for r in rows):
        raise typer.Exit(1)


# ---- submissions ---------------------------------------------------------------------------


def submit(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    out: Annotated[
        Path | None, typer.Option(help="Bundle file (default ./RUN_ID.submission.zip).")
    ] = None,
    submitter: Annotated[
        str | None, typer.Option(help="Who submits (shown on the board as declared).")
    ] = None,
    card: Annotated[
        Path | None,
        typer.Option(
            help="YAML/JSON card: `submitter` and, per agent spec, `model`, `parameters`, "
            "`url`, `notes` (shown on the board as declared)."
        ),
    ] = None,
) -> None:
    """Pack a finished run (manifest, cases, transcripts, summary, hashes) for a leaderboard;
    a hidden suite's cases are left out."""
    from clinicgym.runs.leaderboard import pack, read_card

    try:
        path = pack(run_dir, out, submitter=submitter, card=read_card(card) if card else None)
    except ClinicGymError as e:
        fail(e)
    console.print(
        f"wrote {path} ({path.stat().st_size} bytes); check it with "
        f"`clinicgym leaderboard verify {path}`"
    )


def _secret(secret_file: Path | None) -> str | None:
    """The hidden-suite secret from --secret-file (its first line); None: read the env later."""
    if secret_file is None:
        return None
    try:
        line = secret_file.read_text(encoding="utf-8").splitlines()[:1]
    except OSError as e:
        fail(ClinicGymError(f"--secret-file {secret_file}: cannot read it ({e.strerror})"))
    if not line or not line[0].strip():
        fail(ClinicGymError(f"--secret-file {secret_file}: the first line is empty"))
    return line[0].strip()


KB_HELP = (
    "KB directory to re-score with (default: the bundled one); repeat it for bundles of "
    "different KBs: each is re-scored with the one of its run's KB version."
)
SECRET_HELP = (
    "File holding the hidden-suite secret (default: $CLINICGYM_HIDDEN_SEED or "
    "$CLINICGYM_HIDDEN_SEED_FILE); maintainers only."
)


@leaderboard_app.command("verify")
def leaderboard_verify(
    bundle: Annotated[Path, typer.Argument(help="A submission bundle (.zip).")],
    no_rescore: Annotated[
        bool, typer.Option("--no-rescore", help="Skip re-scoring the transcripts.")
    ] = False,
    kb: Annotated[list[Path] | None, typer.Option(help=KB_HELP)] = None,
    secret_file: Annotated[Path | None, typer.Option(help=SECRET_HELP)] = None,
) -> None:
    """Check a bundle against this install's suite registry: hashes, the suite's frozen cases and
    recipe, every case run, each transcript's actions and outcome re-derived, the monitors re-run
    and the claimed numbers re-scored; exit 1 with every reason if it is rejected."""
    from clinicgym.runs.leaderboard import verify

    try:
        v = verify(bundle, rescore=not no_rescore, kb=kb or None, secret=_secret(secret_file))
    except ClinicGymError as e:
        fail(e)
    for note in v.notes:
        console.print(f"[yellow]note[/yellow] {note}", highlight=False)
    if v.accepted:
        console.print(
            f"[green]accepted[/green] {bundle}: run {v.info['run_id']}, suite {v.info['suite']}, "
            f"cases {v.info['cases_sha256'][:16]}..., packs {' '.join(v.info['packs']) or '-'}",
            highlight=False,
        )
        return
    err_console.print(f"[red]rejected[/red] {bundle}:", highlight=False)
    for p in v.problems:
        err_console.print(f"  - {p}", highlight=False)
    raise typer.Exit(1)


@leaderboard_app.command("build")
def leaderboard_build(
    bundles: Annotated[list[Path], typer.Argument(help="Submission bundles.")],
    out: Annotated[Path, typer.Option(help="Site directory to write.")] = Path("site"),
    kb: Annotated[list[Path] | None, typer.Option(help=KB_HELP)] = None,
    secret_file: Annotated[Path | None, typer.Option(help=SECRET_HELP)] = None,
) -> None:
    """Verify the bundles and write a static leaderboard (index.html, leaderboard.csv)."""
    from clinicgym.runs.leaderboard import build

    try:
        site, verdicts = build(list(bundles), out, kb=kb or None, secret=_secret(secret_file))
    except ClinicGymError as e:
        fail(e)
    for v in verdicts:
        if not v.accepted:
            err_console.print(
                f"[yellow]left out[/yellow] {v.bundle}: {'; '.join(v.problems)}", highlight=False
            )
    accepted = sum(v.accepted for v in verdicts)
    console.print(f"wrote {site}/index.html and leaderboard.csv ({accepted} accepted bundles)")
