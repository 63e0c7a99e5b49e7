"""Errors raised by `clinicgym.agents`."""

from clinicgym.errors import ClinicGymError


class AgentSpecError(ClinicGymError):
    """An agent spec string names no known agent or backend, or its arguments are wrong."""
