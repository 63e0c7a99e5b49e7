"""`google/MODEL`: Google's Gemini API (generateContent) over the openai backend's aiohttp client.

The Gemini API is not OpenAI-compatible: turns are `contents` of role `user` or `model` made of
`parts`, the system prompt is `systemInstruction`, sampling goes in `generationConfig`, tool
calls are `functionCall` parts and their results `functionResponse` parts. The key goes in the
`x-goog-api-key` header. Pooling, time-outs, retries and the semaphore are `OpenAIBackend`'s.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

from clinicgym.agents.backends.anthropic import call_arguments, content_text
from clinicgym.agents.backends.base import ChatReply, Message, ToolCall
from clinicgym.agents.backends.openai import (
    OpenAIBackend,
    Retryable,
    malformed_reply,
    token_count,
    utf8_safe,
)
from clinicgym.agents.errors import BackendError

API_VERSION = "v1beta"
"""The path segment of the Gemini API version this client speaks (as google-genai uses)."""
CONFIG = {"max_tokens": "maxOutputTokens", "temperature": "temperature", "top_p": "topP"}
CONFIG |= {"seed": "seed", "stop": "stopSequences"}
"""Our sampling parameters -> generationConfig fields."""


class GeminiBackend(OpenAIBackend):
    """Gemini models through POST {base}/v1beta/models/MODEL:generateContent."""

    def __init__(
        self, model: str, base_url: str = "https://generativelanguage.googleapis.com", **kw: Any
    ) -> None:
        kw.setdefault("api_key_env", "GOOGLE_API_KEY")
        model = model.removeprefix("models/")
        super().__init__(model, base_url.rstrip("/").removesuffix(f"/{API_VERSION}"), **kw)
        self.endpoint = f"/{API_VERSION}/models/{urllib.parse.quote(model)}:generateContent"
        self.name = f"google/{model}@{self.base_url}"

    def __repr__(self) -> str:
        return f"GeminiBackend({self.name!r}, concurrency={self.concurrency})"

    def auth_headers(self) -> dict[str, str]:
        """`x-goog-api-key` from `api_key_env`."""
        key = os.environ.get(self.api_key_env)
        return {"x-goog-api-key": key} if key else {}

    def body(
        self, messages: list[Message], tools: list[dict[str, Any]] | None, params: dict[str, Any]
    ) -> dict[str, Any]:
        """A generateContent request for an OpenAI-style conversation."""
        system, contents = to_gemini(messages)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config = {CONFIG[k]: params[k] for k in CONFIG if params.get(k) is not None}
        if "stopSequences" in config:
            config["stopSequences"] = list(config["stopSequences"])
        if config:
            body["generationConfig"] = config
        if tools:
            body["tools"] = [
                {
                    "functionDeclarations": [
                        {
                            "name": t["function"]["name"],
                            "description": t["function"].get("description", ""),
                            "parameters": t["function"].get("parameters")
                            or {"type": "object", "properties": {}},
                        }
                        for t in tools
                    ]
                }
            ]
        body.update(self.extra_body)
        return body

    def parse(self, data: dict[str, Any]) -> ChatReply:
        """A ChatReply from a generateContent answer; a body of the wrong shape is retried."""
        try:
            return _parse_content(data, self.model)
        except (Retryable, BackendError):
            raise
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as e:
            raise Retryable(f"malformed reply ({type(e).__name__}: {str(e)[:80]})") from None


def _parts(content: Any) -> list[dict[str, Any]]:
    """OpenAI-style content -> Gemini parts (text, and base64 data-URL images as inlineData)."""
    if not isinstance(content, list):
        return [{"text": str(content or "")}] if content else []
    out: list[dict[str, Any]] = []
    for p in content:
        if p.get("type") == "text" and p.get("text"):
            out.append({"text": str(p["text"])})
        elif p.get("type") == "image_url":
            url = str((p.get("image_url") or {}).get("url", ""))
            if url.startswith("data:") and ";base64," in url:
                mime, data = url[5:].split(";base64,", 1)
                out.append({"inlineData": {"mimeType": mime, "data": data}})
            else:
                out.append({"fileData": {"fileUri": url}})
    return out


def to_gemini(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """(system text, contents) for an OpenAI-style conversation; a tool result answers the
    call it names (by the call's function name), and turns of one role are merged."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for m in messages:
        role = m.get("role")
        if role == "system":
            system.append(content_text(m.get("content")))
            continue
        if role == "tool":
            call_id = str(m.get("tool_call_id") or "")
            parts = [
                {
                    "functionResponse": {
                        "name": names.get(call_id, call_id),
                        "response": {"content": content_text(m.get("content"))},
                    }
                }
            ]
            role = "user"
        else:
            parts = _parts(m.get("content"))
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                names[str(call.get("id") or "")] = str(fn.get("name") or "")
                parts.append(
                    {
                        "functionCall": {
                            "name": str(fn.get("name") or ""),
                            "args": call_arguments(fn.get("arguments")),
                        }
                    }
                )
            role = "model" if role == "assistant" else "user"
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return "\n\n".join(s for s in system if s), contents


def _parse_content(data: dict[str, Any], model: str) -> ChatReply:
    candidates = data.get("candidates")
    if not candidates:
        blocked = (data.get("promptFeedback") or {}).get("blockReason")
        if blocked:  # the same prompt is blocked again: not worth a retry
            raise BackendError(f"google/{model}: the prompt was blocked ({blocked})")
        raise Retryable(f"no candidates in {str(data)[:80]}")
    first = candidates[0]
    if not isinstance(first, dict):
        raise malformed_reply("candidates[0]", first)
    parts = (first.get("content") or {}).get("parts") or []
    if not isinstance(parts, list):
        raise malformed_reply("content.parts", parts)
    text, calls = [], []
    for i, part in enumerate(parts):
        if not isinstance(part, dict):
            raise malformed_reply(f"parts[{i}]", part)
        if part.get("thought"):  # a thinking model's summary, not its answer
            continue
        if "text" in part:
            text.append(str(part.get("text") or ""))
        elif isinstance(part.get("functionCall"), dict):
            call = part["functionCall"]
            args = call.get("args")
            calls.append(
                ToolCall(
                    id=utf8_safe(str(call.get("id") or f"call_{i}")),
                    name=utf8_safe(str(call.get("name") or "")),
                    arguments=utf8_safe(args if isinstance(args, dict) else {}),
                )
            )
    usage = data.get("usageMetadata") or {}
    if not isinstance(usage, dict):
        raise malformed_reply("usageMetadata", usage)
    finish = first.get("finishReason")
    return ChatReply(
        text=utf8_safe("".join(text)),
        tool_calls=calls,
        prompt_tokens=token_count(usage, "promptTokenCount"),
        completion_tokens=token_count(usage, "candidatesTokenCount"),
        cached_tokens=token_count(usage, "cachedContentTokenCount"),
        finish_reason=None if finish is None else utf8_safe(str(finish)),
        model=utf8_safe(str(data.get("modelVersion") or model)),
    )
