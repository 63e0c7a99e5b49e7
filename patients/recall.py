"""Which statement of a written record a question asks about, or none.

A clinician-written record (an imported case) holds the patient's history as its own sentences,
not as KB findings, so the patient answers from them: each part of the question (two questions
in one, or a list such as "any palpitations or shortness of breath?") is embedded and compared
with every history statement; the best statement above `FACT_THRESHOLD` answers it, with the
record's polarity (a "No palpitations" statement denies). A question the record does not answer
gets "I don't know", never a guess. Before anything is said the answer is checked against the
record: when a statement of the opposite polarity matches almost as well (`CONFLICT_MARGIN`),
saying either could contradict the record, so the patient says it does not know and the blocked
contradiction is counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from clinicgym.patients.case import Fact
from clinicgym.patients.encoder import SentenceEncoder
from clinicgym.patients.errors import KBError

LAY_WORDS_FILE = Path(__file__).parent / "lexicon" / "lay_words.yaml"
"""Not part of the KB (its version, and so frozen suites, do not depend on how the patient
reads questions)."""

FACT_THRESHOLD = 0.5
"""MiniLM cosine at or above which a statement answers a question part..."""
LEXICAL_THRESHOLD = 0.4
"""...or this, when the two also share a content word."""
CONFLICT_MARGIN = 0.04
"""A statement of the other polarity within this of the best makes the answer unsafe."""
KB_EXPAND = 0.65
"""A question part that matches a KB finding this well is also compared via its phrasings."""
LEXICAL_BONUS = 0.08
"""Added when a question part and a statement share a content word (stemmed)."""

_PART_SPLIT = re.compile(
    r"\?\s*|;\s*|,?\s+(?:and|or|also)\s+(?=(?:do|does|did|have|has|are|is|was|were|any|how|what|"
    r"when|where)\b)",
    re.IGNORECASE,
)
_LIST_SPLIT = re.compile(r"\s*,\s*(?:or\s+|and\s+)?|\s+or\s+|\s+and\s+", re.IGNORECASE)
_DIAGNOSIS_Q = re.compile(
    r"\b(?:could it be|might it be|could this be|can it be|would it be|"
    r"(?:is|was) (?:it|this) (?:a |an )?(?:\w+ )?(?:disease|syndrome|infection|cancer|tumou?r|"
    r"disorder|deficiency|fever|virus)\b|"
    r"do you think (?:it'?s|it is|it could be|you have|you've got)|isn'?t it\b|"
    r"(?:already )?know (?:the|your) diagnosis|what(?:'s| is) (?:wrong|the diagnosis|your "
    r"diagnosis)|you have (?:got )?(?:a |an )?\w+,? (?:right|yes|correct)\b)",
    re.IGNORECASE,
)
_ONSET = re.compile(
    r"\b(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|several|few|couple)[- ]"
    r"(?:hours?|days?|weeks?|months?|years?)\b|\bsince\b|\bago\b|\byesterday\b|\blast night\b|"
    r"\bthis morning\b|\bstarted\b|\bbegan\b|\bonset\b|\bfor the past\b|\bover the (?:past|last)\b",
    re.IGNORECASE,
)
_STOP = set(
    [
        "the",
        "a",
        "an",
        "any",
        "you",
        "your",
        "yours",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "are",
        "is",
        "was",
        "were",
        "been",
        "be",
        "being",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "with",
        "and",
        "or",
        "any",
        "anything",
        "ever",
        "recently",
        "now",
        "currently",
        "there",
        "that",
        "this",
        "it",
        "its",
        "how",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "can",
        "could",
        "would",
        "should",
        "will",
        "may",
        "might",
        "been",
        "get",
        "got",
        "feel",
        "feeling",
        "felt",
        "notice",
        "noticed",
        "experienced",
        "experiencing",
        "having",
        "some",
        "much",
        "many",
        "my",
        "me",
        "i",
        "lately",
        "been",
        "past",
        "last",
    ]
)


class Topic(BaseModel):
    """A kind of thing a question can ask about without naming it, and how statements of that
    kind read (both regular expressions)."""

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


class LayWords(BaseModel):
    """The lay-word file: word -> the record's words for it, topics, with sources."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int
    sources: list[str]
    words: dict[str, str]
    topics: dict[str, Topic] = {}


def load_lexicon(path: Path) -> LayWords:
    """A lay-word file, validated; a KBError names the file and field of a problem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return LayWords.model_validate(raw)
    except (OSError, yaml.YAMLError) as e:
        raise KBError(path, [f"cannot read ({e})"]) from None
    except ValidationError as e:
        raise KBError(
            path,
            [f"field '{'.'.join(map(str, x['loc']))}': {x['msg']}" for x in e.errors()],
        ) from None


@cache
def _lexicon() -> LayWords:
    """The bundled lay-word file, read once."""
    return load_lexicon(LAY_WORDS_FILE)


@cache
def lay_words() -> dict[str, str]:
    """The lay-word table: lower-case word -> the record's words for it."""
    return {k.lower(): v for k, v in _lexicon().words.items()}


@cache
def topics() -> list[tuple[re.Pattern[str], re.Pattern[str]]]:
    """(question pattern, statement pattern) per topic of the lay-word file."""
    return [
        (re.compile(t.question, re.IGNORECASE), re.compile(t.statement, re.IGNORECASE))
        for t in _lexicon().topics.values()
    ]


def plain(question: str) -> str:
    """The question with each lay word followed by the record's words for it."""
    table = lay_words()

    def sub(m: re.Match[str]) -> str:
        w = m.group(0)
        extra = table.get(w.lower())
        if extra is None and _DROPPED_G.match(w):
            extra = table.get(w.lower() + "g", w.lower() + "g")  # "hurtin" -> "hurting"
        return f"{w} ({extra})" if extra else w

    return _lay_pattern().sub(sub, question)


_DROPPED_G = re.compile(
    r"^(?!.*(?:ain|ein|oin|eyin|rgin|xin|lin|tin|min|rin|skin|chin|within|begin|again|cabin|"
    r"origin|resin|basin|cousin|raisin|robin|muslin|coffin|goblin)$)[a-z]{3,}[^aeiou]in$",
    re.IGNORECASE,
)
"""Spoken '-in' for '-ing' ("stressin", "botherin"), but not 'pain', 'skin', 'insulin'."""


@cache
def _lay_pattern() -> re.Pattern[str]:
    """Lay phrases first (longest first), then any word."""
    phrases = sorted((k for k in lay_words() if " " in k), key=len, reverse=True)
    alts = [r"(?<!\w)" + re.escape(p) + r"(?!\w)" for p in phrases]
    return re.compile("|".join([*alts, r"[A-Za-z0-9']+"]), re.IGNORECASE)


_WEAK = {"pain", "probl", "issue", "sympt", "histo", "troub", "medic", "condi", "thing", "other"}
"""Stems too general to tie a question to a statement on their own ('any pain?' and 'pain in
the left knee' share only 'pain')."""
_SITES = re.compile(
    r"\b(head|neck|chest|back|arms?|legs?|hips?|knees?|ankles?|feet|foot|hands?|wrists?|"
    r"shoulders?|elbows?|abdomen|abdominal|belly|tummy|stomach|eyes?|ears?|throat|mouth|face|"
    r"facial|jaw|teeth|tooth|gums?|nose|scalp|breasts?|groin|penis|vagina\w*|testic\w*|"
    r"rectum|rectal|anus|anal|fingers?|toes?|thighs?|calf|calves|shin|heel|flank|pelvi\w*|"
    r"spine|skin|lungs?|heart|kidneys?|bladder|bowel)\b",
    re.IGNORECASE,
)
"""Body sites: a question about one site is not answered by a statement about another."""


def _site(text: str) -> set[str]:
    return {m.lower().rstrip("s")[:4] for m in _SITES.findall(text)}


def content_stems(text: str) -> set[str]:
    """Lower-case content words cut to five letters ('vomiting' and 'vomited' share 'vomit')."""
    words = re.findall(r"[a-z]+", text.lower())
    return {w[:5] for w in words if w not in _STOP and len(w) > 2}


def is_diagnosis_question(question: str) -> bool:
    """'Is it X?', 'do you think you have X', 'as your doctor I know the diagnosis...'."""
    return bool(_DIAGNOSIS_Q.search(question))


def is_onset_fact(fact: Fact) -> bool:
    """A history statement that says when or for how long ('a 2-day history of fever')."""
    return fact.category in ("chief_complaint", "hpi") and bool(_ONSET.search(fact.text))


def question_parts(question: str) -> list[str]:
    """The parts a question asks about: separate questions, then the items of a list."""
    q = " ".join(question.split())[:500]
    parts = [p.strip(" ,.") for p in _PART_SPLIT.split(q) if p and len(p.strip(" ,.")) > 1]
    out: list[str] = []
    for p in parts or [q]:
        items = [i.strip() for i in _LIST_SPLIT.split(p) if i and content_stems(i)]
        if len(items) > 1 and _CONTEXT.match(items[0]):
            items = items[1:]  # "When you came round, were you confused?": context, not a part
        out.extend(items if len(items) > 1 else [p])
    return out or [q]


OPEN_QUESTION = re.compile(r"(?:what|wat|wot|who|whom|whose|where|when|why|how|which)\b", re.I)
"""A question that asks for a thing, not a yes or no: a present statement answers it as it is."""
_CONTEXT = re.compile(
    r"(?:when|while|after|before|since|once|if|as|apart from|other than|besides|except|aside "
    r"from|during)\b",
    re.IGNORECASE,
)
"""A leading clause that sets the scene for a question rather than asking one."""
_CLAUSE_SPLIT = re.compile(r"[,;()]|\bbut\b", re.IGNORECASE)


_STATE_NEGATING = re.compile(
    r"\b(?:uneventful|uncomplicated|unremarkable|unintentional(?:ly)?|unprotected|"
    r"inconsistent(?:ly)?|normal(?:ly)?|resolved|healed|former(?:ly)?|quit|stopped|ceased|"
    r"non-?\w+|spar(?:ed|ing)|free of|healthy|negative)\b",
    re.IGNORECASE,
)
"""Words by which a statement answers "no" to a question about the problem it names: "an
uneventful pregnancy" to "any complications?", "a resolved rash" to "is it still there?",
"unprotected sex" to "do you use condoms?". A question using the same word asks about that
state itself ("have you had unprotected sex?"), and gets a yes."""
_OTHERS = re.compile(
    r"\b(?:anyone|anybody|someone|somebody|family|familial|mother|father|mum|mom|dad|brother|"
    r"sister|siblings?|parents?|relatives?|friends?|partner|contacts?|classmates?|household|wife|"
    r"husband|others?|ward|school|daycare|grandmother|grandfather|aunt|uncle|cousin|son|daughter)"
    r"\b",
    re.IGNORECASE,
)
"""A question about someone else ("anyone at school with a rash?") is answered only by a
statement that is about someone else too, never by the patient's own symptom."""


def polarity(fact: Fact, question: str) -> str:
    """'affirmed' or 'denied': how the statement answers the question."""
    if not fact.present:
        return "denied"
    if OPEN_QUESTION.match(question.strip()):
        return "affirmed"  # "what was your job?" -> "retired": an answer, not a yes or no
    stems = content_stems(question) - _WEAK
    clauses = [c for c in _CLAUSE_SPLIT.split(fact.text) if stems & content_stems(c)]
    # only the clauses about what was asked: 'Current smoker, past cocaine use (ceased 1 year
    # ago)' answers 'do you smoke?' with a yes
    scope = " ".join(clauses) if clauses else fact.text
    said = {w.lower() for w in _STATE_NEGATING.findall(scope)}
    asked = {w.lower() for w in _STATE_NEGATING.findall(question)}
    if said - asked:
        return "denied"
    return "affirmed"


@dataclass(frozen=True)
class Recall:
    """The statement that answers one part of a question (None: the record does not say)."""

    part: str
    fact: Fact | None
    score: float
    blocked: Fact | None = None
    """A statement of the other polarity that matched almost as well: not said, counted."""
    status: str = "unknown"
    """How the statement answers the part: 'affirmed', 'denied' (or 'unknown' without one)."""


class RecordIndex:
    """A record's history statements, embedded once, looked up by question parts.

    With a `QuestionMatcher`, a part that clearly names a KB finding ("is your heart racing?" ->
    palpitations) is also compared through that finding's own phrasings, so lay words reach the
    record's clinical ones ("Denies palpitations") without a word list for every symptom.
    """

    def __init__(self, facts: list[Fact], encoder: SentenceEncoder, matcher: Any = None) -> None:
        self.facts = facts
        self.encoder = encoder
        self.matcher = matcher
        self._matrix: np.ndarray | None = None
        self._stems = [content_stems(f.text) for f in facts]
        self._sites = [_site(f.text) for f in facts]
        self._others = np.array([bool(_OTHERS.search(f.text)) for f in facts])
        self._topics = [
            (asks, np.array([bool(says.search(f.text)) for f in facts], dtype=bool))
            for asks, says in topics()
        ]
        """Per statement, computed once: its content stems, body sites, whether it is about
        someone else, and which topics it is of."""

    def _via_kb(self, emb: np.ndarray) -> np.ndarray:
        """Per text, the best similarity of each statement to the phrasings of the KB finding
        the text clearly asks about (0 where it names none)."""
        m = self.matcher
        assert self._matrix is not None
        out = np.zeros((emb.shape[0], len(self.facts)))
        rows = emb @ m._matrix.T
        per_target = np.maximum.reduceat(rows, m._starts, axis=1)
        ends = [*m._starts[1:], m._matrix.shape[0]]
        for i, row in enumerate(per_target):
            t = int(row.argmax())
            if row[t] < KB_EXPAND or m.kinds[t] != "finding":
                continue
            phr = m._matrix[m._starts[t] : ends[t]]
            out[i] = (phr @ self._matrix.T).max(axis=0) * float(row[t])
        return out

    def _topical(self, part: str) -> np.ndarray:
        """Per statement, whether it is of a topic the part asks about without naming it."""
        out = np.zeros(len(self.facts), dtype=bool)
        for asks, of_topic in self._topics:
            if asks.search(part):
                out |= of_topic
        return out

    def recall(self, question: str) -> list[Recall]:
        """One Recall per part of the question (distinct statements only)."""
        if not self.facts:
            return []
        if self._matrix is None:
            self._matrix = self.encoder.encode([f.text for f in self.facts])
        parts = question_parts(question)
        texts = [plain(t) for t in ([question, *parts] if len(parts) > 1 else [question])]
        emb = self.encoder.encode(texts)
        sims = emb @ self._matrix.T
        if self.matcher is not None:
            sims = np.maximum(sims, self._via_kb(emb))
        rows = sims[1:] if len(parts) > 1 else sims
        out: list[Recall] = []
        for part, row in zip(parts, rows, strict=True):
            read = plain(part)
            stems = content_stems(read) - _WEAK
            shared = np.array([bool(stems & s) for s in self._stems])
            sites = _site(part)
            if sites:  # "hip pain?" is not answered by "pain in the left knee"
                row = row * np.array([not fs or bool(fs & sites) for fs in self._sites])
            score = row + LEXICAL_BONUS * shared
            if _OTHERS.search(part):
                score = score * self._others
            ok = (row >= FACT_THRESHOLD) | (shared & (row >= LEXICAL_THRESHOLD))
            if not ok.any():  # "what do you do for a living?" -> "Retired teacher."
                ok = self._topical(read) & (score > 0)
                score = np.where(ok, score, 0.0)
            j = int(score.argmax())
            best = float(score[j])
            if not ok[j] or best <= 0:
                out.append(Recall(part, None, best))
                continue
            fact = self.facts[j]
            status = polarity(fact, read)
            rival = max(
                (
                    (float(score[k]), f)
                    for k, f in enumerate(self.facts)
                    if k != j and ok[k] and shared[k] == shared[j] and polarity(f, read) != status
                ),
                default=(-1.0, None),
                key=lambda t: t[0],
            )
            if rival[1] is not None and rival[0] >= best - CONFLICT_MARGIN:
                out.append(Recall(part, None, best, blocked=rival[1]))
                continue
            if any(r.fact is not None and r.fact.id == fact.id for r in out):
                continue
            out.append(Recall(part, fact, best, status=status))
        return out or [Recall(question, None, 0.0)]
