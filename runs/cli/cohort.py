"""`clinicgym cohort generate | report | export`: synthetic patient cohorts with SDV.

This module composes: it reads seeds (the KB sampler or a user's CSV, Synthea export or FHIR
bundles), fits a synthesizer, reads a run store for `--target RUN_DIR` and hands the failures
down to `patients.cohorts.targeting`, and writes cohort directories. Heavy imports (pandas,
SDV) happen inside the commands so `clinicgym --help` stays fast.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from clinicgym.errors import ClinicGymError
from clinicgym.runs.console import err_console, fail

if TYPE_CHECKING:
    import pandas as pd

    from clinicgym.patients.knowledge.kb import KnowledgeBase

cohort_app = typer.Typer(
    help="Synthetic patient cohorts: generate with SDV (fair, KB-checked), report, export.",
    no_args_is_help=True,
)
console = Console()


# --------------------------------------------------------------------------------------------
# Seeds


def _kb_seed(kb: KnowledgeBase, rows: int, seed: int, weighting: str) -> tuple[Any, dict]:
    import numpy as np

    from clinicgym.patients.cases.sampler import CaseSampler
    from clinicgym.patients.cohorts.cohort import CohortSchema, row_ids

    sampler = CaseSampler(kb, weighting=weighting)  # type: ignore[arg-type]
    records = [sampler.sample_record(np.random.default_rng([seed, i])) for i in range(rows)]
    table = CohortSchema.for_kb(kb).table(records, row_ids("s", rows))
    return table, {"kind": "kb", "rows": rows, "kb_seed": seed, "weighting": weighting}


def _read_code_map(path: Path | None) -> dict[str, str]:
    """A CSV of `code,condition_id` lines (a header line is allowed)."""
    if path is None:
        return {}
    import csv

    from clinicgym.patients.errors import ImporterError

    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            for n, row in enumerate(csv.reader(fh), start=1):
                if not row or row[0].strip().lower() in ("code", ""):
                    continue
                if len(row) != 2:
                    raise ImporterError(f"{path} line {n}: expected 'code,condition_id', got {row}")
                out[row[0].strip()] = row[1].strip()
    except FileNotFoundError:
        raise ImporterError(f"--code-map {path}: no such file") from None
    return out


def _import_seed(
    kb: KnowledgeBase,
    *,
    csv_path: Path | None,
    synthea: Path | None,
    fhir: list[Path] | None,
    mapping: list[str] | None,
    code_map: Path | None,
    ignore_extra: bool,
    drop_inconsistent: bool,
    seed: int,
) -> tuple[Any, dict]:
    from clinicgym.patients.cohorts.cohort import CohortSchema, file_sha256, row_ids
    from clinicgym.patients.errors import ImporterError
    from clinicgym.patients.importers.completion import complete

    given = [x for x in (csv_path, synthea, fhir) if x]
    if len(given) > 1:
        raise ImporterError("give one seed source: --from, --from-synthea or --from-fhir")
    cmap = _read_code_map(code_map)
    stats: dict[str, Any] = {}
    if csv_path is not None:
        from clinicgym.patients.importers.plain_csv import parse_mapping, read_csv

        rows = read_csv(csv_path, kb, mapping=parse_mapping(mapping), ignore_extra=ignore_extra)
        kind, path, sha = "csv", str(csv_path), file_sha256(csv_path)
    elif synthea is not None:
        from clinicgym.patients.importers.synthea import read_synthea

        rows, stats = read_synthea(synthea, kb, code_map=cmap)
        kind, path, sha = "synthea", str(synthea), None
    else:
        from clinicgym.patients.importers.fhir import read_bundles

        assert fhir
        rows, stats = read_bundles(fhir, kb, code_map=cmap)
        kind, path, sha = "fhir", ", ".join(map(str, fhir)), None
    records, filled, dropped = complete(
        rows, kb, seed=seed, code_map=cmap, drop_inconsistent=drop_inconsistent, source=path
    )
    table = CohortSchema.for_kb(kb).table(records, row_ids("s", len(records)))
    source = {
        "kind": kind,
        "path": path,
        "sha256": sha,
        "rows": len(records),
        "completed_from_kb": dict(filled),
        "dropped": dict(dropped),
    }
    if stats.get("unmapped_conditions"):
        err_console.print(
            f"[yellow]note:[/yellow] skipped conditions outside the KB: "
            f"{sum(stats['unmapped_conditions'].values())} (top: "
            f"{', '.join(list(stats['unmapped_conditions'])[:3])})",
            highlight=False,
        )
    return table, source


def _split(table: Any, holdout: float, seed: int) -> tuple[Any, Any]:
    import numpy as np

    from clinicgym.patients.errors import CohortError

    if not 0 < holdout < 0.9:
        raise CohortError(f"--holdout must lie between 0 and 0.9, got {holdout:g}")
    order = np.random.default_rng([seed, 99]).permutation(len(table))
    k = max(1, round(len(table) * holdout))
    if len(table) - k < 10:
        raise CohortError(f"the seed has {len(table)} rows; too few to hold {k} out and fit")
    hold = table.iloc[np.sort(order[:k])].reset_index(drop=True)
    train = table.iloc[np.sort(order[k:])].reset_index(drop=True)
    return train, hold


# --------------------------------------------------------------------------------------------
# Targeting: the run store -> a failures table (patients never read runs)


def failures_from_run(
    run_dir: Path, agent: str | None = None, metric: str = "diagnostic_accuracy"
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per completed episode of `agent` in a run: condition, subgroup, findings, and
    `failed` = 1 - metric (top-1 diagnostic accuracy by default)."""
    import pandas as pd

    from clinicgym.patients.errors import SynthesisError
    from clinicgym.patients.knowledge.bands import age_band
    from clinicgym.runs.store import RunStore
    from clinicgym.runs.summary import score_table

    store = RunStore(run_dir)
    manifest = store.manifest()
    cases = {c.id: c for c in store.cases()}
    scores = score_table(store.iter_episodes(), cases)
    agents = list(manifest.spec.agents)
    if agent is None:
        if len(agents) > 1:
            raise SynthesisError(f"{run_dir} holds agents {agents}; pick one with --target-agent")
        agent = agents[0]
    elif agent not in agents:
        raise SynthesisError(f"--target-agent '{agent}' is not in {run_dir}; agents: {agents}")
    if metric not in scores.columns:
        raise SynthesisError(f"--target-metric '{metric}' is not a run metric")
    rows = []
    for _, r in scores[(scores["agent"] == agent) & (scores["status"] == "completed")].iterrows():
        case = cases[r["case_id"]]
        if case.diagnosis.condition_id is None or pd.isna(r[metric]):
            continue
        present = [
            f.concept
            for f in case.facts
            if f.source and f.source.startswith("kb:findings.") and f.present
        ]
        absent = [
            f.concept
            for f in case.facts
            if f.source and f.source.startswith("kb:findings.") and not f.present
        ]
        rows.append(
            {
                "condition_id": case.diagnosis.condition_id,
                "sex": case.sex,
                "age_band": age_band(case.age),
                "ethnicity": case.extra.get("ethnicity"),
                "failed": 1.0 - float(r[metric]),
                "present": present,
                "absent": absent,
            }
        )
    info = {"run": str(run_dir), "agent": agent, "metric": metric, "episodes": len(rows)}
    return pd.DataFrame(rows), info


# --------------------------------------------------------------------------------------------
# Commands


@cohort_app.command("generate")
def generate_cmd(
    out: Annotated[Path, typer.Option(help="Cohort directory to create (written atomically).")],
    synthesizer: Annotated[
        str, typer.Option(help="gaussian_copula (default), ctgan (a GAN) or tvae (a VAE).")
    ] = "gaussian_copula",
    n: Annotated[int, typer.Option(help="Synthetic patients to keep.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed: same seed and inputs, same cohort.")] = 0,
    epochs: Annotated[int | None, typer.Option(help="CTGAN/TVAE training epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="CTGAN/TVAE batch size.")] = None,
    from_csv: Annotated[
        Path | None, typer.Option("--from", help="Seed from a plain CSV (see --map).")
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help="Column mapping OUR=THEIRS, e.g. condition=DX; repeatable."),
    ] = None,
    ignore_extra_columns: Annotated[
        bool, typer.Option(help="Ignore CSV columns that map to nothing.")
    ] = False,
    from_synthea: Annotated[
        Path | None, typer.Option(help="Seed from a Synthea CSV export directory.")
    ] = None,
    from_fhir: Annotated[
        list[Path] | None, typer.Option(help="Seed from FHIR R4 bundle files or folders.")
    ] = None,
    code_map: Annotated[
        Path | None, typer.Option(help="CSV of code,condition_id lines for source codes.")
    ] = None,
    drop_inconsistent: Annotated[
        bool, typer.Option(help="Drop (and count) imported rows that break the KB.")
    ] = False,
    seed_rows: Annotated[
        int, typer.Option(help="Rows of the KB seed when no --from is given.")
    ] = 5000,
    weighting: Annotated[
        str, typer.Option(help="KB seed: 'balanced' conditions or 'population' prevalence.")
    ] = "balanced",
    holdout: Annotated[
        float, typer.Option(help="Share of the seed kept back as the privacy baseline.")
    ] = 0.2,
    balance: Annotated[
        str | None,
        typer.Option(
            help="Target mix over sex, age_band, ethnicity, insurance: 'sex,age_band' (equal "
            "shares) or 'sex=female:0.6/male:0.4'."
        ),
    ] = None,
    rare_floor: Annotated[
        float | None, typer.Option(help="Every condition gets at least this share, e.g. 0.01.")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(help="Conditional sampling: COLUMN=VALUE (e.g. sex=female); repeatable."),
    ] = None,
    condition: Annotated[
        list[str] | None, typer.Option(help="Only these KB condition ids; repeatable.")
    ] = None,
    target: Annotated[
        Path | None,
        typer.Option(help="A run directory: generate towards where its model failed most."),
    ] = None,
    target_agent: Annotated[str | None, typer.Option(help="Agent of --target to follow.")] = None,
    target_strength: Annotated[
        float, typer.Option(help="0..1: how far the mix leans to failures (rest: uniform).")
    ] = 0.7,
    target_metric: Annotated[
        str, typer.Option(help="Run metric whose shortfall counts as failure.")
    ] = "diagnostic_accuracy",
    reuse: Annotated[
        Path | None,
        typer.Option(
            help="Reuse the fitted synthesizer of this cohort directory. This unpickles "
            "synthesizer.pkl: only use cohorts you made yourself."
        ),
    ] = None,
    kb: Annotated[Path | None, typer.Option(help="Knowledge-base directory.")] = None,
    max_draws: Annotated[
        int | None, typer.Option(help="Most rows to draw before giving up on the plan.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
    report: Annotated[bool, typer.Option(help="Write report.json/html afterwards.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Generate a synthetic cohort: seed -> SDV synthesizer -> KB-checked, fair sampling.

    Loading a saved synthesizer (--reuse) unpickles a file: only load cohorts you made.
    """
    try:
        _generate(**locals())
    except ClinicGymError as e:
        fail(e)


def _generate(**o: Any) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from clinicgym import __version__
    from clinicgym.patients.cohorts.cohort import (
        Cohort,
        CohortManifest,
        CohortSchema,
        SourceInfo,
        write_cohort,
    )
    from clinicgym.patients.cohorts.synthesis import (
        SYNTHESIZERS,
        CohortSynthesizer,
        SynthesizerConfig,
        generate,
        parse_balance,
        plan_sampling,
    )
    from clinicgym.patients.errors import CohortError
    from clinicgym.patients.knowledge.kb import default_kb, load_kb

    start = time.perf_counter()
    out: Path = o["out"]
    if out.exists() and not o["overwrite"]:
        raise CohortError(f"{out} already exists; choose another --out or pass --overwrite")
    if o["synthesizer"] not in SYNTHESIZERS:
        raise CohortError(f"--synthesizer '{o['synthesizer']}': allowed: {', '.join(SYNTHESIZERS)}")
    kb = load_kb(o["kb"]) if o["kb"] else default_kb()
    schema = CohortSchema.for_kb(kb)
    lineage: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=o["quiet"],
        transient=False,
    ) as progress:
        if o["reuse"]:
            parent = Cohort.open(o["reuse"], kb)
            config = SynthesizerConfig(
                **{
                    k: v
                    for k, v in parent.manifest.synthesizer.items()
                    if k in SynthesizerConfig.model_fields
                }
            )
            if o["synthesizer"] != "gaussian_copula" and o["synthesizer"] != config.name:
                raise CohortError(
                    f"--reuse {o['reuse']} holds a {config.name} synthesizer; drop --synthesizer"
                )
            synth = CohortSynthesizer.load(parent.root, schema, config)
            synth.fit_seconds = parent.manifest.synthesizer.get("fit_seconds")
            train, hold = parent.seed_tables()
            synth.trained_rows = len(train)
            source = parent.manifest.source
            lineage["parent_cohort"] = parent.id
        else:
            task = progress.add_task("reading the seed", total=None)
            if o["from_csv"] or o["from_synthea"] or o["from_fhir"]:
                table, src = _import_seed(
                    kb,
                    csv_path=o["from_csv"],
                    synthea=o["from_synthea"],
                    fhir=o["from_fhir"],
                    mapping=o["map_"],
                    code_map=o["code_map"],
                    ignore_extra=o["ignore_extra_columns"],
                    drop_inconsistent=o["drop_inconsistent"],
                    seed=o["seed"],
                )
            else:
                table, src = _kb_seed(kb, o["seed_rows"], o["seed"], o["weighting"])
            source = SourceInfo(**src)
            progress.update(task, total=1, completed=1)
            train, hold = _split(table, o["holdout"], o["seed"])
            config = SynthesizerConfig(
                name=o["synthesizer"],
                epochs=o["epochs"],
                batch_size=o["batch_size"],
                fit_seed=o["seed"],
            )
            task = progress.add_task(f"fitting {config.name}", total=None)
            synth = CohortSynthesizer(schema, config).fit(train)
            progress.update(task, total=1, completed=1)
        filters: dict[str, list[Any]] = {}
        for item in o["where"] or []:
            col, sep, value = item.partition("=")
            if not sep:
                raise CohortError(f"--where '{item}': expected COLUMN=VALUE, e.g. sex=female")
            filters.setdefault(col.strip(), []).append(_typed(schema, col.strip(), value.strip()))
        if o["condition"]:
            unknown = [c for c in o["condition"] if c not in kb.conditions]
            if unknown:
                raise CohortError(
                    f"--condition: unknown KB condition id '{unknown[0]}'; see `clinicgym kb list`"
                )
            filters["condition_id"] = list(o["condition"])
        mix = None
        if o["target"]:
            from clinicgym.patients.cohorts.targeting import target_mix

            failures, info = failures_from_run(o["target"], o["target_agent"], o["target_metric"])
            mix = target_mix(failures, train, schema, strength=o["target_strength"])
            lineage["target_run"] = str(o["target"])
            lineage["target_agent"] = info["agent"]
            lineage["target_metric"] = info["metric"]
        plan = plan_sampling(
            o["n"],
            train,
            schema,
            balance=parse_balance(o["balance"]) if o["balance"] else None,
            rare_floor=o["rare_floor"],
            filters=filters,
            target=mix.plan_cells(schema) if mix else None,
        )
        task = progress.add_task("sampling (KB-checked)", total=o["n"])
        table_out, stats = generate(
            synth,
            plan,
            seed=o["seed"],
            train=train,
            max_draws=o["max_draws"],
            on_progress=lambda done, total: progress.update(task, completed=done),
        )
    import sdv

    manifest = CohortManifest(
        cohort_id=out.name,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        clinicgym_version=__version__,
        sdv_version=sdv.__version__,
        kb_version=kb.version,
        kb_dir=str(Path(o["kb"]).resolve()) if o["kb"] else None,
        source=source,
        synthesizer={
            **synth.config.model_dump(),
            "sdv_class": SYNTHESIZERS[synth.config.name],
            "fit_seconds": round(synth.fit_seconds or 0.0, 2),
            "trained_rows": synth.trained_rows,
        },
        seed=o["seed"],
        split={"train": len(train), "holdout": len(hold)},
        plan=plan.model_dump(mode="json"),
        counts=stats.to_dict(),
        lineage=lineage,
        targeting=mix.model_dump(mode="json") if mix else None,
        columns=schema.describe(),
    )
    write_cohort(
        out,
        manifest=manifest,
        table=table_out,
        train=train,
        holdout=hold,
        save_synthesizer=synth.save,
        overwrite=o["overwrite"],
    )
    c = stats.to_dict()
    reasons = ", ".join(f"{k} {v}" for k, v in c["rejected"].items()) or "none"
    console.print(
        f"{out}: kept {c['kept']:,} of {c['drawn']:,} drawn; rejected by the KB "
        f"{c['rejected_total']:,} ({reasons}); "
        f"exact copies of seed rows dropped {c['exact_copies_dropped']}; "
        f"KB-consistent before rejection {c['kb_consistency_before_rejection']:.1%}; "
        f"{time.perf_counter() - start:.1f} s",
        highlight=False,
    )
    if o["report"]:
        _report_one(Cohort.open(out, kb))


def _typed(schema: Any, col: str, value: str) -> Any:
    from clinicgym.patients.errors import CohortError

    meta = schema.columns.get(col)
    if meta is None:
        raise CohortError(f"--where: unknown column '{col}'")
    if meta["sdtype"] == "boolean":
        if value.lower() not in ("true", "false"):
            raise CohortError(f"--where {col}: {value!r} is not true/false")
        return value.lower() == "true"
    if meta["sdtype"] == "numerical":
        try:
            return float(value)
        except ValueError:
            raise CohortError(f"--where {col}: {value!r} is not a number") from None
    return value


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
