"""The one backend registry: provider specs, keys and base URLs from the environment and ./.env,
near misses, and the Anthropic and Gemini APIs spoken against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from clinicgym.agents.backends.anthropic import AnthropicBackend
from clinicgym.agents.backends.gemini import GeminiBackend
from clinicgym.agents.backends.openai import OpenAIBackend
from clinicgym.agents.backends.registry import (
    PROVIDER_ENV,
    backend_names,
    display_name,
    make_backend,
    parse_spec,
    suggest,
    unknown_model_message,
)
from clinicgym.agents.errors import AgentSpecError
from clinicgym.agents.registry import make_agent_factory
from tests.agents.fake_openai import FakeOpenAIServer, Reply

BASELINES = ["human", "opening", "oracle", "random", "scripted", "unsafe"]
ENV_VARS = sorted({v for e in PROVIDER_ENV.values() for v in (*e.key, *e.url)})


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No provider variable from the machine, and a working directory without a .env."""
    for v in ENV_VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.chdir(tmp_path)


def _chat(backend, messages, tools=None, **params):
    async def go():
        try:
            return await backend.chat(messages, tools, **params)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_every_provider_spec_resolves_to_its_backend_and_default_url(monkeypatch):
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(key, "k")
    want = {
        "openai/gpt-4o": (OpenAIBackend, "https://api.openai.com/v1"),
        "ollama/llama3.2": (OpenAIBackend, "http://localhost:11434/v1"),
        "vllm/Qwen/Qwen3-8B": (OpenAIBackend, "http://localhost:8000/v1"),
        "anthropic/claude-sonnet-4-5": (AnthropicBackend, "https://api.anthropic.com"),
        "google/gemini-2.5-flash": (GeminiBackend, "https://generativelanguage.googleapis.com"),
    }
    for spec, (cls, url) in want.items():
        backend = make_backend(spec)
        assert type(backend) is cls and backend.base_url == url, spec
    assert make_backend("vllm/Qwen/Qwen3-8B").model == "Qwen/Qwen3-8B"  # '/' inside a model
    assert {"openai", "anthropic", "google", "vllm", "hf", "ollama", "langchain"} <= set(
        backend_names()
    )


def test_the_earlier_forms_are_unchanged(monkeypatch):
    b = make_backend("openai:m@http://127.0.0.1:9/v1")
    assert b.name == "openai:m@http://127.0.0.1:9/v1" and b.api_key_env == "OPENAI_API_KEY"
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    assert make_backend("openai:gpt-4o").base_url == "https://api.openai.com/v1"
    p = parse_spec("hf:smollm2#batch=4")
    assert p.kind.name == "hf" and p.target == "smollm2"
    assert p.options == {"max_tokens": 32, "one_line": True, "batch": 4}  # smollm2's defaults
    assert parse_spec("hf/smollm2").options == {"max_tokens": 32, "one_line": True}
    assert parse_spec("vllm:/models/x").kind.prefixes == ("vllm:",)  # the in-process engine
    assert parse_spec("langchain:lc_models:make").target == "lc_models:make"
    # run-wide settings, overridden by the spec's own
    p = parse_spec("openai/m#temperature=0.5", {"temperature": 0.0, "max_tokens": 8})
    assert p.options == {"temperature": 0.5, "max_tokens": 8}


def test_base_urls_and_keys_come_from_each_providers_variables(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("VLLM_BASE_URL", "http://127.0.0.1:2/v1")
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:3")  # Ollama's own form: host:port
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:4/v1")  # '/v1' is not doubled
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:5")
    monkeypatch.setenv("GEMINI_API_KEY", "g1")
    assert make_backend("openai/m").base_url == "http://127.0.0.1:1/v1"
    assert make_backend("vllm/m").base_url == "http://127.0.0.1:2/v1"
    assert make_backend("vllm/m").api_key_env == "VLLM_API_KEY"
    assert make_backend("ollama/m").base_url == "http://127.0.0.1:3/v1"
    assert make_backend("anthropic/m").base_url == "http://127.0.0.1:4"
    g = make_backend("google/m")
    assert g.base_url == "http://127.0.0.1:5" and g.api_key_env == "GEMINI_API_KEY"
    monkeypatch.setenv("GOOGLE_API_KEY", "g2")  # google-genai: GOOGLE_API_KEY wins
    assert make_backend("google/m").api_key_env == "GOOGLE_API_KEY"
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://127.0.0.1:6/v1")  # inspect_ai's, first
    assert make_backend("ollama/m").base_url == "http://127.0.0.1:6/v1"
    # '@URL' in the spec wins over the variable; '#api_key_env' over the provider's key name
    b = make_backend("openai/m@http://127.0.0.1:7/v1#api_key_env=MY_KEY")
    assert b.base_url == "http://127.0.0.1:7/v1" and b.api_key_env == "MY_KEY"
    assert make_backend("anthropic/claude-x@20240620").model == "claude-x@20240620"


def test_a_dotenv_file_in_the_working_directory_is_read_and_the_environment_wins(
    monkeypatch, tmp_path
):
    with FakeOpenAIServer(lambda body, n: Reply("hello")) as srv:
        (tmp_path / ".env").write_text(
            f"# keys\nOPENAI_BASE_URL={srv.url}\nOPENAI_API_KEY='sk-from-dotenv'\n"
            "ANTHROPIC_BASE_URL=http://127.0.0.1:1\n"
        )
        monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:2")
        backend = make_backend("openai/gpt-4o")
        assert backend.base_url == srv.url
        reply = _chat(backend, [{"role": "user", "content": "hi"}])
        assert make_backend("anthropic/m").base_url == "http://127.0.0.1:2"
    assert reply.text == "hello"
    assert srv.auth == ["Bearer sk-from-dotenv"] and srv.requests[0]["model"] == "gpt-4o"


def test_near_misses_get_a_did_you_mean_and_the_known_forms():
    assert suggest("scriptd", BASELINES) == "scripted"
    assert suggest("scriptd#budget=4", BASELINES) == "scripted#budget=4"
    assert suggest("opneai/gpt-4o", BASELINES) == "openai/gpt-4o"
    assert suggest("opneai:m@http://127.0.0.1:9/v1", BASELINES) == "openai:m@http://127.0.0.1:9/v1"
    assert suggest("antropic/claude-x", BASELINES) == "anthropic/claude-x"
    assert suggest("gpt-4o", BASELINES) == "openai/gpt-4o"
    assert suggest("claude-sonnet-4-5", BASELINES) == "anthropic/claude-sonnet-4-5"
    assert suggest("openai", BASELINES) == "openai/MODEL"
    assert suggest("zzzz", BASELINES) is None
    msg = unknown_model_message("zzzz", BASELINES)
    assert "did you mean" not in msg
    for form in ("scripted", "openai/gpt-4o", "anthropic/", "google/", "ollama/", "hf/smollm2"):
        assert form in msg
    with pytest.raises(AgentSpecError, match="did you mean 'scripted'"):
        make_agent_factory("scriptd", None)  # type: ignore[arg-type]
    with pytest.raises(AgentSpecError, match="did you mean 'openai/gpt-4o'"):
        make_agent_factory("opneai/gpt-4o", None)  # type: ignore[arg-type]
    with pytest.raises(AgentSpecError, match=r"unknown setting 'temprature=0.2'.*'temperature'"):
        parse_spec("openai/gpt-4o#temprature=0.2")
    with pytest.raises(AgentSpecError, match="names no model"):
        parse_spec("anthropic/")


def test_a_hosted_api_without_a_key_is_refused_before_any_episode(monkeypatch):
    for spec, names in (
        ("openai/gpt-4o", "OPENAI_API_KEY"),
        ("anthropic/claude-x", "ANTHROPIC_API_KEY"),
        ("google/gemini-x", "GOOGLE_API_KEY or GEMINI_API_KEY"),
    ):
        with pytest.raises(AgentSpecError, match=f"no API key: set {names}"):
            make_backend(spec)
    # a local server needs no key, and neither does a hosted API's address given elsewhere
    assert make_backend("ollama/llama3.2").api_key_env == "OLLAMA_API_KEY"
    assert make_backend("openai/m@http://127.0.0.1:9/v1").base_url == "http://127.0.0.1:9/v1"
    monkeypatch.setenv("GEMINI_API_KEY", "g")
    assert make_backend("google/gemini-x").api_key_env == "GEMINI_API_KEY"


def test_display_names_never_show_a_base_url():
    assert display_name("openai:m@http://10.0.0.1:8000/v1") == "openai:m"
    assert display_name("openai:m@https://h/v1#tools=1") == "openai:m#tools=1"
    assert display_name("openai/gpt-4o") == "openai/gpt-4o"
    assert display_name("scripted#budget=4") == "scripted#budget=4"


def test_anthropic_messages_api_against_a_loopback_server(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")

    def script(body, n):
        return Reply("Any cough?") if n == 0 else Reply(tool=("diagnose", {"dx": "asthma"}))

    with FakeOpenAIServer(script) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url.removesuffix("/v1"))
        backend = make_backend("anthropic/claude-test")
        first = _chat(
            backend,
            [{"role": "system", "content": "You are a doctor."}, {"role": "user", "content": "Hi"}],
            temperature=0.0,
            seed=3,
        )
        tools = [{"type": "function", "function": {"name": "ask", "parameters": {}}}]
        history = [
            {"role": "system", "content": "You are a doctor."},
            {"role": "user", "content": "Hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "function": {"name": "ask", "arguments": '{"q": "cough?"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "No cough."},
            {"role": "user", "content": "Go on."},
        ]
        second = _chat(backend, history, tools, max_tokens=50)
    assert srv.paths == ["/v1/messages", "/v1/messages"]
    h = srv.headers[0]
    assert h["x-api-key"] == "sk-ant-test" and h["anthropic-version"] == "2023-06-01"
    assert "authorization" not in h
    b0, b1 = srv.requests
    assert b0["system"] == "You are a doctor." and b0["max_tokens"] == 1024
    assert b0["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert b0["temperature"] == 0.0 and "seed" not in b0  # the Messages API has no seed
    assert first.text == "Any cough?" and first.prompt_tokens > 0
    assert b1["max_tokens"] == 50 and b1["tools"][0]["name"] == "ask"
    assert b1["tools"][0]["input_schema"] == {"type": "object", "properties": {}}
    assert [m["role"] for m in b1["messages"]] == ["user", "assistant", "user"]
    assert b1["messages"][1]["content"] == [
        {"type": "tool_use", "id": "c1", "name": "ask", "input": {"q": "cough?"}}
    ]
    assert b1["messages"][2]["content"] == [  # the result and the next words: one user turn
        {"type": "tool_result", "tool_use_id": "c1", "content": "No cough."},
        {"type": "text", "text": "Go on."},
    ]
    assert second.tool_calls[0].name == "diagnose"
    assert second.tool_calls[0].arguments == {"dx": "asthma"}
    assert second.finish_reason == "tool_use"


def test_gemini_generate_content_against_a_loopback_server(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "g-test")

    def script(body, n):
        return Reply("Do you smoke?") if n == 0 else Reply(tool=("diagnose", {"dx": "copd"}))

    with FakeOpenAIServer(script) as srv:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", srv.url.removesuffix("/v1"))
        backend = make_backend("google/gemini-test")
        first = _chat(
            backend,
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            max_tokens=20,
            temperature=0.0,
            seed=3,
        )
        history = [
            {"role": "user", "content": "Hi"},
            {
                "role": "assistant",
                "content": "Let me ask.",
                "tool_calls": [{"id": "c9", "function": {"name": "ask", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c9", "content": "Yes, 20 a day."},
        ]
        tools = [{"type": "function", "function": {"name": "ask", "description": "a question"}}]
        second = _chat(backend, history, tools)
    assert srv.paths == ["/v1beta/models/gemini-test:generateContent"] * 2
    assert srv.headers[0]["x-goog-api-key"] == "g-test"
    b0, b1 = srv.requests
    assert b0["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert b0["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]
    assert b0["generationConfig"] == {"maxOutputTokens": 20, "temperature": 0.0, "seed": 3}
    assert first.text == "Do you smoke?" and first.model == "gemini-test"
    assert [c["role"] for c in b1["contents"]] == ["user", "model", "user"]
    assert b1["contents"][1]["parts"] == [
        {"text": "Let me ask."},
        {"functionCall": {"name": "ask", "args": {}}},
    ]
    response = b1["contents"][2]["parts"][0]["functionResponse"]
    assert response == {"name": "ask", "response": {"content": "Yes, 20 a day."}}
    assert b1["tools"][0]["functionDeclarations"][0]["name"] == "ask"
    assert second.tool_calls[0].name == "diagnose"
    assert second.tool_calls[0].arguments == {"dx": "copd"}


def test_the_judge_and_the_patient_are_built_by_the_same_registry(monkeypatch, tmp_path):
    from clinicgym.patients.knowledge.kb import default_kb
    from clinicgym.policies.errors import PolicyError
    from clinicgym.runs.errors import RunError
    from clinicgym.runs.judge import judge_from_spec
    from clinicgym.runs.patient_setup import make_patient_maker

    with FakeOpenAIServer(lambda body, n: Reply("PASS")) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        judge = judge_from_spec("anthropic/claude-judge")
        assert asyncio.run(judge([{"role": "user", "content": "ok?"}])) == "PASS"
        monkeypatch.setenv("OLLAMA_HOST", srv.url.removesuffix("/v1"))
        maker = make_patient_maker("ollama/llama3.2", default_kb(), tmp_path, None, "off")
        assert maker is not None and maker.backend.base_url == srv.url
        asyncio.run(maker.aclose())
    assert srv.paths == ["/v1/messages"] and srv.requests[0]["temperature"] == 0.0
    with pytest.raises(PolicyError, match="did you mean 'openai/gpt-4o'"):
        judge_from_spec("opneai/gpt-4o")
    with pytest.raises(RunError, match=r"--patient: unknown patient spec 'grounde'.*'grounded'"):
        make_patient_maker("grounde", default_kb(), tmp_path, None, "off")


def test_agent_specs_are_checked_without_building_anything():
    from clinicgym.agents.registry import check_agent_spec

    for ok in ("scripted#budget=4", "human", "openai/gpt-4o", "hf/not-on-this-machine"):
        check_agent_spec(ok)  # no key, no model file: nothing is loaded or contacted
    for bad, why in (("scriptd", "did you mean 'scripted'"), ("hf/x#bach=2", "'batch'")):
        with pytest.raises(AgentSpecError, match=why):
            check_agent_spec(bad)
