"""The LLM clinician: prompts from the env, tool calls and the text protocol, what it records;
and whole runs through `openai:` against a real local server that injects faults."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
from fake_openai import (
    Drop,
    FakeOpenAIServer,
    Garbage,
    Reply,
    Slow,
    Status,
    clinician_turn,
)
from fake_openai import opening as fake_opening

from clinicgym.agents.backends.base import ChatReply, ToolCall
from clinicgym.agents.errors import AgentSpecError
from clinicgym.agents.llm_clinician import LLMClinician, PromptTemplate, tool_schemas
from clinicgym.agents.registry import make_agent_factory
from clinicgym.envs.consultation import TOOLS, ConsultationEnv
from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore

SMALL_KB = Path(__file__).parents[1] / "data" / "kb_small"


class ListBackend:
    """A ChatBackend answering from a list, recording what it was sent."""

    name = "list"

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = []

    async def chat(self, messages, tools=None, **params):
        self.calls.append({"messages": [dict(m) for m in messages], "tools": tools, **params})
        r = self.replies.pop(0)
        return (
            r
            if isinstance(r, ChatReply)
            else ChatReply(text=r, prompt_tokens=10, completion_tokens=3, latency_s=0.01)
        )

    async def aclose(self):
        pass


def _play(agent, env, seed=0):
    async def go():
        obs, info = env.reset(seed=seed)
        agent.reset(obs, info)
        while True:
            out = await agent.act(obs, info)
            obs, _, term, trunc, info = env.step(out)
            if term or trunc:
                return info["episode"]

    return asyncio.run(go())


def test_text_protocol_episode_records_requests_and_replies(small_kb, sampler):
    backend = ListBackend(
        ["Do you have a fever?", "EXAMINE: respiratory", "DIAGNOSIS: Migraine without aura (60%)"]
    )
    env = ConsultationEnv(sampler, kb=small_kb, max_turns=5)
    ep = _play(LLMClinician(backend, params={"max_tokens": 32, "temperature": 0}), env)
    assert ep.outcome.diagnoses[0].name == "Migraine without aura" and ep.turns == 3
    first = backend.calls[0]["messages"]
    # system prompt, the template's example consultation (3 exchanges), then the opening
    assert [m["role"] for m in first] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert first[6]["content"] == "DIAGNOSIS: Ankle sprain; Ankle fracture"
    assert "DIAGNOSIS:" in first[0]["content"] and "New consultation" in first[-1]["content"]
    assert backend.calls[0]["max_tokens"] == 32 and backend.calls[0]["tools"] is None
    third = backend.calls[2]["messages"]
    assert [m["role"] for m in third[8:]] == ["assistant", "user", "assistant", "user"]
    assert third[8]["content"] == "Do you have a fever?"
    clin = [e for e in ep.events if e.actor == "clinician"]
    assert [e.meta["request"]["messages"] for e in clin] == [8, 10, 12]
    assert clin[0].meta["request"]["added"] == first  # the system prompt is recorded once
    assert [m["role"] for m in clin[1].meta["request"]["added"]] == ["user"]  # reply: last meta
    assert clin[2].meta["reply"]["text"].startswith("DIAGNOSIS")
    assert clin[0].meta["prompt_tokens"] == 10 and clin[0].meta["latency_s"] == 0.01


def test_the_clinician_never_sees_the_case(small_kb, sampler):
    backend = ListBackend(["Tell me more."] * 3)
    env = ConsultationEnv(sampler, kb=small_kb, max_turns=3)
    ep = _play(LLMClinician(backend), env, seed=4)
    case = env.case
    sent = json.dumps([c["messages"] for c in backend.calls])
    for secret in (case.diagnosis.name, case.diagnosis.code, case.phi.name, case.id):
        assert secret not in sent
    assert ep.termination == "turn_budget"


def test_tool_calls_go_to_the_env_and_results_come_back_as_tool_messages(small_kb, sampler):
    calls = [
        ChatReply(
            tool_calls=[ToolCall(id="c1", name="examine", arguments={"system": "respiratory"})]
        ),
        ChatReply(
            tool_calls=[
                ToolCall(
                    id="c2",
                    name="diagnose",
                    arguments={
                        "diagnoses": [{"name": "Community-acquired pneumonia", "confidence": 0.7}]
                    },
                )
            ]
        ),
    ]
    backend = ListBackend(calls)
    env = ConsultationEnv(sampler, kb=small_kb, max_turns=5)
    ep = _play(LLMClinician(backend, use_tools=True), env)
    assert [e.action.tool for e in ep.events if e.actor == "clinician"] == ["examine", "diagnose"]
    assert [t["function"]["name"] for t in backend.calls[0]["tools"]] == list(TOOLS)
    second = backend.calls[1]["messages"]
    assert second[2]["tool_calls"][0]["function"]["name"] == "examine"
    assert second[3]["role"] == "tool" and second[3]["tool_call_id"] == "c1"
    assert ep.outcome.diagnoses[0].confidence == 0.7


def test_tool_schemas_are_plain_json_schema():
    tools = {
        t["function"]["name"]: t["function"] for t in tool_schemas(["ask", "diagnose", "refer"])
    }
    assert tools["ask"]["parameters"]["required"] == ["question"]
    diag = tools["diagnose"]["parameters"]["properties"]["diagnoses"]
    assert diag["items"]["properties"]["name"]["type"] == "string"  # $ref inlined
    assert "$ref" not in json.dumps(tools) and "title" not in json.dumps(tools)
    assert tools["refer"]["parameters"]["properties"]["urgency"]["enum"] == [
        "routine",
        "urgent",
        "emergency",
    ]


def test_history_window_keeps_system_opening_and_recent_turns(small_kb, sampler):
    backend = ListBackend(
        ["Any fever?", "Any cough?", "Any pain?", "DIAGNOSIS: Migraine without aura"]
    )
    env = ConsultationEnv(sampler, kb=small_kb, max_turns=6)
    _play(LLMClinician(backend, history_turns=1), env)
    last = backend.calls[3]["messages"]
    assert len(last) == 8 + 2 and "New consultation" in last[7]["content"]
    assert [m["role"] for m in last[8:]] == ["assistant", "user"]
    assert last[8]["content"] == "Any pain?"
    with pytest.raises(AgentSpecError, match="history_turns must be >= 1"):
        LLMClinician(backend, history_turns=0)


def test_a_custom_template_words_the_prompt(tmp_path, small_kb, sampler):
    t = tmp_path / "terse.j2"
    t.write_text(
        '{% if part == "system" %}Doctor, {{ patient.age }} y.{% else %}>> {{ observation }} ({{ turns_left }}){% endif %}'
    )
    backend = ListBackend(["DIAGNOSIS: Migraine without aura"])
    env = ConsultationEnv(sampler, kb=small_kb, max_turns=4)
    _play(LLMClinician(backend, template=PromptTemplate(t)), env)
    system, user = backend.calls[0]["messages"]
    assert system["content"] == f"Doctor, {env.case.age} y." and user["content"].endswith("(4)")
    bad = tmp_path / "bad.j2"
    bad.write_text("{{ nope }}")
    with pytest.raises(AgentSpecError, match="'nope' is undefined"):
        _play(LLMClinician(backend, template=PromptTemplate(bad)), env)


def test_spec_settings_are_checked_and_seeds_vary_per_episode_and_turn(small_kb):
    with pytest.raises(
        AgentSpecError, match=r"unknown setting 'batchsize=3'; allowed: .*concurrency"
    ):
        make_agent_factory("openai:m@http://127.0.0.1:1/v1#batchsize=3", small_kb)
    with pytest.raises(AgentSpecError, match="setting 'tools': 'maybe' is not a boolean"):
        make_agent_factory("openai:m@http://127.0.0.1:1/v1#tools=maybe", small_kb)
    f = make_agent_factory(
        "openai:m@http://127.0.0.1:1/v1#tools=1,temperature=0.5",
        small_kb,
        {"temperature": 0.1, "max_tokens": 64, "model_seed": 3},
    )
    assert f.params == {"max_tokens": 64, "temperature": 0.5, "seed": 3} and f.use_tools
    assert f.backend.base_url == "http://127.0.0.1:1/v1" and f.backend.model == "m"


# ---- whole runs through `openai:` against a real server with injected faults ----------------


def _model(body, n):
    """A scripted 'model': asks, examines, then diagnoses from the opening's words."""
    msgs = body["messages"]
    turn = clinician_turn(msgs)
    opening = msgs[fake_opening(msgs)]["content"].lower()
    if turn == 0:
        return Reply("Do you have a fever?")
    if turn == 1:
        return Reply("EXAMINE: respiratory")
    guess = (
        "Community-acquired pneumonia"
        if "cough" in opening or "breath" in opening
        else "Lower urinary tract infection"
        if "urin" in opening or "wee" in opening
        else "Migraine without aura"
    )
    return Reply(f"DIAGNOSIS: {guess} (60%)")


class Faulty:
    """The same model behind a flaky server: each request of a conversation first meets up to
    three faults (429, 500, a slow answer, malformed JSON, a dropped connection, 502), then is
    answered; so every episode can finish within its retry budget."""

    FAULTS = (Status(429, retry_after=0.01), Status(500), Slow(1.0), Garbage(), Drop(), Status(502))

    def __init__(self):
        self.seen: dict[tuple[str, int], int] = {}
        self.lock = threading.Lock()

    def __call__(self, body, n):
        msgs = body["messages"]
        key = (msgs[fake_opening(msgs)]["content"], len(msgs))
        with self.lock:
            tries = self.seen[key] = self.seen.get(key, -1) + 1
        if tries < (n % 4):
            return self.FAULTS[(n + tries) % len(self.FAULTS)]
        return _model(body, n)


def _doomed(body, n):
    """Conversations about women get no answer after their first turn, whatever the retries."""
    msgs = body["messages"]
    if "woman" in msgs[fake_opening(msgs)]["content"] and clinician_turn(msgs) > 0:
        return Status(503)
    return _model(body, n)


def _run(tmp_path, name, url, **kw):
    spec = RunSpec(
        agents=[f"openai:clinician@{url}#retries=6,timeout=0.4"],
        cases=12,
        seed=5,
        kb_dir=str(SMALL_KB),
        out=tmp_path / name,
        concurrency=8,
        max_tokens=24,
        **kw,
    )
    ctx = prepare(spec)
    for f in ctx.factories.values():
        f.backend.backoff_base = 0.01
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    asyncio.run(execute(ctx, store))
    store.close()
    summary = finalise(ctx, store)
    (agent,) = summary["agents"].values()
    return agent, {e.case_id: e for e in store.iter_episodes()}


@pytest.mark.integration
def test_faults_never_change_results_and_spent_retries_are_errors(tmp_path):
    with FakeOpenAIServer(_model) as clean:
        s_clean, clean_eps = _run(tmp_path, "clean", clean.url)
    with FakeOpenAIServer(Faulty()) as flaky:
        s_flaky, flaky_eps = _run(tmp_path, "flaky", flaky.url)
    assert {"Status", "Slow", "Garbage", "Drop"} <= set(flaky.answers)
    # every episode completed, with the same transcript and metrics as on the clean server
    assert s_flaky["completed"] == 12 and s_flaky["errors"] == 0
    assert {k: e.transcript() for k, e in flaky_eps.items()} == {
        k: e.transcript() for k, e in clean_eps.items()
    }
    # every metric but the time spent waiting (retries and slow replies cost time, nothing else)
    means = lambda s: {k: (m["mean"], m["n"]) for k, m in s["metrics"].items() if k != "latency_s"}  # noqa: E731
    assert means(s_flaky) == means(s_clean)
    usage = s_flaky["usage"]
    assert usage["requests"] == 36 and usage["retries"] > 20 and usage["prompt_tokens"] > 0
    assert s_clean["usage"]["retries"] == 0
    # a server that never answers some conversations: those episodes are errors, not wrong answers
    with FakeOpenAIServer(_doomed) as doomed:
        s_doom, doom_eps = _run(tmp_path, "doomed", doomed.url)
    a = s_doom
    errored = [e for e in doom_eps.values() if e.status == "error"]
    assert errored and a["errors"] == len(errored) and a["completed"] == 12 - len(errored)
    for e in errored:
        assert e.termination == "backend_error" and e.metrics == {} and not e.outcome.diagnoses
        assert e.turns == 1  # the transcript up to the failure is kept
        assert "BackendError" in e.errors[0] and "no answer after 6 retries" in e.errors[0]
    for k, e in doom_eps.items():
        if e.status == "completed":
            assert e.transcript() == clean_eps[k].transcript()
    assert a["metrics"]["diagnostic_accuracy"]["n"] == 12 - len(errored)
