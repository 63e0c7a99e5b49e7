"""Composes the patient for a run: grounded templates, or an LLM wording them behind the guard.

`patients` never imports `agents`: this module (top layer) builds the chat backend from a model
spec and hands `patients.LLMWordedPatient` a plain async callable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clinicgym.envs.protocols import Patient
from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.kb import KnowledgeBase
from clinicgym.patients.patient.guard import AnswerGuard
from clinicgym.patients.patient.llm_patient import LLMWordedPatient
from clinicgym.patients.patient.matching import matcher_for
from clinicgym.patients.patient.patient import GroundedPatient
from clinicgym.patients.patient.replay import ReplayCache
from clinicgym.runs import layout
from clinicgym.runs.errors import RunError

PATIENT_WORDING_PARAMS = {"max_tokens": 64, "temperature": 0.0}
"""Patient wording is short and greedy, so reruns are identical even without the cache."""


class PatientMaker:
    """Makes one patient per episode; owns the wording backend and the replay cache."""

    def __init__(self, kb: KnowledgeBase, spec: str, backend: Any, cache: ReplayCache) -> None:
        self.kb = kb
        self.spec = spec
        self.backend = backend
        self.cache = cache
        self.matcher = matcher_for(kb)

    async def _chat(self, messages: list[dict[str, str]]) -> str:
        reply = await self.backend.chat(messages, **PATIENT_WORDING_PARAMS)
        return str(reply.text)

    def __call__(self, case: Case) -> Patient:
        grounded = GroundedPatient(case, self.matcher)
        guard = AnswerGuard(case, self.matcher, self.kb)
        return LLMWordedPatient(grounded, self._chat, guard, cache=self.cache, model_id=self.spec)

    async def aclose(self) -> None:
        self.cache.close()
        if hasattr(self.backend, "aclose"):
            await self.backend.aclose()


def make_patient_maker(
    spec: str, kb: KnowledgeBase, out: Path, cache_path: str | None, mode: str
) -> PatientMaker | None:
    """None for the grounded patient; else a maker over the named model backend."""
    if spec == "grounded":
        return None
    from clinicgym.agents.backends.registry import (
        is_model_spec,
        make_backend,
        unknown_model_message,
    )
    from clinicgym.agents.errors import AgentSpecError

    if not is_model_spec(spec):
        raise RunError("--patient: " + unknown_model_message(spec, ["grounded"], what="patient"))
    try:
        backend = make_backend(spec)
    except AgentSpecError as e:
        raise RunError(f"--patient '{spec}': {e}") from None
    cache = ReplayCache(Path(cache_path) if cache_path else out / layout.PATIENT_CACHE, mode)  # type: ignore[arg-type]
    return PatientMaker(kb, spec, backend, cache)
