"""`clinicgym cohort generate | report | export`: synthetic patient cohorts with SDV.

Thin commands: `generate` builds a `CohortJob` (patients/cohorts/job.py) from its options, reads
a run's failures for `--target` (`clinicgym.runs.targeting`), runs `generate_cohort` with rich
progress bars and prints what it wrote. Heavy imports (pandas, SDV) happen inside the commands
so `clinicgym --help` stays fast.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clinicgym.errors import ClinicGymError
from clinicgym.patients.cohorts.job import CohortJob, KBSeed, generate_cohort
from clinicgym.patients.importers.seeds import SeedSource
from clinicgym.runs.console import err_console, fail

if TYPE_CHECKING:
    from clinicgym.patients.cohorts.job import CohortResult, ProgressFn

cohort_app = typer.Typer(
    help="Synthetic patient cohorts: generate with SDV (fair, KB-checked), report, export.",
    no_args_is_help=True,
)
console = Console()


# --------------------------------------------------------------------------------------------
# The options of `cohort generate` (a table: one alias per option)

_Out = Annotated[Path, typer.Option(help="Cohort directory to create (written atomically).")]
_Synthesizer = Annotated[
    str, typer.Option(help="gaussian_copula (default), ctgan (a GAN) or tvae (a VAE).")
]
_N = Annotated[int, typer.Option(help="Synthetic patients to keep.")]
_Seed = Annotated[int, typer.Option(help="Seed: same seed and inputs, same cohort.")]
_Epochs = Annotated[int | None, typer.Option(help="CTGAN/TVAE training epochs.")]
_BatchSize = Annotated[int | None, typer.Option(help="CTGAN/TVAE batch size.")]
_FromCsv = Annotated[Path | None, typer.Option("--from", help="Seed from a plain CSV (see --map).")]
_Map = Annotated[
    list[str] | None,
    typer.Option("--map", help="Column mapping OUR=THEIRS, e.g. condition=DX; repeatable."),
]
_IgnoreExtra = Annotated[bool, typer.Option(help="Ignore CSV columns that map to nothing.")]
_FromSynthea = Annotated[
    Path | None, typer.Option(help="Seed from a Synthea CSV export directory.")
]
_FromFhir = Annotated[
    list[Path] | None, typer.Option(help="Seed from FHIR R4 bundle files or folders.")
]
_CodeMap = Annotated[
    Path | None, typer.Option(help="CSV of code,condition_id lines for source codes.")
]
_DropInconsistent = Annotated[
    bool, typer.Option(help="Drop (and count) imported rows that break the KB.")
]
_SeedRows = Annotated[int, typer.Option(help="Rows of the KB seed when no --from is given.")]
_Weighting = Annotated[
    str, typer.Option(help="KB seed: 'balanced' conditions or 'population' prevalence.")
]
_Holdout = Annotated[
    float, typer.Option(help="Share of the seed kept back as the privacy baseline.")
]
_Balance = Annotated[
    str | None,
    typer.Option(
        help="Target mix over sex, age_band, ethnicity, insurance: 'sex,age_band' (equal "
        "shares) or 'sex=female:0.6/male:0.4'."
    ),
]
_RareFloor = Annotated[
    float | None, typer.Option(help="Every condition gets at least this share, e.g. 0.01.")
]
_Where = Annotated[
    list[str] | None,
    typer.Option(help="Conditional sampling: COLUMN=VALUE (e.g. sex=female); repeatable."),
]
_Condition = Annotated[
    list[str] | None, typer.Option(help="Only these KB condition ids; repeatable.")
]
_Target = Annotated[
    Path | None,
    typer.Option(help="A run directory: generate towards where its model failed most."),
]
_TargetAgent = Annotated[str | None, typer.Option(help="Agent of --target to follow.")]
_TargetStrength = Annotated[
    float, typer.Option(help="0..1: how far the mix leans to failures (rest: uniform).")
]
_TargetMetric = Annotated[str, typer.Option(help="Run metric whose shortfall counts as failure.")]
_Reuse = Annotated[
    Path | None,
    typer.Option(
        help="Reuse the fitted synthesizer of this cohort directory. This unpickles "
        "synthesizer.pkl: only use cohorts you made yourself."
    ),
]
_Kb = Annotated[Path | None, typer.Option(help="Knowledge-base directory.")]
_MaxDraws = Annotated[
    int | None, typer.Option(help="Most rows to draw before giving up on the plan.")
]
_Overwrite = Annotated[bool, typer.Option(help="Replace --out if it exists.")]
_Report = Annotated[bool, typer.Option(help="Write report.json/html afterwards.")]
_Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


# --------------------------------------------------------------------------------------------
# Commands


@cohort_app.command("generate")
def generate_cmd(
    out: _Out,
    synthesizer: _Synthesizer = "gaussian_copula",
    n: _N = 1000,
    seed: _Seed = 0,
    epochs: _Epochs = None,
    batch_size: _BatchSize = None,
    from_csv: _FromCsv = None,
    map_: _Map = None,
    ignore_extra_columns: _IgnoreExtra = False,
    from_synthea: _FromSynthea = None,
    from_fhir: _FromFhir = None,
    code_map: _CodeMap = None,
    drop_inconsistent: _DropInconsistent = False,
    seed_rows: _SeedRows = 5000,
    weighting: _Weighting = "balanced",
    holdout: _Holdout = 0.2,
    balance: _Balance = None,
    rare_floor: _RareFloor = None,
    where: _Where = None,
    condition: _Condition = None,
    target: _Target = None,
    target_agent: _TargetAgent = None,
    target_strength: _TargetStrength = 0.7,
    target_metric: _TargetMetric = "diagnostic_accuracy",
    reuse: _Reuse = None,
    kb: _Kb = None,
    max_draws: _MaxDraws = None,
    overwrite: _Overwrite = False,
    report: _Report = False,
    quiet: _Quiet = False,
) -> None:
    """Generate a synthetic cohort: seed -> SDV synthesizer -> KB-checked, fair sampling.

    Loading a saved synthesizer (--reuse) unpickles a file: only load cohorts you made.
    """
    start = time.perf_counter()
    with _failing():
        given = {"csv": from_csv, "synthea": from_synthea, "fhir": from_fhir}
        job = CohortJob(
            out=out,
            synthesizer=synthesizer,
            n=n,
            seed=seed,
            epochs=epochs,
            batch_size=batch_size,
            source=_seed_source(given, map_, ignore_extra_columns, code_map, drop_inconsistent),
            kb_seed=KBSeed(rows=seed_rows, weighting=weighting),
            holdout=holdout,
            balance=balance,
            rare_floor=rare_floor,
            where=where,
            conditions=condition,
            target_strength=target_strength,
            reuse=reuse,
            kb_dir=kb,
            max_draws=max_draws,
            overwrite=overwrite,
        )
        _run_job(job, start, target, target_agent, target_metric, quiet, report)


@contextmanager
def _failing() -> Iterator[None]:
    """A ClinicGymError becomes `error: ...` on stderr and exit status 2."""
    try:
        yield
    except ClinicGymError as e:
        fail(e)


def _seed_source(
    given: dict[str, Any],
    mapping: list[str] | None,
    ignore_extra: bool,
    code_map: Path | None,
    drop_inconsistent: bool,
) -> SeedSource | None:
    """The imported seed the options name (--from, --from-synthea or --from-fhir), if any."""
    return SeedSource.from_options(
        given,
        mapping=tuple(mapping or ()),
        ignore_extra=ignore_extra,
        code_map=code_map,
        drop_inconsistent=drop_inconsistent,
    )


def _run_job(
    job: CohortJob,
    start: float,
    target: Path | None,
    agent: str | None,
    metric: str,
    quiet: bool,
    report: bool,
) -> None:
    """Read the run's failures for --target, run the job with progress bars, print what it
    wrote (notes, e.g. skipped source conditions, on stderr), then the report if asked."""
    from clinicgym.runs.targeting import failures_from_run

    failures, info = failures_from_run(target, agent, metric) if target else (None, None)
    with _progress_bars(quiet) as progress:
        result = generate_cohort(job, failures=failures, target_info=info, progress=progress)
    for note in result.notes:
        err_console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
    _print_counts(result, start)
    if report:
        from clinicgym.patients.cohorts.cohort import Cohort

        _report_one(Cohort.open(job.out, job.knowledge_base()))


@contextmanager
def _progress_bars(quiet: bool) -> Iterator[ProgressFn]:
    """A progress callback drawing one rich bar per stage (none with --quiet)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn())
    with Progress(
        *columns, TimeElapsedColumn(), console=console, disable=quiet, transient=False
    ) as bars:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], total=total, completed=done)

        yield update


def _print_counts(result: CohortResult, start: float) -> None:
    c = result.counts
    reasons = ", ".join(f"{k} {v}" for k, v in c["rejected"].items()) or "none"
    console.print(
        f"{result.out}: kept {c['kept']:,} of {c['drawn']:,} drawn; rejected by the KB "
        f"{c['rejected_total']:,} ({reasons}); "
        f"exact copies of seed rows dropped {c['exact_copies_dropped']}; "
        f"KB-consistent before rejection {c['kb_consistency_before_rejection']:.1%}; "
        f"{time.perf_counter() - start:.1f} s",
        highlight=False,
    )


def _report_one(cohort: Any) -> dict[str, Any]:
    from clinicgym.patients.cohorts.cohort_report import write_report

    jpath, hpath, r = write_report(cohort)
    table = Table(
        title=f"cohort {r['cohort_id']} ({r['synthesizer']['name']}, {r['rows']['cohort']} rows)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    f, p, c = r["fidelity"], r["privacy"], r["clinical_validity"]
    rows = [
        ("quality score (SDMetrics)", f"{f['quality_score']:.3f}"),
        (
            "  column shapes / pair trends",
            f"{f['column_shapes']:.3f} / {f['column_pair_trends']:.3f}",
        ),
        ("diagnostic score", f"{f['diagnostic_score']:.3f}"),
    ]
    if r["fidelity_vs_target_mix"]:
        rows.append(
            (
                "quality vs seed re-mixed to target",
                f"{r['fidelity_vs_target_mix']['quality_score']:.3f}",
            )
        )
    rows += [
        ("exact-copy rate", f"{p['exact_copy_rate']:.4f}"),
        (
            "DCR median: synthetic / holdout",
            f"{p['dcr_synthetic_to_train']['median']:.3f} / "
            f"{p['dcr_holdout_to_train']['median']:.3f}",
        ),
        ("membership-inference AUC", f"{p['membership_inference_auc']:.3f}"),
        (
            "KB-consistent (kept / before rejection)",
            f"{c['kb_consistent_share']:.2%} / {c['kb_consistency_before_rejection']:.2%}",
        ),
    ]
    fair = r["fairness"]
    for attr in fair["balanced"]:
        rows.append(
            (
                f"max gap from target: {attr}",
                f"{fair['attributes'][attr]['max_gap_points']:.2f} points",
            )
        )
    if fair.get("joint_max_gap_points") is not None:
        rows.append(("max gap from joint target", f"{fair['joint_max_gap_points']:.2f} points"))
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    console.print(f"wrote {jpath} and {hpath} ({r['report_seconds']} s)")
    return r


@cohort_app.command("report")
def report_cmd(
    cohorts: Annotated[
        list[Path], typer.Argument(help="Cohort directories (two or more: compare).")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Where compare.json/html go when comparing.")
    ] = None,
    kb: Annotated[Path | None, typer.Option(help="Knowledge-base directory.")] = None,
) -> None:
    """Write report.json and report.html (fidelity, privacy, fairness, clinical validity) into
    each cohort; with several cohorts of one seed, also a side-by-side comparison."""
    try:
        from clinicgym.patients.cohorts.cohort import Cohort
        from clinicgym.patients.knowledge.kb import load_kb

        k = load_kb(kb) if kb else None
        opened = [Cohort.open(c, k) for c in cohorts]
        if len(opened) == 1:
            _report_one(opened[0])
            return
        from clinicgym.patients.cohorts.cohort_report import compare

        target = out or opened[0].root.parent / "compare"
        jpath, hpath, result = compare(opened, target)
        table = Table(title=f"{len(opened)} cohorts on seed {result['seed_fingerprint']}")
        keys = [k for k in result["cohorts"][0] if k != "cohort_id"]
        table.add_column("measure")
        for c in result["cohorts"]:
            table.add_column(c["cohort_id"], justify="right")
        for key in keys:
            table.add_row(key, *[_cell(c[key]) for c in result["cohorts"]])
        console.print(table)
        console.print(f"wrote {jpath} and {hpath}; each cohort has its own report.html")
    except ClinicGymError as e:
        fail(e)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


@cohort_app.command("export")
def export_cmd(
    cohort: Annotated[Path, typer.Argument(help="Cohort directory.")],
    out: Annotated[Path, typer.Option(help="Folder for the FHIR bundles (one per patient).")],
    n: Annotated[int | None, typer.Option(help="Only the first N rows.")] = None,
    kb: Annotated[Path | None, typer.Option(help="Knowledge-base directory.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Export a cohort as FHIR R4 bundles (Patient, Condition, Observation, AllergyIntolerance,
    MedicationStatement), one JSON file per patient."""
    try:
        from clinicgym.patients.cohorts.cohort import Cohort
        from clinicgym.patients.importers.fhir import export_bundles
        from clinicgym.patients.knowledge.kb import load_kb

        c = Cohort.open(cohort, load_kb(kb) if kb else None)
        count = export_bundles(
            ((pid, rec) for _, pid, rec in c.records(n)),
            c.schema.kb,
            out,
            seed=c.manifest.seed,
            overwrite=overwrite,
        )
        console.print(f"wrote {count} FHIR bundles to {out}/")
    except ClinicGymError as e:
        fail(e)
