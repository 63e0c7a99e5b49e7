"""Errors raised by `clinicgym.policies`: bad packs, unknown checks or scenarios, failed replays."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clinicgym.errors import ClinicGymError


class PolicyError(ClinicGymError):
    """Base of the policy errors."""


class PackError(PolicyError):
    """A policy pack failed validation; lists every problem, each naming the file, rule and field.

    A pack with any problem is never used: a run never starts with a half-loaded pack.
    """

    def __init__(self, where: Path | str, problems: Sequence[str]) -> None:
        self.where = str(where)
        self.problems = list(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{self.where} has {count} {noun}:\n{lines}")


class PackNotFoundError(PolicyError):
    """A pack reference ('hipaa-privacy@2', a path) names no pack that exists."""


class ScenarioError(PolicyError):
    """A scenario spec is unknown or has bad arguments."""


class ReplayError(PolicyError):
    """A stored episode cannot be re-scored faithfully (e.g. its case no longer hashes the same)."""
