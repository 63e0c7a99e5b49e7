"""The human player: reads a person's lines, shows the env's text, /help, end of input."""

from __future__ import annotations

import asyncio

from clinicgym.agents.human import HumanAgent
from clinicgym.envs.consultation import ConsultationEnv


def _play(lines, env):
    shown, prompts = [], []
    feed = iter(lines)

    async def ask(prompt):
        prompts.append(prompt)
        return next(feed, None)

    async def go():
        agent = HumanAgent(ask=ask, show=shown.append)
        obs, info = env.reset(seed=2)
        agent.reset(obs, info)
        while True:
            obs, _, term, trunc, info = env.step(await agent.act(obs, info))
            if term or trunc:
                return info["episode"]

    return asyncio.run(go()), shown, prompts


def test_a_person_plays_with_the_text_protocol(small_kb, sampler):
    env = ConsultationEnv(sampler, kb=small_kb, max_turns=6)
    ep, shown, prompts = _play(
        [
            "Do you have a fever?",
            "/help",
            "   ",
            "EXAMINE: respiratory",
            "DIAGNOSIS: Migraine without aura (80%)",
        ],
        env,
    )
    assert [e.action.tool for e in ep.events if e.actor == "clinician"] == [
        "ask",
        "examine",
        "diagnose",
    ]
    assert ep.outcome.diagnoses[0].confidence == 0.8
    assert prompts[0] == "[6 turns left] > " and len(prompts) == 5  # /help and blank asked again
    assert sum("DIAGNOSIS: most likely" in s for s in shown) == 2  # at start and on /help
    assert any(s.startswith("Examination (respiratory)") for s in shown)


def test_end_of_input_ends_the_consultation(small_kb, sampler):
    env = ConsultationEnv(sampler, kb=small_kb, max_turns=6)
    ep, _, _ = _play(["Any cough?"], env)
    assert ep.termination == "ended" and ep.turns == 2
