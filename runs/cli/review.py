"""`clinicgym review serve | export | import` and `clinicgym feedback apply | agreement`.

The review server and the annotation database need the `review` extra; these commands import
them only when they run, so `clinicgym --help` stays fast and works without the extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clinicgym.errors import ClinicGymError
from clinicgym.runs.console import err_console, fail
from clinicgym.runs.review.feedback import FeedbackRound, load_annotations

review_app = typer.Typer(
    help="Clinician review: a web app over run directories; annotations export and import.",
    no_args_is_help=True,
)
feedback_app = typer.Typer(
    help="Clinician annotations into patient generation, and how far they agree with scores.",
    no_args_is_help=True,
)
console = Console()
DEFAULT_DB = "annotations.sqlite"


# --------------------------------------------------------------------------------------------
# review


@review_app.command("serve")
def serve_cmd(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories to review.")],
    host: Annotated[
        str,
        typer.Option(help="Address to bind; beyond loopback every request needs the token."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one, printed).")] = 8800,
    db: Annotated[
        str, typer.Option(help="Annotation database: a SQLite file or a SQLAlchemy URL.")
    ] = DEFAULT_DB,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="CLINICGYM_REVIEW_TOKEN",
            help="Access token (16+ characters); made up and printed when bound beyond "
            "loopback without one.",
        ),
    ] = None,
    ssl_certfile: Annotated[str | None, typer.Option(help="Serve HTTPS with this cert.")] = None,
    ssl_keyfile: Annotated[str | None, typer.Option(help="...and this key.")] = None,
) -> None:
    """Serve the review web app: runs, episodes, transcripts, annotation forms, live episodes."""
    try:
        from clinicgym.runs.review.db import AnnotationDB
        from clinicgym.runs.review.rundir import open_runs
        from clinicgym.runs.review.security import is_loopback
        from clinicgym.runs.review.server import ServeSettings, build_server

        views = open_runs(run_dirs)  # fail here, before binding, on a bad directory
        port = port or _free_port(host)
        settings = ServeSettings(host, port, token, ssl_certfile, ssl_keyfile).resolved()
        store = AnnotationDB(db)
        server = build_server(run_dirs, store, settings)
    except ClinicGymError as e:
        fail(e)
    shown = f"[{host}]" if ":" in host else host
    url = f"{settings.scheme}://{shown}:{port}/"
    if settings.token:
        url += f"?token={settings.token}"
    console.print(
        f"Reviewing {len(views)} run(s): {', '.join(views)}; annotations in {store.url}",
        highlight=False,
    )
    if not is_loopback(host) and not ssl_certfile:
        err_console.print(
            "[yellow]note:[/yellow] bound beyond loopback over plain HTTP: the token and "
            "transcripts cross the network unencrypted; prefer --ssl-certfile/--ssl-keyfile "
            "or a TLS reverse proxy.",
            highlight=False,
        )
    console.print(f"Open {url}  (Ctrl-C stops the server)", highlight=False, soft_wrap=True)
    server.run()


@review_app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Argument(help="JSONL file to write.")],
    db: Annotated[str, typer.Option(help="Annotation database (file or URL).")] = DEFAULT_DB,
    run: Annotated[
        list[str] | None, typer.Option(help="Only annotations of this run id; repeatable.")
    ] = None,
    annotator: Annotated[
        list[str] | None, typer.Option(help="Only this annotator's; repeatable.")
    ] = None,
    current_only: Annotated[
        bool, typer.Option(help="Only the newest annotation per key (no history).")
    ] = False,
) -> None:
    """Export annotations as JSONL (one annotation a line; import gives them back unchanged)."""
    try:
        from clinicgym.runs.review.annotation import current, write_jsonl
        from clinicgym.runs.review.db import AnnotationDB

        if "://" not in db and not Path(db).exists():
            raise ClinicGymError(f"--db {db}: no such database")
        store = AnnotationDB(db)
        rows = [
            a
            for a in store.all()
            if (not run or a.run_id in run) and (not annotator or a.annotator in annotator)
        ]
        store.close()
        if current_only:
            rows = current(rows)
        n = write_jsonl(rows, out)
    except ClinicGymError as e:
        fail(e)
    live = sum(1 for a in rows if not a.episode_hash)
    console.print(f"wrote {n} annotations to {out}", highlight=False, soft_wrap=True)
    if live:
        err_console.print(
            f"[yellow]note:[/yellow] {live} were made on episodes in flight and are not sealed "
            "yet (no stored episode hash or verdicts); open those episodes in the review "
            "server once stored to seal them.",
            highlight=False,
        )


@review_app.command("import")
def import_cmd(
    source: Annotated[Path, typer.Argument(help="JSONL file of annotations.")],
    db: Annotated[str, typer.Option(help="Annotation database (file or URL).")] = DEFAULT_DB,
) -> None:
    """Import annotations from JSONL; ones already in the database (same id) are skipped."""
    try:
        from clinicgym.runs.review.annotation import read_jsonl
        from clinicgym.runs.review.db import AnnotationDB

        items = read_jsonl(source)
        store = AnnotationDB(db)
        added, skipped = store.import_many(items)
        store.close()
    except ClinicGymError as e:
        fail(e)
    console.print(
        f"imported {added} annotations into {db} ({skipped} already there)",
        highlight=False,
        soft_wrap=True,
    )


# --------------------------------------------------------------------------------------------
# feedback


@feedback_app.command("apply")
def apply_cmd(
    annotations: Annotated[
        str, typer.Argument(help="Annotations: a JSONL export, or a database file or URL.")
    ],
    cohort: Annotated[Path, typer.Option(help="The cohort the reviewed runs played.")],
    out: Annotated[Path, typer.Option(help="The new cohort directory (written atomically).")],
    add: Annotated[
        int | None,
        typer.Option(
            help="Rows to add, drawn with the disagreement-weighted mix (default: a quarter "
            "of the parent's rows when reviewed episodes disagreed with a score; 0: none)."
        ),
    ] = None,
    strength: Annotated[
        float, typer.Option(help="0..1: how far the added rows lean to disagreement.")
    ] = 0.7,
    seed: Annotated[int | None, typer.Option(help="Seed for the added rows.")] = None,
    kb: Annotated[Path | None, typer.Option(help="Knowledge-base directory.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Apply clinicians' annotations to a cohort: a new cohort whose patients answer the
    corrected way, with more rows where clinicians disagreed with the scores; diagnoses and
    truth-changing fixes are queued for review, not applied."""
    try:
        from clinicgym.patients.cohorts.feedback import queue_lines
        from clinicgym.runs.review.feedback import apply_feedback

        done = apply_feedback(
            annotations,
            cohort,
            out,
            add=add,
            strength=strength,
            seed=seed,
            kb=kb,
            overwrite=overwrite,
        )
    except ClinicGymError as e:
        fail(e)
    console.print(_feedback_table(done, out))
    if done.mix is not None:
        console.print(_lean_line(done.mix), highlight=False, soft_wrap=True)
    for line in queue_lines(done.feedback):
        console.print(f"  queued {escape(line)}", highlight=False, soft_wrap=True)
    console.print(f"wrote {out}/ (feedback.json holds every override and the queue)")


def _feedback_table(done: FeedbackRound, out: Path) -> Table:
    """The feedback round's counts: patients changed, rows kept and added, annotations used."""
    table = Table(title=f"feedback round {done.summary['round']}: {done.parent.id} -> {out.name}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, key in (
        ("patients changed", "patients_changed"),
        ("finding rewordings (every patient)", "finding_rewordings"),
        ("rows kept from the parent", "rows_kept"),
        ("rows added (disagreement-weighted)", "rows_added"),
        ("annotations that changed the cohort", "annotations_applied"),
        ("queued for review (not applied)", "queued"),
    ):
        table.add_row(label, str(done.summary[key]))
    return table


def _lean_line(mix: Any) -> str:
    """The five conditions the added rows lean to most, beside the uniform share."""
    top = sorted(mix.conditions, key=lambda c: -c.target_share)[:5]
    return (
        "added rows lean to: "
        + ", ".join(f"{c.condition_id} {c.target_share:.1%}" for c in top)
        + f" (uniform: {1 / len(mix.conditions):.1%} each)"
    )


@feedback_app.command("agreement")
def agreement_cmd(
    annotations: Annotated[
        str, typer.Argument(help="Annotations: a JSONL export, or a database file or URL.")
    ],
    out: Annotated[Path | None, typer.Option(help="Also write the report as JSON here.")] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples for the intervals.")] = 2000,
) -> None:
    """How far clinicians agree with each automatic verdict (violations, acceptance, diagnosis
    match): Cohen's kappa with one clinician, Krippendorff's alpha with several."""
    try:
        from clinicgym.runs.review.verdicts import ratings_table
        from clinicgym.scoring.agreement import TENTATIVE, TRUST, agreement_report

        ratings = ratings_table(load_annotations(annotations))
        report = agreement_report(ratings, resamples=resamples)
    except ClinicGymError as e:
        fail(e)
    table = Table(title="clinicians vs automatic verdicts", caption=_caption(TRUST, TENTATIVE))
    for col in ("verdict", "items", "clinicians", "statistic", "value [95% CI]", "reading"):
        table.add_column(col, justify="right" if col == "items" else "left")
    for r in report:
        ci = f" [{r.ci95[0]:.2f}, {r.ci95[1]:.2f}]" if r.ci95 else ""
        value = "-" if r.value is None else f"{r.value:.3f}{ci}"
        stat = "Cohen's kappa" if r.statistic == "cohen_kappa" else "Krippendorff's alpha"
        table.add_row(r.verdict, str(r.items), ", ".join(r.raters) or "-", stat, value, r.reading)
    console.print(table)
    for r in report:
        for p in r.vs_auto:
            kappa = "-" if p.kappa is None else f"{p.kappa:.3f}"
            console.print(
                f"  {r.verdict}: {p.rater} vs auto on {p.items} items: agreement "
                f"{(p.agreement or 0):.0%}, kappa {kappa}",
                highlight=False,
            )
        if r.clinicians_alpha is not None:
            console.print(
                f"  {r.verdict}: alpha among clinicians {r.clinicians_alpha:.3f}", highlight=False
            )
    if out is not None:
        out.write_text(
            json.dumps([r.model_dump(mode="json") for r in report], indent=2) + "\n", "utf-8"
        )
        console.print(f"wrote {out}")


def _free_port(host: str) -> int:
    """A port free on `host` now (for --port 0, so the printed address is the real one)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _caption(trust: float, tentative: float) -> str:
    return (
        f"trust: the interval's low end >= {trust}; tentative: value >= {tentative} "
        "(Krippendorff 2004); undefined: too few items or no variation"
    )
