"""PPO (stable-baselines3) on the structured env, under a CPU-time budget, with a learning curve.

The budget is process CPU seconds, not wall time: on a shared machine the wall clock says more
about the neighbours than about the training. Every `eval_every` steps the greedy policy plays
the same held-out cases (suite `eval_suite_seed`, never trained on), so the curve's points are
comparable with each other and with the baselines evaluated on those cases.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from clinicgym.runs.factory import make_structured_env
from clinicgym.runs.rl.errors import require
from clinicgym.runs.rl.evaluation import evaluate
from clinicgym.scoring.reward import RewardSpec

PPO_SETTINGS: dict[str, Any] = {
    "n_steps": 128,
    "batch_size": 512,
    "n_epochs": 4,
    "learning_rate": 1e-3,
    "gamma": 0.99,
    "ent_coef": 0.01,
    "policy_kwargs": {"net_arch": [256]},
}
"""Tuned for a few CPU minutes: short rollouts over 16 envs, one hidden layer."""


@dataclass
class CurvePoint:
    """One evaluation of the policy during training."""

    steps: int
    cpu_seconds: float
    wall_seconds: float
    score: float
    ci95: list[float] | None
    """The score's 95% interval; None when undefined (every episode scored the same)."""
    accuracy: float
    turns: float


def train_ppo(
    *,
    cpu_budget: float = 180.0,
    eval_every: int = 16_384,
    eval_episodes: int = 200,
    n_envs: int = 16,
    n_cases: int = 2000,
    suite_seed: int = 0,
    eval_suite_seed: int = 1,
    max_turns: int = 20,
    reward: RewardSpec | None = None,
    seed: int = 0,
    threads: int = 1,
    warm_start: int = 0,
    on_point: Callable[[CurvePoint], None] | None = None,
) -> tuple[Any, list[CurvePoint]]:
    """Train PPO until `cpu_budget` CPU seconds are spent; returns (model, learning curve).
    `warm_start` > 0 first clones the scripted baseline over that many training episodes
    (`clone_scripted`), inside the budget: PPO alone finds diagnosing at once long before it
    finds that asking pays."""
    require("stable_baselines3", "PPO training")
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(threads)
    spec = reward or RewardSpec()

    def make() -> Any:
        return make_structured_env(
            reward=spec, n_cases=n_cases, suite_seed=suite_seed, max_turns=max_turns
        )

    venv = make_vec_env(make, n_envs=n_envs, seed=seed)
    model = PPO("MlpPolicy", venv, seed=seed, verbose=0, device="cpu", **PPO_SETTINGS)
    held_out = make_structured_env(
        reward=spec, n_cases=eval_episodes, suite_seed=eval_suite_seed, max_turns=max_turns
    )
    curve: list[CurvePoint] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if warm_start > 0:
        clone_scripted(model, make(), warm_start)

    def point() -> None:
        p = _curve_point(model, held_out, eval_episodes, cpu0, wall0)
        curve.append(p)
        if on_point is not None:
            on_point(p)

    point()
    while time.process_time() - cpu0 < cpu_budget:
        model.learn(eval_every, reset_num_timesteps=False)
        point()
    venv.close()
    return model, curve


def _curve_point(model: Any, held_out: Any, episodes: int, cpu0: float, wall0: float) -> CurvePoint:
    """The greedy policy scored on the held-out cases: one point of the learning curve, timed
    from `cpu0` (process CPU) and `wall0` (perf counter)."""
    r = evaluate(held_out, lambda o, i: int(model.predict(o, deterministic=True)[0]), episodes)
    return CurvePoint(
        steps=int(model.num_timesteps),
        cpu_seconds=round(time.process_time() - cpu0, 1),
        wall_seconds=round(time.perf_counter() - wall0, 1),
        score=float(r["score"]["mean"]),
        ci95=list(r["score"]["ci95"]) if r["score"]["ci95"] is not None else None,
        accuracy=float(r["accuracy"]["mean"]),
        turns=float(r["turns"]),
    )


def clone_scripted(model: Any, env: Any, episodes: int, epochs: int = 30) -> float:
    """Behaviour cloning: fit the PPO policy to the scripted baseline's actions over `episodes`
    training cases (cross-entropy on the policy's own log-probabilities); returns the share of
    those actions the cloned policy now picks greedily."""
    import numpy as np
    import torch

    from clinicgym.runs.rl.baselines import ScriptedPolicy

    teacher = ScriptedPolicy(env.kb, max_turns=env.max_turns)
    xs: list[np.ndarray] = []
    acts: list[int] = []
    for i in range(episodes):
        obs, info = env.reset(seed=i, options={"case_index": i % env.n_cases})
        teacher.reset(obs, info)
        while True:
            a = teacher.act(obs, info)
            xs.append(obs.copy())
            acts.append(a)
            obs, _r, terminated, truncated, info = env.step(a)
            if terminated or truncated:
                break
    x = torch.as_tensor(np.array(xs), dtype=torch.float32)
    y = torch.as_tensor(np.array(acts))
    opt = torch.optim.Adam(model.policy.parameters(), lr=PPO_SETTINGS["learning_rate"])
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for k in range(0, len(x), 256):
            idx = perm[k : k + 256]
            _values, logp, _entropy = model.policy.evaluate_actions(x[idx], y[idx])
            loss = -logp.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        greedy = model.policy.get_distribution(x).distribution.probs.argmax(dim=1)
    return float((greedy == y).float().mean())


def curve_dicts(curve: list[CurvePoint]) -> list[dict[str, Any]]:
    """The curve as plain dicts (for JSON)."""
    return [asdict(p) for p in curve]
