"""`clinicgym probe-bias`: a model's accuracy without a bias and with each clinician-side bias."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from clinicgym.errors import ClinicGymError
from clinicgym.runs.console import ci_cell, fail

if TYPE_CHECKING:
    from clinicgym.runs.bias_probe import BiasProbe

console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120)


def bias_table(result: BiasProbe) -> Table:
    """One row per arm: n, top-1 with its interval, the difference from no bias, the paired
    changes, and (cognitive) how often the planted look-alike came first."""
    table = Table(
        title=f"clinician bias probe: {result.agent}, {len(result.cases)} cases",
        caption=(
            "top-1: Wilson 95%; difference from 'none': Newcombe 95% (arms taken as independent: "
            "conservative for paired cases); lost/gained: cases right without the bias and wrong "
            "with it / the reverse; changed: first diagnosis differs from no bias's; look-alike: "
            "the planted wrong answer ranked first"
        ),
    )
    cols = ("bias", "kind", "n", "errors", "top-1", "difference", "lost/gained", "changed")
    for col in (*cols, "look-alike"):
        table.add_column(col, justify="left" if col in ("bias", "kind") else "right")
    for a in result.arms:
        table.add_row(
            a.bias,
            a.kind,
            str(a.n),
            str(a.errors),
            ci_cell(a.accuracy, pct=True),
            ci_cell(a.diff, pct=True, sep=", ") if a.diff else "-",
            f"{a.lost}/{a.gained}" if a.bias != "none" else "-",
            f"{a.changed}/{a.n}" if a.bias != "none" else "-",
            ci_cell(a.lured, pct=True) if a.lured else "-",
        )
    return table


def probe_bias(
    agent: Annotated[
        str, typer.Option("--agent", "-a", help="A model spec, e.g. hf:smollm2 or openai:M@URL.")
    ],
    bias: Annotated[
        list[str] | None,
        typer.Option(help="A bias id, repeatable (default: every bias in the file)."),
    ] = None,
    cases: Annotated[
        int | None,
        typer.Option(help="Cases to play (default: 10 sampled; every case of --cases-from)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Run seed: the cases and the episode seeds.")] = 0,
    cases_from: Annotated[
        Path | None, typer.Option(help="Play an AgentClinic or DDXPlus file's cases instead.")
    ] = None,
    kb: Annotated[Path | None, typer.Option(help="A knowledge-base directory.")] = None,
    bias_file: Annotated[
        Path | None,
        typer.Option(help="Bias definitions (default: agents/prompts/clinician_biases.yaml)."),
    ] = None,
    max_turns: Annotated[int, typer.Option(help="Turn budget per consultation.")] = 20,
    concurrency: Annotated[int, typer.Option(help="Consultations in flight.")] = 16,
    out: Annotated[Path, typer.Option(help="Where the JSON record goes.")] = Path(
        "bias_probe.json"
    ),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Play a model on the same cases and seeds without a bias and with each clinician-side bias
    (AgentClinic's cognitive and implicit biases, in its instructions); print top-1 accuracy per
    bias with intervals and write the record to --out."""
    from clinicgym.runs.bias_probe import run_bias_probe

    t0 = time.perf_counter()
    try:
        result = run_bias_probe(
            agent,
            biases=bias,
            cases=cases,
            seed=seed,
            cases_from=cases_from,
            kb_dir=kb,
            bias_file=bias_file,
            max_turns=max_turns,
            concurrency=concurrency,
            quiet=quiet,
            progress_console=console,
        )
    except ClinicGymError as e:
        fail(e)
    result.write(out)
    console.print(bias_table(result))
    console.print(f"written to {out} in {time.perf_counter() - t0:.1f} s")
