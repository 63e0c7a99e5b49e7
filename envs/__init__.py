"""The interaction: actions, transcripts, the agent/monitor protocols and the Gymnasium envs.

Importing `clinicgym` registers `clinicgym/Consultation-v0`. Gymnasium 1.x loads no plugin entry
points, so either `import clinicgym` first or name a module in the id:
`gymnasium.make("clinicgym.envs:clinicgym/Consultation-v0")`.
"""

from clinicgym._registration import CONSULTATION_ID, register_envs
from clinicgym.envs.action import (
    Action,
    ActionError,
    Ask,
    Diagnose,
    End,
    Examine,
    OrderTest,
    RankedDiagnosis,
    Refer,
    parse_action,
)
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.envs.episode import Episode, Event, Outcome, TerminationReason, Violation
from clinicgym.envs.protocols import Agent, AgentOutput, CaseReader, Monitor, Patient

register_envs()

__all__ = [
    "CONSULTATION_ID",
    "Action",
    "ActionError",
    "Agent",
    "AgentOutput",
    "Ask",
    "CaseReader",
    "ConsultationEnv",
    "Diagnose",
    "End",
    "Episode",
    "Event",
    "Examine",
    "Monitor",
    "OrderTest",
    "Outcome",
    "Patient",
    "RankedDiagnosis",
    "Refer",
    "TerminationReason",
    "Violation",
    "parse_action",
]
