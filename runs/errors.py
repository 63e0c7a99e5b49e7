"""Errors raised by `clinicgym.runs`."""

from clinicgym.errors import ClinicGymError


class RunError(ClinicGymError):
    """A run cannot start or resume (bad spec, an output directory holding another run, ...)."""


class StoreError(RunError):
    """The run directory is damaged (an unreadable line in the middle of episodes.jsonl, ...)."""
