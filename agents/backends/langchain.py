"""LangChain both ways (extra `langchain`): any `BaseChatModel` as a clinicgym backend
(`langchain:module:factory`), and any clinicgym backend as a `BaseChatModel` (`BackendChatModel`).

Sampling settings of a LangChain model belong to the model you build in your factory; the
clinician's max_tokens/temperature/seed are passed only to clinicgym's own backends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from clinicgym.agents.backends.base import ChatBackend, ChatReply, Message, ToolCall
from clinicgym.agents.errors import BackendError, MissingExtraError

try:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import (
        AIMessage,
        BaseMessage,
        HumanMessage,
        SystemMessage,
        ToolMessage,
    )
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.utils.function_calling import convert_to_openai_tool
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError(
        f"the langchain backend needs langchain-core ({e}); "
        "run `pip install 'clinicgym[langchain]'`"
    ) from None


def to_langchain(messages: Sequence[Message]) -> list[BaseMessage]:
    """OpenAI-style chat messages as LangChain messages."""
    out: list[BaseMessage] = []
    for m in messages:
        role, content = m["role"], m.get("content") or ""
        if role == "system":
            out.append(SystemMessage(content=content))
        elif role == "user":
            out.append(HumanMessage(content=content))
        elif role == "tool":
            out.append(ToolMessage(content=content, tool_call_id=m.get("tool_call_id", "")))
        elif role == "assistant":
            calls = []
            for tc in m.get("tool_calls") or []:
                fn = tc.get("function", {})
                args = fn.get("arguments") or "{}"
                calls.append(
                    {
                        "name": fn.get("name", ""),
                        "id": tc.get("id"),
                        "args": json.loads(args) if isinstance(args, str) else args,
                    }
                )
            out.append(AIMessage(content=content, tool_calls=calls))
        else:
            raise ValueError(f"unknown chat role '{role}'; allowed: system, user, assistant, tool")
    return out


def from_langchain(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain messages as OpenAI-style chat messages."""
    out: list[Message] = []
    for m in messages:
        text = m.content if isinstance(m.content, str) else json.dumps(m.content)
        if isinstance(m, SystemMessage):
            out.append({"role": "system", "content": text})
        elif isinstance(m, ToolMessage):
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": text})
        elif isinstance(m, AIMessage):
            msg: Message = {"role": "assistant", "content": text}
            if m.tool_calls:
                msg["tool_calls"] = [
                    ToolCall(
                        id=tc.get("id") or "", name=tc["name"], arguments=tc["args"]
                    ).as_openai()
                    for tc in m.tool_calls
                ]
            out.append(msg)
        else:
            out.append({"role": "user", "content": text})
    return out


class LangChainBackend:
    """Any LangChain chat model behind the ChatBackend interface."""

    def __init__(self, model: Any, name: str = "langchain") -> None:
        if not isinstance(model, BaseChatModel):
            raise BackendError(
                f"{name}: the factory returned {type(model).__name__}, "
                "not a LangChain BaseChatModel"
            )
        self.model = model
        self.name = name
        self._bound: dict[int, Any] = {}

    def _with_tools(self, tools: list[dict[str, Any]]) -> Any:
        key = id(tools)
        if key not in self._bound:
            try:
                self._bound[key] = self.model.bind_tools(tools)
            except NotImplementedError:
                raise BackendError(
                    f"{self.name}: {type(self.model).__name__} cannot call tools; drop '#tools=1'"
                ) from None
        return self._bound[key]

    async def chat(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> ChatReply:
        """One `ainvoke` of the model; its exceptions become BackendError (an infra error)."""
        runnable = self._with_tools(tools) if tools else self.model
        started = time.perf_counter()
        try:
            msg = await runnable.ainvoke(to_langchain(messages), stop=params.get("stop"))
        except Exception as e:
            raise BackendError(f"{self.name}: {type(e).__name__}: {e}") from e
        usage = getattr(msg, "usage_metadata", None) or {}
        text = msg.content if isinstance(msg.content, str) else json.dumps(msg.content)
        calls = [
            ToolCall(
                id=tc.get("id") or f"call_{i}", name=tc["name"], arguments=tc.get("args") or {}
            )
            for i, tc in enumerate(getattr(msg, "tool_calls", None) or [])
        ]
        return ChatReply(
            text=text,
            tool_calls=calls,
            prompt_tokens=int(usage.get("input_tokens", 0)),
            completion_tokens=int(usage.get("output_tokens", 0)),
            latency_s=time.perf_counter() - started,
            model=self.name,
        )

    async def aclose(self) -> None:
        """Nothing to release: the LangChain model owns its clients."""


class BackendChatModel(BaseChatModel):
    """A clinicgym ChatBackend (OpenAI-compatible, hf, vllm) usable wherever LangChain wants a
    chat model: `BackendChatModel(backend=OpenAIBackend(...)).invoke("hi")`."""

    backend: Any
    """The ChatBackend to call."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Sampling settings sent with every call (max_tokens, temperature, seed, top_p)."""

    @property
    def _llm_type(self) -> str:
        return "clinicgym"

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        backend: ChatBackend = self.backend
        params = {**self.params, **({"stop": stop} if stop else {})}
        reply = await backend.chat(from_langchain(messages), kwargs.get("tools"), **params)
        msg = AIMessage(
            content=reply.text,
            tool_calls=[
                {"name": c.name, "args": c.arguments, "id": c.id} for c in reply.tool_calls
            ],
            usage_metadata={
                "input_tokens": reply.prompt_tokens,
                "output_tokens": reply.completion_tokens,
                "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            },
            response_metadata={
                "latency_s": reply.latency_s,
                "retries": reply.retries,
                "finish_reason": reply.finish_reason,
                "model": reply.model,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        coro = self._agenerate(messages, stop, **kwargs)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from inside a loop
            return pool.submit(asyncio.run, coro).result()
