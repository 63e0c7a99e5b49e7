"""`clinicgym play`: take the clinician's seat yourself, scored like any model.

A case is sampled from the KB (as `clinicgym run` does), the episode is played through the same
runner code with the human player, and the score card shows the metrics, the true diagnosis and
what was missed; `--save` appends the episode to a JSONL file.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from clinicgym.errors import ClinicGymError

console = Console(highlight=False)


def play(
    seed: Annotated[int, typer.Option(help="Which case: the same seed, the same patient.")] = 0,
    condition: Annotated[
        list[str] | None, typer.Option(help="Only these KB condition ids; repeatable.")
    ] = None,
    setting: Annotated[
        list[str] | None, typer.Option(help="Only conditions of this setting; repeatable.")
    ] = None,
    max_turns: Annotated[int, typer.Option(help="Clinician turn budget.")] = 20,
    kb: Annotated[Path | None, typer.Option(help="Knowledge-base directory.")] = None,
    save: Annotated[
        Path | None, typer.Option(help="Append the finished episode to this JSONL file.")
    ] = None,
) -> None:
    """Play one consultation in the terminal as the clinician, then see your score."""
    from clinicgym.agents.human import HumanAgent
    from clinicgym.envs.consultation import ConsultationEnv
    from clinicgym.patients.cases.presentation import make_sampler
    from clinicgym.patients.knowledge.kb import default_kb, load_kb
    from clinicgym.runs.runner import PlannedEpisode, play_episode
    from clinicgym.scoring.metrics import episode_reward

    try:
        knowledge = load_kb(kb) if kb else default_kb()
        sampler = make_sampler(knowledge, settings=setting or None, conditions=condition or None)
        case = sampler.sample(seed, 0)
    except ClinicGymError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    env = ConsultationEnv([case], kb=knowledge, max_turns=max_turns, reward_fn=episode_reward)
    planned = PlannedEpisode(f"human|{case.id}|s{seed}", "human", 0, 0, seed)
    episode = asyncio.run(play_episode(env, HumanAgent(), case, planned))
    console.rule("score")
    table = Table(show_header=False)
    table.add_row("true diagnosis", f"{case.diagnosis.name} ({case.diagnosis.code})")
    table.add_row("your diagnoses", "; ".join(d.name for d in episode.outcome.diagnoses) or "-")
    for name, value in episode.metrics.items():
        shown = "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
        table.add_row(name, shown)
    table.add_row("ended", str(episode.termination))
    console.print(table)
    elicited = {fid for e in episode.events for fid in e.revealed}
    missed = [f.text for f in case.facts if f.salience == "must_ask" and f.id not in elicited]
    if missed:
        console.print("Must-ask facts you did not elicit: " + "; ".join(missed))
    if save is not None:
        save.parent.mkdir(parents=True, exist_ok=True)
        with open(save, "a", encoding="utf-8") as fh:
            fh.write(episode.model_dump_json() + "\n")
        console.print(f"episode appended to {save}")
