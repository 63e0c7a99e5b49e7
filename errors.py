"""The root of every error clinicgym raises on purpose, so callers can catch them all at once."""


class ClinicGymError(Exception):
    """Base of all clinicgym errors; a message says where, what was found and what is allowed."""
