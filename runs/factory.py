"""Env factories behind the registered Gymnasium ids: `runs` composes env, patient and scorer."""

from __future__ import annotations

from typing import Any

from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.scoring.metrics import episode_reward


def make_consultation_env(**kwargs: Any) -> ConsultationEnv:
    """`clinicgym/Consultation-v0`: the text env with scoring's terminal reward by default."""
    kwargs.setdefault("reward_fn", episode_reward)
    return ConsultationEnv(**kwargs)
