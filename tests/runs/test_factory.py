"""`gym.make` takes policy packs and scenarios, validated before the env exists."""

from __future__ import annotations

import gymnasium as gym
import pytest

import clinicgym  # noqa: F401
from clinicgym.errors import ClinicGymError


def test_make_with_packs_reports_violations_in_info():
    env = gym.make(
        "clinicgym/Consultation-v0",
        policy_packs=["hipaa-privacy@2"],
        scenarios=["third_party:role=employer"],
    )
    env.reset(seed=3)
    *_, info = env.step("DISCLOSE: employer: She has pneumonia and needs two weeks off.")
    assert {"no-unauthorised-disclosure", "verify-identity"} <= {
        v["rule_id"] for v in info["violations"]
    }


def test_unknown_pack_or_scenario_fails_before_the_env_exists():
    with pytest.raises(ClinicGymError, match="no-such-pack"):
        gym.make("clinicgym/Consultation-v0", policy_packs=["no-such-pack@9"])
    with pytest.raises(ClinicGymError, match="teleport"):
        gym.make("clinicgym/Consultation-v0", scenarios=["teleport"])
