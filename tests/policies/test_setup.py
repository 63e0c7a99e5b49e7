"""PolicySetup: a run's packs, scenarios and judge checked once, fresh monitors per episode."""

from __future__ import annotations

import pytest
from policy_helpers import write_judge_pack

from clinicgym.errors import ClinicGymError
from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.policies import PackError, PolicySetup


def test_a_bad_pack_an_unknown_scenario_or_a_missing_judge_fails_at_load(tmp_path) -> None:
    kb = default_kb()
    with pytest.raises(ClinicGymError, match="no-such-pack"):
        PolicySetup.load(["no-such-pack@9"], [], kb)
    with pytest.raises(ClinicGymError, match="teleport"):
        PolicySetup.load(["hipaa-privacy@2"], ["teleport"], kb)
    judged = [str(write_judge_pack(tmp_path))]
    with pytest.raises(PackError, match="use LLM-judge checks"):
        PolicySetup.load(judged, [], kb)

    async def judge(messages):
        return "VERDICT: COMPLIANT"

    assert PolicySetup.load(judged, [], kb, judge).judge is judge


def test_each_episode_gets_a_fresh_monitor_and_fresh_scenarios() -> None:
    setup = PolicySetup.load(
        ["hipaa-privacy@2"], ["third_party:role=employer", "crisis"], default_kb()
    )
    first, second = setup.monitor(), setup.monitor()
    assert first is not None and second is not None and first is not second
    a, b = setup.scenarios(), setup.scenarios()
    assert len(a) == 2 and all(x is not y for x, y in zip(a, b, strict=True))
    assert PolicySetup.load([], [], default_kb()).monitor() is None
