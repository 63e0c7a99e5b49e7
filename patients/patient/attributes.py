"""What a yes-or-no question asks about a complaint beyond whether it is there, and whether a
statement of the record says it.

"Is the rash itchy?" matches "Rash on the upper back." well (same complaint), but a "yes" would
state an itch the record never mentions: a contradiction of the record, not an answer. The
attribute classes (character, timing, triggers, relief, course, spread, associated features) are
data (lexicon/attributes.yaml); a question that asks a class is answered "yes" only by a
statement that speaks of the same class.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from clinicgym.patients.patient.lexicon_files import LEXICON_DIR, RegexPair, read_model

ATTRIBUTES_FILE = LEXICON_DIR / "attributes.yaml"


AnswerType = RegexPair
"""A kind of detail an open question asks for, and how a statement that gives it reads."""


class AttributeLexicon(BaseModel):
    """The attribute file: class name -> the words that ask or state it, with sources."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int
    sources: list[str]
    not_attributes: list[str] = []
    """Phrases whose words ask or state no attribute ('blood pressure' is not bleeding)."""
    classes: dict[str, list[str]]
    also_stated_by: dict[str, list[str]] = {}
    """Per class, words that state it in a statement but do not ask it in a question ('I take
    metformin' states a treatment; 'do you take ecstasy?' asks none)."""
    answer_types: dict[str, AnswerType] = {}

    @model_validator(mode="after")
    def _known_classes(self) -> AttributeLexicon:
        unknown = sorted(set(self.also_stated_by) - set(self.classes))
        if unknown:
            raise ValueError(f"also_stated_by names classes that are not in classes: {unknown}")
        return self

    @field_validator("classes", "also_stated_by")
    @classmethod
    def _words(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, words in v.items():
            if not words:
                raise ValueError(f"class {name!r} lists no words")
            for w in words:
                if not re.fullmatch(r"[a-z]+(?: [a-z]+)*\*?", w):
                    raise ValueError(
                        f"class {name!r}: {w!r} is not lower-case words with an optional trailing *"
                    )
        return v


def load_attributes(path: Path) -> AttributeLexicon:
    """An attribute file, validated; a KBError names the file and field of a problem."""
    return read_model(path, AttributeLexicon)


def _pattern(words: list[str]) -> re.Pattern[str]:
    alts = [re.escape(w[:-1]) + r"\w*" if w.endswith("*") else re.escape(w) for w in words]
    return re.compile(r"\b(?:" + "|".join(alts) + r")\b", re.IGNORECASE)


class Attributes:
    """The classes of a lexicon, compiled once."""

    def __init__(self, lexicon: AttributeLexicon) -> None:
        self.patterns = {name: _pattern(words) for name, words in lexicon.classes.items()}
        self.ignored = _pattern(lexicon.not_attributes) if lexicon.not_attributes else None
        self.stated = {
            name: _pattern(words + lexicon.also_stated_by.get(name, []))
            for name, words in lexicon.classes.items()
        }
        self.types = {
            name: (re.compile(t.question, re.I), re.compile(t.statement, re.I))
            for name, t in lexicon.answer_types.items()
        }

    def of(self, text: str, *, statement: bool = False) -> set[str]:
        """The attribute classes a question (or, with `statement`, a statement) speaks of."""
        if self.ignored is not None:
            text = self.ignored.sub(" ", text)
        patterns = self.stated if statement else self.patterns
        return {name for name, p in patterns.items() if p.search(text)}

    def unstated(self, question: str, statement: str) -> set[str]:
        """The classes a yes-or-no question asks that the statement does not speak of."""
        asked = self.of(question)
        return asked - self.of(statement, statement=True) if asked else set()

    def ungiven(self, question: str, statement: str) -> set[str]:
        """The kinds of detail an open question asks for ('how long...?') that the statement
        does not give."""
        return {
            name
            for name, (asks, gives) in self.types.items()
            if asks.match(question) and not gives.search(statement)
        }


@cache
def attributes() -> Attributes:
    """The bundled attribute classes, read once."""
    return Attributes(load_attributes(ATTRIBUTES_FILE))
