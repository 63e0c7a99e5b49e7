"""clinicgym: Gymnasium environments in which a model under test plays the clinician.

The folders of the repository are the architecture (docs/architecture.md): `patients` <-
`envs` <- {`policies`, `agents`} <- `scoring` <- `runs`. Importing `clinicgym` registers the
Gymnasium ids, e.g. `gymnasium.make("clinicgym/Consultation-v0")`. `clinicgym.evaluate(...)`
plays a run from Python (runs/api.py); it is imported on first use, so `import clinicgym`
stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from clinicgym._registration import CONSULTATION_ID, register_envs
from clinicgym.errors import ClinicGymError

if TYPE_CHECKING:
    from clinicgym.runs.api import AgentResult, EvaluationResult, evaluate

register_envs()

_LAZY = {"evaluate", "EvaluationResult", "AgentResult"}
"""Names served from clinicgym.runs.api on first access (PEP 562), not at import."""


def __getattr__(name: str) -> Any:
    """`clinicgym.evaluate` and its result types, imported when first used."""
    if name in _LAZY:
        from clinicgym.runs import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clinicgym' has no attribute {name!r}")


__all__ = [
    "CONSULTATION_ID",
    "AgentResult",
    "ClinicGymError",
    "EvaluationResult",
    "__version__",
    "evaluate",
]
