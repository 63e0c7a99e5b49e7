"""`clinicgym rl ...`: the structured env's baselines and probes, and pinned case suites.

* `rl baselines`: random, scripted and the question-flooding probe on the same cases of the
  structured env, with mean score, 95% interval, accuracy and turns (a reward configuration
  that lets the probe beat the scripted baseline is hackable);
* `rl pin-suite DIR`: sample a case suite and write it with its hashes (runs/rl/suite.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from clinicgym.errors import ClinicGymError
from clinicgym.scoring.stats import format_interval

rl_app = typer.Typer(
    help="RL: structured-env baselines and pinned case suites.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)


@rl_app.command("baselines")
def baselines(
    episodes: Annotated[
        int, typer.Option(help="Episodes per policy (cases 0..N-1 of the suite).")
    ] = 200,
    suite_seed: Annotated[int, typer.Option(help="Suite seed (training uses 0 by default).")] = 1,
    max_turns: Annotated[int, typer.Option(help="Turn budget.")] = 20,
    turn_cost: Annotated[float | None, typer.Option(help="Override RewardSpec.turn_cost.")] = None,
    info_gain: Annotated[float, typer.Option(help="RewardSpec.info_gain shaping weight.")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Score random, scripted and the flooding probe on the structured env's held-out cases."""
    from clinicgym.runs.factory import make_structured_env
    from clinicgym.runs.rl.baselines import FloodingPolicy, RandomPolicy, ScriptedPolicy
    from clinicgym.runs.rl.evaluation import evaluate
    from clinicgym.scoring.reward import RewardSpec

    overrides: dict[str, Any] = {"info_gain": info_gain}
    if turn_cost is not None:
        overrides["turn_cost"] = turn_cost
    try:
        spec = RewardSpec(**overrides)
        env = make_structured_env(
            reward=spec, n_cases=episodes, suite_seed=suite_seed, max_turns=max_turns
        )
    except (ClinicGymError, ValueError) as e:
        err_console.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(2) from None
    policies = [
        RandomPolicy(env.action_space.n),
        ScriptedPolicy(env.kb, max_turns=max_turns),
        FloodingPolicy(env.kb, max_turns=max_turns),
    ]
    results: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err_console
    ) as progress:
        task = progress.add_task("policies", total=len(policies))
        for p in policies:
            progress.update(task, description=p.name)
            results[p.name] = evaluate(env, p, episodes)
            progress.advance(task)
    if as_json:
        print(json.dumps({"reward": spec.model_dump(), "results": results}, indent=2))
        return
    table = Table(title=f"structured env, {episodes} cases of suite {suite_seed}")
    for col in ("policy", "score", "95% CI", "accuracy", "turns"):
        table.add_column(col)
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['score']['mean']:+.3f}",
            escape(format_interval(r["score"]["ci95"], spec="+.3f", sep=", ")),
            f"{r['accuracy']['mean']:.2f}",
            f"{r['turns']:.1f}",
        )
    console.print(table)


@rl_app.command("pin-suite")
def pin_suite_cmd(
    directory: Annotated[Path, typer.Argument(help="Where to write cases.jsonl and suite.json.")],
    n: Annotated[int, typer.Option("--n", help="How many cases.")] = 500,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    setting: Annotated[
        list[str] | None, typer.Option(help="Only conditions of this setting.")
    ] = None,
    condition: Annotated[list[str] | None, typer.Option(help="Only this KB condition id.")] = None,
) -> None:
    """Sample a case suite and pin it (each case's hash and the suite's) for reproducible curves."""
    from clinicgym.runs.rl.suite import pin_suite

    try:
        m = pin_suite(directory, n, seed=seed, settings=setting or (), conditions=condition or ())
    except ClinicGymError as e:
        err_console.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(2) from None
    console.print(
        f"pinned {m.n} cases (KB {m.kb_version}, seed {m.seed}) in {directory}: "
        f"suite hash {m.suite_hash[:16]}"
    )
