"""Errors raised by `clinicgym.scoring`."""

from clinicgym.errors import ClinicGymError


class ScoringError(ClinicGymError):
    """Scoring cannot go on (a run directory without what a report needs, ...)."""


class RiskWeightsError(ScoringError):
    """A risk-weights file is invalid; the message lists every problem, naming file and field."""


class ProbeError(ScoringError):
    """An explainability probe cannot run as asked (no case to probe, a bad option, ...)."""
