"""The small text primitives every importer shares: names as slugs and as words, a
normalised form for look-ups, and one clause of a passage with its polarity. A module of its
own, so the clause readers (`exam_text`, `record_history`) and the case builder (`freetext`)
import it without importing each other."""

from __future__ import annotations

import re
from dataclasses import dataclass


def slug(text: str) -> str:
    """'Chest_X-Ray' -> 'chest_x_ray'."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "item"


def humanise(key: str) -> str:
    """'Past_Medical_History' -> 'Past Medical History'; acronyms (WBC, CRP) keep capitals."""
    words = re.sub(r"[_\s]+", " ", key).strip()
    return words[:1].upper() + words[1:]


def norm(text: str) -> str:
    """Lower case, punctuation to single spaces."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


@dataclass(frozen=True)
class Clause:
    """One atomic statement of a passage: its words, and whether the passage negates it."""

    text: str
    negated: bool = False


PREPOSITION_END = re.compile(
    r"\b(?:in|of|with|to|on|from)\s+(?:(?:his|her|their|its|the)\s+\w+(?:\s+\w+)?|\w+)$",
    re.IGNORECASE,
)
"""A list item ending in a preposition and its object (one word, or a determiner and up to two):
an 'or' after it joins ("changes in bladder or bowel habits", "changes in his bowel habits or
urination" are one item each), where "exposure to sick contacts or recent travel" is two."""
