"""`clinicgym rl ...`: the structured env's baselines and probes, and pinned case suites.

* `rl baselines`: random, scripted and the question-flooding probe on the same cases of the
  structured env, with mean score, 95% interval, accuracy and turns (a reward configuration
  that lets the probe beat the scripted baseline is hackable);
* `rl pin-suite DIR`: sample a case suite and write it with its hashes (runs/rl/suite.py);
* `rl grpo`: train with TRL's GRPOTrainer on consultations played through tool calls
  (runs/rl/trl_grpo.py; a tiny local model by default, a CPU smoke run).
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
    help="RL: structured-env baselines, pinned case suites, GRPO training.", no_args_is_help=True
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


@rl_app.command("grpo")
def grpo_cmd(
    out: Annotated[
        Path, typer.Option(help="Output directory: reward curve, plot, summary, model.")
    ] = Path("runs/grpo"),
    model: Annotated[
        str | None,
        typer.Option(
            help="A local model directory with a tool-calling chat template; default: a tiny "
            "random-weight model built here (a CPU smoke run)."
        ),
    ] = None,
    steps: Annotated[int, typer.Option(help="GRPO steps.")] = 3,
    seed: Annotated[int, typer.Option(help="Training seed; also the first episode seed.")] = 0,
    cases: Annotated[int, typer.Option(help="Distinct consultations in the dataset.")] = 8,
    suite: Annotated[
        str | None,
        typer.Option(
            help="Play a suite: name@version, a `clinicgym suite export` or `clinicgym rl "
            "pin-suite` directory."
        ),
    ] = None,
    generations: Annotated[
        int, typer.Option(help="Consultations per case per step (GRPO's group).")
    ] = 4,
    max_turns: Annotated[int, typer.Option(help="Turn budget of a consultation.")] = 5,
    max_completion_length: Annotated[
        int, typer.Option(help="Token budget of a whole consultation (tool replies included).")
    ] = 768,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate (default 5e-5 tiny, 1e-6 real model).")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help="Sampling temperature (default 0.7 tiny, 1.0 real).")
    ] = None,
    warm_steps: Annotated[
        int, typer.Option(help="Tiny model only: supervised warm-start steps.")
    ] = 600,
    policy_pack: Annotated[
        list[str] | None, typer.Option(help="Watch with this policy pack (violations metric).")
    ] = None,
    violation_penalty: Annotated[
        float, typer.Option(help="Reward subtracted per monitor violation.")
    ] = 0.0,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 1,
    groups: Annotated[
        int, typer.Option(help="Cases per step, each played --generations times.")
    ] = 1,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = 1,
    vllm: Annotated[
        bool, typer.Option("--vllm", help="Generate with vLLM colocated (GPU; untested here).")
    ] = False,
    eval_cases: Annotated[
        int,
        typer.Option(help="Also score this many other consultations before and after training."),
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Train a model with TRL's GRPOTrainer on consultations played through tool calls."""
    from clinicgym.runs.rl.trl_grpo import GRPORun, train_grpo

    run = GRPORun(
        out=out,
        model=model,
        steps=steps,
        seed=seed,
        cases=cases,
        suite=suite,
        generations=generations,
        max_turns=max_turns,
        max_completion_length=max_completion_length,
        learning_rate=lr,
        temperature=temperature,
        warm_steps=warm_steps,
        policy_packs=list(policy_pack or []),
        violation_penalty=violation_penalty,
        threads=threads,
        groups=groups,
        grad_accum=grad_accum,
        vllm=vllm,
        eval_cases=eval_cases,
    )
    if model is not None and warm_steps != 600:
        err_console.print("[yellow]note:[/yellow] --warm-steps applies to the tiny model only")
    try:
        summary = train_grpo(
            run, say=lambda m: err_console.print(escape(m), highlight=False, soft_wrap=True)
        )
    except (ClinicGymError, ValueError) as e:
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    _print_grpo_summary(summary)


def _print_grpo_summary(summary: dict[str, Any]) -> None:
    """The run in a line or two: reward on the other consultations before and after training
    (when evaluated), the first and last step's reward, where the curve and plot are."""
    ev = summary.get("evaluation") or {}
    if ev.get("before") and ev.get("after"):
        console.print(
            f"other consultations: reward {_signed(ev['before']['reward'])} before training, "
            f"{_signed(ev['after']['reward'])} after",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"{summary['steps']} steps in {summary['seconds']:.0f} s; reward "
        f"{_signed(summary['reward_first'])} at the first step, "
        f"{_signed(summary['reward_last'])} at the "
        f"last; curve in {summary['curve']}, plot in {summary['plot']}",
        highlight=False,
        soft_wrap=True,
    )


def _signed(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.3f}"
