"""The code maps importers use (LOINC observations, SNOMED CT conditions), from codes.yaml.

The file is validated on load; every problem names the file, the entry and the field.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clinicgym.patients.errors import ImporterError

CODES_FILE = Path(__file__).with_name("codes.yaml")
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
KB_SYSTEM = "urn:clinicgym:kb"
"""Code system for KB ids (conditions, findings, tests) in exported FHIR resources."""


class LoincEntry(BaseModel):
    """A LOINC observation code mapped to a KB vital sign or test, with its unit conversion."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str = Field(pattern=r"^[0-9]{1,7}-[0-9]$")
    kb: str
    kind: Literal["vital", "test"]
    unit: str
    """The UCUM unit the source reports."""
    factor: float = 1.0
    offset: float = 0.0
    display: str
    export: bool = True
    """Use this code when exporting (one code per KB id)."""

    def to_kb(self, value: float) -> float:
        return value * self.factor + self.offset

    def from_kb(self, value: float) -> float:
        return (value - self.offset) / self.factor


class SnomedEntry(BaseModel):
    """A SNOMED CT condition concept mapped to a KB condition."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str = Field(pattern=r"^[0-9]{6,18}$")
    kb: str
    display: str


class CodeMaps(BaseModel):
    """All code maps: LOINC by code, SNOMED by code."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1]
    sources: list[str] = Field(min_length=1)
    loinc: list[LoincEntry]
    snomed: list[SnomedEntry]

    def loinc_by_code(self) -> dict[str, LoincEntry]:
        return {e.code: e for e in self.loinc}

    def loinc_for_kb(self) -> dict[str, LoincEntry]:
        """KB id -> the LOINC entry used for export."""
        return {e.kb: e for e in self.loinc if e.export}

    def snomed_by_code(self) -> dict[str, str]:
        return {e.code: e.kb for e in self.snomed}


def load_codes(path: Path = CODES_FILE) -> CodeMaps:
    """Load and validate a code-map file; raise ImporterError listing every problem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ImporterError(f"{path}: cannot read ({e})") from None
    try:
        maps = CodeMaps.model_validate(raw)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = list(err["loc"])
            where = ""
            if len(loc) >= 2 and isinstance(loc[1], int) and isinstance(raw, dict):
                item = (raw.get(loc[0]) or [{}])[loc[1]]
                code = item.get("code") if isinstance(item, dict) else None
                where = f"{loc[0]} entry '{code}'" if code else f"{loc[0]} #{loc[1] + 1}"
                loc = loc[2:]
            field = ".".join(map(str, loc))
            problems.append(f"{where}{', ' if where else ''}field '{field}': {err['msg']}")
        raise ImporterError(
            f"{path.name} has {len(problems)} problems:\n  " + "\n  ".join(problems)
        ) from None
    seen: dict[str, str] = {}
    dupes = []
    for e in maps.loinc:
        if e.export and e.kb in seen:
            dupes.append(
                f"loinc entry '{e.code}': KB id '{e.kb}' is already exported as {seen[e.kb]}"
            )
        if e.export:
            seen[e.kb] = e.code
    if dupes:
        raise ImporterError(f"{path.name} has {len(dupes)} problems:\n  " + "\n  ".join(dupes))
    return maps


@cache
def default_codes() -> CodeMaps:
    """The bundled code maps, loaded once."""
    return load_codes()
