"""A model spec -> one shared backend and a factory of LLM clinicians over it.

The spec is parsed and its backend built by the one backend registry
(`agents/backends/registry.py`: `openai/gpt-4o`, `openai:MODEL@BASE_URL`, `hf:smollm2`, ...),
each with optional settings after '#': `hf:smollm2#max_tokens=32,batch=8`. A URL fragment is
never sent to a server, so '#' cannot clash with a base URL. Settings in the spec win over
run-wide ones (`--max-tokens`, `--temperature`, `--model-seed`), so one run can compare
variants of a model.
"""

from __future__ import annotations

import copy
from typing import Any

from clinicgym.agents.backends.base import ChatBackend
from clinicgym.agents.backends.registry import parse_spec
from clinicgym.agents.biases import NO_BIAS, BiasedClinician, load_biases
from clinicgym.agents.errors import AgentSpecError
from clinicgym.agents.llm_clinician import LLMClinician, PromptTemplate


def clinician_factory(spec: str, run_options: dict[str, Any] | None = None) -> ClinicianFactory:
    """The LLM clinician over the backend `spec` names (built now: a local model loads here)."""
    parsed = parse_spec(spec, run_options)
    return ClinicianFactory(parsed.spec, parsed.build(), parsed.options)


class ClinicianFactory:
    """Makes one LLMClinician per episode over one shared backend; `aclose` releases it."""

    def __init__(self, spec: str, backend: ChatBackend, opts: dict[str, Any]) -> None:
        self.spec = spec
        self.backend = backend
        self.template = PromptTemplate(opts.get("template"))
        self.use_tools = bool(opts.get("tools", False))
        self.history = opts.get("history")
        self.one_line = bool(opts.get("one_line", False))
        self.vision = bool(opts.get("vision", False))
        self.max_turns = opts.get("max_turns")
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
            "vision": self.vision,
            "max_turns": self.max_turns,
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
