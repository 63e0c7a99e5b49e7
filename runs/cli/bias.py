"""`clinicgym probe-bias`: a model's accuracy without a bias and with each clinician-side bias."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from clinicgym.errors import ClinicGymError
from clinicgym.runs.console import fail

console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120)


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
    from clinicgym.runs.bias_probe import bias_table, run_bias_probe

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
