"""Persona sampling: style, literacy, register, biases, adherence and disclosure, per case.

The sampling weights and phrasebook live in `knowledge/personas.yaml` (validated on load). A
persona is drawn from the case's own uniforms, so the same seed gives the same persona, and it is
recorded in the case: beliefs, asides and which facts are volunteered or held back are part of
the record the patient speaks from, so an LLM wording them is still grounded.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clinicgym.patients.cases.case import Persona
from clinicgym.patients.errors import KBError
from clinicgym.patients.knowledge.kb import KNOWLEDGE_DIR, Condition, KnowledgeBase
from clinicgym.patients.knowledge.uniforms import Uniforms

PERSONAS_FILE = KNOWLEDGE_DIR / "personas.yaml"


class _StyleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weight: float = Field(gt=0)
    personalities: list[str] = Field(min_length=1)


class PersonaBook(BaseModel):
    """The persona sampling weights and phrasebook."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1]
    styles: dict[
        Literal["plain", "verbose", "reserved", "anxious", "upset", "tangential", "pleasing"],
        _StyleSpec,
    ]
    health_literacy: dict[Literal["low", "medium", "high"], float]
    language_register: dict[Literal["formal", "casual", "colloquial"], float]
    adherence: dict[Literal["good", "partial", "poor"], float]
    biases: dict[
        Literal[
            "recency",
            "internet_self_diagnosis",
            "distrust_of_clinicians",
            "cultural_treatment_beliefs",
            "minimising",
        ],
        float,
    ]
    treatment_beliefs: list[str] = Field(min_length=1)
    relations: list[str] = Field(min_length=1)
    asides: list[str] = Field(min_length=2)
    sensitive_markers: list[str]
    jargon: list[str]

    @model_validator(mode="after")
    def _weights(self) -> PersonaBook:
        for name in ("health_literacy", "language_register", "adherence"):
            w = getattr(self, name)
            if any(v < 0 for v in w.values()) or sum(w.values()) <= 0:
                raise ValueError(f"'{name}' weights must be >= 0 with a positive sum")
        if any(not 0 <= p <= 1 for p in self.biases.values()):
            raise ValueError("'biases' values are probabilities in [0, 1]")
        return self


def load_persona_book(path: Path | None = None) -> PersonaBook:
    """Load and validate the persona file; a KBError names the file and field."""
    path = path or PERSONAS_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return PersonaBook.model_validate(raw)
    except FileNotFoundError:
        raise KBError(path, ["file is missing"]) from None
    except yaml.YAMLError as e:
        raise KBError(path, [f"not valid YAML: {e}"]) from None
    except ValidationError as e:
        problems = [f"field '{'.'.join(map(str, err['loc']))}': {err['msg']}" for err in e.errors()]
        raise KBError(path, problems) from None


@cache
def default_persona_book() -> PersonaBook:
    return load_persona_book()


class FactLike(Protocol):
    """The fields of a Fact that persona sampling reads (a Fact, or a light view of one)."""

    id: str
    category: str
    concept: str
    salience: str
    how_revealed: str
    present: bool


def persona_draws(book: PersonaBook) -> int:
    """Uniforms set aside for one persona: five choices, one per bias, at most six more (two for
    a belief, one each for volunteering and distrust, two asides) and one spare. Changing it
    moves every later draw of a case, so it stays fixed."""
    return 12 + len(book.biases)


def is_sensitive(fact: FactLike, book: PersonaBook) -> bool:
    """Facts many patients are slow to disclose: substance use, self-harm, sexual history."""
    key = f"{fact.concept} {fact.category}"
    return fact.category == "social" or any(m in key for m in book.sensitive_markers)


def sample_persona(
    kb: KnowledgeBase,
    cond: Condition,
    facts: list[FactLike],
    age: int,
    sex: str,
    u: Uniforms,
    *,
    caregiver: bool,
    book: PersonaBook | None = None,
    opening_safe: frozenset[str] | None = None,
) -> Persona:
    """Draw a persona for a case; disclosure choices refer to the case's own fact ids.

    `facts` may hold only the present, asked-about facts: the others never enter a choice.
    `opening_safe`: the only concepts the patient may volunteer (presentation-first cases: what
    cannot single out the condition); None: any history finding."""
    book = book or default_persona_book()
    style = u.choice({k: v.weight for k, v in book.styles.items()})
    spec = book.styles[style]  # type: ignore[index]
    personality = spec.personalities[u.below(len(spec.personalities))]
    literacy = u.choice(book.health_literacy)
    register = u.choice(book.language_register)
    adherence = u.choice(book.adherence)
    biases = [b for b, p in book.biases.items() if u.random() < p]
    belief, believed = _belief(kb, cond, age, sex, biases, u, book)
    # a belief-producing bias without its belief (no look-alike fits this patient) is dropped
    biases = [b for b in biases if b not in BELIEF_BIASES or b == believed]
    volunteer = _volunteered(facts, style, u, opening_safe)
    reluctant = _reluctant(facts, style, biases, volunteer, u, book)
    return Persona(
        style=style,  # type: ignore[arg-type]
        personality=personality,
        health_literacy=literacy,  # type: ignore[arg-type]
        language_register=register,  # type: ignore[arg-type]
        biases=biases,  # type: ignore[arg-type]
        belief=belief,
        adherence=adherence,  # type: ignore[arg-type]
        volunteer=volunteer,
        reluctant=sorted(set(reluctant)),
        asides=_asides(style, u, book),
        speaker="caregiver" if caregiver else "patient",
    )


BELIEF_BIASES = ("recency", "internet_self_diagnosis", "cultural_treatment_beliefs")
"""Biases that give the patient a belief to state (kept only when one could be drawn)."""


def _belief(
    kb: KnowledgeBase,
    cond: Condition,
    age: int,
    sex: str,
    biases: list[str],
    u: Uniforms,
    book: PersonaBook,
) -> tuple[str | None, str | None]:
    """What the patient believes and the bias it comes from: a look-alike that fits their age
    and sex (self-diagnosis online, or a relative's recent illness), or a treatment belief."""
    decoys = [
        kb.conditions[d].name
        for d in cond.differential
        if kb.conditions[d].sex in ("any", sex)
        and kb.conditions[d].age[0] <= age <= kb.conditions[d].age[1]
    ]
    if "internet_self_diagnosis" in biases and decoys:
        decoy = decoys[u.below(len(decoys))]
        return (
            f"I looked it up online and I think it might be {decoy.lower()}.",
            "internet_self_diagnosis",
        )
    if "recency" in biases and decoys:
        decoy = decoys[u.below(len(decoys))]
        relation = book.relations[u.below(len(book.relations))]
        return f"My {relation} had {decoy.lower()} recently, so I'm worried it's that.", "recency"
    if "cultural_treatment_beliefs" in biases:
        belief = book.treatment_beliefs[u.below(len(book.treatment_beliefs))]
        return belief, "cultural_treatment_beliefs"
    return None, None


def _volunteered(
    facts: list[FactLike], style: str, u: Uniforms, opening_safe: frozenset[str] | None
) -> list[str]:
    """Fact ids a verbose or anxious patient offers unprompted: one or two present history
    findings they may volunteer, must-ask ones first."""
    history = [
        f
        for f in facts
        if f.present
        and f.category in ("hpi", "ros")
        and f.how_revealed == "ask"
        and (opening_safe is None or f.concept in opening_safe)
    ]
    if style not in ("verbose", "anxious") or not history:
        return []
    order = sorted(history, key=lambda f: (f.salience != "must_ask", f.id))
    return [f.id for f in order[: 1 + u.below(2)]]


def _reluctant(
    facts: list[FactLike],
    style: str,
    biases: list[str],
    volunteer: list[str],
    u: Uniforms,
    book: PersonaBook,
) -> list[str]:
    """Fact ids given only when asked twice: sensitive ones for a reserved or distrustful
    patient, incidental ones for a pleasing or minimising one, and one must-ask fact more for
    a distrustful one (unsorted, may repeat)."""
    present = [f for f in facts if f.present and f.how_revealed == "ask" and f.category != "phi"]
    present = [f for f in present if f.category != "chief_complaint" and f.id not in volunteer]
    reluctant: list[str] = []
    if style == "reserved" or "distrust_of_clinicians" in biases:
        reluctant += [f.id for f in present if is_sensitive(f, book)]
    if style == "pleasing" or "minimising" in biases:
        reluctant += [f.id for f in present if f.salience == "incidental"]
    if "distrust_of_clinicians" in biases:
        must = [f for f in present if f.salience == "must_ask" and f.id not in reluctant]
        if must:
            reluctant.append(must[u.below(len(must))].id)
    return reluctant


def _asides(style: str, u: Uniforms, book: PersonaBook) -> list[str]:
    """Two different asides for a tangential patient; none for the others."""
    if style != "tangential":
        return []
    first = u.below(len(book.asides))
    second = u.below(len(book.asides) - 1)
    second += second >= first  # two different asides
    return [book.asides[first], book.asides[second]]
