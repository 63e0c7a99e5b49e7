"""The LLM judge for policy checks, built from a model spec with the one backend registry.

Kept out of the CLI so that `runs/runner.py` (and anyone else) builds the judge without
importing a command module.
"""

from __future__ import annotations

from typing import Any


def judge_from_spec(spec: str | None) -> Any:
    """An LLM judge (chat messages -> text) over any model spec the agents take
    ('openai/gpt-4o', 'openai:MODEL@URL', 'hf:smollm2', ...); None if none."""
    if not spec:
        return None
    from clinicgym.agents.backends.registry import (
        is_model_spec,
        make_backend,
        unknown_model_message,
    )
    from clinicgym.agents.errors import AgentSpecError
    from clinicgym.policies.errors import PolicyError

    if not is_model_spec(spec):
        raise PolicyError("--judge: " + unknown_model_message(spec, what="judge"))
    try:
        backend = make_backend(spec)
    except AgentSpecError as e:
        raise PolicyError(f"judge {spec!r}: {e}") from None

    async def judge(messages: list[dict[str, str]]) -> str:
        reply = await backend.chat(messages, temperature=0.0, max_tokens=300)
        return reply.text

    return judge
