"""Scoring test helpers: play scripted consultations on given cases; the probe agents module."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent

if "probe_agents" not in sys.modules:  # tests run in importlib mode: load the helper by name
    _spec = importlib.util.spec_from_file_location("probe_agents", HERE / "probe_agents.py")
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["probe_agents"] = _module
    _spec.loader.exec_module(_module)


@pytest.fixture
def play(small_kb):
    """play(case, actions, scenarios=()) -> the finished Episode (actions are env inputs)."""
    from clinicgym.envs.consultation import ConsultationEnv
    from clinicgym.policies import make_scenarios

    def run(case, actions, scenarios=(), seed=0, kb=None):
        kb = kb or small_kb
        env = ConsultationEnv(
            [case], kb=kb, scenarios=make_scenarios(list(scenarios), kb), max_turns=40
        )
        env.reset(seed=seed, options={"case": case})
        for a in actions:
            *_, term, trunc, info = env.step(a)
            if term or trunc:
                return info["episode"], env.case
        raise AssertionError("the episode did not end: finish the actions with a diagnosis")

    return run
