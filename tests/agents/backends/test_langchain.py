"""LangChain both ways: a BaseChatModel as the clinician's backend (`langchain:module:factory`),
and clinicgym's OpenAI-compatible backend as a BaseChatModel, against a real local server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("langchain_core", reason="the langchain extra is not installed")

from fake_openai import FakeOpenAIServer, Reply
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool

from clinicgym.agents.backends.langchain import BackendChatModel, LangChainBackend
from clinicgym.agents.backends.openai import OpenAIBackend
from clinicgym.agents.errors import BackendError
from clinicgym.agents.llm_clinician import LLMClinician
from clinicgym.agents.registry import make_agent_factory
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore

SMALL_KB = Path(__file__).parents[2] / "data" / "kb_small"


def test_a_langchain_model_plays_whole_episodes(tmp_path):
    spec = RunSpec(
        agents=["langchain:lc_models:scripted_doctor"],
        cases=3,
        seed=2,
        kb_dir=str(SMALL_KB),
        out=tmp_path / "run",
        concurrency=1,
    )
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    asyncio.run(execute(ctx, store))
    store.close()
    (agent,) = finalise(ctx, store)["agents"].values()
    assert agent["completed"] == 3 and agent["usage"]["requests"] == 9
    for ep in store.iter_episodes():
        assert [e.action.tool for e in ep.events if e.actor == "clinician"] == [
            "ask",
            "examine",
            "diagnose",
        ]


def test_bad_langchain_specs_say_what_is_wrong(small_kb):
    from clinicgym.agents.errors import AgentSpecError

    with pytest.raises(AgentSpecError, match="expected 'langchain:module:factory'"):
        make_agent_factory("langchain:lc_models", small_kb)
    with pytest.raises(AgentSpecError, match="cannot import 'no_such_module'"):
        make_agent_factory("langchain:no_such_module:f", small_kb)
    with pytest.raises(BackendError, match="returned str, not a LangChain BaseChatModel"):
        make_agent_factory("langchain:lc_models:not_a_model", small_kb)


def test_our_backend_as_a_langchain_model_with_tools_round_trip(small_kb, sampler):
    def script(body, n):
        if body.get("tools"):
            return Reply(tool=("diagnose", {"diagnoses": [{"name": "Migraine without aura"}]}))
        return Reply(f"echo: {body['messages'][-1]['content']}")

    with FakeOpenAIServer(script) as srv:
        chat = BackendChatModel(backend=OpenAIBackend("m", srv.url), params={"max_tokens": 9})
        msg = chat.invoke([SystemMessage(content="be brief"), HumanMessage(content="hi")])
        assert msg.content == "echo: hi" and msg.usage_metadata["input_tokens"] == 3
        assert srv.requests[0]["max_tokens"] == 9
        assert [m["role"] for m in srv.requests[0]["messages"]] == ["system", "user"]

        @tool
        def diagnose(diagnoses: list[str]) -> str:
            """Commit to a diagnosis."""
            return "ok"

        call = chat.bind_tools([diagnose]).invoke("what is it?")
        assert call.tool_calls[0]["name"] == "diagnose"
        assert srv.requests[1]["tools"][0]["function"]["name"] == "diagnose"
        # and back again: the LangChain model as a clinicgym backend, tool calls included
        backend = LangChainBackend(BackendChatModel(backend=OpenAIBackend("m", srv.url)))
        env = ConsultationEnv(sampler, kb=small_kb, max_turns=3)

        async def play():
            agent = LLMClinician(backend, use_tools=True)
            obs, info = env.reset(seed=1)
            agent.reset(obs, info)
            return env.step(await agent.act(obs, info))

        _, _, terminated, _, info = asyncio.run(play())
    assert terminated and info["episode"].outcome.diagnoses[0].name == "Migraine without aura"
