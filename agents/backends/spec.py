"""Backend spec strings -> one shared backend and a factory of LLM clinicians over it.

`openai:MODEL@BASE_URL`, `hf:PATH_OR_NAME`, `vllm:PATH`, `langchain:module:factory`, each with
optional settings after '#': `hf:smollm2#max_tokens=32,batch=8`. A URL fragment is never sent to
a server, so '#' cannot clash with a base URL. Settings in the spec win over run-wide ones
(`--max-tokens`, `--temperature`, `--model-seed`), so one run can compare variants of a model.
"""

from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Callable
from typing import Any

from clinicgym.agents.backends.base import ChatBackend
from clinicgym.agents.biases import NO_BIAS, BiasedClinician, load_biases
from clinicgym.agents.errors import AgentSpecError
from clinicgym.agents.llm_clinician import LLMClinician, PromptTemplate


def _bool(v: str) -> bool:
    low = v.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"'{v}' is not a boolean (use 1/0, true/false, yes/no, on/off)")


CLINICIAN_OPTIONS: dict[str, Callable[[str], Any]] = {
    "tools": _bool,
    "one_line": _bool,
    "template": str,
    "history": int,
    "max_tokens": int,
    "temperature": float,
    "top_p": float,
    "seed": int,
    "bias": str,
    "bias_file": str,
}
"""Settings every backend takes: how the clinician talks, sampling, and a bias probe (`bias`:
an id from `bias_file`, default agents/prompts/clinician_biases.yaml; `none` for no bias)."""
BACKEND_OPTIONS: dict[str, dict[str, Callable[[str], Any]]] = {
    "openai": {
        "concurrency": int,
        "retries": int,
        "timeout": float,
        "connect_timeout": float,
        "api_key_env": str,
    },
    "hf": {"batch": int, "dtype": str, "cache_mb": int},
    "vllm": {"batch": int, "dtype": str, "max_model_len": int},
    "langchain": {},
}
SMOLLM2_DEFAULTS = {"max_tokens": 32, "one_line": True}
"""hf:smollm2 rambles past its one line (and writes the patient's part); stopping there and a
short budget keep the demo within minutes on a CPU."""


def split_options(kind: str, rest: str, run_options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(target, settings): the part before '#', and run-wide settings overridden by the spec's."""
    target, _, tail = rest.partition("#")
    allowed = {**CLINICIAN_OPTIONS, **BACKEND_OPTIONS[kind]}
    opts: dict[str, Any] = {}
    for k, v in run_options.items():
        k = "seed" if k == "model_seed" else k
        if k in CLINICIAN_OPTIONS and v is not None:
            opts[k] = v
    for item in filter(None, (s.strip() for s in tail.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in allowed:
            raise AgentSpecError(
                f"agent '{kind}:{rest}': unknown setting '{item}'; allowed: "
                f"{', '.join(sorted(allowed))} (as '#key=value,key=value')"
            )
        try:
            opts[key] = allowed[key](value.strip())
        except ValueError as e:
            raise AgentSpecError(f"agent '{kind}:{rest}': setting '{key}': {e}") from None
    if not target.strip():
        raise AgentSpecError(f"agent '{kind}:{rest}': names no model (e.g. '{_EXAMPLES[kind]}')")
    if "bias" in opts and opts["bias"].strip().lower() != NO_BIAS:  # before a model loads
        try:
            load_biases(opts.get("bias_file")).get(opts["bias"])
        except AgentSpecError as e:
            raise AgentSpecError(f"agent '{kind}:{rest}': {e}") from None
    elif "bias_file" in opts and "bias" not in opts:
        raise AgentSpecError(f"agent '{kind}:{rest}': 'bias_file' needs 'bias' (e.g. bias=recency)")
    return target.strip(), opts


_EXAMPLES = {
    "openai": "openai:MODEL@http://127.0.0.1:8000/v1",
    "hf": "hf:smollm2",
    "vllm": "vllm:/path/to/model",
    "langchain": "langchain:my_module:make_chat_model",
}


class ClinicianFactory:
    """Makes one LLMClinician per episode over one shared backend; `aclose` releases it."""

    def __init__(self, spec: str, backend: ChatBackend, opts: dict[str, Any]) -> None:
        self.spec = spec
        self.backend = backend
        self.template = PromptTemplate(opts.get("template"))
        self.use_tools = bool(opts.get("tools", False))
        self.history = opts.get("history")
        self.one_line = bool(opts.get("one_line", False))
        self.params = {
            k: opts[k] for k in ("max_tokens", "temperature", "top_p", "seed") if k in opts
        }
        self.biases = load_biases(opts.get("bias_file")) if "bias" in opts else None
        self.bias = None
        if self.biases is not None and opts["bias"].strip().lower() != NO_BIAS:
            try:
                self.bias = self.biases.get(opts["bias"])
            except AgentSpecError as e:
                raise AgentSpecError(f"agent '{spec}': {e}") from None

    def __call__(self) -> LLMClinician:
        kw: dict[str, Any] = {
            "agent_id": self.spec,
            "template": self.template,
            "use_tools": self.use_tools,
            "params": self.params,
            "history_turns": self.history,
            "one_line": self.one_line,
        }
        if self.bias is not None and self.biases is not None:
            return BiasedClinician(self.backend, bias=self.bias, library=self.biases, **kw)
        return LLMClinician(self.backend, **kw)

    def with_bias(self, bias: str, bias_file: str | None = None) -> ClinicianFactory:
        """The same model and settings with `bias` (or `none`), sharing this factory's backend:
        a bias probe loads the model once. Close only the original factory."""
        if self.bias is not None:
            raise AgentSpecError(
                f"agent '{self.spec}' already has a bias; a bias probe adds them itself "
                "(give the spec without '#bias=')"
            )
        clone = copy.copy(self)
        clone.biases = load_biases(bias_file)
        clone.bias = None if bias.strip().lower() == NO_BIAS else clone.biases.get(bias)
        if clone.bias is not None:
            clone.spec = self.spec + ("," if "#" in self.spec else "#") + f"bias={clone.bias.id}"
        return clone

    async def aclose(self) -> None:
        await self.backend.aclose()


def openai_factory(rest: str, run_options: dict[str, Any]) -> ClinicianFactory:
    """`openai:MODEL@BASE_URL` (base URL default: $OPENAI_BASE_URL, else api.openai.com)."""
    from clinicgym.agents.backends.openai import DEFAULT_BASE_URL, OpenAIBackend

    target, opts = split_options("openai", rest, run_options)
    model, at, url = target.rpartition("@")
    if not at or not url.startswith(("http://", "https://")):
        model, url = target, os.environ.get("OPENAI_BASE_URL", DEFAULT_BASE_URL)
    if not model:
        raise AgentSpecError(f"agent 'openai:{rest}': names no model before '@'")
    backend = OpenAIBackend(
        model,
        url,
        api_key_env=opts.get("api_key_env", "OPENAI_API_KEY"),
        concurrency=opts.get("concurrency", 64),
        max_retries=opts.get("retries", 5),
        read_timeout=opts.get("timeout", 120.0),
        connect_timeout=opts.get("connect_timeout", 10.0),
    )
    return ClinicianFactory(f"openai:{rest}", backend, opts)


def hf_factory(rest: str, run_options: dict[str, Any]) -> ClinicianFactory:
    """`hf:smollm2`, `hf:/path/to/model_dir` or `hf:/path/to/file.gguf`, loaded now (offline)."""
    from clinicgym.agents.backends.hf import HFBackend

    target, opts = split_options("hf", rest, run_options)
    if target == "smollm2":
        opts = {**SMOLLM2_DEFAULTS, **opts}
    backend = HFBackend.load(
        target,
        dtype=opts.get("dtype", "auto"),
        max_batch=opts.get("batch", 16),
        cache_mb=opts.get("cache_mb", 1024),
    )
    return ClinicianFactory(f"hf:{rest}", backend, opts)


def vllm_factory(rest: str, run_options: dict[str, Any]) -> ClinicianFactory:
    """`vllm:PATH`: vLLM's in-process engine (extra `vllm`)."""
    from clinicgym.agents.backends.vllm import VLLMBackend

    target, opts = split_options("vllm", rest, run_options)
    backend = VLLMBackend.load(
        target,
        dtype=opts.get("dtype", "auto"),
        max_batch=opts.get("batch", 64),
        max_model_len=opts.get("max_model_len", 4096),
    )
    return ClinicianFactory(f"vllm:{rest}", backend, opts)


def langchain_factory(rest: str, run_options: dict[str, Any]) -> ClinicianFactory:
    """`langchain:module:factory`: `module.factory()` returns any LangChain BaseChatModel."""
    from clinicgym.agents.backends.langchain import LangChainBackend

    target, opts = split_options("langchain", rest, run_options)
    module_name, colon, attr = target.rpartition(":")
    if not colon or not module_name or not attr:
        raise AgentSpecError(
            f"agent 'langchain:{rest}': expected 'langchain:module:factory', e.g. "
            "'langchain:my_models:make_chat_model'"
        )
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except ImportError as e:
        raise AgentSpecError(
            f"agent 'langchain:{rest}': cannot import '{module_name}' ({e})"
        ) from None
    except AttributeError:
        raise AgentSpecError(f"agent 'langchain:{rest}': '{module_name}' has no '{attr}'") from None
    backend = LangChainBackend(fn(), name=f"langchain:{target}")
    return ClinicianFactory(f"langchain:{rest}", backend, opts)
