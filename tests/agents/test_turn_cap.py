"""`#max_turns=N` on a model spec: the clinician asks the model N turns at most, then ends the
consultation without a diagnosis, so a model that never diagnoses (Gemma 3 270M in `make demo`
looped on one examination) costs N requests, not the run's whole turn budget."""

from __future__ import annotations

import asyncio

import pytest

from clinicgym.agents.backends.base import ChatReply
from clinicgym.agents.backends.registry import parse_spec
from clinicgym.agents.errors import AgentSpecError
from clinicgym.agents.llm_clinician import LLMClinician
from clinicgym.envs.consultation import ConsultationEnv


class LoopingBackend:
    """A model that examines the same system for ever."""

    name = "loop"

    def __init__(self) -> None:
        self.calls = 0

    async def chat(self, messages, tools=None, **params):
        self.calls += 1
        return ChatReply(text="EXAMINE: respiratory", prompt_tokens=1, completion_tokens=1)

    async def aclose(self):
        pass


def _play(agent, env):
    """One consultation to its end (each turn in its own event loop); the episode record."""
    obs, info = env.reset(seed=0)
    agent.reset(obs, info)
    for _ in range(100):
        obs, _, term, trunc, info = env.step(asyncio.run(agent.act(obs, info)))
        if term or trunc:
            break
    return info["episode"]


@pytest.mark.parametrize("cap", [None, 3])
def test_the_model_is_asked_at_most_max_turns_times(small_kb, sampler, cap):
    backend = LoopingBackend()
    env = ConsultationEnv(sampler, kb=small_kb, max_turns=10)
    ep = _play(LLMClinician(backend, max_turns=cap), env)
    said = [e.text for e in ep.events if e.actor == "clinician"]
    if cap is None:
        assert backend.calls == 10 and ep.termination.value == "turn_budget"
    else:
        assert backend.calls == 3 and said[-1].startswith("END") and len(said) == 4
        assert ep.termination.value != "turn_budget" and not ep.outcome.diagnoses


def test_the_setting_is_a_spec_option_and_checked():
    assert parse_spec("hf/gemma3-270m#max_turns=8").options["max_turns"] == 8
    with pytest.raises(AgentSpecError, match="max_turns must be >= 1"):
        LLMClinician(LoopingBackend(), max_turns=0)
