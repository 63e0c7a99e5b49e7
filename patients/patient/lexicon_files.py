"""The patient's lexicon files (`patients/patient/lexicon/`: lay words, attribute classes,
acceptance weights): read as validated models, and their digest.

The lexicon changes what a written record's patient says without changing the KB version; a run
records `lexicon_version` beside the KB's, so a resumed run or a comparison of two runs shows
when they were played by different patients.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from clinicgym.patients.errors import KBError

LEXICON_DIR = Path(__file__).parent / "lexicon"

_M = TypeVar("_M", bound=BaseModel)


def read_model(path: Path, model: type[_M]) -> _M:
    """A YAML file read as `model`; a KBError names the file and field of a problem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return model.model_validate(raw)
    except (OSError, yaml.YAMLError) as e:
        raise KBError(path, [f"cannot read ({e})"]) from None
    except ValidationError as e:
        raise KBError(
            path,
            [f"field '{'.'.join(map(str, x['loc']))}': {x['msg']}" for x in e.errors()],
        ) from None


class RegexPair(BaseModel):
    """How a question asks for a kind of thing and how a statement of it reads (both regular
    expressions, checked on load): a lay-word topic, an attribute file's answer type."""

    model_config = ConfigDict(extra="forbid")
    question: str
    statement: str

    @field_validator("question", "statement")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a regular expression ({e})") from None
        return v


@cache
def lexicon_version() -> str:
    """The first 12 hex digits of the sha256 over the lexicon files' names and bytes."""
    h = hashlib.sha256()
    for path in sorted(LEXICON_DIR.glob("*.yaml")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]
