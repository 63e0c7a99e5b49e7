"""Case records: the ground truth a patient is built from, never shown to the model under test.

Small typed pydantic models that round-trip through JSON.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CASE_FORMAT_VERSION = 1

FactCategory = Literal[
    "chief_complaint",
    "hpi",
    "pmh",
    "medication",
    "allergy",
    "family",
    "social",
    "ros",
    "vital",
    "exam",
    "lab",
    "imaging",
    "genomics",
    "phi",
]
Salience = Literal["must_ask", "should_ask", "incidental"]
HowRevealed = Literal["ask", "examine", "order"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Fact(_Record):
    """One atomic, checkable statement about the patient (pertinent negatives are facts too)."""

    id: str
    """Unique within the case, e.g. 'f03'."""
    category: FactCategory
    concept: str
    """A KB code: a finding, test or vital id, a drug id (medication/allergy), or 'phi.name' etc."""
    text: str
    """As the patient would say it (history) or as the report reads (exam, lab, imaging)."""
    value: str | float | None = None
    """Measured value for vitals and numeric labs."""
    unit: str | None = None
    present: bool = True
    """False for a pertinent negative: the patient denies it, the test is normal."""
    abnormal: bool = False
    """True for an abnormal exam, vital or test result."""
    salience: Salience = "incidental"
    modality: Literal["text", "table", "image", "variants"] = "text"
    how_revealed: HowRevealed = "ask"
    system: str | None = None
    """The examination system that reveals an exam fact (respiratory, abdominal, ...)."""
    source: str | None = None
    """Where the fact came from: the KB key or importer field it was generated from."""


class Diagnosis(_Record):
    """The answer: an ICD-10-CM code, a name and the synonyms scoring accepts."""

    code: str
    name: str
    synonyms: list[str] = []
    condition_id: str | None = None
    """The KB condition id, or None for an imported diagnosis outside the KB."""


Style = Literal["plain", "verbose", "reserved", "anxious", "upset", "tangential", "pleasing"]
Bias = Literal[
    "recency",
    "internet_self_diagnosis",
    "distrust_of_clinicians",
    "cultural_treatment_beliefs",
    "minimising",
]


class Persona(_Record):
    """How the patient talks and what they believe. It changes how and when facts come out
    (volunteered, only when asked directly, only when asked twice), never which are true."""

    style: Style = "plain"
    personality: str = "practical"
    """A short description for LLM wording, e.g. 'warm and chatty'."""
    health_literacy: Literal["low", "medium", "high"] = "medium"
    language_register: Literal["formal", "casual", "colloquial"] = "casual"
    biases: list[Bias] = []
    belief: str | None = None
    """What the patient believes is wrong (a look-alike, never the true diagnosis) or about
    treatment; said when asked what they think, for the biases that produce one."""
    adherence: Literal["good", "partial", "poor"] = "good"
    """How reliably they take their regular medicines (part of the record: said when asked)."""
    volunteer: list[str] = []
    """Fact ids the patient offers unprompted with the reason for the visit."""
    reluctant: list[str] = []
    """Fact ids given only when asked a second time (the first time, an evasive non-answer)."""
    asides: list[str] = []
    """Non-clinical remarks a tangential patient drifts into (part of the record)."""
    speaker: Literal["patient", "caregiver"] = "patient"
    """A caregiver answers for a young child."""

    @property
    def verbosity(self) -> Literal["terse", "plain", "talkative"]:
        """Reply length: reserved patients are terse; verbose, anxious, tangential ones talk."""
        if self.style == "reserved":
            return "terse"
        if self.style in ("verbose", "anxious", "tangential"):
            return "talkative"
        return "plain"


class PHI(_Record):
    """Synthetic protected health information (Faker); never a real person."""

    name: str
    date_of_birth: str
    mrn: str
    address: str
    phone: str
    email: str
    insurance_id: str


class RequiredAction(_Record):
    """An action the case demands, e.g. refer to the emergency department within 6 turns."""

    action: Literal["refer"]
    to: str
    level: Literal["emergency", "urgent"]
    within_turns: int
    source: str


class Lineage(_Record):
    """Where the case came from, so it can be regenerated and its changes traced."""

    source: str
    """'kb-sampler', 'sdv:<synthesizer>', 'import:agentclinic', ..."""
    generator_version: str
    kb_version: str | None = None
    seed: int | None = None
    index: int | None = None
    parent_ids: list[str] = []
    annotations_applied: list[str] = []


class Artefact(_Record):
    """A multi-modal result: a lab table, a generated image, or a variant table.

    `report` is what a text-only model sees; `table` holds rows for lab and variant tables;
    `image` names a deterministic generator and its parameters (the pixels are rendered on
    demand, so cases stay small and the same case always yields the same picture).
    """

    id: str
    kind: Literal["lab_table", "image", "variants"]
    concept: str
    """The test id (or 'genetic_testing') whose order reveals it."""
    title: str
    report: str
    table: list[dict[str, Any]] = []
    image: dict[str, Any] | None = None
    fact_ids: list[str] = []
    """The case facts this artefact shows."""


class Difficulty(_Record):
    """How hard a generated case is, measured with the generator's own model
    (patients/cases/posterior.py) when the case is realised."""

    cluster_size: int
    """Conditions still possible after the opening (complaint, setting, age and sex)."""
    prior: float
    """P(true condition | opening): what the opening alone gives the truth."""
    steps_to_90: int | None
    """Observations the greedy information-gain policy needs, seeing the record's answers, to
    put 90% on the true condition; None if it never does (the record does not allow it)."""
    atypical: bool
    tier: Literal["easy", "medium", "hard"]
    """easy: steps_to_90 <= 3; medium: <= 8; hard: more, or never."""


class AgeDetail(_Record):
    """A young infant's age as the record gives it, finer than `Case.age` (whole years)."""

    value: float = Field(ge=0)
    unit: Literal["hours", "days", "weeks", "months"]
    gestational_weeks: float | None = None
    """Gestational age at birth, where the record gives it ("born at 31 weeks' gestation")."""
    text: str = ""
    """The record's words ("Newborn, six hours post delivery")."""

    def days(self) -> float:
        """The age in days."""
        per = {"hours": 1 / 24, "days": 1.0, "weeks": 7.0, "months": 30.44}[self.unit]
        return self.value * per


class Case(_Record):
    """A synthetic patient: demographics, facts, the answer, and where it came from."""

    format_version: int = CASE_FORMAT_VERSION
    id: str
    age: int = Field(ge=0, le=120)
    sex: Literal["female", "male", "unspecified"]
    """'unspecified' only for an imported record that never says (no word, no pronoun)."""
    setting: str
    facts: list[Fact]
    diagnosis: Diagnosis
    differential: list[Diagnosis] = []
    required_actions: list[RequiredAction] = []
    persona: Persona = Persona()
    closed_world: bool = False
    """True when the record is complete for KB history findings: a KB finding it does not list
    is absent, and the patient denies it (as a real patient would) instead of saying 'I don't
    know'. KB-sampled cases are closed-world; imported free-text cases are not."""
    phi: PHI
    artefacts: list[Artefact] = []
    lineage: Lineage
    presentation: str | None = None
    """The presentation it was generated from (presentation-first cases), e.g. 'chest_pain'."""
    difficulty: Difficulty | None = None
    age_detail: AgeDetail | None = None
    """An infant's age in hours, days, weeks or months (imported records), and gestation."""
    extra: dict[str, Any] = {}
    """Room for importer-specific fields; never read by scoring."""

    def facts_by_concept(self) -> dict[str, list[Fact]]:
        """Facts grouped by concept, for matching questions to what the record holds."""
        out: dict[str, list[Fact]] = {}
        for f in self.facts:
            out.setdefault(f.concept, []).append(f)
        return out

    def content_hash(self) -> str:
        """sha256 of the case's JSON: freezes suites and ties transcripts to their case."""
        # fields added since format 1 are left out while unset, so older cases keep their hash
        added = ("presentation", "difficulty", "age_detail")
        unset = {k for k in added if getattr(self, k) is None}
        return hashlib.sha256(self.model_dump_json(exclude=unset).encode()).hexdigest()
