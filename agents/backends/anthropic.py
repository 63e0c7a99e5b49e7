"""`anthropic/MODEL`: Anthropic's Messages API over the openai backend's aiohttp client.

The Messages API is not OpenAI-compatible: the system prompt is a top-level field, `max_tokens`
is required, tool calls are `tool_use` content blocks and their results `tool_result` blocks in
a user turn. This module translates the OpenAI-style conversation the clinician keeps into that
shape and the answer back; pooling, time-outs, retries (429, 5xx, 529 overloaded) and the
semaphore are `OpenAIBackend`'s, so the client CPU per request is the same aiohttp client's.
"""

from __future__ import annotations

import json
import os
from typing import Any

from clinicgym.agents.backends.base import ChatReply, Message, ToolCall
from clinicgym.agents.backends.openai import (
    OpenAIBackend,
    Retryable,
    malformed_reply,
    token_count,
    utf8_safe,
)

API_VERSION = "2023-06-01"
"""The `anthropic-version` header: the Messages API version this client speaks."""
DEFAULT_MAX_TOKENS = 1024
"""Messages API requests must name a reply budget; used when no max_tokens is set."""


class AnthropicBackend(OpenAIBackend):
    """Claude models through POST {base}/v1/messages; safe to share across episodes."""

    endpoint = "/v1/messages"

    def __init__(self, model: str, base_url: str = "https://api.anthropic.com", **kw: Any) -> None:
        kw.setdefault("api_key_env", "ANTHROPIC_API_KEY")
        base = base_url.rstrip("/")
        super().__init__(model, base.removesuffix("/v1"), **kw)
        self.name = f"anthropic/{model}@{self.base_url}"

    def __repr__(self) -> str:
        return f"AnthropicBackend({self.name!r}, concurrency={self.concurrency})"

    def auth_headers(self) -> dict[str, str]:
        """`x-api-key` (from `api_key_env`) and the API version."""
        key = os.environ.get(self.api_key_env)
        return {"anthropic-version": API_VERSION, **({"x-api-key": key} if key else {})}

    def body(
        self, messages: list[Message], tools: list[dict[str, Any]] | None, params: dict[str, Any]
    ) -> dict[str, Any]:
        """A Messages API request for an OpenAI-style conversation."""
        system, turns = to_anthropic(messages)
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": int(params.get("max_tokens") or DEFAULT_MAX_TOKENS),
            "messages": turns,
        }
        if system:
            body["system"] = system
        for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p")):
            if params.get(ours) is not None:
                body[theirs] = params[ours]
        if params.get("stop"):
            body["stop_sequences"] = list(params["stop"])
        if tools:
            body["tools"] = [
                {
                    "name": t["function"]["name"],
                    "description": t["function"].get("description", ""),
                    "input_schema": t["function"].get("parameters")
                    or {"type": "object", "properties": {}},
                }
                for t in tools
            ]
            body["tool_choice"] = {"type": "auto"}
        body.update(self.extra_body)
        return body

    def parse(self, data: dict[str, Any]) -> ChatReply:
        """A ChatReply from a Messages API answer; a body of the wrong shape is retried."""
        try:
            return _parse_message(data, self.model)
        except Retryable:
            raise
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as e:
            raise Retryable(f"malformed reply ({type(e).__name__}: {str(e)[:80]})") from None


def content_text(content: Any) -> str:
    """A message's text: a string, or the text of OpenAI-style content parts."""
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if p.get("type") == "text")
    return str(content or "")


def _parts(content: Any) -> list[dict[str, Any]]:
    """OpenAI-style content -> Anthropic blocks (text, and base64 data-URL images)."""
    if not isinstance(content, list):
        return [{"type": "text", "text": str(content or "")}]
    out: list[dict[str, Any]] = []
    for p in content:
        if p.get("type") == "text":
            out.append({"type": "text", "text": str(p.get("text") or "")})
        elif p.get("type") == "image_url":
            url = str((p.get("image_url") or {}).get("url", ""))
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                source = {"type": "base64", "media_type": media, "data": data}
            else:
                source = {"type": "url", "url": url}
            out.append({"type": "image", "source": source})
    return out


def call_arguments(args: Any) -> dict[str, Any]:
    """A tool call's arguments as a JSON object (a model's unparseable text kept as `_raw`)."""
    if isinstance(args, dict):
        return args
    try:
        parsed = json.loads(args or "{}")
    except (TypeError, ValueError, RecursionError):
        return {"_raw": str(args)}
    return parsed if isinstance(parsed, dict) else {"_raw": str(args)}


def to_anthropic(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """(system text, Messages API turns) for an OpenAI-style conversation: tool calls become
    `tool_use` blocks, tool results `tool_result` blocks, and turns of one role are merged."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "system":
            system.append(content_text(m.get("content")))
            continue
        if role == "tool":
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": str(m.get("tool_call_id") or ""),
                    "content": content_text(m.get("content")),
                }
            ]
            role = "user"
        else:
            blocks = [b for b in _parts(m.get("content")) if b.get("type") != "text" or b["text"]]
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": str(call.get("id") or ""),
                        "name": str(fn.get("name") or ""),
                        "input": call_arguments(fn.get("arguments")),
                    }
                )
            role = "assistant" if role == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(s for s in system if s), turns


def _parse_message(data: dict[str, Any], model: str) -> ChatReply:
    if data.get("type") == "error":
        raise Retryable(f"error body: {json.dumps(data.get('error'))[:80]}")
    content = data.get("content")
    if not isinstance(content, list):
        raise malformed_reply("content", content)
    text, calls = [], []
    for i, block in enumerate(content):
        if not isinstance(block, dict):
            raise malformed_reply(f"content[{i}]", block)
        if block.get("type") == "text":
            text.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            args = block.get("input")
            calls.append(
                ToolCall(
                    id=utf8_safe(str(block.get("id") or f"call_{i}")),
                    name=utf8_safe(str(block.get("name") or "")),
                    arguments=utf8_safe(args if isinstance(args, dict) else {"_raw": str(args)}),
                )
            )
    usage = data.get("usage") or {}
    if not isinstance(usage, dict):
        raise malformed_reply("usage", usage)
    stop = data.get("stop_reason")
    return ChatReply(
        text=utf8_safe("".join(text)),
        tool_calls=calls,
        prompt_tokens=token_count(usage, "input_tokens"),
        completion_tokens=token_count(usage, "output_tokens"),
        cached_tokens=token_count(usage, "cache_read_input_tokens"),
        finish_reason=None if stop is None else utf8_safe(str(stop)),
        model=utf8_safe(str(data.get("model") or model)),
    )
