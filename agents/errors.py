"""Errors raised by `clinicgym.agents`."""

from clinicgym.errors import ClinicGymError


class AgentSpecError(ClinicGymError):
    """An agent spec string names no known agent or backend, or its arguments are wrong."""


class BackendError(ClinicGymError):
    """A model backend failed to answer (after its retries): the episode is an infrastructure
    error, never a wrong diagnosis."""


class MissingExtraError(AgentSpecError):
    """A backend needs an optional dependency that is not installed; the message gives the
    pip line."""
