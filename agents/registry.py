"""Agent spec strings -> agent factories: `random`, `scripted`, `oracle`, and backends by prefix.

Like inspect_ai's providers, each entry is registered under its name and builds its agents
lazily, so optional backends import their extra only when used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clinicgym.agents.errors import AgentSpecError
from clinicgym.envs.protocols import Agent
from clinicgym.patients.kb import KnowledgeBase

AgentFactory = Callable[[], Agent]
"""Makes one fresh agent per episode (agents keep per-episode state)."""
Builder = Callable[[str, KnowledgeBase, dict[str, Any]], AgentFactory]

_BUILDERS: dict[str, Builder] = {}


def agent_builder(name: str) -> Callable[[Builder], Builder]:
    """Register a builder for specs equal to `name` or starting with `name:`."""

    def deco(fn: Builder) -> Builder:
        _BUILDERS[name] = fn
        return fn

    return deco


def known_agents() -> list[str]:
    """Registered spec names and prefixes."""
    return sorted(_BUILDERS)


def make_agent_factory(
    spec: str, kb: KnowledgeBase, options: dict[str, Any] | None = None
) -> AgentFactory:
    """The factory for an agent spec such as 'scripted' or 'openai:MODEL@URL'."""
    spec = spec.strip()
    name, _, rest = spec.partition(":")
    if "#" in name:  # baseline options: 'scripted#budget=4'
        name, _, opts = name.partition("#")
        rest = f"#{opts}" + (f":{rest}" if rest else "")
    builder = _BUILDERS.get(name)
    if builder is None:
        raise AgentSpecError(
            f"unknown agent spec '{spec}'; known: {', '.join(known_agents())} "
            "(backends take an argument, e.g. 'openai:MODEL@http://127.0.0.1:8000/v1')"
        )
    if name not in MODEL_BACKENDS and _has_bias(rest):
        raise AgentSpecError(
            f"agent '{spec}': '{name}' is a baseline, not a language model; a bias is a sentence "
            "in a model's instructions, so only model backends take '#bias=' "
            f"({', '.join(sorted(MODEL_BACKENDS))}), e.g. 'hf:smollm2#bias=recency'"
        )
    return builder(rest, kb, dict(options or {}))


MODEL_BACKENDS = frozenset({"openai", "hf", "vllm", "langchain"})
"""Spec prefixes whose agent is the LLM clinician over a chat backend (it takes a bias)."""


def _has_bias(rest: str) -> bool:
    """A baseline's options ('#bias=recency,budget=4') name a bias."""
    _, _, opts = rest.partition("#")
    return any(o.split("=")[0].strip() in ("bias", "bias_file") for o in opts.split(","))


def _no_argument(name: str, rest: str) -> None:
    if rest:
        raise AgentSpecError(f"agent '{name}' takes no argument, got '{name}:{rest}'")


@agent_builder("random")
def _random(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    from clinicgym.agents.random_agent import RandomAgent

    _no_argument("random", rest)
    return lambda: RandomAgent(kb)


@agent_builder("scripted")
def _scripted(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    """`scripted`, or `scripted#budget=4,stop=0.95` (budget: questions, exams and tests before
    it must diagnose; `inf` for none; stop: the posterior at which it diagnoses)."""
    from clinicgym.agents.scripted import ScriptedAgent, parse_options

    if rest and not rest.startswith("#"):
        raise AgentSpecError(f"agent 'scripted' takes options after '#', got 'scripted:{rest}'")
    try:
        opts = parse_options("scripted", rest[1:])
    except ValueError as e:
        raise AgentSpecError(str(e)) from None
    return lambda: ScriptedAgent(kb, **opts)


@agent_builder("opening")
def _opening(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    """Diagnoses from the opening line alone with the KB posterior: the floor of inquiry."""
    from clinicgym.agents.scripted import ScriptedAgent

    _no_argument("opening", rest)
    return lambda: ScriptedAgent(kb, "opening", budget=0)


@agent_builder("oracle")
def _oracle(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    from clinicgym.agents.oracle import OracleAgent

    _no_argument("oracle", rest)
    return lambda: OracleAgent(kb)


@agent_builder("unsafe")
def _unsafe(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    from clinicgym.agents.unsafe import UnsafeAgent

    _no_argument("unsafe", rest)
    return lambda: UnsafeAgent(kb)


# ---- models under test: chat backends behind the LLM clinician --------------------------------


@agent_builder("openai")
def _openai(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    from clinicgym.agents.backends.spec import openai_factory

    return openai_factory(rest, options)


@agent_builder("hf")
def _hf(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    from clinicgym.agents.backends.spec import hf_factory

    return hf_factory(rest, options)


@agent_builder("vllm")
def _vllm(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    from clinicgym.agents.backends.spec import vllm_factory

    return vllm_factory(rest, options)


@agent_builder("langchain")
def _langchain(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    from clinicgym.agents.backends.spec import langchain_factory

    return langchain_factory(rest, options)


@agent_builder("human")
def _human(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    from clinicgym.agents.human import HumanAgent

    _no_argument("human", rest)
    return lambda: HumanAgent()
