"""Agent spec strings -> agent factories: the baselines (`random`, `scripted`, `oracle`, ...)
registered here, and every model spec of the backend registry (`openai/gpt-4o`, `hf:smollm2`,
...; agents/backends/registry.py), played by the LLM clinician.

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
    """The factory for an agent spec such as 'scripted', 'openai/gpt-4o' or 'openai:MODEL@URL'."""
    from clinicgym.agents.backends.registry import is_model_spec, unknown_model_message

    spec = spec.strip()
    if is_model_spec(spec):
        from clinicgym.agents.backends.spec import clinician_factory

        return clinician_factory(spec, dict(options or {}))
    name, _, rest = spec.partition(":")
    if "#" in name:  # baseline options: 'scripted#budget=4'
        name, _, opts = name.partition("#")
        rest = f"#{opts}" + (f":{rest}" if rest else "")
    builder = _BUILDERS.get(name)
    if builder is None:
        raise AgentSpecError(unknown_model_message(spec, known_agents()))
    if _has_bias(rest):
        from clinicgym.agents.backends.registry import backend_names

        raise AgentSpecError(
            f"agent '{spec}': '{name}' is a baseline, not a language model; a bias is a sentence "
            "in a model's instructions, so only model backends take '#bias=' "
            f"({', '.join(backend_names())}), e.g. 'hf:smollm2#bias=recency'"
        )
    return builder(rest, kb, dict(options or {}))


def check_agent_spec(spec: str) -> None:
    """Raise AgentSpecError if `spec` names no agent, or a model spec is malformed; loads
    nothing and connects nowhere, so a typo fails before cases are made or models load."""
    from clinicgym.agents.backends.registry import is_model_spec, parse_spec, unknown_model_message

    spec = spec.strip()
    if is_model_spec(spec):
        parse_spec(spec)
    elif spec.partition(":")[0].partition("#")[0] not in _BUILDERS:
        raise AgentSpecError(unknown_model_message(spec, known_agents()))


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


@agent_builder("human")
def _human(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    from clinicgym.agents.human import HumanAgent

    _no_argument("human", rest)
    return lambda: HumanAgent()
