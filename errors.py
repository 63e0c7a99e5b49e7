"""The root of every error clinicgym raises on purpose, so callers can catch them all at once."""

import importlib.util


class ClinicGymError(Exception):
    """Base of all clinicgym errors; a message says where, what was found and what is allowed."""


class MissingExtra(ClinicGymError):
    """A feature needs an optional dependency (a pyproject extra) that is not installed."""


def require_extra(
    extra: str, feature: str, *modules: str, error: type[ClinicGymError] = MissingExtra
) -> None:
    """Raise `error` naming the extra and its pip line if any of `modules` is not installed,
    so a light install (`pip install clinicgym`) says what to add instead of a bare ImportError."""
    missing = [m for m in modules if importlib.util.find_spec(m.split(".")[0]) is None]
    if missing:
        raise error(
            f"{feature} needs the '{extra}' extra ({', '.join(missing)} not installed): "
            f"pip install 'clinicgym[{extra}]'"
        )
