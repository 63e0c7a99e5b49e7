"""The roles the env talks to, as Protocols: the model under test, the patient, the monitors.

The env never imports an implementation of these: `runs` composes agents, monitors and scorers
and hands them over, so imports point down the layers (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict

from clinicgym.envs.episode import Event, Violation
from clinicgym.patients.cases.case import Case
from clinicgym.patients.patient.patient import PatientReply


class AgentOutput(BaseModel):
    """An agent's turn: the raw action (text, tool call, dict or Action) plus what it cost."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    action: Any
    meta: dict[str, Any] = {}
    """Tokens, latency, retries, raw model output: copied into the clinician's Event."""


@runtime_checkable
class Agent(Protocol):
    """The model under test: sees observations, returns the next action."""

    agent_id: str

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        """Start a new episode from its first observation."""
        ...

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> Any:
        """The next action: a string, a tool-call dict, an Action, or an AgentOutput."""
        ...


@runtime_checkable
class CaseReader(Protocol):
    """A baseline that reads the answer (the oracle). Models under test never get the case."""

    def read_case(self, case: Case) -> None: ...


@runtime_checkable
class Patient(Protocol):
    """A patient agent: speaks for one case."""

    def opening(self) -> PatientReply: ...

    def answer(self, question: str, turn: int = 0) -> PatientReply: ...


@runtime_checkable
class Scenario(Protocol):
    """Puts policy under stress: may adapt the case at reset and inject third-party or patient
    lines before a clinician turn (a relative asking for results, a patient in crisis, ...)."""

    name: str

    def reset(self, case: Case, rng: np.random.Generator) -> Case:
        """The case to play (possibly changed, e.g. an allergy trap added)."""
        ...

    def before_turn(self, turn: int, history: Sequence[Event]) -> list[Event]:
        """Events shown to the clinician before it takes `turn` (third_party or patient lines)."""
        ...


@runtime_checkable
class Monitor(Protocol):
    """Watches every event of an episode and reports violations as they happen."""

    name: str

    def reset(self, case: Case) -> None: ...

    def observe(self, event: Event, history: Sequence[Event]) -> list[Violation]: ...
