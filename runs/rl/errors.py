"""Errors raised by `clinicgym.runs.rl`."""

from clinicgym.errors import ClinicGymError


class RLError(ClinicGymError):
    """An RL loop cannot go on (a suite that does not match its manifest, a rollout that cannot
    be tokenised, a baseline that cannot act)."""


class RLExtraError(RLError):
    """An RL trainer library is missing; the message has the pip line."""


def require(module: str, what: str) -> None:
    """Raise `RLExtraError` naming the `rl` extra if `module` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise RLExtraError(
            f"{what} needs the '{module}' package, which is not installed; run "
            "`pip install 'clinicgym[rl]' torch==2.13.0` (torch pinned so pip keeps the CPU build)"
        )
