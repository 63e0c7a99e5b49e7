"""`MatchSpec`: when does an event count as a trigger, a response or a forbidden act.

One spec mixes structured and textual tests. Filters must all hold: the event's names
(`events`), fields of its structured result (`result`), fields of the clinician's parsed action
(`action`). Then, if any content test is given, at least one must hold: an affirmed concept in
the structured mirror of a reply (`concepts`), a regular expression over the words (`patterns`),
or MiniLM cosine similarity to an example sentence (`examples`, `threshold`). `exclude` patterns
veto a match. Regexes compile once per loaded pack; embeddings come from the episode's cache
(`EpisodeContext.embed`: each text once per episode, and the encoder's cache across episodes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from clinicgym.envs.episode import Event
from clinicgym.policies.events import ACTION_EVENTS, KNOWN_EVENTS, event_names, normalise, said

Embedder = Callable[[list[str]], np.ndarray]
"""Texts -> unit vectors (one row each); MiniLM by default."""


def _compile(patterns: list[str], field: str) -> list[re.Pattern[str]]:
    out = []
    for i, p in enumerate(patterns):
        try:
            out.append(re.compile(p, re.IGNORECASE))
        except re.error as e:
            raise ValueError(
                f"{field}[{i}]: {p!r} is not a valid regular expression ({e})"
            ) from None
    return out


class MatchSpec(BaseModel):
    """A test over one event (see the module docstring for how the parts combine)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    events: list[str] = Field(min_length=1)
    """Event names (`KNOWN_EVENTS`) the event must answer to (any of them)."""
    result: dict[str, Any] = {}
    """event.result[key] must equal the value, or be one of the values if a list is given."""
    action: dict[str, Any] = {}
    """Parsed-action field -> required value(s); strings compare case-insensitively."""
    concepts: list[str] = []
    """Concepts a patient line must affirm (its structured mirror, `result.answers`)."""
    patterns: list[str] = []
    """Regular expressions (case-insensitive) searched in the event's words."""
    examples: list[str] = []
    """Example sentences: the words match if MiniLM similarity to one reaches `threshold`."""
    threshold: float = Field(default=0.75, gt=0, le=1)
    exclude: list[str] = []
    """Regular expressions that veto a match (e.g. a negation, a consent question)."""
    describe: str = ""
    """Plain words for messages, e.g. 'a question about risk'."""

    _patterns: list[re.Pattern[str]] = PrivateAttr(default_factory=list)
    _exclude: list[re.Pattern[str]] = PrivateAttr(default_factory=list)
    _names: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("events")
    @classmethod
    def _known_events(cls, v: list[str]) -> list[str]:
        unknown = [e for e in v if e not in KNOWN_EVENTS]
        if unknown:
            raise ValueError(f"unknown event {unknown[0]!r}; known: {', '.join(KNOWN_EVENTS)}")
        return v

    @model_validator(mode="after")
    def _compile_all(self) -> MatchSpec:
        self._patterns = _compile(self.patterns, "patterns")
        self._exclude = _compile(self.exclude, "exclude")
        self._names = frozenset(self.events)
        if self.action:
            tools = [e for e in self.events if e in ACTION_EVENTS]
            if not tools or len(tools) != len(self.events):
                raise ValueError(
                    "'action' filters need every event in 'events' to be a clinician action "
                    f"({', '.join(ACTION_EVENTS)}); got {self.events}"
                )
            for key in self.action:
                missing = [t for t in tools if key not in ACTION_EVENTS[t].model_fields]
                if missing:
                    fields = sorted(set().union(*(ACTION_EVENTS[t].model_fields for t in tools)))
                    raise ValueError(
                        f"action field {key!r} does not exist on {', '.join(missing)}; "
                        f"known: {', '.join(f for f in fields if f != 'tool')}"
                    )
        return self

    @property
    def content(self) -> bool:
        """True if the spec tests the content (concepts, patterns or examples)."""
        return bool(self.concepts or self.patterns or self.examples)

    def label(self) -> str:
        """How messages name what the spec matches."""
        return self.describe or f"a {'/'.join(self.events)} event"

    def matches(
        self, event: Event, embed: Embedder | None = None, names: frozenset[str] | None = None
    ) -> str | None:
        """The matching evidence (a quote) if the event matches, else None."""
        names = names if names is not None else event_names(event)
        if not names & self._names:
            return None
        for key, want in self.result.items():
            if not _equal(event.result.get(key), want):
                return None
        if self.action:
            if event.action is None:
                return None
            for key, want in self.action.items():
                if not _equal(getattr(event.action, key, None), want):
                    return None
        text = said(event)
        if any(p.search(text) for p in self._exclude):
            return None
        if not self.content:
            return text or event.text
        if self.concepts:
            for ans in event.result.get("answers", []) or []:
                if ans.get("status") == "affirmed" and ans.get("concept") in self.concepts:
                    return text
        for p in self._patterns:
            m = p.search(text)
            if m:
                return _sentence(text, m.start(), m.end())
        if self.examples and text.strip() and embed is not None:
            vec = embed([normalise(text)])[0]
            if float((embed(self.examples) @ vec).max()) >= self.threshold:
                return text
        return None


def _equal(have: Any, want: Any) -> bool:
    options = want if isinstance(want, list) else [want]
    for w in options:
        if isinstance(w, str) and isinstance(have, str):
            if have.strip().lower() == w.strip().lower():
                return True
        elif have == w:
            return True
    return False


def _sentence(text: str, start: int, end: int, limit: int = 240) -> str:
    """The sentence around a regex match, as the quote a violation cites."""
    left = max(text.rfind(". ", 0, start), text.rfind("? ", 0, start), text.rfind("! ", 0, start))
    left = 0 if left < 0 else left + 2
    right_candidates = [i for i in (text.find(c, end) for c in ".?!") if i >= 0]
    right = min(right_candidates) + 1 if right_candidates else len(text)
    quote = text[left:right].strip()
    return quote if len(quote) <= limit else text[max(start - 80, 0) : end + 80].strip()


def _listify(v: Any) -> Any:
    return [v] if isinstance(v, dict | MatchSpec) else v


AnyMatch = Annotated[list[MatchSpec], BeforeValidator(_listify)]
"""One MatchSpec, or a list of them (any may match)."""


def as_list(spec: AnyMatch) -> list[MatchSpec]:
    """The MatchSpecs of a (possibly single) spec."""
    return list(spec)
