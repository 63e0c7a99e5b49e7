"""`hf:PATH#vision=1`: a local vision-language model that sees a result's picture.

The LLM clinician sends a picture as an OpenAI-style content part whose URL is a PNG data URL
(`agents/images.py`). Here each such part becomes a PIL image, the conversation is rendered by
the model's own processor (`AutoProcessor.apply_chat_template`, which builds `pixel_values`
from the images and puts the model's image tokens where its template says), and the model is
loaded with `AutoModelForImageTextToText` (LLaVA, Idefics3/SmolVLM, Qwen2-VL, Gemma 3, ...).
A model whose config has no image-text-to-text class is refused with that reason.

Concurrent episodes' turns are still gathered into one padded `generate` call per group of
requests that share their settings; there is no prefix cache (the pixels' tokens would have to
be cached with the text's), so every turn runs its whole prompt.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinicgym.agents.backends._batch import BatchQueue, group_by
from clinicgym.agents.backends.base import ChatReply, Message
from clinicgym.agents.backends.hf import (
    DEFAULT_MAX_NEW_TOKENS,
    default_threads,
    import_torch,
    parse_tool_calls,
    pick_dtype,
)
from clinicgym.agents.errors import BackendError, MissingExtraError
from clinicgym.errors import require_extra

TEXT_ONLY_EMBEDDED = ("smollm2", "gemma3-270m")
"""The embedded models: text-only language models, so `vision=1` is refused before loading."""


def vision_model_type(where: Path | str) -> str | None:
    """The config's model_type if transformers has an image-text-to-text class for it (a
    vision-language model), else None; reads config.json only, loads no weights."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    config = AutoConfig.from_pretrained(where)
    kind = getattr(config, "model_type", None)
    return kind if kind in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES else None


def is_vision_only(name: str) -> bool:
    """Is `name` a local directory holding a vision-language model that transformers cannot load
    as a causal LM (e.g. LLaVA)? Such a model is served here even without `vision=1`, text only."""
    config = Path(name) / "config.json"
    if not config.is_file():
        return False
    try:
        kind = json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError):
        return False
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    vision = kind in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    return vision and kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def _refuse_text_only(name: str) -> None:
    """A BackendError naming why `vision=1` cannot apply to `name`, if it is a text-only model."""
    why = None
    if name in TEXT_ONLY_EMBEDDED or name.endswith(".gguf"):
        why = "a text-only language model (GGUF and the embedded models have no vision tower)"
    else:
        try:
            kind = vision_model_type(Path(name) if Path(name).exists() else name)
        except (OSError, ValueError) as e:
            raise BackendError(f"hf:{name}: cannot read the model's config offline ({e})") from None
        if kind is None:
            why = (
                "not a vision-language model: transformers has no image-text-to-text class "
                "(AutoModelForImageTextToText) for its config"
            )
    if why is not None:
        raise BackendError(
            f"hf:{name}: vision=1, but it is {why}; drop vision=1 to run it on text, or give a "
            "vision-language model's directory"
        )


def load_vision_model(name: str, dtype: str = "auto") -> tuple[Any, Any]:
    """(model, processor) of a local vision-language model, offline; a text-only model is
    refused with the reason, before its weights load."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    require_extra("local", f"hf:{name}", "torch", "transformers", error=MissingExtraError)
    torch = import_torch()
    _refuse_text_only(name)
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    where = Path(name) if Path(name).exists() else name
    try:
        processor = AutoProcessor.from_pretrained(where)
        model = AutoModelForImageTextToText.from_pretrained(where)
    except (OSError, ValueError) as e:
        raise BackendError(f"hf:{name}: cannot load the vision model offline ({e})") from None
    if getattr(processor, "image_processor", None) is None:
        raise BackendError(f"hf:{name}: the processor has no image processor; cannot read images")
    if not getattr(processor, "chat_template", None):
        raise BackendError(f"hf:{name}: the processor has no chat template; use an instruct model")
    want = pick_dtype(dtype, torch)
    if model.dtype != want:
        model = model.to(want)
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), processor


def decode_image(url: str) -> Any:
    """The RGB PIL image of a `data:image/...;base64,` URL (the only kind the clinician sends;
    a model run offline fetches nothing)."""
    from PIL import Image

    head, sep, payload = url.partition(";base64,")
    if not head.startswith("data:image/") or not sep:
        raise BackendError(f"an image part must be a base64 data URL, got '{url[:40]}...'")
    return Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")


def processor_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """The conversation in the processor's shape: every content a list of parts, text as
    `{"type": "text"}` and each image_url data URL as `{"type": "image", "image": PIL image}`."""
    out = []
    for m in messages:
        content = m.get("content")
        if content is None:
            parts: list[dict[str, Any]] = []
        elif isinstance(content, str):
            parts = [{"type": "text", "text": content}]
        else:
            parts = [_part(p) for p in content]
        out.append({**m, "content": parts})
    return out


def _part(part: dict[str, Any]) -> dict[str, Any]:
    if part.get("type") == "image_url":
        return {"type": "image", "image": decode_image(str(part["image_url"]["url"]))}
    return part


@dataclass(frozen=True)
class _VisionRequest:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...] = ()

    def key(self) -> tuple[Any, ...]:
        """Requests with equal keys share one `generate` call (same settings, same tools)."""
        tools = json.dumps(self.tools, sort_keys=True) if self.tools else ""
        return (self.max_new_tokens, self.temperature, self.top_p, self.stop, tools)


class HFVisionBackend:
    """A transformers vision-language model behind the ChatBackend interface, batched."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        name: str = "hf",
        *,
        max_batch: int = 16,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        wait_s: float = 0.01,
        threads: int | None = None,
    ) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads or default_threads()
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.queue: BatchQueue[_VisionRequest, ChatReply] = BatchQueue(self._run, max_batch, wait_s)
        self._torch = import_torch()
        self._lock = threading.Lock()
        eos = model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
        if self.tokenizer.eos_token_id is not None:
            eos_ids.append(self.tokenizer.eos_token_id)
        self.eos = sorted(set(eos_ids))

    @classmethod
    def load(cls, name: str, dtype: str = "auto", **kwargs: Any) -> HFVisionBackend:
        """Load a vision-language model by path or cached name (see `load_vision_model`)."""
        model, processor = load_vision_model(name, dtype)
        return cls(model, processor, f"hf:{name}", **kwargs)

    def encode(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The model's inputs for one conversation (`input_ids`, `attention_mask` and, when it
        shows pictures, `pixel_values`), as the processor's chat template renders it."""
        return self._inputs([processor_messages(messages)], tools)

    def _inputs(self, convs: list[list[dict[str, Any]]], tools: Any) -> Any:
        inputs = self.processor.apply_chat_template(
            convs,
            tools=tools or None,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs={"padding": True},
        )
        return inputs.to(self.model.dtype)  # floating tensors only (pixel_values)

    async def chat(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> ChatReply:
        """Queue the conversation, its pictures decoded, for the next batch; wait for the reply."""
        started = time.perf_counter()
        temperature = params.get("temperature")
        req = _VisionRequest(
            messages=processor_messages(messages),
            tools=tools or None,
            max_new_tokens=int(params.get("max_tokens") or self.max_new_tokens),
            temperature=float(temperature) if temperature is not None else 0.0,
            top_p=float(params.get("top_p") or 1.0),
            seed=params.get("seed"),
            stop=tuple(params.get("stop") or ()),
        )
        reply = await self.queue.submit(req)
        return reply.model_copy(update={"latency_s": time.perf_counter() - started})

    def _run(self, requests: Sequence[_VisionRequest]) -> list[ChatReply]:
        out: list[ChatReply | None] = [None] * len(requests)
        try:
            with self._lock, self._torch.inference_mode():
                if self._torch.get_num_threads() != self.threads:
                    self._torch.set_num_threads(self.threads)
                for idx in group_by(requests, lambda r: r.key()).values():
                    replies = self._generate([requests[i] for i in idx])
                    for i, reply in zip(idx, replies, strict=True):
                        out[i] = reply
        except BackendError:
            raise
        except Exception as e:  # torch/transformers failures: an infra error for every caller
            raise BackendError(f"{self.name}: generation failed ({type(e).__name__}: {e})") from e
        return [r for r in out if r is not None]

    def _generate(self, requests: Sequence[_VisionRequest]) -> list[ChatReply]:
        """One padded `generate` call for requests that share their settings."""
        r0 = requests[0]
        inputs = self._inputs([r.messages for r in requests], r0.tools)
        sample = r0.temperature > 0
        if sample and r0.seed is not None:
            self._torch.manual_seed(int(r0.seed))
        seqs = self.model.generate(
            **inputs,
            max_new_tokens=r0.max_new_tokens,
            do_sample=sample,
            temperature=r0.temperature if sample else None,
            top_p=r0.top_p if sample else None,
            top_k=None,
            eos_token_id=self.eos,
            pad_token_id=self.tokenizer.pad_token_id,
            **({"stop_strings": list(r0.stop), "tokenizer": self.tokenizer} if r0.stop else {}),
        )
        width = inputs["input_ids"].shape[1]
        prompt_lens = inputs["attention_mask"].sum(dim=1).tolist()
        return [
            self._reply(seqs[i, width:].tolist(), int(n), req)
            for i, (n, req) in enumerate(zip(prompt_lens, requests, strict=True))
        ]

    def _reply(self, row: list[int], prompt_tokens: int, req: _VisionRequest) -> ChatReply:
        """A batch row's reply: its tokens up to EOS, its text cut at the first stop string."""
        n_gen = next((j + 1 for j, t in enumerate(row) if t in self.eos), len(row))
        kept = row[:n_gen]
        pad = self.tokenizer.pad_token_id
        while req.stop and kept and kept[-1] == pad and pad not in self.eos:
            kept.pop()  # generate pads a row that met a stop string
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        stopped = [text.index(s) for s in req.stop if s in text]
        if stopped:
            text = text[: min(stopped)]
        hit_eos = bool(stopped) or (bool(kept) and kept[-1] in self.eos)
        return ChatReply(
            text=text,
            tool_calls=parse_tool_calls(text) if req.tools else [],
            prompt_tokens=prompt_tokens,
            completion_tokens=len(kept),
            finish_reason="stop" if hit_eos else "length",
            model=self.name,
        )

    async def aclose(self) -> None:
        """Stop the batch worker (the model stays loaded for reuse)."""
        await self.queue.aclose()
