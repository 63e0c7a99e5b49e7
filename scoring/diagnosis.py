"""Matching a stated diagnosis to a case's answer: by ICD-10 code, name or synonym.

Case- and punctuation-insensitive. A code matches if it is the case's code, or the case's
three-character category when the case's code is more specific ('I21' for 'I21.4'). A name
matches if, after normalisation, it equals the diagnosis's name or one of its synonyms, or
contains one of them as whole words ('acute migraine without aura' matches 'migraine without
aura') with at most three words to spare, so qualifiers do not cost a correct answer. A guess
that lists several diagnoses in one entry ('pneumonia / UTI', 'A or B') matches nothing: each
diagnosis must be its own ranked entry, so listing everything in one line gains nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from clinicgym.patients.case import Diagnosis

_CODE = re.compile(r"^[a-z][0-9][0-9a-z](?:\.?[0-9a-z]{1,4})?$")
_LIST = re.compile(r"[,;/|]|\bor\b|\bvs\.?\b|\bversus\b", re.IGNORECASE)
MAX_EXTRA_WORDS = 3
_STOP = {"the", "a", "an", "of", "with", "and", "likely", "probable", "possible", "suspected"}


def normalise(text: str) -> str:
    """Lower-case, punctuation to spaces, single spaces, leading articles and hedges dropped."""
    t = re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()
    words = t.split()
    while words and words[0] in _STOP:
        words = words[1:]
    return " ".join(words)


def _code_key(text: str) -> str | None:
    t = text.strip().lower()
    if not _CODE.match(t):
        return None
    return t.replace(".", "")


def matches(guess: str, dx: Diagnosis) -> bool:
    """True if the guess names this diagnosis (code, name or synonym)."""
    g_code = _code_key(guess)
    if g_code is not None:
        d_code = dx.code.lower().replace(".", "")
        return g_code == d_code or (len(g_code) == 3 and d_code.startswith(g_code))
    g = normalise(guess)
    if not g:
        return False
    names = [normalise(n) for n in (dx.name, *dx.synonyms)]
    if g in names:
        return True
    if _LIST.search(guess):
        return False
    for n in names:
        if len(n) > 3 and re.search(rf"\b{re.escape(n)}\b", g):
            extra = len(g.split()) - len(n.split())
            if extra <= MAX_EXTRA_WORDS:
                return True
    return False


def rank_of(guesses: Sequence[str], dx: Diagnosis) -> int | None:
    """1-based rank of the first guess that matches, or None."""
    for i, g in enumerate(guesses, start=1):
        if matches(g, dx):
            return i
    return None
