"""The baselines on the bundled KB: the oracle reaches the ceiling, scripted clearly beats random."""

from __future__ import annotations

import asyncio

import pytest

from clinicgym.agents.registry import make_agent_factory
from clinicgym.agents.scripted import ScriptedAgent
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    spec = RunSpec(
        agents=["oracle", "scripted", "random"],
        cases=30,
        seed=7,
        out=tmp_path_factory.mktemp("b") / "run",
    )
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    asyncio.run(execute(ctx, store))
    store.close()
    return finalise(ctx, store)["agents"]


def _m(summary, agent, metric):
    return summary[agent]["metrics"][metric]


def test_oracle_reaches_the_ceiling(summary):
    assert _m(summary, "oracle", "diagnostic_accuracy")["mean"] == 1.0
    assert _m(summary, "oracle", "inquiry_coverage")["mean"] >= 0.95


def test_scripted_clearly_beats_random(summary):
    s, r = (
        _m(summary, "scripted", "diagnostic_accuracy"),
        _m(summary, "random", "diagnostic_accuracy"),
    )
    assert s["ci95"][0] > r["ci95"][1]  # the intervals do not overlap
    assert s["mean"] >= 0.6 and r["mean"] <= 0.2


def test_no_errors(summary):
    assert all(a["errors"] == 0 and a["episodes"] == 30 for a in summary.values())


def test_scripted_escalates_emergencies():
    kb = default_kb()
    sampler = CaseSampler(kb, conditions=["stemi", "bacterial_meningitis", "anaphylaxis"])
    referred = 0
    for i, case in enumerate(sampler.sample_many(6, seed=1)):
        env = ConsultationEnv([case], kb=kb)
        agent = ScriptedAgent(kb)
        obs, info = env.reset(seed=i, options={"case": case})
        agent.reset(obs, info)
        done = False
        while not done:
            obs, _r, term, trunc, info = env.step(asyncio.run(agent.act(obs, info)))
            done = term or trunc
        referred += bool(info["episode"].outcome.referrals)
    assert referred >= 5


def test_agent_specs_take_no_stray_arguments():
    from clinicgym.agents.errors import AgentSpecError

    with pytest.raises(AgentSpecError, match="takes no argument"):
        make_agent_factory("random:fast", default_kb())
    with pytest.raises(AgentSpecError, match="takes no argument"):
        make_agent_factory("opening#budget=2", default_kb())
    with pytest.raises(AgentSpecError, match="takes options after '#'"):
        make_agent_factory("scripted:fast", default_kb())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("scripted#budget=four", "budget must be a whole number or 'inf'"),
        ("scripted#stop=2", "stop must be a probability"),
        ("scripted#speed=3", "unknown option 'speed'; known: budget, stop"),
        ("scripted#budget", "needs a value"),
    ],
)
def test_scripted_options_are_checked(spec: str, message: str) -> None:
    from clinicgym.agents.errors import AgentSpecError

    with pytest.raises(AgentSpecError, match=message):
        make_agent_factory(spec, default_kb())


def test_scripted_budget_caps_its_questions_and_opening_asks_nothing() -> None:
    from clinicgym.envs.consultation import ConsultationEnv

    kb = default_kb()
    env = ConsultationEnv(kb=kb, max_turns=20)
    for spec, most in (("opening", 0), ("scripted#budget=2", 2), ("scripted#budget=inf", 19)):
        agent = make_agent_factory(spec, kb)()
        for seed in range(6):
            obs, info = env.reset(seed=seed)
            agent.reset(obs, info)
            done, gathered = False, 0
            while not done:
                action = asyncio.run(agent.act(obs, info))
                gathered += type(action).__name__ in ("Ask", "Examine", "OrderTest")
                obs, _, term, trunc, info = env.step(action)
                done = term or trunc
            assert gathered <= most, (spec, seed)
            assert info["episode"].outcome.diagnoses, (spec, seed)
