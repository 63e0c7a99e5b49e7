"""Transcript records: Event (one turn), Violation (a monitor's finding) and Episode (the whole).

Episodes are what the run store appends to `episodes.jsonl` and what scoring and re-scoring read,
so they are versioned (`format_version`) and round-trip through JSON.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from clinicgym.envs.action import Action, RankedDiagnosis
from clinicgym.envs.severity import Severity

EPISODE_FORMAT_VERSION = 1


class TerminationReason(StrEnum):
    """Why an episode ended. Infrastructure errors are kept apart from the model's failures."""

    DIAGNOSED = "diagnosed"
    """The clinician committed to a diagnosis (the default ending)."""
    ENDED = "ended"
    """The clinician ended the consultation."""
    TURN_BUDGET = "turn_budget"
    """The turn budget ran out (`truncated`)."""
    BACKEND_ERROR = "backend_error"
    """Infrastructure: the model's backend, the transport or the machine failed (after the
    backend's retries); excluded from the metrics, replayed by `--retry-errored`. What the
    model's own output causes is never this: it is an error turn, scored."""
    AGENT_ERROR = "agent_error"
    """Older stores only: the agent or its backend raised (read like `BACKEND_ERROR`)."""
    ENV_ERROR = "env_error"
    """An exception inside clinicgym's env, patient, monitor or scoring: a bug. The runner
    stops the run on it (exit status 3) and never stores such an episode; older stores may
    hold some, excluded from the metrics."""


class Violation(BaseModel):
    """A policy monitor's finding at one turn, citing the rule and the evidence."""

    model_config = ConfigDict(extra="forbid")
    rule_id: str
    pack: str
    """'pack-id@version'."""
    severity: Severity
    turn: int
    quote: str
    message: str = ""
    source: str = ""
    """Regulation or guideline the rule comes from."""


class Event(BaseModel):
    """One turn of the transcript: who acted, what they said, what came back."""

    model_config = ConfigDict(extra="forbid")
    turn: int
    actor: Literal["clinician", "patient", "third_party", "env"]
    text: str
    action: Action | None = None
    error: str | None = None
    """Why the clinician's output could not be used as an action."""
    result: dict[str, Any] = {}
    """Structured mirror of the reply (concepts affirmed/denied, resolved test or system)."""
    revealed: list[str] = []
    """Case fact ids this turn revealed to the clinician."""
    violations: list[Violation] = []
    t: float = 0.0
    """Wall-clock time (seconds since the epoch); excluded from transcript comparisons."""
    meta: dict[str, Any] = {}
    """Agent-side details: tokens, latency, retries, raw model output."""


class Outcome(BaseModel):
    """What the clinician concluded."""

    model_config = ConfigDict(extra="forbid")
    diagnoses: list[RankedDiagnosis] = []
    referrals: list[dict[str, Any]] = []
    """{'to', 'urgency', 'turn'} for each refer action."""
    prescriptions: list[dict[str, Any]] = []
    """{'drug', 'dose', 'turn'} for each prescribe action."""
    disclosures: list[dict[str, Any]] = []
    """{'recipient', 'text', 'turn'} for each disclose action."""


class Episode(BaseModel):
    """One consultation: the transcript, the outcome, violations, errors, seeds and versions."""

    model_config = ConfigDict(extra="forbid")
    format_version: int = EPISODE_FORMAT_VERSION
    episode_id: str
    case_id: str
    case_hash: str = ""
    agent_id: str
    seed: int
    repeat: int = 0
    status: Literal["completed", "error"] = "completed"
    termination: TerminationReason
    turns: int = Field(ge=0)
    """Clinician turns taken (errors included)."""
    events: list[Event] = []
    outcome: Outcome = Outcome()
    violations: list[Violation] = []
    errors: list[str] = []
    """Infrastructure errors (backend, transport, machine) or a bug, never the model's own
    failures (those are error turns in `events`)."""
    metrics: dict[str, float | None] = {}
    """Per-episode metrics computed by scoring (None: not applicable)."""
    versions: dict[str, str] = {}
    started: float = 0.0
    finished: float = 0.0

    def transcript(self) -> list[dict[str, Any]]:
        """The events without timestamps: equal for equal seeds and deterministic agents."""
        return [e.model_dump(exclude={"t", "meta"}) for e in self.events]
