"""The run spec: one typed record every CLI flag maps onto, written into the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

IDENTITY_FIELDS = (
    "agents",
    "cases",
    "seed",
    "repeats",
    "max_turns",
    "end_on_diagnose",
    "weighting",
    "settings",
    "conditions",
    "kb_dir",
)
"""Fields that define which episodes a run holds; resuming requires them unchanged."""


class RunSpec(BaseModel):
    """What to run: agents x cases x repeats, how, and where to store it."""

    model_config = ConfigDict(extra="forbid")
    agents: list[str] = Field(min_length=1)
    """Agent spec strings, e.g. 'scripted', 'hf:smollm2', 'openai:MODEL@URL'."""
    cases: int = Field(default=30, ge=1, le=1_000_000)
    seed: int = 0
    repeats: int = Field(default=1, ge=1, le=100)
    max_turns: int = Field(default=20, ge=1, le=200)
    end_on_diagnose: bool = True
    weighting: Literal["balanced", "population"] = "balanced"
    settings: list[str] = []
    conditions: list[str] = []
    kb_dir: str | None = None
    """A knowledge-base directory to use instead of the bundled one."""
    concurrency: int = Field(default=8, ge=1, le=4096)
    out: Path

    @field_validator("agents")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dupes = sorted({a for a in v if v.count(a) > 1})
        if dupes:
            raise ValueError(f"agent specs must be unique; repeated: {dupes}")
        return v

    def identity(self) -> dict[str, object]:
        """The fields that fix which episodes belong to this run."""
        return self.model_dump(mode="json", include=set(IDENTITY_FIELDS))
