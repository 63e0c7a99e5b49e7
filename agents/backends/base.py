"""The one interface every model backend speaks: chat messages (and optional tools) in, a reply out.

A backend is shared by every episode of an agent spec, so `chat` is called concurrently from many
episodes; that is where batching (hf, vllm) and connection pooling (openai) happen.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

Message = dict[str, Any]
"""An OpenAI-style chat message: {'role': 'system'|'user'|'assistant'|'tool', 'content': ...}."""


class ToolCall(BaseModel):
    """A function call the model asked for: a name and its JSON arguments."""

    model_config = ConfigDict(extra="forbid")
    id: str = ""
    name: str
    arguments: dict[str, Any] = {}

    def as_openai(self) -> dict[str, Any]:
        """The call as an OpenAI `tool_calls` entry (what `parse_action` and chat history take)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }


class ChatReply(BaseModel):
    """What a backend answered, with what it cost."""

    model_config = ConfigDict(extra="forbid")
    text: str = ""
    tool_calls: list[ToolCall] = []
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    cached_tokens: int = Field(default=0, ge=0)
    """Prompt tokens served from a prefix cache (hf) or reported cached by the server."""
    latency_s: float = Field(default=0.0, ge=0)
    """Wall time of the call, queueing and retries included."""
    retries: int = Field(default=0, ge=0)
    finish_reason: str | None = None
    model: str = ""


@runtime_checkable
class ChatBackend(Protocol):
    """A chat model. Implementations: `OpenAIBackend`, `HFBackend`, `VLLMBackend`,
    `LangChainBackend`; safe to call concurrently from many episodes."""

    name: str
    """A label for errors and logs, e.g. 'openai:gpt-4o@http://127.0.0.1:8000/v1'."""

    async def chat(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> ChatReply:
        """Answer the conversation. `params`: max_tokens, temperature, seed, top_p."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and models."""
        ...
