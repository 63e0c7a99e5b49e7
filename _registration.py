"""Gymnasium ids, registered on `import clinicgym` (Gymnasium 1.x has no plugin entry points)."""

from gymnasium.envs.registration import register, registry

CONSULTATION_ID = "clinicgym/Consultation-v0"
STRUCTURED_ID = "clinicgym/Consultation-Structured-v0"


def register_envs() -> None:
    """Register clinicgym's env ids once; their factories live in `clinicgym.runs.factory`."""
    if CONSULTATION_ID not in registry:
        register(id=CONSULTATION_ID, entry_point="clinicgym.runs.factory:make_consultation_env")
    if STRUCTURED_ID not in registry:
        register(id=STRUCTURED_ID, entry_point="clinicgym.runs.factory:make_structured_env")
