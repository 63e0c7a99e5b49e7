"""Errors raised by `clinicgym.patients`: bad knowledge-base files, bad cases, bad questions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clinicgym.errors import ClinicGymError


class KBError(ClinicGymError):
    """The KB failed validation; lists every problem found, each naming file and field."""

    def __init__(self, where: Path | str, problems: Sequence[str]) -> None:
        self.where = str(where)
        self.problems = list(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{self.where} has {count} {noun}:\n{lines}")


class CaseError(ClinicGymError):
    """A case could not be built or read (e.g. an unknown condition id, a malformed cases file)."""


class EncoderError(ClinicGymError):
    """The sentence-embedding model the patient matches questions with could not be loaded."""


class CohortError(ClinicGymError):
    """A cohort table or directory is unusable: missing or mistyped columns, unknown codes."""


class SynthesisError(CohortError):
    """A synthesizer or sampling plan cannot do what was asked (an impossible target or filter)."""


class ImporterError(CohortError):
    """An external file (CSV, Synthea export, FHIR bundle) could not be read into records."""


class PatientReplayError(ClinicGymError):
    """Replay-only mode found no recorded patient output for this dialogue state."""
