"""Errors raised by `clinicgym.runs`."""

from clinicgym.errors import ClinicGymError


class RunError(ClinicGymError):
    """A run cannot start or resume (bad spec, an output directory holding another run, ...)."""


class StoreError(RunError):
    """The run directory is damaged (an unreadable line in the middle of episodes.jsonl, ...)."""


class ConfigError(RunError):
    """A run spec file cannot be read or does not describe a valid run (file, key, value)."""


class SuiteError(RunError):
    """A named suite is unknown, its registry is malformed, or it no longer reproduces."""


class LeaderboardError(RunError):
    """A submission bundle cannot be packed, or fails verification (the reason says which)."""


class EpisodeBug(RunError):
    """An exception inside clinicgym's own env, patient, monitors or scoring during an episode:
    a bug. The run stops on it (exit status 3) instead of leaving the episode out."""

    def __init__(self, episode_id: str, message: str, trace: str) -> None:
        super().__init__(f"clinicgym bug in episode {episode_id}: {message}")
        self.episode_id = episode_id
        self.message = message
        self.trace = trace
