"""The one registry of chat backends: a model spec -> a `ChatBackend`.

The model under test (`--agent`), the patient's wording model (`--patient`) and the LLM judge
(`--judge`) are all built here by `make_backend`, so a new backend is one module implementing
`ChatBackend` plus one `@register_backend` entry below.

Spec forms, each with optional settings after '#' (`openai/gpt-4o#temperature=0.2`):

- `PROVIDER/MODEL`, as inspect_ai and LiteLLM write them: `openai/gpt-4o`,
  `anthropic/claude-sonnet-4-5`, `google/gemini-2.5-flash`, `vllm/Qwen/Qwen3-8B`,
  `hf/smollm2`, `ollama/llama3.2`. Keys and base URLs come from each provider's usual
  environment variables (`PROVIDER_ENV`), read from the environment or from a `.env` file in
  the working directory (the environment wins). `@URL` after the model overrides the base URL.
- `KIND:TARGET`, the earlier forms, unchanged: `openai:MODEL@URL`, `hf:smollm2`,
  `vllm:PATH` (vLLM's in-process engine), `langchain:module:factory`.

Parsing never loads a model or opens a connection, so a typo fails before any expensive work.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from clinicgym.agents.backends.base import ChatBackend
from clinicgym.agents.errors import AgentSpecError

Options = dict[str, Callable[[str], Any]]
Builder = Callable[["ModelSpec"], ChatBackend]


def _bool(v: str) -> bool:
    low = v.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"'{v}' is not a boolean (use 1/0, true/false, yes/no, on/off)")


CLINICIAN_OPTIONS: Options = {
    "tools": _bool,
    "one_line": _bool,
    "template": str,
    "history": int,
    "max_turns": int,
    "max_tokens": int,
    "temperature": float,
    "top_p": float,
    "seed": int,
    "bias": str,
    "bias_file": str,
}
"""Settings every backend takes: how the clinician talks, sampling, and a bias probe (`bias`:
an id from `bias_file`, default agents/prompts/clinician_biases.yaml; `none` for no bias)."""
HTTP_OPTIONS: Options = {
    "concurrency": int,
    "retries": int,
    "timeout": float,
    "connect_timeout": float,
    "api_key_env": str,
    "vision": _bool,
}
"""Settings of the backends that speak HTTP (requests in flight, retries, time-outs, key;
`vision=1`: the model reads images, so a result's picture is sent as an image content part)."""


@dataclass(frozen=True)
class BackendKind:
    """One registered backend: the spec prefixes it answers and how to build it."""

    name: str
    prefixes: tuple[str, ...]
    """Spec prefixes with their separator, e.g. ('openai/', 'openai:')."""
    build: Builder
    example: str
    options: Options = field(default_factory=dict)
    defaults: Callable[[str], dict[str, Any]] | None = None
    """Clinician settings a target needs unless the spec or run says otherwise."""


@dataclass
class ModelSpec:
    """A parsed model spec: its backend, its target (model, path or factory) and settings."""

    spec: str
    kind: BackendKind
    target: str
    options: dict[str, Any]
    url: str | None = None
    """A base URL given in the spec after '@' (None: from the environment or the default)."""

    def build(self) -> ChatBackend:
        """The backend (loads a local model or prepares an HTTP client; sends nothing)."""
        return self.kind.build(self)


_KINDS: dict[str, BackendKind] = {}
"""Prefix with separator ('openai/', 'openai:') -> its backend."""


def register_backend(
    name: str,
    *,
    example: str,
    prefixes: tuple[str, ...] | None = None,
    options: Options | None = None,
    defaults: Callable[[str], dict[str, Any]] | None = None,
) -> Callable[[Builder], Builder]:
    """Register a builder for specs starting with `name/` and `name:` (or `prefixes`)."""

    def deco(fn: Builder) -> Builder:
        kind = BackendKind(
            name, prefixes or (f"{name}/", f"{name}:"), fn, example, dict(options or {}), defaults
        )
        for p in kind.prefixes:
            _KINDS[p] = kind
        return fn

    return deco


def backend_names() -> list[str]:
    """Names of the registered backends (the model backends an agent spec may start with)."""
    return sorted({k.name for k in _KINDS.values()})


def spec_forms() -> list[str]:
    """One example per registered backend, for error messages and help."""
    examples = list(dict.fromkeys(k.example for k in _KINDS.values()))
    return [*examples, "openai:MODEL@URL (any OpenAI-compatible server)"]


_PREFIX = re.compile(r"^([A-Za-z][\w.-]*)([:/])(.*)$", re.S)


def _split_prefix(spec: str) -> tuple[str, str, str] | None:
    m = _PREFIX.match(spec)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def is_model_spec(spec: str) -> bool:
    """Does `spec` start with a registered backend prefix ('openai/', 'hf:', ...)?"""
    parts = _split_prefix(spec.strip())
    return parts is not None and parts[0] + parts[1] in _KINDS


def parse_spec(spec: str, run_options: dict[str, Any] | None = None) -> ModelSpec:
    """Parse and check a model spec (backend, target, settings) without building anything;
    `run_options` are run-wide clinician settings (`--max-tokens`...), the spec's own win."""
    spec = spec.strip()
    parts = _split_prefix(spec)
    kind = _KINDS.get(parts[0] + parts[1]) if parts else None
    if parts is None or kind is None:
        raise AgentSpecError(unknown_model_message(spec))
    target, _, tail = parts[2].partition("#")
    allowed = {**CLINICIAN_OPTIONS, **kind.options}
    opts: dict[str, Any] = {}
    for k, v in (run_options or {}).items():
        k = "seed" if k == "model_seed" else k
        if k in CLINICIAN_OPTIONS and v is not None:
            opts[k] = v
    for item in filter(None, (s.strip() for s in tail.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise AgentSpecError(
                f"agent '{spec}': unknown setting '{item}'{hint}; allowed: "
                f"{', '.join(sorted(allowed))} (as '#key=value,key=value')"
            )
        try:
            opts[key] = allowed[key](value.strip())
        except ValueError as e:
            raise AgentSpecError(f"agent '{spec}': setting '{key}': {e}") from None
    target, url = _split_url(target.strip())
    if not target:
        raise AgentSpecError(f"agent '{spec}': names no model (e.g. '{kind.example}')")
    if kind.defaults is not None:
        opts = {**kind.defaults(target), **opts}
    _check_bias(spec, opts)
    return ModelSpec(spec, kind, target, opts, url)


def make_backend(spec: str, run_options: dict[str, Any] | None = None) -> ChatBackend:
    """The chat backend a model spec names: for the model under test, the patient's wording
    and the judge alike."""
    return parse_spec(spec, run_options).build()


def _split_url(target: str) -> tuple[str, str | None]:
    """'MODEL@http://host/v1' -> ('MODEL', 'http://host/v1'); an '@' not followed by a URL
    belongs to the model name (Vertex-style 'claude-x@20240620')."""
    model, at, url = target.rpartition("@")
    if at and url.startswith(("http://", "https://")):
        return model.strip(), url.strip()
    return target, None


def _check_bias(spec: str, opts: dict[str, Any]) -> None:
    """A bias id must exist before any model loads; `bias_file` needs `bias`."""
    from clinicgym.agents.biases import NO_BIAS, load_biases

    if "bias" in opts and opts["bias"].strip().lower() != NO_BIAS:
        try:
            load_biases(opts.get("bias_file")).get(opts["bias"])
        except AgentSpecError as e:
            raise AgentSpecError(f"agent '{spec}': {e}") from None
    elif "bias_file" in opts and "bias" not in opts:
        raise AgentSpecError(f"agent '{spec}': 'bias_file' needs 'bias' (e.g. bias=recency)")


def display_name(spec: str) -> str:
    """How a spec is shown when no --name is given: without a base URL, which names the
    machine and not the model ('openai:m@http://h:8000/v1' -> 'openai:m')."""
    spec = spec.strip()
    head, sharp, tail = spec.partition("#")
    model, url = _split_url(head)
    return (model if url else head) + sharp + tail


# ---- "did you mean" --------------------------------------------------------------------------

MODEL_FAMILIES = {
    "gpt": "openai",
    "o1": "openai",
    "o3": "openai",
    "o4": "openai",
    "claude": "anthropic",
    "gemini": "google",
    "gemma": "google",
    "llama": "ollama",
    "qwen": "ollama",
    "mistral": "ollama",
    "smollm": "hf",
}
"""A bare model name's family -> the provider to suggest ('gpt-4o' -> 'openai/gpt-4o')."""


def suggest(spec: str, names: list[str]) -> str | None:
    """The spec the user probably meant: a near miss of a registered prefix or of `names`
    (baseline agents), or a bare model name with its provider; None if nothing is close."""
    spec = spec.strip()
    parts = _split_prefix(spec)
    if parts is not None:
        name, sep, rest = parts
        prefixes = list(_KINDS)
        close = difflib.get_close_matches(name.lower() + sep, prefixes, n=1, cutoff=0.6)
        if not close:  # right name, wrong separator or a typo with the other one
            other = "/" if sep == ":" else ":"
            close = difflib.get_close_matches(name.lower() + other, prefixes, n=1, cutoff=0.6)
        if close:
            return close[0] + rest
        head = name
    else:
        head = spec.partition("#")[0]
    close = difflib.get_close_matches(head.lower(), names + backend_names(), n=1, cutoff=0.6)
    if close and close[0] in names:
        return close[0] + spec[len(head) :]
    if close:  # a provider with no model: 'openai' -> 'openai/MODEL'
        return f"{close[0]}/MODEL"
    low = head.lower()
    for family, provider in MODEL_FAMILIES.items():
        if low.startswith(family):
            return f"{provider}/{spec}"
    return None


def unknown_model_message(spec: str, names: list[str] | None = None, what: str = "agent") -> str:
    """An error for a spec no backend (or baseline in `names`) answers: the likely fix first,
    then every known form."""
    guess = suggest(spec, list(names or []))
    head = f"unknown {what} spec '{spec}'" + (f"; did you mean '{guess}'?" if guess else ".")
    known = (", ".join(sorted(names)) + "; models: ") if names else "models: "
    return f"{head} Known: {known}{', '.join(spec_forms())}"


# ---- environment: keys and base URLs -----------------------------------------------------------


@cache
def _load_dotenv(where: Path) -> None:
    """Load `where` (a .env file) into the environment once; variables already set win."""
    if where.is_file():
        from dotenv import load_dotenv

        load_dotenv(where, override=False)


def provider_env(*names: str) -> str | None:
    """The first of `names` set in the environment or in ./.env (the environment wins)."""
    _load_dotenv(Path.cwd() / ".env")
    for n in names:
        value = os.environ.get(n)
        if value:
            return value
    return None


@dataclass(frozen=True)
class ProviderEnv:
    """Where a provider's key and base URL come from, as its own SDK or CLI reads them."""

    key: tuple[str, ...]
    url: tuple[str, ...]
    default_url: str


PROVIDER_ENV: dict[str, ProviderEnv] = {
    "openai": ProviderEnv(("OPENAI_API_KEY",), ("OPENAI_BASE_URL",), "https://api.openai.com/v1"),
    "anthropic": ProviderEnv(
        ("ANTHROPIC_API_KEY",), ("ANTHROPIC_BASE_URL",), "https://api.anthropic.com"
    ),
    # google-genai: GOOGLE_API_KEY wins over GEMINI_API_KEY; GOOGLE_GEMINI_BASE_URL is the host
    "google": ProviderEnv(
        ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
        ("GOOGLE_GEMINI_BASE_URL",),
        "https://generativelanguage.googleapis.com",
    ),
    "vllm": ProviderEnv(("VLLM_API_KEY",), ("VLLM_BASE_URL",), "http://localhost:8000/v1"),
    # inspect_ai reads OLLAMA_BASE_URL; Ollama itself reads OLLAMA_HOST (host:port, no /v1)
    "ollama": ProviderEnv(
        ("OLLAMA_API_KEY",), ("OLLAMA_BASE_URL", "OLLAMA_HOST"), "http://localhost:11434/v1"
    ),
}
"""Each HTTP provider's key and base-URL variables, first set wins, and its default URL."""


def base_url(provider: str, given: str | None) -> str:
    """The base URL: the spec's '@URL', else the provider's variable, else its default."""
    env = PROVIDER_ENV[provider]
    if given:
        return given
    url = provider_env(*env.url)
    if not url:
        return env.default_url
    if provider == "ollama" and not os.environ.get("OLLAMA_BASE_URL"):
        url = url if "://" in url else f"http://{url}"  # OLLAMA_HOST is '127.0.0.1:11434'
        url = url.rstrip("/") + "/v1"
    return url


def key_env(provider: str, spec: ModelSpec) -> str:
    """The name of the variable holding the key: `#api_key_env=` or the first one set."""
    if "api_key_env" in spec.options:
        return str(spec.options["api_key_env"])
    names = PROVIDER_ENV[provider].key
    provider_env(*names)  # loads ./.env
    return next((n for n in names if os.environ.get(n)), names[0])


def _require_key(provider: str, spec: ModelSpec, url: str, key: str) -> None:
    """A hosted API (its default URL) answers nothing without a key: say so now, before any
    episode is played, rather than once per episode as an HTTP 401."""
    env = PROVIDER_ENV[provider]
    hosted = env.default_url.startswith("https://")
    if hosted and url.rstrip("/") == env.default_url.rstrip("/") and not os.environ.get(key):
        raise AgentSpecError(
            f"agent '{spec.spec}': no API key: set {' or '.join(env.key)} (in the "
            f"environment or a .env file here), or point {env.url[0]} at a server that "
            "needs none"
        )


def _http(spec: ModelSpec) -> dict[str, Any]:
    """Connection settings every HTTP backend takes from the spec."""
    o = spec.options
    return {
        "concurrency": o.get("concurrency", 64),
        "max_retries": o.get("retries", 5),
        "read_timeout": o.get("timeout", 120.0),
        "connect_timeout": o.get("connect_timeout", 10.0),
    }


# ---- the backends ------------------------------------------------------------------------------


def _openai_compatible(provider: str) -> Builder:
    def build(spec: ModelSpec) -> ChatBackend:
        from clinicgym.agents.backends.openai import OpenAIBackend

        url, key = base_url(provider, spec.url), key_env(provider, spec)
        _require_key(provider, spec, url, key)
        return OpenAIBackend(spec.target, url, api_key_env=key, **_http(spec))

    build.__doc__ = f"An OpenAI-compatible client for `{provider}/MODEL` over aiohttp."
    return build


register_backend("openai", example="openai/gpt-4o", options=HTTP_OPTIONS)(
    _openai_compatible("openai")
)
register_backend("ollama", example="ollama/llama3.2", options=HTTP_OPTIONS)(
    _openai_compatible("ollama")
)
register_backend("vllm", example="vllm/MODEL", prefixes=("vllm/",), options=HTTP_OPTIONS)(
    _openai_compatible("vllm")
)


@register_backend("anthropic", example="anthropic/claude-sonnet-4-5", options=HTTP_OPTIONS)
def _anthropic(spec: ModelSpec) -> ChatBackend:
    """Anthropic's Messages API over the same aiohttp client."""
    from clinicgym.agents.backends.anthropic import AnthropicBackend

    url, key = base_url("anthropic", spec.url), key_env("anthropic", spec)
    _require_key("anthropic", spec, url, key)
    return AnthropicBackend(spec.target, url, api_key_env=key, **_http(spec))


@register_backend("google", example="google/gemini-2.5-flash", options=HTTP_OPTIONS)
def _google(spec: ModelSpec) -> ChatBackend:
    """Google's Gemini API (generateContent) over the same aiohttp client."""
    from clinicgym.agents.backends.gemini import GeminiBackend

    url, key = base_url("google", spec.url), key_env("google", spec)
    _require_key("google", spec, url, key)
    return GeminiBackend(spec.target, url, api_key_env=key, **_http(spec))


SMOLLM2_DEFAULTS = {"max_tokens": 32, "one_line": True}
"""hf:smollm2 rambles past its one line (and writes the patient's part); stopping there and a
short budget keep the demo within minutes on a CPU."""
EMBEDDED_DEFAULTS = {
    "smollm2": SMOLLM2_DEFAULTS,
    "gemma3-270m": {**SMOLLM2_DEFAULTS, "max_turns": 8},
}
"""Settings of the embedded models (`hf/smollm2`, `hf/gemma3-270m`). Gemma 3 270M, a pretrained
model continuing a transcript, writes the patient's next line too, so it stops at one line; and
it ends after 8 turns of its own: in make demo it either diagnosed within 4 turns or repeated one
examination until the run's 20-turn budget ran out (3 of 12 cases, two thirds of its requests)."""


@register_backend(
    "hf",
    example="hf/smollm2",
    options={"batch": int, "dtype": str, "cache_mb": int, "threads": int, "vision": _bool},
    defaults=lambda target: dict(EMBEDDED_DEFAULTS.get(target, {})),
)
def _hf(spec: ModelSpec) -> ChatBackend:
    """`hf/smollm2`, `hf/gemma3-270m`, `hf:/path/to/model_dir`, a .gguf file or a cached hub
    name (offline); with `vision=1` (or a LLaVA-like directory) a vision-language model."""
    from clinicgym.agents.backends.hf import HFBackend
    from clinicgym.agents.backends.hf_vision import HFVisionBackend, is_vision_only

    o = spec.options
    if o.get("vision") or is_vision_only(spec.target):
        return HFVisionBackend.load(
            spec.target,
            dtype=o.get("dtype", "auto"),
            max_batch=o.get("batch", 16),
            threads=o.get("threads"),
        )
    return HFBackend.load(
        spec.target,
        dtype=o.get("dtype", "auto"),
        max_batch=o.get("batch", 16),
        cache_mb=o.get("cache_mb", 1024),
        threads=o.get("threads"),
    )


@register_backend(
    "vllm",
    example="vllm:/path/to/model",
    prefixes=("vllm:",),
    options={"batch": int, "dtype": str, "max_model_len": int},
)
def _vllm_engine(spec: ModelSpec) -> ChatBackend:
    """`vllm:PATH`: vLLM's in-process engine (extra `vllm`)."""
    from clinicgym.agents.backends.vllm import VLLMBackend

    o = spec.options
    return VLLMBackend.load(
        spec.target,
        dtype=o.get("dtype", "auto"),
        max_batch=o.get("batch", 64),
        max_model_len=o.get("max_model_len", 4096),
    )


@register_backend(
    "langchain", example="langchain:my_module:make_chat_model", prefixes=("langchain:",)
)
def _langchain(spec: ModelSpec) -> ChatBackend:
    """`langchain:module:factory`: `module.factory()` returns any LangChain BaseChatModel."""
    import importlib

    from clinicgym.agents.backends.langchain import LangChainBackend

    module_name, colon, attr = spec.target.rpartition(":")
    if not colon or not module_name or not attr:
        raise AgentSpecError(
            f"agent '{spec.spec}': expected 'langchain:module:factory', e.g. "
            "'langchain:my_models:make_chat_model'"
        )
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except ImportError as e:
        raise AgentSpecError(f"agent '{spec.spec}': cannot import '{module_name}' ({e})") from None
    except AttributeError:
        raise AgentSpecError(f"agent '{spec.spec}': '{module_name}' has no '{attr}'") from None
    return LangChainBackend(fn(), name=f"langchain:{spec.target}")
