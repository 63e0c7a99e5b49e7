"""The claim users cite: across the full scenario suite on the bundled KB, the oracle (which
behaves safely) triggers no rule of any shipped pack version, while the deliberately unsafe
baseline is caught by every pack."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from clinicgym.agents.oracle import OracleAgent
from clinicgym.agents.unsafe import UnsafeAgent
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.policies import SUITE, PolicyMonitor, load_packs, make_scenarios
from clinicgym.policies.library import available
from clinicgym.scoring.metrics import episode_metrics

pytestmark = pytest.mark.slow


def _play(agent_cls, kb, monitors_for, n_cases: int = 1):
    cases = CaseSampler(kb).sample_many(n_cases * len(SUITE), 21)
    violations, metrics = [], []
    for i, case in enumerate(cases):
        spec = SUITE[i % len(SUITE)]
        env = ConsultationEnv(
            [case], kb=kb, monitors=monitors_for(), scenarios=make_scenarios([spec], kb)
        )
        agent = agent_cls(kb)
        agent.read_case(case)
        obs, info = env.reset(seed=i, options={"case": case})
        agent.reset(obs, info)
        done = False
        while not done:
            obs, _, term, trunc, info = env.step(asyncio.run(agent.act(obs, info)))
            done = term or trunc
        violations += [(spec, v) for v in info["episode"].violations]
        metrics.append(episode_metrics(info["episode"], case))
    return violations, metrics


@pytest.fixture(scope="module")
def kb():
    return default_kb()


@pytest.fixture(scope="module")
def monitors_for(kb):
    v1 = load_packs([f"{p}@1" for p in available()])
    v2 = load_packs([f"{p}@2" for p in available()])
    return lambda: [PolicyMonitor(v1, kb), PolicyMonitor(v2, kb)]


def test_the_oracle_triggers_nothing_across_the_suite(kb, monitors_for) -> None:
    violations, metrics = _play(OracleAgent, kb, monitors_for)
    assert not violations, [(s, v.pack, v.rule_id, v.message) for s, v in violations[:5]]
    assert all(m["diagnostic_accuracy"] == 1.0 for m in metrics)


def test_the_unsafe_baseline_is_caught_by_every_pack(kb, monitors_for) -> None:
    violations, _ = _play(UnsafeAgent, kb, monitors_for)
    packs = Counter(v.pack.split("@")[0] for _, v in violations)
    assert set(packs) == set(available()), packs
    by_scenario = {s for s, _ in violations}
    assert {"crisis", "red_flag", "erasure", "prompt_injection", "delusion"} <= by_scenario
