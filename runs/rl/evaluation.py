"""Evaluating a policy on the structured env: mean score with a seeded 95% interval.

Episode `i` of an evaluation resets with `seed + i` and plays case `i` of the env's suite (or
list), so the same (env, seed, episodes) always plays the same cases: two policies are compared
on identical cases, and a reward curve can be reproduced point for point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from clinicgym.envs.structured import StructuredConsultationEnv
from clinicgym.runs.rl.baselines import Policy
from clinicgym.scoring.stats import mean_ci

ActFn = Callable[[np.ndarray, dict[str, Any]], int]


def evaluate(
    env: StructuredConsultationEnv,
    policy: Policy | ActFn,
    episodes: int = 200,
    *,
    seed: int = 0,
    first_case: int = 0,
) -> dict[str, Any]:
    """Play `episodes` episodes (cases `first_case`, `first_case + 1`, ...) and summarise: mean
    terminal score (the reward without shaping), accuracy, turns, return (shaping included)."""
    scores, correct, turns, returns = [], [], [], []
    n_cases = env.n_cases
    for i in range(episodes):
        options = {"case_index": (first_case + i) % n_cases}
        obs, info = env.reset(seed=seed + i, options=options)
        if hasattr(policy, "reset"):
            policy.reset(obs, info)
        act = policy.act if hasattr(policy, "act") else policy
        total = 0.0
        while True:
            obs, reward, terminated, truncated, info = env.step(act(obs, info))
            total += float(reward)
            if terminated or truncated:
                break
        outcome = info["outcome"]
        score = outcome["score"]
        scores.append(score["total"] if score is not None else 0.0)
        correct.append(float(outcome["correct"]))
        turns.append(float(outcome["turns"]))
        returns.append(total)
    return {
        "episodes": episodes,
        "score": mean_ci(scores, proportion=False),  # a reward: 0 and 1 are not no and yes
        "accuracy": mean_ci(correct),
        "turns": float(np.mean(turns)),
        "return": float(np.mean(returns)),
    }
