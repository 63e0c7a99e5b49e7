"""`openai:MODEL@BASE_URL`: any OpenAI-compatible chat server (vLLM, SGLang, Ollama, llama.cpp's
server, hosted APIs) over one pooled aiohttp session per event loop.

Timeouts are set, never defaulted; 429s, 5xx answers, connection failures, time-outs and
malformed bodies are retried with jittered exponential backoff (honouring Retry-After); a
semaphore caps the requests in flight. The API key is read from an environment variable when the
first request is made and is never logged, repr'd or put into an error message.

aiohttp rather than httpx (used elsewhere for plain requests): at concurrency 64 an httpx request
cost 0.84-0.96 ms of client CPU against aiohttp's 0.24-0.26 ms on this machine (3,000 requests to
the 50 ms test server), and that CPU is what caps episodes per second (docs/agents.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
import urllib.parse
import urllib.request
from typing import Any

import aiohttp
from pydantic import ValidationError

from clinicgym.agents.backends.base import ChatReply, Message, ToolCall
from clinicgym.agents.errors import BackendError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529})
"""Statuses worth another try: time-outs, conflicts, rate limits and server-side failures."""
PARAMS = ("max_tokens", "temperature", "top_p", "seed", "stop")


class Retryable(Exception):
    """One failed attempt that may succeed if tried again."""

    def __init__(self, what: str, wait: float | None = None) -> None:
        super().__init__(what)
        self.wait = wait


class OpenAIBackend:
    """Chat completions from an OpenAI-compatible server; safe to share across episodes.
    Providers with their own JSON API subclass it and override `endpoint`, `auth_headers`,
    `body` and `parse`, keeping its pooling, time-outs and retries."""

    endpoint = "/chat/completions"
    """The path after the base URL that answers a chat request."""

    def __init__(
        self,
        model: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 64,
        max_retries: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if concurrency < 1 or max_retries < 0:
            raise ValueError(
                f"concurrency must be >= 1 and max_retries >= 0, got "
                f"{concurrency} and {max_retries}"
            )
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.name = f"openai:{model}@{self.base_url}"
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.max_retries = max_retries
        # sock_read: the longest wait for the next bytes of an answer (a slow first token
        # included); no total cap, so a long generation that keeps streaming is not cut off
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.extra_body = dict(extra_body or {})
        self._rng = random.Random()
        self._session_: aiohttp.ClientSession | None = None
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.name!r}, concurrency={self.concurrency})"

    def _session(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        """The session and semaphore of the running event loop (each `asyncio.run` gets its
        own; a session cannot outlive its loop)."""
        loop = asyncio.get_running_loop()
        if self._session_ is None or self._loop is not loop or self._sem is None:
            self._session_ = aiohttp.ClientSession(
                headers={"Content-Type": "application/json", **self.auth_headers()},
                timeout=self.timeout,
                # one connection per request in flight; aiohttp sets TCP_NODELAY itself
                connector=aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=0),
                proxy=_env_proxy(self.base_url),
            )
            self._sem = asyncio.Semaphore(self.concurrency)
            self._loop = loop
        return self._session_, self._sem

    def auth_headers(self) -> dict[str, str]:
        """The key header, read from `api_key_env` when a session opens (never stored)."""
        key = os.environ.get(self.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def parse(self, data: dict[str, Any]) -> ChatReply:
        """A ChatReply from one answer's JSON body (providers with their own API override it)."""
        return _parse(data, self.model)

    def body(
        self, messages: list[Message], tools: list[dict[str, Any]] | None, params: dict[str, Any]
    ) -> dict[str, Any]:
        """The request body: model, messages, sampling parameters that are set, tools if any."""
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        for k in PARAMS:
            if params.get(k) is not None:
                body[k] = params[k]
        if tools:
            body["tools"] = tools
            body["tool_choice"] = "auto"
        body.update(self.extra_body)
        return body

    async def chat(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> ChatReply:
        """One chat completion, retried on transient failures; raises BackendError when spent.

        Retries (408, 409, 429, 5xx, time-outs, dropped connections, malformed bodies) wait
        the server's Retry-After or a seeded full-jitter exponential backoff. Hand-written, not
        tenacity: an `AsyncRetrying` loop cost ~185 us of CPU per successful call against ~1 us
        for this one (20,000 calls, same machine), on a path held to a few milliseconds of
        client CPU per request, and it would still need a custom wait for Retry-After."""
        session, sem = self._session()
        payload = json.dumps(self.body(messages, tools, params)).encode()
        started = time.perf_counter()
        failures: list[str] = []
        async with sem:
            for attempt in range(self.max_retries + 1):
                try:
                    data = await self._attempt(session, payload)
                    reply = self.parse(data)
                except Retryable as e:
                    failures.append(str(e))
                    if attempt == self.max_retries:
                        break
                    cap = min(self.backoff_max, self.backoff_base * 2**attempt)
                    wait = e.wait if e.wait is not None else self._rng.uniform(0, cap)
                    await asyncio.sleep(min(wait, self.backoff_max))
                    continue
                reply.retries = attempt
                reply.latency_s = time.perf_counter() - started
                return reply
        raise BackendError(
            f"{self.name}: no answer after {self.max_retries} retries "
            f"({len(failures)} attempts: {'; '.join(failures[-3:])}); "
            "the episode is recorded as a backend_error (an infrastructure error)"
        )

    async def _attempt(self, session: aiohttp.ClientSession, payload: bytes) -> dict[str, Any]:
        url = f"{self.base_url}{self.endpoint}"
        try:
            async with session.post(url, data=payload) as resp:
                status = resp.status
                content = await resp.read()
                wait = _retry_after(resp.headers.get("retry-after"))
        except TimeoutError as e:  # aiohttp's connect and read time-outs are TimeoutErrors
            raise Retryable(f"timed out ({type(e).__name__})") from None
        except aiohttp.InvalidURL as e:
            raise BackendError(f"{self.name}: invalid URL {e}") from None
        except aiohttp.ClientError as e:  # refused, reset, dropped mid-answer, bad framing
            raise Retryable(f"connection failed ({type(e).__name__}: {e})") from None
        if status in RETRY_STATUS:
            raise Retryable(f"HTTP {status}", wait)
        if status >= 400:
            text = content[:300].decode("utf-8", "replace")
            raise BackendError(
                f"{self.name}: HTTP {status} from {self.endpoint}: {text!r}; "
                "not retried (only 408, 409, 429 and 5xx are)"
            )
        try:
            data = json.loads(content)
        except (ValueError, RecursionError):
            raise Retryable(f"malformed JSON body {content[:60]!r}") from None
        if not isinstance(data, dict):
            raise Retryable(f"body is not a JSON object: {content[:60]!r}")
        return data

    async def aclose(self) -> None:
        """Close the pooled connections of the current event loop's session."""
        session, self._session_ = self._session_, None
        if session is not None and self._loop is asyncio.get_running_loop():
            await session.close()


def _env_proxy(url: str) -> str | None:
    """The proxy that HTTP(S)_PROXY and NO_PROXY give for `url`, as curl and httpx honour them;
    looked up once per session (aiohttp's trust_env looks it up per request: 0.45 ms each)."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header given in seconds (the HTTP-date form is ignored)."""
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _parse(data: dict[str, Any], model: str) -> ChatReply:
    """A ChatReply from a chat-completion body. A body of the wrong shape (no choices, a
    `message`, `usage` or `tool_calls` of the wrong type, a negative token count) is the
    server's fault: `Retryable`, so it goes through the retries and then surfaces as a
    BackendError, never as an AttributeError in the episode."""
    try:
        return _parse_reply(data, model)
    except Retryable:
        raise
    except (AttributeError, KeyError, IndexError, TypeError, ValueError, ValidationError) as e:
        raise Retryable(f"malformed reply ({type(e).__name__}: {str(e)[:80]})") from None


def malformed_reply(what: str, value: Any) -> Retryable:
    """A retryable error naming the reply field that had the wrong type (for subclasses' parse)."""
    return Retryable(f"malformed reply: {what} is {type(value).__name__}: {str(value)[:60]!r}")


def _parse_reply(data: dict[str, Any], model: str) -> ChatReply:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise Retryable(f"no choices[0].message in {json.dumps(data)[:80]}")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise malformed_reply("choices[0].message", message)
    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise malformed_reply("message.tool_calls", raw_calls)
    calls = []
    for i, tc in enumerate(raw_calls):
        fn = tc.get("function") if isinstance(tc, dict) else None
        if not isinstance(fn, dict):
            raise malformed_reply(f"tool_calls[{i}].function", fn)
        args = fn.get("arguments") or "{}"
        try:
            parsed = json.loads(args) if isinstance(args, str) else dict(args)
        except (ValueError, TypeError, RecursionError):
            parsed = {"_raw": str(args)[:2000]}  # the model's output: the env reports it
        if not isinstance(parsed, dict):
            parsed = {"_raw": str(args)[:2000]}
        calls.append(
            ToolCall(
                id=utf8_safe(str(tc.get("id") or f"call_{i}")),
                name=utf8_safe(str(fn.get("name", ""))),
                arguments=utf8_safe(parsed),
            )
        )
    usage = data.get("usage") or {}
    if not isinstance(usage, dict):
        raise malformed_reply("usage", usage)
    details = usage.get("prompt_tokens_details") or {}
    if not isinstance(details, dict):
        raise malformed_reply("usage.prompt_tokens_details", details)
    return ChatReply(
        text=_content(message.get("content")),
        tool_calls=calls,
        prompt_tokens=token_count(usage, "prompt_tokens"),
        completion_tokens=token_count(usage, "completion_tokens"),
        cached_tokens=token_count(details, "cached_tokens"),
        finish_reason=utf8_safe(_str_or_none(choice.get("finish_reason"))),
        model=utf8_safe(str(data.get("model") or model)),
    )


def _content(content: Any) -> str:
    """The message text: a string, null, or a list of {'type': 'text', 'text': ...} parts."""
    if content is None or isinstance(content, str):
        return utf8_safe(content or "")
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return utf8_safe(
            "".join(str(p.get("text") or "") for p in content if p.get("type") == "text")
        )
    raise malformed_reply("message.content", content)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def utf8_safe(value: Any) -> Any:
    """`value` with every lone surrogate in its strings (JSON may escape half a pair,
    '\\ud83d', and json.loads keeps it) replaced by U+FFFD: otherwise the episode holding the
    model's reply could not be written as UTF-8, and the run store would fail on it."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {utf8_safe(k): utf8_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [utf8_safe(v) for v in value]
    return value


def token_count(usage: dict[str, Any], key: str) -> int:
    """A usage field as a token count, or a retryable error if it is not a sane number."""
    value = usage.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 2**53:
        raise malformed_reply(f"usage.{key}", value)
    return int(value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
