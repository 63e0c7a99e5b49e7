"""Playing one probe consultation: a fresh agent from its factory, a case, a seed, an env.

Probes take agent factories (anything returning an object with the `Agent` protocol), so
`scoring` never imports `agents`. An agent or env exception becomes an error string, counted
apart by each probe, never a value.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clinicgym.envs.consultation import ConsultationEnv, Modality, PatientFactory
from clinicgym.envs.episode import Episode, TerminationReason
from clinicgym.envs.protocols import Agent, CaseReader
from clinicgym.patients.cases.case import Case, Diagnosis
from clinicgym.patients.knowledge.kb import KnowledgeBase
from clinicgym.scoring.diagnosis import matches, normalise

AgentFactory = Callable[[], Agent]
"""Makes one fresh agent per consultation."""
DEFAULT_MAX_TURNS = 20


@dataclass
class Played:
    """One finished probe consultation: the episode (None if it failed), the agent and the
    env's last observation and info (for a follow-up question), or the error."""

    episode: Episode | None
    agent: Any
    observation: dict[str, Any]
    info: dict[str, Any]
    error: str | None = None


def _error(exc: BaseException, where: str) -> str:
    return f"{where}: " + "".join(traceback.format_exception_only(type(exc), exc)).strip()


async def play(
    factory: AgentFactory,
    case: Case,
    kb: KnowledgeBase,
    *,
    seed: int,
    max_turns: int = DEFAULT_MAX_TURNS,
    patient_factory: PatientFactory | None = None,
    wrap: Callable[[Any], Any] | None = None,
    label: str = "probe",
    modality: Modality = "text",
) -> Played:
    """Play `case` to its end with a fresh agent (optionally wrapped) in an env showing results
    in `modality`; never raises."""
    env = ConsultationEnv(
        [case], kb=kb, max_turns=max_turns, patient_factory=patient_factory, modality=modality
    )
    agent: Any = None
    obs: dict[str, Any] = {}
    info: dict[str, Any] = {}
    try:
        agent = factory()
        if wrap is not None:
            agent = wrap(agent)
        if isinstance(agent, CaseReader):
            agent.read_case(case)
        obs, info = env.reset(
            seed=seed,
            options={
                "case": case,
                "agent_id": getattr(agent, "agent_id", "agent"),
                "episode_id": label,
            },
        )
        agent.reset(obs, info)
    except Exception as e:
        return Played(None, agent, obs, info, _error(e, f"{label}: reset"))
    while True:
        try:
            action = await agent.act(obs, info)
        except Exception as e:
            return Played(None, agent, obs, info, _error(e, f"{label}: agent"))
        try:
            obs, _r, terminated, truncated, info = await env.astep(action)
        except Exception as e:
            return Played(None, agent, obs, info, _error(e, f"{label}: env"))
        if terminated or truncated:
            episode: Episode = info["episode"]
            if episode.termination in (TerminationReason.AGENT_ERROR, TerminationReason.ENV_ERROR):
                return Played(None, agent, obs, info, f"{label}: {episode.termination}")
            return Played(episode, agent, obs, info)


def top_diagnosis(episode: Episode) -> str | None:
    """The clinician's first-ranked diagnosis, or None."""
    dx = episode.outcome.diagnoses
    return dx[0].name if dx else None


def resolve_diagnosis(name: str, case: Case, kb: KnowledgeBase) -> Diagnosis:
    """The diagnosis a stated name means: the case's own if it matches, else the first KB
    condition it names, else the name itself (matched by normalised spelling)."""
    if matches(name, case.diagnosis):
        return case.diagnosis
    for d in case.differential:
        if matches(name, d):
            return d
    for c in kb.conditions.values():
        dx = Diagnosis(code=c.icd10, name=c.name, synonyms=list(c.synonyms), condition_id=c.id)
        if matches(name, dx):
            return dx
    return Diagnosis(code="-", name=normalise(name) or name, condition_id="(unknown)")


def diagnosis_value(episode: Episode, target: Diagnosis, mode: str = "confidence") -> float:
    """How strongly the episode's outcome backs `target`: `confidence` is its stated confidence
    where it is listed (1 if first and no confidence is stated, 0 if listed lower without one);
    `top1` is 1 if it is first; 0 if it is not listed at all."""
    for i, d in enumerate(episode.outcome.diagnoses):
        if matches(d.name, target):
            if mode == "top1":
                return float(i == 0)
            if d.confidence is not None:
                return float(d.confidence)
            return float(i == 0)
    return 0.0
