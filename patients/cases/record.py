"""The flat record of what is true of one patient, before wording.

`sampler` draws records and `realise` turns them into Cases (and rebuilds a record from its
columns); both import them from here, so neither imports the other for them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class TestOutcome(BaseModel):
    """One test in a record: whether it is abnormal and its value or report."""

    model_config = ConfigDict(extra="forbid")
    abnormal: bool
    value: float | None = None
    text: str | None = None


class PatientRecord(BaseModel):
    """What is true of one synthetic patient: one row of a cohort, before wording."""

    model_config = ConfigDict(extra="forbid")
    age: int
    sex: Literal["female", "male"]
    ethnicity: str
    insurance: str
    condition_id: str
    chief_complaint: str
    findings: dict[str, bool]
    """Finding id -> present; absent ones become pertinent negatives."""
    vitals: dict[str, float]
    tests: dict[str, TestOutcome]
    comorbidities: list[str] = []
    allergies: list[str] = []
    setting: str | None = None
    """Where the patient is seen; None: the condition's first setting."""
    presentation: str | None = None
    """The presentation the case was drawn from (presentation-first generation)."""
    atypical: bool = False
    """True if the case presents atypically (its linked findings were scaled down)."""
