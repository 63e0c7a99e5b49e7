"""Which statement of a written record a question asks about, or none.

A clinician-written record (an imported case) holds the patient's history as its own sentences,
not as KB findings, so the patient answers from them: each part of the question (two questions
in one, or a list such as "any palpitations or shortness of breath?") is embedded and compared
with every history statement; the best statement above `FACT_THRESHOLD` answers it, with the
record's polarity (a "No palpitations" statement denies). A question the record does not answer
gets "I don't know", never a guess. Before anything is said the answer is checked against the
record: when a statement of the opposite polarity matches almost as well (`CONFLICT_MARGIN`),
saying either could contradict the record, so the patient says it does not know and the blocked
contradiction is counted. A "yes" also needs the statement to say what the part asks of its
complaint ("is the rash itchy?" is not answered yes by "Rash on the back.": `attributes.py`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from clinicgym.patients.cases.case import Fact
from clinicgym.patients.patient.attributes import attributes
from clinicgym.patients.patient.encoder import SentenceEncoder
from clinicgym.patients.patient.lexicon_files import LEXICON_DIR, RegexPair, read_model

LAY_WORDS_FILE = LEXICON_DIR / "lay_words.yaml"
"""Not part of the KB (its version, and so frozen suites, do not depend on how the patient
reads questions)."""

FACT_THRESHOLD = 0.5
"""MiniLM cosine at or above which a statement answers a question part..."""
LEXICAL_THRESHOLD = 0.4
"""...or this, when the two also share a content word."""
SHARED_TWICE_THRESHOLD = 0.3
"""...or this, when they share two content words of what the part asks (its own or the lay
words for them: 'look sick' is read as 'appears ill')."""
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
        "he",
        "she",
        "her",
        "hers",
        "him",
        "his",
        "they",
        "them",
        "their",
        "we",
        "our",
        "us",
        "child",
        "baby",
        "patient",
    ]
)


Topic = RegexPair
"""A kind of thing a question can ask about without naming it, and how statements of that kind
read."""


class LayWords(BaseModel):
    """The lay-word file: word -> the record's words for it, topics, with sources."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int
    sources: list[str]
    words: dict[str, str]
    topics: dict[str, Topic] = {}


def load_lexicon(path: Path) -> LayWords:
    """A lay-word file, validated; a KBError names the file and field of a problem."""
    return read_model(path, LayWords)


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


_GIVEN = {"the", "this", "that", "these", "those"}
"""Words that mark a noun as the question's given topic ('the bleeding', 'that rash')."""


def focus_stems(part: str, read: str) -> set[str]:
    """The content stems of what a yes-or-no part asks about its topic: all of them, less the
    words of a noun phrase it takes as given ('did the gauze packs stop *the bleeding*?')."""
    words = [m.group(0).lower() for m in re.finditer(r"[A-Za-z']+", part)]
    given = {w for i, w in enumerate(words) if i and words[i - 1] in _GIVEN}
    stems = content_stems(read) - _WEAK
    rest = stems - content_stems(" ".join(given))
    return rest or stems


_ABOUT = re.compile(
    r"\b(?:for|in|about|with)\s+(?:the\s+|your\s+|ur\s+|his\s+|her\s+|my\s+)?([\w'-]+)",
    re.IGNORECASE,
)


_WHAT_WHERE = re.compile(r"(?:what|wat|wot|whats|wats|which|where|wheres)\b", re.IGNORECASE)
"""Open questions that ask for a thing ('what ... for the arthritis?'), unlike 'how bad is the
pain in your groin?', which a statement of that pain answers."""


def _about_stems(part: str) -> set[str]:
    """The stems of what an open question is about, not what it asks ('what do you take *for
    the arthritis*?', 'where did you stay *in Miami*?')."""
    return {s for m in _ABOUT.finditer(part) for s in content_stems(m.group(1))} - _WEAK


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


_WEAK = {
    "pain",
    "probl",
    "issue",
    "sympt",
    "histo",
    "troub",
    "diffi",
    "medic",
    "condi",
    "thing",
    "other",
}
"""Stems too general to tie a question to a statement on their own ('any pain?' and 'pain in
the left knee' share only 'pain')."""
_SITE_GROUPS = {
    "head": r"head|scalp",
    "neck": r"neck|throat",
    "chest": r"chest|lungs?|heart",
    "breast": r"breasts?|nipples?",
    "back": r"back|spine|flank",
    "arm": r"arms?|forearms?|upper limbs?|elbows?|shoulders?",
    "hand": r"hands?|palms?|wrists?|fingers?|thumbs?|knuckles?",
    "leg": r"legs?|lower limbs?|thighs?|calf|calves|shins?|knees?",
    "hip": r"hips?",
    "foot": r"feet|foot|soles?|ankles?|heels?|toes?",
    "abdomen": r"abdomen|abdominal|belly|tummy|stomach",
    "eye": r"eyes?",
    "ear": r"ears?",
    "mouth": r"mouth|teeth|tooth|gums?|jaw|lips?|tongue",
    "face": r"face|facial|nose",
    "groin": r"groin|penis|vagina\w*|testic\w*|scrot\w*|genital\w*|pelvi\w*",
    "anus": r"rectum|rectal|anus|anal|bowel",
    "skin": r"skin",
    "kidney": r"kidneys?|bladder",
}
_SITES = [
    (name, re.compile(rf"\b(?:{words})\b", re.IGNORECASE)) for name, words in _SITE_GROUPS.items()
]
"""Body sites, each with the words for it: a question about one site is not answered by a
statement about another ('belly pain?' is answered by 'no abdominal pain', not 'knee pain')."""


def _site(text: str) -> set[str]:
    return {name for name, pattern in _SITES if pattern.search(text)}


def _members(groups: dict[str, tuple[str, ...]]) -> list[tuple[re.Pattern[str], set[str]]]:
    return [
        (re.compile(rf"\b(?:{words})\b", re.IGNORECASE), set(members))
        for words, members in groups.items()
    ]


_CONTRASTS = {
    "side": _members(
        {
            "left": ("left",),
            "right": ("right",),
            "both|bilateral(?:ly)?|either side": ("left", "right"),
        }
    ),
    "relative": _members(
        {
            "mother|mum|mom|mam|mummy|mommy|maternal": ("mother",),
            "father|dad|daddy|paternal": ("father",),
            "parents?": ("mother", "father"),
            "brothers?": ("brother",),
            "sisters?": ("sister",),
            "siblings?": ("brother", "sister"),
            "sons?": ("son",),
            "daughters?": ("daughter",),
            "children|kids": ("son", "daughter"),
            "grand(?:mother|ma|mum|mom)|gran|granny|nan|nana": ("grandmother",),
            "grand(?:father|pa|dad)|granddad": ("grandfather",),
            "grandparents?": ("grandmother", "grandfather"),
            "aunts?|auntie|aunty": ("aunt",),
            "uncles?": ("uncle",),
            "cousins?": ("cousin",),
        }
    ),
    "vaccine": _members(
        {
            "flu|influenza": ("influenza",),
            "pneumo\\w*|pneumonia": ("pneumococcal",),
            "covid(?:-?19)?|coronavirus": ("covid",),
            "shingles|zoster": ("zoster",),
            "tetanus": ("tetanus",),
            "mmr|measles|mumps|rubella": ("mmr",),
            "hpv": ("hpv",),
            "hep(?:atitis)? ?b": ("hepatitis b",),
            "whooping cough|pertussis": ("pertussis",),
            "bcg|tb": ("bcg",),
        }
    ),
}
"""Kinds of thing a question names one member of: a statement that names only other members
answers about them, not about the one asked ('does your mum get gout?' is not answered by
'father had gout'; 'your left side?' not by 'rolls to the right'; 'the pneumonia jab?' not by
'had the flu jab'). Vaccines count only where the text speaks of one (`_VACCINE`)."""
_VACCINE = re.compile(r"\b(?:jabs?|vaccin\w*|shots?|immuni[sz]\w*|boosters?)\b", re.I)


def contrasts(text: str, drugs: dict[str, str] | None = None) -> dict[str, set[str]]:
    """The members of each contrast kind (sides, relatives, vaccines, KB drugs) that a text
    names."""
    out: dict[str, set[str]] = {}
    for kind, patterns in _CONTRASTS.items():
        if kind == "vaccine" and not _VACCINE.search(text):
            continue
        found = {m for pattern, members in patterns if pattern.search(text) for m in members}
        if found:
            out[kind] = found
    if drugs:
        words = f" {' '.join(re.findall(r'[a-z0-9-]+', text.lower()))} "
        named = {d for n, d in drugs.items() if f" {n} " in words}
        if named:
            out["drug"] = named
    return out


def compatible(asked: dict[str, set[str]], said: dict[str, set[str]]) -> bool:
    """False when, for some kind, the statement names members and none of those asked."""
    return all(not said.get(kind) or bool(said[kind] & members) for kind, members in asked.items())


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


_OBSTETRIC = re.compile(
    r"\b(?:pregnan\w*|gestation(?:al)? (?:age|week)|weeks? (?:of )?gestation|deliver(?:ed|y|ies)|"
    r"born|birth|gravida|primigravida|multigravida|para|caesarean|cesarean|c-section|labou?r|"
    r"prenatal|antenatal|postpartum|breastfe\w*|menarche|immuni[sz]\w*|vaccin\w*|milestones?)\b",
    re.IGNORECASE,
)
_ILLNESS = re.compile(
    r"\b(?:diabet\w*|hypertens\w*|eclampsia|pre-?eclampsia|diseases?|disorders?|infections?|"
    r"syndromes?|cancer|tumou?r|asthma|depress\w*|anemi\w*|anaemi\w*|hepatitis|HIV)\b",
    re.IGNORECASE,
)
_EXCEPT = re.compile(
    r"\b(?:apart from|other than|besides|except(?: for)?|aside from)\s+(?:the |your |ur |my )?"
    r"([\w' -]+?)(?:,|\?|$|\s+(?:do|does|did|have|has|are|is|any)\b)",
    re.IGNORECASE,
)


_EARLIER = re.compile(r"\b(?:similar|in the past|previous(?:ly)?|prior)\b", re.IGNORECASE)
"""A question about earlier episodes ('similar problems in the past?')..."""
_PAST = re.compile(
    r"\b(?:similar|before|past|previous(?:ly)?|prior|history|recurrent|recurring|again|"
    r"childhood|years? ago|episodes)\b",
    re.IGNORECASE,
)
"""...is answered yes only by a statement about the past, never by the present complaint."""


def asks_problem(question: str) -> bool:
    """Whether a question asks about a problem ('any probs when he was born?')."""
    return bool(_PROBLEM.search(question))


def is_obstetric(fact: Fact) -> bool:
    """A statement of birth, pregnancy, delivery or development, not of an illness: 'Delivered
    vaginally at 39 weeks' is no answer to 'any medical problems?'."""
    return bool(_OBSTETRIC.search(fact.text)) and not _ILLNESS.search(fact.text)


def excepted(question: str) -> set[str]:
    """The content stems of what a question sets aside ('apart from the arthritis, ...')."""
    return {s for m in _EXCEPT.finditer(question) for s in content_stems(m.group(1))} - _WEAK


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


OPEN_QUESTION = re.compile(
    r"(?:what|wat|wot|whats|wats|who|whom|whose|where|wheres|when|why|how|which)\b", re.I
)
"""A question that asks for a thing, not a yes or no: a present statement answers it as it is."""
_CONTEXT = re.compile(
    r"(?:when|while|after|before|since|once|if|as|apart from|other than|besides|except|aside "
    r"from|during)\b",
    re.IGNORECASE,
)
"""A leading clause that sets the scene for a question rather than asking one."""
_CLAUSE_SPLIT = re.compile(r"[,;()]|\b(?:but|until)\b", re.IGNORECASE)


_STATE_NEGATING = re.compile(
    r"\b(?:uneventful|uncomplicated|unremarkable|normal(?:ly)?|unintentional(?:ly)?|unprotected|inconsistent(?:ly)?|resolv\w*|healed|"
    r"former(?:ly)?|ex-\w+|quit|stopped|ceased|abstain\w*|abstinent|teetotal|gave up|given up|"
    r"non-?\w+|spar(?:ed|ing)|free of|negative)\b",
    re.IGNORECASE,
)
"""Words by which a statement answers "no" to a question about the thing it names: "an
uneventful pregnancy" to "any complications?", "a resolved rash" to "is it still there?",
"unprotected sex" to "do you use condoms?". A question using the same word asks about that
state itself ("did the pain resolve?"), and gets a yes."""
_FORMER = {"forme", "quit", "stopp", "cease", "absta", "gave ", "given", "ex-sm", "ex-dr"}
"""Stems of `_STATE_NEGATING` that put a habit in the past: "no" to "do you smoke?", but..."""
_EVER_Q = re.compile(r"\b(?:ever|used to|in the past|previously|before)\b", re.IGNORECASE)
"""...a yes to a question about the past ('have you ever smoked?' to 'former smoker')."""
_UNRELATED = re.compile(
    r"\b(?:not|never|un)[ -]?(?:related|associated|linked|connected|brought on|triggered|"
    r"provoked|made worse|worsened|affected)\b|\b(?:not|never|n't)\s+(?:come|comes|came)\s+on\b",
    re.IGNORECASE,
)
"""A statement that its complaint does not go with something ('chest pain not related to
exertion', 'does not come on with exertion')..."""
_RELATION_Q = re.compile(
    r"\b(?:when|with|during|after|comes? on|brings? (?:it )?on|brought on|trigger\w*|set off|"
    r"worse|related|associated)\b",
    re.IGNORECASE,
)
"""...answers "no" to a question whether it does ('does the pain come on when you exercise?')."""
_ABLE_Q = re.compile(r"^\W*(?:can|could|are you able|is (?:he|she) able|r u able)\b", re.I)
"""'Can you straighten your fingers fully?' is answered "no" by a statement of trouble with it."""
_PAINLESS = re.compile(r"\bpain-?less\b", re.IGNORECASE)
_PAIN_Q = re.compile(r"\b(?:pain\w*|hurt\w*|sore|tender)\b", re.IGNORECASE)
"""'Painless' says no to a question about pain, and only to one: 'painless lesions on the
hands' still answers 'any spots on your hands?'."""
_QUALITY = re.compile(r"\b(?:healthy|well|fine|unaffected)\b", re.IGNORECASE)
"""Words by which a statement says someone is well: "previously healthy" answers "no" to a
question about a problem ('any medical problems?'), but "one healthy sibling" still answers
"have you any brothers or sisters?" with a yes."""
_PROBLEM = re.compile(
    r"\b(?:problems?|probs?|complicat\w*|issues?|wrong|ill|illness\w*|sick\w*|diseases?|"
    r"troubles?|concerns?|abnormal\w*|difficult\w*|worr\w*|symptoms?|conditions?|disorders?|"
    r"affected)\b",
    re.IGNORECASE,
)
"""Words by which a question asks about a problem rather than about the thing itself."""
_WELL_Q = re.compile(
    r"\b(?:alright|all right|ok|okay|well|normal(?:ly)?|fine|good|healthy)\s*$", re.IGNORECASE
)
"""A question that ends asking whether something is all right ('is he feeding alright?')..."""
_TROUBLE = re.compile(
    r"\b(?:intoleran\w*|poor(?:ly)?|difficult\w*|unable|inability|decreas\w*|reduc\w*|"
    r"impair\w*|abnormal\w*|troubl\w*|problems?|struggl\w*|refus\w*|fail\w*)\b",
    re.IGNORECASE,
)
"""...is answered "no" by a statement of trouble with it ('intolerant to feeding')."""


def _troubled(text: str, stems: set[str]) -> bool:
    """Whether a word of trouble in the text is about an asked stem: just before it or up to two
    words after ('intolerant to feeding'), not about something else ('gain despite decreased
    feeding' to 'gaining weight ok?')."""
    words = re.findall(r"[A-Za-z]+", text.lower())
    for i, w in enumerate(words):
        if _TROUBLE.fullmatch(w):
            near = words[max(0, i - 1) : i] + words[i + 1 : i + 3]
            if any(n[:5] in stems for n in near):
                return True
    return False


_NEGATOR = re.compile(
    r"\b(?:not|never|fail(?:s|ed|ing)?\s+to|unable\s+to|\w+n't)\s+(\w+)", re.IGNORECASE
)
"""A verb's negator and the word it negates ('not involving', 'failing to respond')."""
_NO_LIST = re.compile(
    r"\b(?:no|denies|without)\b((?:\s+(?!but\b|however\b)[\w'-]+,?){1,8})", re.IGNORECASE
)
"""A denial inside a statement of something else, and the words it covers up to a 'but':
'a student with no history of smoking, alcohol, or drug use'."""
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
    said = {w.lower()[:5] for w in _STATE_NEGATING.findall(scope)}
    asked = {w.lower()[:5] for w in _STATE_NEGATING.findall(question)}
    if said - asked and not (said <= _FORMER and _EVER_Q.search(question)):
        return "denied"
    if said:  # 'has his development been normal?' to 'normal development'; 'ever smoked?'
        return "affirmed"
    if _QUALITY.search(scope) and _PROBLEM.search(question) and not _QUALITY.search(question):
        return "denied"
    if (_WELL_Q.search(question.strip(" ?.!")) or _ABLE_Q.search(question)) and _troubled(
        scope, stems
    ):
        return "denied"
    if _PAINLESS.search(scope) and _PAIN_Q.search(question):
        return "denied"  # 'are the lesions painful?' to 'painless lesions'
    if _UNRELATED.search(scope) and _RELATION_Q.search(question):
        return "denied"
    if _PROBLEM.search(question) and any(
        _PROBLEM.search(m.group(1)) for m in _NO_LIST.finditer(scope)
    ):
        return "denied"  # 'born at term with no complications' to 'any problems at birth?'
    asked4 = {w[:4] for w in stems}
    if any(m.group(1).lower()[:4] in asked4 for m in _NEGATOR.finditer(scope)):
        return "denied"  # 'rash not involving the perioral skin' to 'does it involve...?'
    if stems and any(stems <= content_stems(m.group(1)) for m in _NO_LIST.finditer(fact.text)):
        return "denied"  # 'a student with no history of drug use' to 'do you use drugs?'
    shared = stems & content_stems(fact.text)
    denied = {s for m in _NO_LIST.finditer(fact.text) for s in content_stems(m.group(1))}
    if shared and shared <= denied:  # 'have u had the squits?' to "I've had no diarrhoea"
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
    choice: bool = False
    """The statement also answers another part: 'sudden or gradual?' asks which, not whether,
    so it is said as it is, without a yes."""
    unstated: frozenset[str] = frozenset()
    """Attribute classes the yes-or-no part asks that the statement does not speak of ('is the
    rash itchy?' of 'Rash on the back.'): the statement is said as it is, with no yes, and the
    part is answered 'unknown' (`attributes.Attributes.unstated`)."""


DETAIL_FLOOR = 0.25
"""The least score of a statement that answers 'how long...?' or 'when did it start?' by
naming the complaint and giving the time, though the thresholds did not accept it."""
_DETAIL_WORDS = content_stems(
    "how long when what time start started starting begin began begun first notice noticed "
    "happen happened come came since ago have had has been get got feel felt past last year "
    "years month months week weeks day days"
)
"""Words of such a question that ask for the detail, not name the complaint."""
_TIMES = {"duration", "onset"}
"""The answer types (`lexicon/attributes.yaml`) a statement of the complaint may give beyond the
thresholds: a time is rarely given of the wrong complaint, a number or a side often is."""


CANDIDATES = 6
"""Statements per question part that the acceptance scorer weighs (by score, best first)."""


def _candidates(score: np.ndarray, ruled: np.ndarray, topical: np.ndarray) -> list[int]:
    """The statements weighed for one part: the rules' best first, then the best by score, then
    any statement of the topic the part asks about."""
    first = int(ruled.argmax()) if ruled.max() > 0 else int(score.argmax())
    rest = [int(k) for k in np.argsort(-score, kind="stable")[: CANDIDATES + 1] if k != first]
    top = [first, *rest[: CANDIDATES - 1]]
    extra = [int(k) for k in np.flatnonzero(topical) if int(k) not in top]
    return top + sorted(extra, key=lambda k: -score[k])[:2]


@dataclass(frozen=True)
class _Pair:
    """One question part against every statement: what the features of a pair are made of."""

    part: str
    read: str
    stems: set[str]
    focus: set[str]
    row: np.ndarray
    sent: np.ndarray
    kb: np.ndarray
    score: np.ndarray
    shared: np.ndarray
    ok: np.ndarray
    topical: np.ndarray


@dataclass(frozen=True)
class _Ruled:
    """One question part after the hand-set rules (`RecordIndex._rules`): scores, what the
    rules accept, the candidates in order and what each would say."""

    read: str
    stems: set[str]
    focus: set[str]
    row: np.ndarray
    score: np.ndarray
    shared: np.ndarray
    ok: np.ndarray
    topical: np.ndarray
    ruled: np.ndarray
    cand: list[int]
    said: dict[int, str]

    def pair_fields(self, sent: np.ndarray, kb: np.ndarray) -> tuple[Any, ...]:
        """The fields of a `_Pair` after its part, given the part's raw similarity rows."""
        return (
            self.read,
            self.stems,
            self.focus,
            self.row,
            sent,
            kb,
            self.score,
            self.shared,
            self.ok,
            self.topical,
        )


FEATURES = (
    "cosine",
    "sentence_cosine",
    "kb_cosine",
    "score",
    "is_first",
    "gap_to_best",
    "margin_over_next",
    "shared_word",
    "focus_covered",
    "focus_shared",
    "statement_covered",
    "rules_accept",
    "topical",
    "denial_list",
    "denial",
    "says_no",
    "site_asked",
    "site_agrees",
    "others_asked",
    "about_others",
    "earlier_asked",
    "about_past",
    "open_question",
    "parts",
    "statement_words",
    "complaint",
    "past_history",
    "social",
    "review",
    "family",
    "medication",
    "cosine_over_half",
    "cosine_over_040",
    "cosine_with_shared",
    "cosine_with_focus",
    "rank",
)
"""Per (question part, statement) pair, in the order the acceptance weights expect them."""


ACCEPTANCE_FILE = LEXICON_DIR / "recall_acceptance.yaml"
"""Weights of the acceptance scorer, fitted offline by bench/fit_recall.py (no KB content, so
refitting leaves the KB version and frozen suites alone)."""


class AcceptanceScorer(BaseModel):
    """A logistic model over `FEATURES`: the chance that a statement is the record's answer to a
    question part, with the same polarity. It replaces hand-set thresholds, which cannot tell a
    paraphrase at cosine 0.45 from a related statement at 0.55; NumPy only at run time."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int
    fitted_on: str
    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    threshold: float
    """A statement the thresholds reject answers the part when its chance is at least this..."""
    veto: float
    """...and one they accept does not when its chance is below this."""

    @field_validator("features")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        if tuple(v) != FEATURES:
            raise ValueError(f"expected the features {list(FEATURES)} in that order, got {v}")
        return v

    @field_validator("mean", "scale", "coef")
    @classmethod
    def _per_feature(cls, v: list[float]) -> list[float]:
        if len(v) != len(FEATURES):
            raise ValueError(f"expected {len(FEATURES)} numbers (one per feature), got {len(v)}")
        return v

    @field_validator("scale")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(x <= 0 for x in v):
            raise ValueError("every scale must be positive")
        return v

    def prob(self, x: np.ndarray) -> np.ndarray:
        """Per row of features, the chance that the statement answers the part."""
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))


def load_acceptance(path: Path) -> AcceptanceScorer:
    """An acceptance-weights file, validated; a KBError names the file and field of a problem."""
    return read_model(path, AcceptanceScorer)


@cache
def acceptance_scorer() -> AcceptanceScorer:
    """The bundled acceptance weights, read once."""
    return load_acceptance(ACCEPTANCE_FILE)


class RecordIndex:
    """A record's history statements, embedded once, looked up by question parts.

    With a `QuestionMatcher`, a part that clearly names a KB finding ("is your heart racing?" ->
    palpitations) is also compared through that finding's own phrasings, so lay words reach the
    record's clinical ones ("Denies palpitations") without a word list for every symptom.
    """

    def __init__(
        self,
        facts: list[Fact],
        encoder: SentenceEncoder,
        matcher: Any = None,
        scorer: AcceptanceScorer | None = None,
    ) -> None:
        self.facts = facts
        self.scorer = scorer
        """With the hand-set thresholds, decides which statement answers a part (opt-in, e.g.
        `acceptance_scorer()`: it helped the development bank but not every held-out one)."""
        self.trace: list[tuple[str, str, list[int], np.ndarray, list[str], np.ndarray]] | None = (
            None
        )
        """When a list, each part's candidates and their features are appended (for fitting)."""
        self.encoder = encoder
        self.matcher = matcher
        self._matrix: np.ndarray | None = None
        self._stems = [content_stems(f.text) for f in facts]
        self._sites = [_site(f.text) for f in facts]
        self._drugs: dict[str, str] = getattr(matcher, "drugs", None) or {}
        self._contrasts = [contrasts(f.text, self._drugs) for f in facts]
        self._others = np.array([bool(_OTHERS.search(f.text)) for f in facts])
        self._past = np.array([bool(_PAST.search(f.text)) for f in facts])
        self._denial = np.array([not f.present for f in facts])
        self._topics = [
            (asks, np.array([bool(says.search(f.text)) for f in facts], dtype=bool))
            for asks, says in topics()
        ]
        """Per statement, computed once: its content stems, body sites, whether it is about
        someone else or the past, whether it is a denial, and which topics it is of."""

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

    def _features(
        self, pr: _Pair, cand: list[int], said: dict[int, str], n_parts: int
    ) -> np.ndarray:
        """A row of `FEATURES` per candidate statement of one question part."""
        idx = np.array(cand)
        sc = pr.score[idx]
        order = np.sort(pr.score)[::-1]
        best = order[0]
        second = order[1] if len(order) > 1 else 0.0
        site_q = _site(pr.part)
        others_q = bool(_OTHERS.search(pr.part))
        earlier_q = bool(_EARLIER.search(pr.part))
        open_q = bool(OPEN_QUESTION.match(pr.part))
        rows = []
        for n, k in enumerate(cand):
            fs = self._stems[k]
            cat = self.facts[k].category
            rows.append(
                [
                    pr.row[k],
                    pr.sent[k],
                    pr.kb[k],
                    sc[n],
                    float(n == 0),
                    best - sc[n],
                    sc[n] - (second if sc[n] >= best else best),
                    float(pr.shared[k]),
                    len(pr.focus & fs) / max(1, len(pr.focus)),
                    min(3, len(pr.focus & fs)) / 3,
                    len(pr.stems & fs) / max(1, len(fs)),
                    float(pr.ok[k]),
                    float(pr.topical[k]),
                    float(self._denial[k] and bool(pr.stems) and pr.stems <= fs),
                    float(self._denial[k]),
                    float(said[k] == "denied"),
                    float(bool(site_q)),
                    float(bool(site_q & self._sites[k])),
                    float(others_q),
                    float(self._others[k]),
                    float(earlier_q),
                    float(self._past[k]),
                    float(open_q),
                    min(n_parts, 4) / 4,
                    min(len(self.facts[k].text.split()), 40) / 40,
                    float(cat in ("chief_complaint", "hpi")),
                    float(cat == "pmh"),
                    float(cat == "social"),
                    float(cat == "ros"),
                    float(cat == "family"),
                    float(cat in ("medication", "allergy")),
                    max(0.0, pr.row[k] - FACT_THRESHOLD),
                    max(0.0, pr.row[k] - LEXICAL_THRESHOLD),
                    pr.row[k] * float(pr.shared[k]),
                    pr.row[k] * float(bool(pr.focus & fs)),
                    min(n, CANDIDATES) / CANDIDATES,
                ]
            )
        return np.asarray(rows, dtype=float)

    def recall(self, question: str) -> list[Recall]:
        """One Recall per part of the question (distinct statements only)."""
        if not self.facts:
            return []
        if self._matrix is None:
            self._matrix = self.encoder.encode([f.text for f in self.facts])
        parts = question_parts(question)
        texts = [plain(t) for t in ([question, *parts] if len(parts) > 1 else [question])]
        emb = self.encoder.encode(texts)
        sent = emb @ self._matrix.T
        kb = self._via_kb(emb) if self.matcher is not None else np.zeros_like(sent)
        sims = np.maximum(sent, kb)
        first = 1 if len(parts) > 1 else 0
        out: list[Recall] = []
        for i, part in enumerate(parts):
            r = first + i
            ruled = self._rules(part, sims[r])
            x = None
            if self.scorer is not None or self.trace is not None:  # features only when used
                pair = _Pair(part, *ruled.pair_fields(sent[r], kb[r]))
                x = self._features(pair, ruled.cand, ruled.said, len(parts))
            if self.trace is not None:
                said = [ruled.said[k] for k in ruled.cand]
                self.trace.append((question, part, ruled.cand, x, said, emb[r]))
            got = self._pick(part, ruled, x)
            same = [
                n
                for n, o in enumerate(out)
                if got.fact is not None and o.fact is not None and o.fact.id == got.fact.id
            ]
            if same:
                out[same[0]] = replace(out[same[0]], choice=True)
                continue
            out.append(got)
        return out or [Recall(question, None, 0.0)]

    def _rules(self, part: str, row: np.ndarray) -> _Ruled:
        """The hand-set rules for one part of a question against every statement: each
        statement's score, which ones the rules accept, and the candidates in order."""
        read = plain(part)
        stems = content_stems(read) - _WEAK
        shared = np.array([bool(stems & s) for s in self._stems])
        sites = _site(part)
        if sites:  # "hip pain?" is not answered by "pain in the left knee"
            row = row * np.array([not fs or bool(fs & sites) for fs in self._sites])
        asked = contrasts(part, self._drugs)
        fits = np.array([compatible(asked, c) for c in self._contrasts], dtype=bool)
        row = row * fits
        score = row + LEXICAL_BONUS * shared
        if _OTHERS.search(part):
            score = score * self._others
        focus = focus_stems(part, read) if not OPEN_QUESTION.match(part) else stems
        # a shared word of the part's given topic ('the bleeding' in 'did the gauze stop the
        # bleeding?') is not enough on its own: what is asked about it must be shared too
        lexical = np.array([bool(focus & s) for s in self._stems]) if focus != stems else shared
        ok = (row >= FACT_THRESHOLD) | (lexical & (row >= LEXICAL_THRESHOLD))
        twice = np.array([len(focus & s) >= 2 for s in self._stems])
        ok |= twice & (row >= SHARED_TWICE_THRESHOLD)  # 'look sick?' -> 'Appears ill.'
        if stems:  # a long list of denials ("No fever, ..., recent foreign travel, ...")
            ok |= self._denial & np.array([stems <= s for s in self._stems])
        about = _about_stems(part) if _WHAT_WHERE.match(part) else set()
        if about and stems - about:  # 'what do you take for the arthritis?' is not
            for k in np.flatnonzero(ok):  # answered by 'diagnosed with arthritis'
                if self._stems[k] & stems and self._stems[k] & stems <= about:
                    ok[k] = False
        ok &= fits
        topical = self._topical(read) & (score > 0)
        ruled = score
        if not ok.any():  # "what do you do for a living?" -> "Retired teacher."
            ok = topical.copy()
            ruled = np.where(ok, score, 0.0)
        if _EARLIER.search(part) and not OPEN_QUESTION.match(part):
            for k in np.flatnonzero(ok):  # 'similar pain before?' is not 'pain since today'
                if not self._past[k] and polarity(self.facts[k], read) == "affirmed":
                    ok[k] = False
        cand = _candidates(score, ruled, topical)
        said = {k: polarity(self.facts[k], read) for k in cand}
        return _Ruled(read, stems, focus, row, score, shared, ok, topical, ruled, cand, said)

    def _pick(self, part: str, r: _Ruled, x: Any) -> Recall:
        """The statement that answers the part: the rules' best, vetoed or replaced by the
        fitted scorer; none where the best is not accepted or a rival says the opposite."""
        accept = r.ok[r.cand] & (r.ruled[r.cand] > 0)  # the hand-set rules: their best, if any
        pick = 0
        if self.scorer is not None:  # the scorer vetoes a weak one or takes a likely one
            p = self.scorer.prob(x)
            accept = (accept & (p >= self.scorer.veto)) | (p >= self.scorer.threshold)
            if accept.any() and not (accept[0] and r.ok[r.cand[0]]):
                pick = int(np.argmax(np.where(accept, p, -np.inf)))
        j = r.cand[pick]
        best = float(r.score[j])
        asked = part.strip()
        open_q = bool(OPEN_QUESTION.match(asked))
        detail = partial(attributes().ungiven, asked)  # what of the asked detail a text lacks
        if not accept[pick]:  # 'when did the pain start?' of '... pain ... 16 hours ago'
            k = self._detail(r, detail) if open_q and detail("") & _TIMES else None
            if k is not None:
                return Recall(part, self.facts[k], float(r.score[k]), status="affirmed")
            return Recall(part, None, best)
        status = r.said[j]
        rival = max(
            (
                (float(r.score[k]), self.facts[k])
                for n, k in enumerate(r.cand)
                if k != j
                and accept[n]
                and r.shared[k] == r.shared[j]
                and r.said[k] != status
                and not (r.focus & self._stems[k] < r.focus & self._stems[j])
            ),  # a rival that says only part of what the pick says of the question is none
            default=(-1.0, None),
            key=lambda t: t[0],
        )
        if rival[1] is not None and rival[0] >= best - CONFLICT_MARGIN:
            return Recall(part, None, best, blocked=rival[1])
        if status != "affirmed":
            return Recall(part, self.facts[j], best, status=status)
        if open_q:  # 'how long...?' of 'Fatigue.'
            j, unstated = self._saying(r, j, detail)
            k = self._detail(r, detail) if unstated & _TIMES else None
            if k is not None:
                j, unstated = k, set()
        else:  # 'is the rash itchy?' of 'Rash on the back.'
            j, unstated = self._saying(r, j, lambda text: attributes().unstated(r.read, text))
        return Recall(part, self.facts[j], best, status=status, unstated=frozenset(unstated))

    def _detail(self, r: _Ruled, missing: Callable[[str], set[str]]) -> int | None:
        """The best statement of the complaint an open question names (a word shared, the
        thresholds aside) that gives the detail it asks for: 'when did the pain start?' of
        'sudden onset of abdominal pain 16 hours ago', 'how long has your calf been swollen?'
        of 'L calf swelling x4/7'."""
        topic = content_stems(r.read) - _DETAIL_WORDS
        hits = [
            k
            for k in np.flatnonzero(r.score >= DETAIL_FLOOR)
            if self.facts[k].present and self._stems[k] & topic and not missing(self.facts[k].text)
        ]
        return int(max(hits, key=lambda k: r.score[k])) if hits else None

    def _saying(
        self, r: _Ruled, j: int, missing: Callable[[str], set[str]]
    ) -> tuple[int, set[str]]:
        """The statement `j` if it says all the part asks of it (`missing` of its text is
        empty), else the best-scoring accepted statement of the same polarity that does; with
        what is still not said."""
        lacking = missing(self.facts[j].text)
        if not lacking:
            return j, lacking
        others = [
            int(k)
            for k in np.flatnonzero(r.ok & (r.score > 0))
            if k != j
            and polarity(self.facts[k], r.read) == "affirmed"
            and not missing(self.facts[k].text)
        ]
        if not others:
            return j, lacking
        return max(others, key=lambda k: r.score[k]), set()
