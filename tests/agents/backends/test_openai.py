"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1: retries, backoff,
time-outs, concurrency limit, tool calls, API key handling and typed errors."""

from __future__ import annotations

import asyncio
import time

import pytest
from fake_openai import Drop, FakeOpenAIServer, Garbage, Reply, Slow, Status

from clinicgym.agents.backends.openai import OpenAIBackend
from clinicgym.agents.errors import BackendError

HELLO = [{"role": "user", "content": "Hello there"}]


def _backend(url: str, **kw) -> OpenAIBackend:
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("read_timeout", 2.0)
    return OpenAIBackend("test-model", url, **kw)


def _chat(backend: OpenAIBackend, *args, **kw):
    """One chat in its own event loop, closing the loop's connections after it."""

    async def go():
        try:
            return await backend.chat(*args, **kw)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_transient_faults_are_retried_until_an_answer():
    faults = [Status(429), Status(500), Garbage(), Drop(), Status(503)]

    def script(body, n):
        return faults[n] if n < len(faults) else Reply("Do you have a fever?")

    with FakeOpenAIServer(script) as srv:
        reply = _chat(_backend(srv.url), HELLO, max_tokens=16, temperature=0.0)
    assert reply.text == "Do you have a fever?"
    assert reply.retries == 5 and len(srv.requests) == 6
    assert reply.prompt_tokens == 2 and reply.completion_tokens == 5
    body = srv.requests[-1]
    assert body["model"] == "test-model" and body["max_tokens"] == 16
    assert body["temperature"] == 0.0 and "tools" not in body and "seed" not in body


def test_retry_after_is_honoured():
    def script(body, n):
        return Status(429, retry_after=0.3) if n == 0 else Reply("ok")

    with FakeOpenAIServer(script) as srv:
        t = time.perf_counter()
        reply = _chat(_backend(srv.url), HELLO)
        assert time.perf_counter() - t >= 0.3
    assert reply.retries == 1 and reply.latency_s >= 0.3


def test_slow_answers_time_out_and_are_retried():
    def script(body, n):
        return Slow(1.0, Reply("late")) if n == 0 else Reply("on time")

    with FakeOpenAIServer(script) as srv:
        reply = _chat(_backend(srv.url, read_timeout=0.3), HELLO)
    assert reply.text == "on time" and reply.retries == 1


def test_spent_retries_raise_a_typed_error_without_the_key(monkeypatch):
    monkeypatch.setenv("CLINICGYM_TEST_KEY", "sk-secret-123")
    with FakeOpenAIServer(lambda body, n: Status(500)) as srv:
        backend = _backend(srv.url, max_retries=2, api_key_env="CLINICGYM_TEST_KEY")
        with pytest.raises(BackendError, match=r"no answer after 2 retries \(3 attempts: HTTP 500"):
            _chat(backend, HELLO)
        assert srv.auth == ["Bearer sk-secret-123"] * 3
    assert "sk-secret" not in repr(backend) and "sk-secret" not in str(vars(backend))


def test_client_errors_are_not_retried():
    with FakeOpenAIServer(lambda body, n: Status(400)) as srv:
        with pytest.raises(BackendError, match=r"HTTP 400 .* not retried"):
            _chat(_backend(srv.url), HELLO)
        assert len(srv.requests) == 1


def test_unreachable_server_is_a_backend_error():
    backend = _backend("http://127.0.0.1:9/v1", max_retries=1, connect_timeout=0.5)
    with pytest.raises(BackendError, match="connection failed"):
        _chat(backend, HELLO)


def test_proxy_settings_from_the_environment_are_honoured(monkeypatch):
    # a proxy on a closed loopback port: requests sent through it fail, bypassed ones succeed
    for var in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with FakeOpenAIServer(lambda body, n: Reply("direct")) as srv:
        with pytest.raises(BackendError, match="connection failed"):
            _chat(_backend(srv.url, max_retries=0, connect_timeout=0.5), HELLO)
        assert srv.requests == []
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert _chat(_backend(srv.url), HELLO).text == "direct"


def test_concurrency_is_capped_per_backend():
    with FakeOpenAIServer(lambda body, n: Reply("ok", delay=0.05)) as srv:
        backend = _backend(srv.url, concurrency=3)

        async def many():
            try:
                return await asyncio.gather(*(backend.chat(HELLO) for _ in range(12)))
            finally:
                await backend.aclose()

        replies = asyncio.run(many())
    assert len(replies) == 12 and srv.max_in_flight == 3


def test_tool_calls_come_back_parsed():
    tools = [{"type": "function", "function": {"name": "ask", "parameters": {"type": "object"}}}]

    def script(body, n):
        assert body["tools"] == tools and body["tool_choice"] == "auto"
        return Reply(tool=("ask", {"question": "Any chest pain?"}))

    with FakeOpenAIServer(script) as srv:
        reply = _chat(_backend(srv.url), HELLO, tools=tools)
    assert reply.text == "" and reply.finish_reason == "tool_calls"
    assert reply.tool_calls[0].name == "ask"
    assert reply.tool_calls[0].arguments == {"question": "Any chest pain?"}


def test_one_backend_serves_several_event_loops():
    with FakeOpenAIServer(lambda body, n: Reply(f"answer {n}")) as srv:
        backend = _backend(srv.url)
        first = asyncio.run(backend.chat(HELLO))  # left open: the next loop gets a new session
        second = _chat(backend, HELLO)
    assert (first.text, second.text) == ("answer 0", "answer 1")


MALFORMED_200 = {
    "message a string": b'{"choices": [{"message": "Any fever?"}]}',
    "usage a list": b'{"choices": [{"message": {"content": "Any fever?"}}], "usage": [1, 2]}',
    "tool_calls a string": b'{"choices": [{"message": {"content": null, "tool_calls": "ask"}}]}',
    "a tool call a string": b'{"choices": [{"message": {"tool_calls": ["ask"]}}]}',
    "function a list": b'{"choices": [{"message": {"tool_calls": [{"function": []}]}}]}',
    "missing choices": b'{"id": "x", "object": "chat.completion"}',
    "choices an object": b'{"choices": {"message": {"content": "hi"}}}',
    "empty choices": b'{"choices": []}',
    "choice a number": b'{"choices": [7]}',
    "content a number": b'{"choices": [{"message": {"content": 42}}]}',
    "tokens a string": b'{"choices": [{"message": {"content": "hi"}}], '
    b'"usage": {"prompt_tokens": "many"}}',
    "negative tokens": b'{"choices": [{"message": {"content": "hi"}}], '
    b'"usage": {"completion_tokens": -3}}',
    "details a list": b'{"choices": [{"message": {"content": "hi"}}], '
    b'"usage": {"prompt_tokens_details": [0]}}',
    "non-JSON body": b"<html>502 Bad Gateway</html>",
    "a JSON list": b"[1, 2, 3]",
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
}


def test_every_malformed_200_is_retried_then_the_next_answer_is_used():
    """Each malformed 200 goes through the retries (it is the server's fault) and the next
    good answer is used: never an AttributeError or TypeError inside the episode."""
    bodies = list(MALFORMED_200.values())

    def script(_body, n):  # two malformed copies of each body, then a good answer
        return Garbage(bodies[n // 3]) if n % 3 < 2 else Reply(f"answer {n // 3}")

    with FakeOpenAIServer(script) as srv:
        backend = _backend(srv.url)

        async def each():
            try:
                return [await backend.chat(HELLO) for _ in bodies]
            finally:
                await backend.aclose()

        replies = asyncio.run(each())
        assert len(srv.requests) == 3 * len(bodies)
    assert [r.text for r in replies] == [f"answer {i}" for i in range(len(bodies))]
    assert all(r.retries == 2 for r in replies)


def test_a_server_that_only_sends_malformed_200s_is_a_backend_error():
    for name in ("message a string", "usage a list", "tool_calls a string"):
        with FakeOpenAIServer(lambda _body, n, name=name: Garbage(MALFORMED_200[name])) as srv:
            with pytest.raises(BackendError, match=r"no answer after 2 retries .*malformed"):
                _chat(_backend(srv.url, max_retries=2), HELLO)
            assert len(srv.requests) == 3, name


def test_content_parts_and_odd_tool_arguments_are_read_not_retried():
    body = (
        b'{"choices": [{"message": {"content": [{"type": "text", "text": "Any "}, '
        b'{"type": "text", "text": "cough?"}], "tool_calls": [{"function": {"name": "ask", '
        b'"arguments": "[[[not json"}}]}}], "usage": {"prompt_tokens": 3.0}}'
    )
    with FakeOpenAIServer(lambda _body, n: Garbage(body)) as srv:
        reply = _chat(_backend(srv.url), HELLO)
    assert reply.text == "Any cough?" and reply.retries == 0 and reply.prompt_tokens == 3
    # arguments that are not a JSON object are the model's output: kept for the env to reject
    assert reply.tool_calls[0].arguments == {"_raw": "[[[not json"}


def test_half_a_surrogate_pair_in_a_reply_cannot_break_the_run_store():
    """JSON may escape half of an emoji's surrogate pair; json.loads keeps the lone half, which
    no UTF-8 file holds. The reply carries U+FFFD instead, so its episode can be stored."""
    from clinicgym.envs.episode import Event

    body = (
        b'{"model": "m\\ud83d", "choices": [{"finish_reason": "stop\\udc00", "message": '
        b'{"content": "Any chest pain? \\ud83d", "tool_calls": [{"id": "c\\ud800", '
        b'"function": {"name": "ask\\udfff", "arguments": "{\\"question\\": '
        b'\\"pain \\\\ud83d?\\"}"}}]}}]}'
    )
    with FakeOpenAIServer(lambda _body, n: Garbage(body)) as srv:
        reply = _chat(_backend(srv.url), HELLO)
    assert reply.text == "Any chest pain? \ufffd" and reply.model == "m\ufffd"
    call = reply.tool_calls[0]
    assert (call.id, call.name, call.arguments) == (
        "c\ufffd",
        "ask\ufffd",
        {"question": "pain \ufffd?"},
    )
    event = Event(turn=1, actor="clinician", text=reply.text, meta={"reply": reply.model_dump()})
    assert "Any chest pain? \ufffd" in event.model_dump_json()  # it serialises
