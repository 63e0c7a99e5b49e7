"""Models under test and baselines, built from spec strings (`scripted`, `hf:smollm2`, ...)."""

from clinicgym.agents.errors import AgentSpecError
from clinicgym.agents.registry import AgentFactory, agent_builder, known_agents, make_agent_factory

__all__ = ["AgentFactory", "AgentSpecError", "agent_builder", "known_agents", "make_agent_factory"]
