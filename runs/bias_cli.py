"""`clinicgym probe-bias`: a model's accuracy without a bias and with each clinician-side bias."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from clinicgym.errors import ClinicGymError
from clinicgym.runs.bias_probe import BiasProbe
from clinicgym.runs.console import ci_cell, fail

console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120)


def bias_table(result: BiasProbe) -> Table:
    """One row per arm: n, top-1 with its interval, the difference from no bias, the paired
    changes, and (cognitive) how often the planted look-alike came first."""
    table = Table(
        title=f"clinician bias probe: {result.agent}, {len(result.cases)} cases",
        caption=(
            "top-1: Wilson 95%; difference from 'none': Newcombe 95% (arms taken as independent: "
            "conservative for paired cases); lost/gained: cases right without the bias and wrong "
            "with it / the reverse; look-alike first: the planted wrong answer ranked first"
        ),
    )
    for col in ("bias", "kind", "n", "errors", "top-1", "difference", "lost/gained", "look-alike"):
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
            ci_cell(a.lured, pct=True) if a.lured else "-",
        )
    return table


def load_probe_cases(
    kb: Any, cases: int | None, seed: int, cases_from: Path | None, strict: bool = False
) -> list[Any]:
    """Sampled cases as `clinicgym run --cases N --seed S` samples them, or a file's."""
    if cases_from is not None:
        from clinicgym.patients.importers.external import read_cases

        return read_cases(cases_from, kb, limit=cases, strict=strict)
    from clinicgym.patients.presentation import make_sampler

    return make_sampler(kb).sample_many(cases or 10, seed)


def run_bias_probe(
    agent: str,
    *,
    biases: list[str] | None = None,
    cases: int | None = None,
    seed: int = 0,
    cases_from: Path | None = None,
    kb_dir: Path | None = None,
    bias_file: Path | None = None,
    max_turns: int = 20,
    concurrency: int = 16,
    quiet: bool = True,
) -> BiasProbe:
    """Build the agent once, play the probe, close the backend; errors are ClinicGymErrors."""
    from clinicgym.agents.backends.spec import ClinicianFactory
    from clinicgym.agents.biases import NO_BIAS, load_biases
    from clinicgym.agents.errors import AgentSpecError
    from clinicgym.agents.registry import make_agent_factory
    from clinicgym.patients.kb import default_kb, load_kb
    from clinicgym.runs.bias_probe import probe_biases

    kb = load_kb(kb_dir) if kb_dir else default_kb()
    library = load_biases(bias_file)  # a broken file or an unknown id fails before a model loads
    wanted = [library.get(b).id for b in biases if b != NO_BIAS] if biases else library.ids()
    arms = 1 + len(dict.fromkeys(wanted))
    played = load_probe_cases(kb, cases, seed, cases_from)
    if not played:
        raise AgentSpecError("no cases to probe")
    factory = make_agent_factory(agent, kb)
    if not isinstance(factory, ClinicianFactory):
        raise AgentSpecError(
            f"agent '{agent}' is a baseline; a bias probe puts a sentence in a language model's "
            "instructions, so it needs a model backend, e.g. 'hf:smollm2' or 'openai:MODEL@URL'"
        )

    async def go() -> BiasProbe:
        try:
            with Progress(
                "{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                disable=quiet,
            ) as bar:
                task = bar.add_task("consultations", total=len(played) * arms)
                return await probe_biases(
                    factory,
                    played,
                    kb,
                    biases=biases,
                    bias_file=bias_file,
                    seed=seed,
                    max_turns=max_turns,
                    concurrency=concurrency,
                    on_episode=lambda _e: bar.advance(task),
                )
        finally:
            await factory.aclose()

    result = asyncio.run(go())
    result.settings = {
        "cases_from": str(cases_from) if cases_from else None,
        "kb_dir": str(kb_dir) if kb_dir else None,
        "concurrency": concurrency,
    }
    return result


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
        )
    except ClinicGymError as e:
        fail(e)
    result.write(out)
    console.print(bias_table(result))
    console.print(f"written to {out} in {time.perf_counter() - t0:.1f} s")
