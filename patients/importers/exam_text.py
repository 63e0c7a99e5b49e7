"""Examination text -> atomic findings, each present or absent, and when a KB finding means it.

`finding_clauses` splits an examination passage into findings and carries negation through a
list: "Increased respiratory effort, no wheezes or stridor" is one present finding and two
absent ones; "Shifting dullness absent" and "No organomegaly or masses palpable" are absent.

`meaning_matches` decides whether a KB finding the sentence model proposes really is what the
record says: the qualifiers that make a finding what it is (systolic or diastolic, reduced or
increased, one side or both, fine or coarse) must agree, and the qualifiers of the KB finding's
name must be in the record's words ("2/6 systolic ejection murmur" is not an "early diastolic
murmur"; "murmur" alone is not a "pansystolic murmur"). A wrong link is worse than none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from clinicgym.patients.importers.results import NORMALLY_PRESENT
from clinicgym.patients.importers.text import Clause

_SENTENCES = re.compile(r"(?<!\d)[.;](?!\d)\s*|\n+")
_NEG_LEAD = re.compile(
    r"^\s*(?:there\s+(?:is|was|are|were)\s+)?(?:(?:no|not|nor|without|nil|denies|denied)\b|"
    r"negative for\b|absence of\b|absent\b|free of\b|no evidence of\b|no signs? of\b)\s*",
    re.IGNORECASE,
)
_NEG_TAIL = re.compile(
    r"\s+(?:(?:is|are|was|were)\s+)?(?:absent|not (?:seen|present|detected|observed|noted|"
    r"palpable|felt|heard|appreciated|elicited)|negative)\s*$",
    re.IGNORECASE,
)
_AFTER_NEG_TAIL = re.compile(
    r"(?:\s+(?:initially|clearly|readily|definitely|obviously|easily|also|otherwise))?"
    r"\s+(?:(?:is|are|was|were)\s+)?(?:noted|seen|observed|palpable|present|detected|"
    r"appreciated|elicited|heard|felt|identified)\s*$",
    re.IGNORECASE,
)
_CONTRAST = re.compile(r"^\s*(?:but|however|although|though|yet|with|and\s+with)\b", re.I)
_SPLIT_ITEMS = re.compile(r"\s*,\s*(?:and\s+|or\s+|nor\s+)?|\s+(?:or|nor)\s+", re.IGNORECASE)
MAX_ITEM_WORDS = 6


def finding_clauses(passage: Any) -> list[Clause]:
    """Atomic findings of an examination passage, each marked negated (absent) or not.

    Within a sentence a negation ('no', 'without', 'negative for', 'absence of') covers the
    list it opens ("no wheezes or stridor", "no hepatosplenomegaly, rash, or acrocyanosis")
    until a contrast ('but', 'with') or a long clause ends it; a trailing 'absent' or 'not
    palpable' negates what precedes it. Clauses keep the record's words (a negated list item
    reads 'No stridor')."""
    if passage is None:
        return []
    if isinstance(passage, list | tuple):
        return [c for item in passage for c in finding_clauses(item)]
    if isinstance(passage, dict):
        return [c for v in passage.values() for c in finding_clauses(v)]
    out: list[Clause] = []
    for sentence in _SENTENCES.split(str(passage)):
        sentence = sentence.strip(" ,:-\t")
        if sentence:
            out.extend(_sentence_clauses(sentence))
    return out


def _sentence_clauses(sentence: str) -> list[Clause]:
    # a negation joined by 'and'/'but'/'with' starts a piece of its own ('... and no discharge')
    pieces = [
        p.strip()
        for p in re.split(r"\s*,\s*|\s+(?:and|but|with)\s+(?=(?:no|without|not)\b)", sentence)
        if p and p.strip()
    ]
    out: list[Clause] = []
    negating = False  # inside a list a negation opened
    joinable = False  # the last clause is a positive run the next piece may continue
    for piece in pieces:
        if _CONTRAST.match(piece):
            negating = joinable = False
            piece = _CONTRAST.sub("", piece).strip()
        lead = _NEG_LEAD.match(piece)
        tail = _NEG_TAIL.search(piece)
        absent = re.search(r"\babsent\b", piece, re.I)
        if (lead or tail) and absent and NORMALLY_PRESENT.search(piece):
            lead = tail = None  # 'absent knee reflexes' is a finding, not the lack of one
        if lead and len(piece) > lead.end():
            negating, joinable = True, False
            body = piece[lead.end() :]
            body = re.sub(r"^(?:any|a|an|signs? of|evidence of)\s+", "", body, flags=re.I)
            out.extend(Clause(item, True) for item in _or_items(_AFTER_NEG_TAIL.sub("", body)))
            continue
        if tail and tail.start() > 0:
            negating = joinable = False
            out.append(Clause(piece[: tail.start()].strip(), True))
            continue
        if (
            negating
            and len(piece.split()) <= MAX_ITEM_WORDS
            and not re.search(r"\b(is|are|was|were|has|have|shows?|noted|present|seen)\b", piece)
        ):
            item = re.sub(r"^(?:or|nor|and)\s+", "", piece, flags=re.I)
            out.extend(Clause(_AFTER_NEG_TAIL.sub("", x), True) for x in _or_items(item))
            continue
        negating = False
        if joinable:  # a positive run stays one finding ('Jaundice on the face, chest, and ...')
            out[-1] = Clause(f"{out[-1].text}, {piece}")
        else:
            out.append(Clause(piece))
        joinable = True
    return [c for c in out if c.text]


def _or_items(body: str) -> list[str]:
    parts = [p.strip() for p in _SPLIT_ITEMS.split(body) if p and p.strip()]
    if len(parts) > 1 and all(len(p.split()) <= MAX_ITEM_WORDS for p in parts):
        return parts
    return [body.strip()]


def said_as_absent(clause: Clause) -> str:
    """How a negated finding reads in the report: 'No crackles', 'Shifting dullness absent'
    stays as the record put it where it is one clause."""
    t = clause.text
    return t if _NEG_LEAD.match(t) else f"No {t[:1].lower()}{t[1:]}"


# ---- does a KB finding mean what the record says? ------------------------------------------

_GROUPS: tuple[tuple[frozenset[str], frozenset[str]], ...] = tuple(
    (frozenset(a.split()), frozenset(b.split()))
    for a, b in (
        ("systolic pansystolic holosystolic ejection", "diastolic"),
        ("early", "late mid"),
        ("reduced decreased diminished absent poor weak weakened quiet", "increased brisk raised "
         "exaggerated loud hyperactive bounding"),
        ("fine", "coarse"),
        ("inspiratory", "expiratory"),
        ("unilateral one-sided one side", "bilateral both bibasal widespread diffuse symmetric "
         "symmetrical generalised generalized"),
        ("pitting", "non-pitting"),
        ("rest", "action postural intention"),
        ("upper", "lower"),
        ("proximal", "distal"),
        ("left", "right"),
        ("apical apex", "sternal"),
        ("anterior", "posterior"),
        ("slow", "rapid fast"),
        ("dilated", "constricted pinpoint"),
        ("horizontal", "vertical"),
    )
)  # fmt: skip
_DEFINING = frozenset(
    [
        "systolic",
        "diastolic",
        "pansystolic",
        "holosystolic",
        "ejection",
        "early",
        "late",
        "unilateral",
        "bilateral",
        "one-sided",
        "bibasal",
        "widespread",
        "reduced",
        "increased",
        "absent",
        "fine",
        "coarse",
        "inspiratory",
        "expiratory",
        "pitting",
        "non-pitting",
        "rest",
        "postural",
        "action",
        "intention",
        "upper",
        "lower",
        "proximal",
        "distal",
        "horizontal",
        "vertical",
        "slow",
        "dilated",
    ]
)
"""Qualifiers that make a KB finding what it is: the record must say them too."""


def _words(text: str) -> set[str]:
    t = text.lower().replace("one side", "one-sided").replace("non pitting", "non-pitting")
    t = t.replace("both sides", "bilateral").replace("on both", "bilateral")
    words = set(re.findall(r"[a-z][a-z-]*", t))
    if "both" in words:
        words.add("bilateral")
    return words


def meaning_matches(text: str, names: Iterable[str]) -> bool:
    """True if a KB finding known by `names` (its name and synonyms) means what `text` says:
    no qualifier of one side of a contrast against the other side, and every defining
    qualifier of the finding's name found in the text."""
    said = _words(text)
    names = list(names)
    if not names:
        return False
    kb_words = set().union(*(_words(n) for n in names))
    for a, b in _GROUPS:
        said_a, said_b = bool(said & a), bool(said & b)
        kb_a, kb_b = bool(kb_words & a), bool(kb_words & b)
        if (said_a and kb_b and not kb_a) or (said_b and kb_a and not kb_b):
            return False
    defining = _words(names[0]) & _DEFINING
    for q in defining:
        side = next((g for pair in _GROUPS for g in pair if q in g), frozenset({q}))
        if not said & side:
            return False
    return True
