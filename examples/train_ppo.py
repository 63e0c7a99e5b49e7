"""Train PPO on `clinicgym/Consultation-Structured-v0` and plot its learning curve against the
random and scripted baselines, all scored on the same held-out cases.

    python examples/train_ppo.py [--cpu-budget 180] [--out ppo-curve]

Writes `<out>/curve.png` and `<out>/curve.json` (every evaluation point, the baselines, the
settings). The budget is CPU seconds of this process (see runs/rl/ppo.py), so the curve means
the same on a busy machine as on an idle one; wall time is printed beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.runs.factory import make_structured_env
from clinicgym.runs.rl.baselines import RandomPolicy, ScriptedPolicy
from clinicgym.runs.rl.evaluation import evaluate
from clinicgym.runs.rl.ppo import PPO_SETTINGS, CurvePoint, curve_dicts, train_ppo


def plot(curve: list[dict], baselines: dict[str, dict], path: Path) -> None:
    """Score against training steps, with the baselines as bands (95% intervals)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    steps = [p["steps"] for p in curve]
    ax.plot(steps, [p["score"] for p in curve], marker="o", label="PPO (greedy)")
    nan = float("nan")  # an undefined interval (every episode scored alike): no band
    lo, hi = zip(*[p["ci95"] or (nan, nan) for p in curve], strict=True)
    ax.fill_between(steps, lo, hi, alpha=0.2)
    for (name, r), colour in zip(baselines.items(), ("tab:red", "tab:green"), strict=False):
        ax.axhline(r["score"]["mean"], color=colour, linestyle="--", label=f"{name}")
        if r["score"]["ci95"] is not None:
            ax.axhspan(*r["score"]["ci95"], color=colour, alpha=0.1)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean terminal score (held-out cases)")
    ax.set_title("PPO on clinicgym/Consultation-Structured-v0")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-budget", type=float, default=180.0, help="CPU seconds for training")
    ap.add_argument("--eval-episodes", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=16_384, help="steps between evaluations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("ppo-curve"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    kb = default_kb()
    held_out = make_structured_env(n_cases=args.eval_episodes, suite_seed=1)
    baselines = {
        "random": evaluate(held_out, RandomPolicy(held_out.action_space.n), args.eval_episodes),
        "scripted": evaluate(held_out, ScriptedPolicy(kb), args.eval_episodes),
    }
    for name, r in baselines.items():
        print(f"{name:9s} score {r['score']['mean']:+.3f}  accuracy {r['accuracy']['mean']:.2f}")

    def show(p: CurvePoint) -> None:
        print(
            f"PPO {p.steps:>8d} steps  cpu {p.cpu_seconds:6.1f}s  wall {p.wall_seconds:6.1f}s  "
            f"score {p.score:+.3f}  accuracy {p.accuracy:.2f}  turns {p.turns:.1f}",
            flush=True,
        )

    _model, curve = train_ppo(
        cpu_budget=args.cpu_budget,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        seed=args.seed,
        on_point=show,
    )
    points = curve_dicts(curve)
    plot(points, baselines, args.out / "curve.png")
    (args.out / "curve.json").write_text(
        json.dumps(
            {"curve": points, "baselines": baselines, "ppo": PPO_SETTINGS, "args": vars(args)},
            indent=2,
            default=str,
        )
    )
    print(f"wrote {args.out / 'curve.png'} and {args.out / 'curve.json'}")


if __name__ == "__main__":
    main()
