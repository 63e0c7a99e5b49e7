"""`clinicgym probe-modality`: one agent's decisions when the same imaging finding is shown as
text, as a table and as an image (scoring/probes/modality.py).

The agent spec is resolved as `clinicgym run` resolves it (a baseline, or a model spec: add
`#vision=1` for a model that reads images, or the picture never reaches it); the cases are
sampled from the KB conditions whose imaging report the generators can draw.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.kb import KnowledgeBase, default_kb, load_kb

if TYPE_CHECKING:  # the probe loads when the command runs, not with `clinicgym --help`
    from clinicgym.scoring.probes.modality import ModalityProbe


def imaging_cases(kb: KnowledgeBase, n: int, seed: int = 0) -> list[Case]:
    """`n` cases of the KB conditions whose chest X-ray or head CT draws findings (the same
    cases for the same seed)."""
    from clinicgym.patients.cases.sampler import CaseSampler
    from clinicgym.scoring.probes.modality import imaging_conditions

    conditions = imaging_conditions(kb)
    if not conditions:
        return []
    return CaseSampler(kb, conditions=conditions).sample_many(n, seed)


def run_modality_probe(
    agent: str,
    *,
    cases: int = 20,
    seed: int = 0,
    kb: KnowledgeBase | None = None,
    max_turns: int = 20,
    concurrency: int = 4,
    include_normal: bool = False,
) -> ModalityProbe:
    """Build the agent, play the probe on sampled imaging cases, close the backend; bad specs
    and probe errors are ClinicGymErrors."""
    from clinicgym.agents.registry import make_agent_factory
    from clinicgym.scoring.probes.modality import modality_probe

    kb = kb or default_kb()
    played = imaging_cases(kb, cases, seed)
    factory: Any = make_agent_factory(agent, kb)

    async def go() -> ModalityProbe:
        try:
            return await modality_probe(
                factory,
                played,
                kb,
                agent=agent,
                seed=seed,
                max_turns=max_turns,
                concurrency=concurrency,
                include_normal=include_normal,
            )
        finally:
            close = getattr(factory, "aclose", None)
            if close is not None:
                await close()

    return asyncio.run(go())


def probe_modality(
    agent: Annotated[
        str,
        typer.Option(
            "--agent", "-a", help="scripted, or a model spec such as 'openai/gpt-4o#vision=1'."
        ),
    ],
    cases: Annotated[int, typer.Option(help="Imaging cases to sample.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the cases and of the episodes.")] = 0,
    kb: Annotated[Path | None, typer.Option(help="A knowledge-base directory.")] = None,
    max_turns: Annotated[int, typer.Option(help="Turn budget per consultation.")] = 20,
    concurrency: Annotated[int, typer.Option(help="Consultations in flight.")] = 4,
    include_normal: Annotated[
        bool, typer.Option(help="Also probe cases whose picture is normal.")
    ] = False,
    out: Annotated[Path, typer.Option(help="Where the JSON record goes.")] = Path(
        "modality_probe.json"
    ),
) -> None:
    """Play each imaging case three times (the finding as text, table, image) and print how
    often the top-1 diagnosis or the next action changed, with 95% intervals."""
    from clinicgym.errors import ClinicGymError
    from clinicgym.runs.console import fail

    try:
        result = run_modality_probe(
            agent,
            cases=cases,
            seed=seed,
            kb=load_kb(kb) if kb else None,
            max_turns=max_turns,
            concurrency=concurrency,
            include_normal=include_normal,
        )
    except ClinicGymError as e:
        fail(e)
    from clinicgym.scoring.probes.modality import format_summary

    out.write_text(json.dumps(result.model_dump(mode="json"), indent=1) + "\n", "utf-8")
    typer.echo(format_summary(result))
    typer.echo(f"written: {out}")
