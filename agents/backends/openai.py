"""`openai:MODEL@BASE_URL`: any OpenAI-compatible chat server (vLLM, SGLang, Ollama, llama.cpp's
server, hosted APIs) over one pooled httpx client.

Timeouts are set, never defaulted; 429s, 5xx answers, connection failures, time-outs and
malformed bodies are retried with jittered exponential backoff (honouring Retry-After); a
semaphore caps the requests in flight. The API key is read from an environment variable when the
first request is made and is never logged, repr'd or put into an error message.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import socket
import time
from typing import Any

import httpx

from clinicgym.agents.backends.base import ChatReply, Message, ToolCall
from clinicgym.agents.errors import BackendError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529})
"""Statuses worth another try: time-outs, conflicts, rate limits and server-side failures."""
PARAMS = ("max_tokens", "temperature", "top_p", "seed", "stop")


class _Retryable(Exception):
    """One failed attempt that may succeed if tried again."""

    def __init__(self, what: str, wait: float | None = None) -> None:
        super().__init__(what)
        self.wait = wait


class OpenAIBackend:
    """Chat completions from an OpenAI-compatible server; safe to share across episodes."""

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
        pool_size: int = 8,
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
        self.timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=30.0, pool=read_timeout
        )
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.extra_body = dict(extra_body or {})
        self.pool_size = pool_size
        """Connections per httpx client: the backend shards its requests over
        ceil(concurrency / pool_size) clients, because httpcore scans every pooled connection
        on each request (64 in one pool cost 3-5x the CPU; bench/openai_throughput.py --pool)."""
        self._rng = random.Random()
        self._clients: list[httpx.AsyncClient] = []
        self._turn = itertools.count()
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.name!r}, concurrency={self.concurrency})"

    def _session(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """A client for the next request and the semaphore, both of the running event loop
        (each `asyncio.run` gets its own)."""
        loop = asyncio.get_running_loop()
        if not self._clients or self._loop is not loop or self._sem is None:
            headers = {"Content-Type": "application/json"}
            key = os.environ.get(self.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
            size = min(self.pool_size, self.concurrency)
            limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
            self._clients = [
                httpx.AsyncClient(
                    base_url=self.base_url,
                    headers=headers,
                    timeout=self.timeout,
                    # TCP_NODELAY: httpcore writes headers and body separately; with Nagle's
                    # algorithm the body may wait for the server's delayed ACK.
                    transport=httpx.AsyncHTTPTransport(
                        limits=limits,
                        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                    ),
                )
                for _ in range(-(-self.concurrency // size))
            ]
            self._sem = asyncio.Semaphore(self.concurrency)
            self._loop = loop
        return self._clients[next(self._turn) % len(self._clients)], self._sem

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
        """One chat completion, retried on transient failures; raises BackendError when spent."""
        client, sem = self._session()
        payload = json.dumps(self.body(messages, tools, params)).encode()
        started = time.perf_counter()
        failures: list[str] = []
        async with sem:
            for attempt in range(self.max_retries + 1):
                try:
                    data = await self._attempt(client, payload)
                    reply = _parse(data, self.model)
                except _Retryable as e:
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
            "the episode is recorded as an agent_error"
        )

    async def _attempt(self, client: httpx.AsyncClient, payload: bytes) -> dict[str, Any]:
        try:
            resp = await client.post("/chat/completions", content=payload)
        except httpx.TimeoutException as e:
            raise _Retryable(f"timed out ({type(e).__name__})") from None
        except httpx.TransportError as e:
            raise _Retryable(f"connection failed ({type(e).__name__}: {e})") from None
        status = resp.status_code
        if status in RETRY_STATUS:
            raise _Retryable(f"HTTP {status}", _retry_after(resp))
        if status >= 400:
            raise BackendError(
                f"{self.name}: HTTP {status} from /chat/completions: {resp.text[:300]!r}; "
                "not retried (only 408, 409, 429 and 5xx are)"
            )
        try:
            data = json.loads(resp.content)
        except ValueError:
            raise _Retryable(f"malformed JSON body {resp.content[:60]!r}") from None
        if not isinstance(data, dict):
            raise _Retryable(f"body is not a JSON object: {resp.content[:60]!r}")
        return data

    async def aclose(self) -> None:
        """Close the pooled connections of the current event loop's clients."""
        clients, self._clients = self._clients, []
        if self._loop is asyncio.get_running_loop():
            for client in clients:
                await client.aclose()


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _parse(data: dict[str, Any], model: str) -> ChatReply:
    """A ChatReply from a chat-completion body; a body without a message is retried."""
    try:
        choice = data["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise _Retryable(f"no choices[0].message in {json.dumps(data)[:80]}") from None
    calls = []
    for i, tc in enumerate(message.get("tool_calls") or []):
        fn = tc.get("function") or {}
        args = fn.get("arguments") or "{}"
        try:
            parsed = json.loads(args) if isinstance(args, str) else dict(args)
        except (ValueError, TypeError):
            parsed = {"_raw": str(args)}  # the env reports it as an unparseable action
        if not isinstance(parsed, dict):
            parsed = {"_raw": str(args)}
        calls.append(
            ToolCall(
                id=str(tc.get("id") or f"call_{i}"), name=str(fn.get("name", "")), arguments=parsed
            )
        )
    usage = data.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return ChatReply(
        text=message.get("content") or "",
        tool_calls=calls,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
        finish_reason=choice.get("finish_reason"),
        model=str(data.get("model") or model),
    )
