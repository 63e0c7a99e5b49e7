"""PPO against the random and scripted baselines on the structured env, within a CPU budget.

Trains stable-baselines3 PPO (runs/rl/ppo.py) for `--cpu-budget` CPU seconds of this process,
evaluating the greedy policy on held-out cases as it goes, and prints the learning curve, its end
point beside the two baselines scored on the same cases, the share of the random-to-scripted gap
PPO closed, and training steps per CPU second and per wall second (the machine is shared: wall
time varies, CPU time much less).

    python bench/rl_ppo.py [--cpu-budget 180] [--warm-start 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.runs.factory import make_structured_env
from clinicgym.runs.rl.baselines import RandomPolicy, ScriptedPolicy
from clinicgym.runs.rl.evaluation import evaluate
from clinicgym.runs.rl.ppo import CurvePoint, curve_dicts, train_ppo
from clinicgym.scoring.stats import format_ci


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cpu-budget", type=float, default=180.0)
    ap.add_argument("--eval-episodes", type=int, default=200)
    ap.add_argument(
        "--warm-start",
        type=int,
        default=0,
        help="clone the scripted baseline over this many training episodes first (in the budget)",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    held_out = make_structured_env(n_cases=args.eval_episodes, suite_seed=1)
    t0 = time.perf_counter()
    random_r = evaluate(held_out, RandomPolicy(held_out.action_space.n), args.eval_episodes)
    scripted_r = evaluate(held_out, ScriptedPolicy(default_kb()), args.eval_episodes)
    print(f"baselines on {args.eval_episodes} held-out cases ({time.perf_counter() - t0:.0f}s):")
    for name, r in (("random", random_r), ("scripted", scripted_r)):
        score = format_ci(r["score"], spec="+.3f", sep=", ")
        print(
            f"  {name:9s} score {score}  accuracy {r['accuracy']['mean']:.2f}  "
            f"turns {r['turns']:.1f}"
        )

    def show(p: CurvePoint) -> None:
        print(
            f"  PPO {p.steps:>8d} steps  cpu {p.cpu_seconds:6.1f}s  wall {p.wall_seconds:7.1f}s  score {p.score:+.3f}  accuracy {p.accuracy:.2f}  turns {p.turns:.1f}",
            flush=True,
        )

    print(f"PPO learning curve (budget {args.cpu_budget:.0f} CPU s):")
    _model, curve = train_ppo(
        cpu_budget=args.cpu_budget,
        eval_episodes=args.eval_episodes,
        warm_start=args.warm_start,
        on_point=show,
    )
    end = curve[-1]
    r, s = random_r["score"]["mean"], scripted_r["score"]["mean"]
    closed = (end.score - r) / (s - r) if s != r else float("nan")
    print("end points (same held-out cases):")
    print(f"  random    {r:+.3f}")
    print(
        f"  PPO       {end.score:+.3f} [{end.ci95[0]:+.3f}, {end.ci95[1]:+.3f}] after {end.steps} steps, {end.cpu_seconds:.0f} CPU s, {end.wall_seconds:.0f} wall s"
    )
    print(f"  scripted  {s:+.3f}")
    print(
        f"  PPO - random = {end.score - r:+.3f}; PPO closed {closed:.0%} of the random-to-scripted gap"
    )
    print(
        f"  training throughput: {end.steps / end.cpu_seconds:.0f} steps per CPU s, {end.steps / end.wall_seconds:.0f} per wall s"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "random": random_r,
                    "scripted": scripted_r,
                    "curve": curve_dicts(curve),
                    "gap_closed": closed,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
