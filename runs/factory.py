"""Env factories behind the registered Gymnasium ids: `runs` composes env, patient and scorer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.envs.structured import StructuredConsultationEnv
from clinicgym.scoring.metrics import episode_reward
from clinicgym.scoring.reward import ConsultationReward, RewardSpec


def make_consultation_env(
    *,
    policy_packs: Sequence[str] = (),
    scenarios: Sequence[str] = (),
    judge: Any = None,
    **kwargs: Any,
) -> ConsultationEnv:
    """`clinicgym/Consultation-v0`: the text env with scoring's terminal reward by default.

    `policy_packs=["hipaa-privacy@2", ...]` adds a policy monitor (violations in `info`),
    `scenarios=["crisis", "third_party:role=employer", ...]` stresses policy; both are
    validated before the env exists, as in `clinicgym run`.
    """
    kwargs.setdefault("reward_fn", episode_reward)
    if policy_packs or scenarios:
        from clinicgym.patients.knowledge.kb import default_kb
        from clinicgym.policies.setup import PolicySetup

        policy = PolicySetup.load(policy_packs, scenarios, kwargs.get("kb") or default_kb(), judge)
        monitor = policy.monitor()
        kwargs["monitors"] = [*kwargs.get("monitors", ()), *([monitor] if monitor else [])]
        kwargs["scenarios"] = [*kwargs.get("scenarios", ()), *policy.scenarios()]
    return ConsultationEnv(**kwargs)


def make_structured_env(
    reward: RewardSpec | dict[str, Any] | None = None, **kwargs: Any
) -> StructuredConsultationEnv:
    """`clinicgym/Consultation-Structured-v0`: discrete actions, numeric observation, and
    scoring's `ConsultationReward` (terminal score with guards; `reward={...}` sets RewardSpec)."""
    spec = reward if isinstance(reward, RewardSpec) else RewardSpec(**(reward or {}))
    env = StructuredConsultationEnv(**kwargs)
    env.reward = ConsultationReward(spec, env.kb)
    return env
