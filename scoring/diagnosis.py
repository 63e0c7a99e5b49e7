"""Matching a stated diagnosis to a case's answer: by ICD-10 code, name or synonym.

Case- and punctuation-insensitive. A code matches if it is the case's code, or the case's
three-character category when the case's code is more specific ('I21' for 'I21.4'). A name
matches if, after normalisation, it equals the diagnosis's name or one of its synonyms, or
contains one of them as whole words ('acute migraine without aura' matches 'migraine without
aura') with at most three words to spare, so qualifiers do not cost a correct answer. A guess
that lists several diagnoses in one entry ('pneumonia / UTI', 'A or B') matches nothing: each
diagnosis must be its own ranked entry, so listing everything in one line gains nothing.

Diagnoses outside the KB (imported cases: `Diagnosis.condition_id is None`) have no curated
synonyms, so they get a fallback: British/American spellings are folded ('phaeochromocytoma' =
'pheochromocytoma'), and otherwise a guess matches if its MiniLM embedding has cosine similarity
of at least `SIMILARITY_THRESHOLD` (0.85) with the name or a synonym and no contrast word differs
(left/right, acute/chronic, hyper/hypo, type 1/type 2, Hodgkin/non-Hodgkin, bacterial/viral, ...).
The threshold was set on paraphrase pairs: 'Lyme disease'/'Lyme borreliosis' sits at 0.84 and
'bacterial'/'viral meningitis' at 0.83, so 0.85 errs on the side of not matching; the contrast
check stops near-identical names of different diseases ('left'/'right ventricular failure': 0.97).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

from clinicgym.patients.cases.case import Diagnosis

_CODE = re.compile(r"^[a-z][0-9][0-9a-z](?:\.?[0-9a-z]{1,4})?$")
_LIST = re.compile(r"[,;/|]|\bor\b|\bvs\.?\b|\bversus\b", re.IGNORECASE)
_PUNCT = re.compile(r"[^a-z0-9]+")
MAX_EXTRA_WORDS = 3
SIMILARITY_THRESHOLD = 0.85
"""MiniLM cosine similarity at or above which a guess names a diagnosis outside the KB."""
_CONTRASTS = tuple(
    frozenset(g)
    for g in (
        {"left", "right"},
        {"acute", "chronic"},
        {"upper", "lower"},
        {"anterior", "posterior"},
        {"primary", "secondary"},
        {"benign", "malignant"},
        {"bacterial", "viral", "fungal", "parasitic"},
        {"myeloid", "lymphoid", "lymphoblastic", "lymphocytic"},
        {"insipidus", "mellitus"},
        {"systolic", "diastolic"},
        {"central", "peripheral"},
        {"obstructive", "restrictive"},
    )
)
_ORDINAL = re.compile(r"^(?:\d+|i{1,3}|iv|vi{0,3}|ix|x|[a-e])$")
_STOP = {"the", "a", "an", "of", "with", "and", "likely", "probable", "possible", "suspected"}


@lru_cache(maxsize=8192)
def normalise(text: str) -> str:
    """Lower-case, punctuation to spaces, single spaces, leading articles and hedges dropped.
    Remembered: scoring normalises every reference name again for each guess of each episode."""
    t = _PUNCT.sub(" ", text.lower()).strip()
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
    """True if the guess names this diagnosis (code, name or synonym; for a diagnosis outside
    the KB also a folded spelling or a close paraphrase, see the module docstring)."""
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
        if len(n) > 3 and _whole_words(n).search(g) and not _contrast(g, n):
            extra = len(g.split()) - len(n.split())
            if extra <= MAX_EXTRA_WORDS:
                return True
    if dx.condition_id is None:
        return _close_paraphrase(guess, [dx.name, *dx.synonyms])
    return False


@lru_cache(maxsize=4096)
def _whole_words(name: str) -> re.Pattern[str]:
    """`name` as whole words, compiled once (re's own cache of 512 is too small for a KB's
    names and synonyms)."""
    return re.compile(rf"\b{re.escape(name)}\b")


def _fold(text: str) -> str:
    """Normalised, accents stripped, British to American spelling, no possessive 's:
    "Guillain-Barré's haemorrhage" -> 'guillain barre hemorrhage'."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = [w for w in normalise(plain).split() if w != "s"]
    return " ".join(w.replace("ae", "e").replace("oe", "e") for w in words)


def _contrast(a: str, b: str) -> bool:
    """True if the two names differ in a word that changes the disease (see `_CONTRASTS`)."""
    ta, tb = set(a.split()), set(b.split())
    for group in _CONTRASTS:
        ga, gb = ta & group, tb & group
        if ga and gb and ga != gb:
            return True
    oa, ob = {t for t in ta if _ORDINAL.match(t)}, {t for t in tb if _ORDINAL.match(t)}
    if oa and ob and oa != ob:
        return True
    if ("non" in ta) != ("non" in tb) or any(t.startswith("non") for t in ta ^ tb):
        return True
    stems_a = {
        t[5:] if t.startswith("hyper") else t[4:] for t in ta if t.startswith(("hyper", "hypo"))
    }
    for t in tb:
        if t.startswith(("hyper", "hypo")):
            stem = t[5:] if t.startswith("hyper") else t[4:]
            if stem in stems_a and t not in ta:
                return True
    return False


def _close_paraphrase(guess: str, names: list[str]) -> bool:
    g = _fold(guess)
    folded = [_fold(n) for n in names if n.strip()]
    if g in folded:
        return True
    candidates = [n for n in folded if n and not _contrast(g, n)]
    if not g or not candidates:
        return False
    from clinicgym.patients.patient.encoder import default_encoder

    vecs = default_encoder().encode([g, *candidates])
    return bool((vecs[1:] @ vecs[0]).max() >= SIMILARITY_THRESHOLD)


def rank_of(guesses: Sequence[str], dx: Diagnosis) -> int | None:
    """1-based rank of the first guess that matches, or None."""
    for i, g in enumerate(guesses, start=1):
        if matches(g, dx):
            return i
    return None
