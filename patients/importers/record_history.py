"""A clinician-written history -> the patient's facts, each said in the patient's own voice.

Written cases state history in the chart's third person ("The patient reports a 2-day history of
fever without chills", "Denies nausea, vomiting, or dysuria", "Non-smoker, drinks socially").
`statements` splits a passage into clauses, each present or negated: a list under one negation
becomes one negated clause per item, and a negation's scope ends at "but"/"although". Meta-text
about the record itself ("No mention of smoking", "Information not provided", "Occupation not
specified") is not a fact at all: the record is silent there, so the patient says it does not
know, never a denial. `speak` turns a clause into what the patient says: grammatical first person
("I drink alcohol socially"), or the caregiver's third person for a young child ("She attends
preschool"), changing the frame only, never the content. `category_of` files a clause by what it
says (a drug taken is a medication even under past history; a relative's illness is family
history; work, travel, smoking and drink are social history), so list questions find it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from clinicgym.patients.errors import ImporterError
from clinicgym.patients.importers.text import PREPOSITION_END, slug

ABBREVIATIONS_FILE = Path(__file__).with_name("chart_abbreviations.yaml")

META = re.compile(
    r"\bno (?:mention|information|data|details?|record)\b|\bnot (?:provided|specified|mentioned|"
    r"documented|available|given|stated|known|recorded|described|discussed|applicable|"
    r"indicated|noted by)\b|\binformation (?:not|unavailable)\b|^\s*(?:n/?a|na|unknown|none "
    r"provided|not applicable)\s*\.?$|\bno (?:additional|further|other) (?:information|"
    r"details?|history)\b|\bno (?:additional|further|other) symptoms? (?:(?:were|was|are|is) )?"
    r"(?:provided|given|available|specified|mentioned|documented|listed)\b|"
    r"\bunknown (?:substance|drug|alcohol|smoking|tobacco|family|social|medical)\b|"
    r"\bnot applicable\b|\bnot relevant\b|^no\b.*\b(?:provided|given|available)\s*\.?$",
    re.IGNORECASE,
)
"""Text about the record, not the patient: the point is unknown, never denied."""

_NEG_LEAD = re.compile(
    r"^(?:(?:the\s+)?(?:patient|pt|child|baby|infant|newborn|boy|girl|man|woman|mother|father|"
    r"parents?)\s+|he\s+|she\s+|they\s+)?(?:also\s+|specifically,?\s+|further\s+)?"
    r"(?:denies|denied|denying|reports no|reported no|mentions no|notes no|states no|describes no|"
    r"has no|had no|have no|takes no|uses no|"
    r"drinks no|on no|no|not|never|"
    r"without|nil|negative for|absence of|does not (?:report|have|endorse|complain of)|"
    r"did not (?:report|have)|is not|has not had|hasn't had|"
    r"there (?:is|are|was|were|has been|have been|had been) no)"
    r"\b\s*(?:any\s+|a\s+|an\s+|history of\s+|h/o\s+|known\s+|complaints? of\s+|"
    r"reports? of\s+|recent\s+(?=history))?",
    re.IGNORECASE,
)
_SCOPE_END = re.compile(r"\s*,?\s+\b(?:but|although|though|however|yet|except)\b\s*", re.I)
_INNER_NEG = re.compile(
    r"\s+without\s+(?:any\s+)?|\s*,\s*(?:and\s+|but\s+)?(?=(?:denies|denied|no|has no|had no|"
    r"is not|was not|does not|did not|never)\b)",
    re.IGNORECASE,
)
_VERBAL_NEG = re.compile(
    r"^(?:(?:the\s+)?(?:patient|pt|child|baby|infant|newborn)\s+|he\s+|she\s+|they\s+|i\s+)?"
    r"(?:also\s+)?(?:does not|did not|doesn't|didn't|has not|hasn't|had not|is not|was not|"
    r"isn't|wasn't|never|cannot|can't|do not|don't|have not|haven't|am not|'m not)\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.;!?])\s+|(?<!\d)[.;](?!\d)\s*$|\n+")
MAX_ITEM_WORDS = 6


@dataclass(frozen=True)
class Statement:
    """One clause of a history: its words (chart wording) and whether the record negates it.
    `verbal` marks a negated verb phrase ("Does not smoke") said whole, not as 'No <item>'."""

    text: str
    negated: bool = False
    verbal: bool = False


UNKNOWN = re.compile(
    r"\b(?:status|history|details?|dose|name|type)\s+(?:is\s+|was\s+|remains\s+)?"
    r"(?:unknown|unclear|uncertain|not known)\b|^\s*unknown\b",
    re.IGNORECASE,
)
"""A clause that says what the record does not know ('pneumococcal vaccine status unknown'):
read per clause, so the rest of its sentence still counts ('flu jab this autumn, ...')."""
_LABEL_SAYS = re.compile(
    r"^(?P<what>[A-Za-z][^:]{1,40}?)\s*:\s*(?P<says>no|none|nil|negative|never|yes|positive)"
    r"\s*$",
    re.IGNORECASE,
)
"""A chart's 'label: no' line ('Home oxygen: no', 'Smoking: never'): the label, denied or
affirmed, never the label said with 'no' after it."""


def top_level(text: str, sep: str = ",") -> list[str]:
    """`text` split at `sep` outside brackets: 'T2DM (metformin, gliclazide), HTN' is two items."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == sep and depth <= 0:
            out.append(text[start:i])
            start = i + 1
    return [*out, text[start:]]


class _Abbreviations(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int
    abbreviations: dict[str, str]


@cache
def _abbreviations(path: Path = ABBREVIATIONS_FILE) -> tuple[re.Pattern[str], dict[str, str]]:
    """The abbreviation table (validated; a problem names the file) and one pattern for it."""
    try:
        table = _Abbreviations.model_validate(yaml.safe_load(path.read_text())).abbreviations
    except (OSError, yaml.YAMLError, ValidationError) as e:
        raise ImporterError(f"{path}: {e}") from None
    names = "|".join(map(re.escape, sorted(table, key=len, reverse=True))) or r"(?!)"
    return re.compile(rf"(?<![\w&/])(?:{names})(?![\w&/])"), table


def expand_abbreviations(text: str) -> str:
    """A history's chart abbreviations in the words a patient says ('T2DM' -> 'type 2
    diabetes'), from `chart_abbreviations.yaml`: whole words, as written in capitals."""
    pattern, table = _abbreviations()
    return pattern.sub(lambda m: table[m.group(0)], text)


def is_meta(text: str) -> bool:
    """True for text about the record ('No mention of smoking', 'Not specified')."""
    return bool(META.search(text))


def sentences(passage: Any) -> list[str]:
    """The sentences of a passage (strings, numbers, lists and dicts of them)."""
    if passage is None:
        return []
    if isinstance(passage, dict):
        return [s for v in passage.values() for s in sentences(v)]
    if isinstance(passage, list | tuple):
        return [s for v in passage for s in sentences(v)]
    parts = _SENTENCE.split(str(passage))
    return [p.strip(" ,;:-\t") for p in parts if p and p.strip(" ,;:-\t.")]


def statements(sentence: str) -> list[Statement]:
    """A sentence's clauses, each present or negated; [] for meta-text."""
    s = sentence.strip().rstrip(".")
    if not s or is_meta(s):
        return []
    out: list[Statement] = []
    for chunk in _SCOPE_END.split(s):
        chunk = chunk.strip(" ,")
        if not chunk:
            continue
        reported = _FRAME.match(chunk)
        if reported and reported.end() and _NEG_LEAD.match(chunk[reported.end() :]):
            chunk = chunk[reported.end() :]  # "the parents report that there was no injury"
        pieces = _INNER_NEG.split(chunk)
        if len(pieces) > 1:  # "fever without chills", "born at term, has no illness, and ..."
            for j, piece in enumerate(pieces):
                piece = piece.strip(" ,")
                if not piece:
                    continue
                after_without = j > 0 and bool(
                    re.search(r"\swithout\s+(?:any\s+)?$", chunk[: chunk.find(piece)])
                )
                out.extend(_one(piece, forced_negation=after_without))
        else:
            out.extend(_one(chunk))
    return out


_NOTHING = re.compile(
    r"^(?:(?:the\s+)?(?:patient'?s?\s+)?(?:past\s+)?(?:medical|family|social|surgical)?\s*"
    r"(?:history\s+)?(?:is\s+)?)?(?:unremarkable|non-?contributory|none|nil|negative|"
    r"(?:essentially\s+)?normal)\s*$",
    re.IGNORECASE,
)
"""'Unremarkable', 'The patient's past medical history is unremarkable', 'None': nothing to
report under the heading, a denial for the section as a whole."""


def _one(chunk: str, *, forced_negation: bool = False) -> list[Statement]:
    if is_meta(chunk):
        return []
    said = _LABEL_SAYS.match(chunk)
    if said:
        negated = said["says"].lower() not in ("yes", "positive")
        return _clause(said["what"], negated)
    if _NOTHING.match(chunk):
        return [Statement("", True)]
    if forced_negation:
        return _list_of(chunk, True)
    if _VERBAL_NEG.match(chunk):
        return [Statement(chunk, True, verbal=True)]
    n = _NEG_LEAD.match(chunk)
    if n and len(chunk) > n.end():
        return _list_of(chunk[n.end() :], True)
    chunk = re.sub(r"^(?:and|but)\s+", "", chunk, flags=re.I)
    verbs = _NEXT_VERB.split(chunk)
    if len(verbs) > 1:  # "Lives with his wife, smokes 2 packs a day, has recently immigrated"
        return [st for v in verbs for st in _one(v)]
    items = [i.strip() for i in top_level(chunk)]
    if (
        len(items) > 1
        and all(0 < len(i.split()) <= MAX_ITEM_WORDS for i in items)
        and not any(i.lower() in _ADJECTIVES for i in items)
    ):  # "Type 2 diabetes mellitus, hypercholesterolemia, glaucoma"; "Non-smoker, ..."
        return [st for i in items for st in _one(re.sub(r"^(?:and|or)\s+", "", i))]
    if _NON.match(chunk):
        return [Statement(chunk, True, verbal=True)]
    return _clause(chunk, False)


_NON = re.compile(r"^non-?\s?(?:smoker|drinker|alcoholic)\b", re.IGNORECASE)
_ADJECTIVES = {"multiple", "small", "large", "painful", "painless", "red", "mild", "severe"}


def _clause(text: str, negated: bool) -> list[Statement]:
    text = text.strip(" ,")
    if not text or is_meta(text) or UNKNOWN.search(text):
        return []
    return [Statement(text, negated)]


def _list_of(body: str, negated: bool) -> list[Statement]:
    """Items of a negated list ('fever, cough, or recent travel'); a long clause stays whole.
    'changes in bladder or bowel habits' is one item: 'or' after a preposition's object joins."""
    body = re.sub(r"\s+(?:reported|noted|mentioned|documented)$", "", body, flags=re.I)
    items: list[str] = []
    for part in top_level(body):
        part = re.sub(r"^\s*(?:and|or|nor)\s+", "", part).strip()
        if not part:
            continue
        sub = re.split(r"\s+(?:and|or|nor)\s+", part)
        if len(sub) > 1 and not PREPOSITION_END.search(sub[0]):
            items.extend(sub)
        else:
            items.append(part)
    verb = next(
        (k for k, p in enumerate(items) if k and _ends_negation(p)),
        None,
    )
    if verb is not None:  # "no illness, and her immunizations are up to date": the list ends
        head = ", ".join(items[:verb])
        return _list_of(head, negated) + _one(", ".join(items[verb:]))
    if len(items) > 1 and all(len(p.split()) <= MAX_ITEM_WORDS for p in items):
        return [
            Statement(re.sub(r"^(?:any|a|an)\s+", "", p, flags=re.I), negated)
            for p in items
            if not UNKNOWN.search(p)
        ]
    return _clause(body, negated)


_FINITE = re.compile(r"\b(?:is|are|was|were|has|have|had)\b", re.IGNORECASE)
_RELATIVE = re.compile(r"\b(?:that|which|who|whom|whose)\b", re.IGNORECASE)


_POSITIVE = re.compile(
    r"^(?:normal|unremarkable|healthy|up[- ]to[- ]date|otherwise|well)\b", re.IGNORECASE
)


def _ends_negation(item: str) -> bool:
    """A later item of a negated list that starts a statement of its own: a verb ("and her
    immunizations are up to date") or a normal finding ("no allergies, normal birth")."""
    return bool(_FINITE.search(_main(item)) or _BARE_VERB.match(item) or _POSITIVE.match(item))


def _main(item: str) -> str:
    """An item without its relative clause: the verb of "incident at the park that could have
    led to the swelling" belongs to the item, so it does not end the negated list."""
    return _RELATIVE.split(item, maxsplit=1)[0]


# ---- the patient's voice -------------------------------------------------------------------

_FRAME = re.compile(
    r"^(?:the\s+)?(?:(?:patient|pt|newborn|infant|baby|child|boy|girl|man|woman)(?:'s)?\s+)?"
    r"(?:(?:mother|father|parents?|caregiver|husband|wife|partner|son|daughter|family)\s+)?"
    r"(?:he\s+|she\s+|they\s+)?"
    r"(?:also\s+|additionally\s+|further\s+|now\s+|currently\s+)?"
    r"(?:reports?|reported|notes?|noted|states?|stated|mentions?|mentioned|describes?|described|"
    r"endorses?|endorsed|admits?(?:\s+to)?|admitted(?:\s+to)?|complains?\s+of|complained\s+of|"
    r"presents?\s+with(?:\s+complaints?\s+of)?|presented\s+with|recalls?|says?|said|cites?|"
    r"expresses|expressed|indicates?|indicated|confirms?|confirmed|perceives|is\s+concerned"
    r"(?:\s+about)?)\b\s*(?:that\s+)?"
    r"(?:experiencing\s+|having\s+|feeling\s+|noticing\s+)?",
    re.IGNORECASE,
)
_SUBJECT = re.compile(
    r"^(?:the\s+)?(?:patient|pt|newborn|infant|baby|child|boy|girl)\s+|^(?:he|she|they)\s+",
    re.IGNORECASE,
)
_IRREGULAR = {
    "has": "have",
    "is": "am",
    "was": "was",
    "does": "do",
    "goes": "go",
    "doesn't": "don't",
    "isn't": "am not",
    "hasn't": "haven't",
    "wasn't": "wasn't",
    "had": "had",
}
_VERBS = [
    "drinks",
    "smokes",
    "works",
    "lives",
    "attends",
    "uses",
    "takes",
    "consumes",
    "enjoys",
    "plays",
    "runs",
    "walks",
    "exercises",
    "eats",
    "sleeps",
    "feels",
    "experiences",
    "travels",
    "vapes",
    "chews",
    "admits",
    "mentions",
    "states",
    "notes",
    "reports",
    "denies",
    "describes",
    "complains",
    "endorses",
    "needs",
    "wears",
    "wakes",
    "gets",
    "goes",
    "keeps",
    "likes",
    "loves",
    "hates",
    "avoids",
    "spends",
    "teaches",
    "studies",
    "cares",
    "volunteers",
    "owns",
    "rides",
    "swims",
    "hikes",
    "injects",
    "snorts",
    "shares",
    "breastfeeds",
    "feeds",
    "cries",
    "coughs",
    "sneezes",
    "vomits",
]
_ADVERB = r"(?:(?:also|occasionally|regularly|rarely|often|sometimes|currently|now|still|"
_ADVERB += r"usually|socially|previously|recently|only|never|always|frequently|heavily)\s+)?"
_BARE_VERB = re.compile(
    rf"^({_ADVERB})({'|'.join(_VERBS)}|has|is|was|had|does|did)\b", re.IGNORECASE
)
_NEXT_VERB = re.compile(
    rf"(?:,\s*(?:and\s+|but\s+)?|\s+(?:and|but)\s+)"
    rf"(?=(?:{_ADVERB})(?:{'|'.join(_VERBS)}|has|is|was|does|did)\b)",
    re.IGNORECASE,
)
_PRONOUN_VERB = re.compile(
    r"\b(he|she)\s+((?:also|often|still|now|never|always|occasionally)\s+)?(\w+(?:n't)?)\b",
    re.IGNORECASE,
)
_NOUNISH_AFTER_HER = re.compile(
    r"\bher\b(?=\s+(?!to\b|that\b|and\b|or\b|in\b|on\b|at\b|for\b|with\b|about\b|of\b|as\b|"
    r"from\b|by\b|if\b|when\b|because\b)[a-z0-9])",
    re.IGNORECASE,
)


def _first_person_verb(verb: str) -> str:
    v = verb.lower()
    if v in _IRREGULAR:
        return _IRREGULAR[v]
    if v.endswith("ies") and len(v) > 4:
        return v[:-3] + "y"
    if v.endswith(("ches", "shes", "sses", "xes", "zes", "oes")):
        return v[:-2]
    if v.endswith("s") and not v.endswith("ss"):
        return v[:-1]
    return v


def _to_first_person(s: str) -> str:
    """Third-person chart wording -> first person (subject, verbs after it, possessives)."""

    def pv(m: re.Match[str]) -> str:
        return f"I {m.group(2) or ''}{_first_person_verb(m.group(3))}"

    s = _PRONOUN_VERB.sub(pv, s)
    s = _NOUNISH_AFTER_HER.sub("my", s)
    s = re.sub(r"\bhis\b", "my", s, flags=re.I)
    s = re.sub(r"\b(him|her)\b", "me", s, flags=re.I)
    s = re.sub(r"\b(himself|herself)\b", "myself", s, flags=re.I)
    s = re.sub(r"\bI am\b", "I'm", s)
    return s


def _subject_to_i(s: str) -> str:
    """'He also experiences dizziness' -> 'I also experience dizziness' (leading subject only)."""
    sub = _SUBJECT.match(s)
    if sub:
        rest = s[sub.end() :]
    else:
        b = _BARE_VERB.match(s)
        if not b:
            return s
        rest = s
    m = re.match(rf"({_ADVERB})(\w+(?:n't)?)\b", rest, re.IGNORECASE)
    if not m:
        return s
    adverb, verb = m.group(1).lower(), m.group(2)
    if verb.lower() in ("does", "did", "has", "is", "was") and re.match(
        r"\s+not\b", rest[m.end() :]
    ):
        contracted = {"does": "don't", "did": "didn't", "has": "haven't", "is": "'m not"}
        if verb.lower() == "is":
            return "I'm not" + rest[m.end() + 4 :]
        if verb.lower() == "was":
            return f"I {adverb}wasn't" + rest[m.end() + 4 :]
        return f"I {adverb}{contracted[verb.lower()]}" + rest[m.end() + 4 :]
    return f"I {adverb}{_first_person_verb(verb)}{rest[m.end() :]}"


def _coordinated(s: str) -> str:
    """'I ... and mentions poor sleep' -> '... and mention poor sleep' (verbs after 'and')."""
    return re.sub(
        rf"\b(and|but|or)\s+({'|'.join(_VERBS)}|has|is|was)\b",
        lambda m: f"{m.group(1)} {_first_person_verb(m.group(2))}",
        s,
    )


def speak(
    text: str,
    *,
    negated: bool = False,
    verbal: bool = False,
    caregiver: bool = False,
    sex: str = "",
) -> str:
    """What the patient (or a young child's caregiver) says for one clause of the record."""
    s = " ".join(text.split()).strip(" .,;")
    if not s:
        return s
    he = "She" if sex == "female" else "He" if sex == "male" else "My child"
    if negated and not verbal:
        s = re.sub(r"^(?:any|a|an)\s+", "", s, flags=re.I)
        return f"No {s[:1].lower() + s[1:]}."
    if _NON.match(s):
        return f"{he} is a {s.lower()}." if caregiver else f"I'm a {s.lower()}."
    m = _FRAME.match(s)
    if m and m.end() > 0 and len(s) > m.end() and " as " not in s[m.end() :]:
        s = s[m.end() :]
    if caregiver:
        s = re.sub(r"^(?:the\s+)?(?:patient|pt|newborn|infant|baby|child)\b", he, s, flags=re.I)
        if _BARE_VERB.match(s) or (_VERBAL_NEG.match(s) and not _SUBJECT.match(s)):
            s = f"{he} {s[:1].lower() + s[1:]}"
        s = re.sub(r"\b(?:her|his|their)\s+(?:child|son|daughter|baby)\b", he.lower(), s)
    else:
        s = _subject_to_i(s)
        if s.startswith("I "):
            s = _coordinated(s)
        s = _to_first_person(s)
        s = re.sub(r"^I am\b", "I'm", s)
        s = re.sub(r"^I have been\b", "I've been", s)
        s = re.sub(r"^I have had\b", "I've had", s)
    s = s[:1].upper() + s[1:]
    return s if s.endswith(("?", "!", ".")) else s + "."


# ---- what a clause is about ----------------------------------------------------------------

_FAMILY = re.compile(
    r"\b(?:family|familial|mother|father|sister|brother|sibling|parent|grandmother|grandfather|"
    r"aunt|uncle|cousin|maternal|paternal)s?\b",
    re.IGNORECASE,
)
_MEDICATION = re.compile(
    r"\b(?:takes?|taking|took|on\s+(?:\w+\s+){0,2}(?:therapy|treatment|medications?|tablets?|"
    r"pills?)|prescribed|medications?|inhaler|insulin|contraceptive|the pill|supplements?|"
    r"vitamins?|treated with|treatment with|started on|mg\b)",
    re.IGNORECASE,
)
_SOCIAL = re.compile(
    r"\b(?:smok\w*|cigarettes?|tobacco|vap\w*|alcohol\w*|drinks?|drinking|beers?|wine|"
    r"illicit|cocaine|heroin|cannabis|marijuana|intravenous drug|iv drug|substance|works?|"
    r"worked|working|job|employ\w*|occupation|retired|student|school|preschool|daycare|"
    r"travel\w*|trip|returned from|visited|immigrated|lives?|living|married|divorced|widowed|"
    r"partner|sexual\w*|sexually|condoms?|exercise\w*|diet|hobb\w*|hiking|camping|farm)\b",
    re.IGNORECASE,
)


_LABELS = {
    "medication": r"(?:(?:other|regular|current)\s+)?(?:meds?|medications?|medicines?|drugs?|rx|"
    r"inhalers?|tablets?)",
    "allergy": r"(?:drug\s+)?allerg(?:y|ies)",
    "pmh": r"pmhx?|past medical history|pmh",
    "family": r"fhx?|family history",
    "social": r"shx?|social history",
}
_INLINE_LABEL = re.compile(
    r"^\s*(?:" + "|".join(f"(?P<{k}>{v})" for k, v in _LABELS.items()) + r")\s*:\s*",
    re.IGNORECASE,
)
_NO_ALLERGY = re.compile(r"^\s*(?:NKDA|NKA|no known (?:drug )?allergies|no allergies)\W*$", re.I)
_ON_DRUG = re.compile(r"\bon\s+[A-Za-z]|\(")
"""'... on apixaban', 'T2DM (metformin, gliclazide)': a past-history line that may name the
drug it is treated with."""
_TREATED = re.compile(r"^(?P<problem>[^()].*?)\s*\((?P<drugs>[^()]+)\)\s*$")
"""A problem with the medicines for it in brackets at the end: 'T2DM (metformin, gliclazide)'."""
_DOSE = re.compile(
    r"\b\d+(?:\.\d+)?\s*(?:mg|mcg|micrograms?|puffs?)\b|"
    r"\b\d+(?:\.\d+)?\s*g\s+(?:once|twice|three times|four times|daily|at night)\b|"
    r"(?-i:\b(?:OD|BD|BID|TDS|TID|QDS|QID|PRN|prn|nocte|mane)\b)",
    re.IGNORECASE,
)
"""A dose or how often it is taken: 'ramipril 10 mg', 'metformin 1 g twice daily', 'paracetamol
PRN'. Not bare grams or units: '20 g on weekends', '10 units/wk' measure alcohol."""


def inline_label(sentence: str, section: str) -> tuple[str, str]:
    """The category a sentence's own label gives it, and the sentence without the label:
    'Meds: none' under past history is about medicines ('medication', 'none'), 'NKDA' about
    allergies; a sentence without a label keeps the section it was found under."""
    if _NO_ALLERGY.match(sentence):
        return "allergy", "none"
    m = _INLINE_LABEL.match(sentence)
    if m is None or m.end() >= len(sentence.strip()):
        return section, sentence
    return next(k for k, v in m.groupdict().items() if v), sentence[m.end() :]


def category_of(text: str, section: str, *, drug: bool = False) -> str:
    """The fact category for a clause found under a history section of the given category."""
    if section in ("chief_complaint", "allergy"):
        return section
    if section in ("pmh", "hpi", "social") and re.search(r"\ballerg", text, re.I):
        return "allergy"
    if (
        _FAMILY.search(text)
        and re.search(r"\bfamil|history|died|diagnosed|had\b", text, re.I)
        and not re.search(r"\b(?:lives|living|married)\b", text, re.I)
    ):
        return "family"
    medication = section in ("pmh", "hpi", "social") and bool(_MEDICATION.search(text))
    dosed = section in ("pmh", "hpi") and bool(_DOSE.search(text))
    if drug or dosed or (medication and re.search(r"\btak|on\b|prescri|treat", text, re.I)):
        return "medication"
    if (
        section in ("pmh", "hpi", "ros")
        and _SOCIAL.search(text)
        and not re.search(r"\bpain|ache|swelling|rash|fever|cough|bleed", text, re.I)
    ):
        return "social"
    return section


# ---- into the case -------------------------------------------------------------------------

SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("primary", "chief_complaint", "must_ask"),
    ("chief", "chief_complaint", "must_ask"),
    ("presenting", "chief_complaint", "must_ask"),
    ("secondary", "hpi", "must_ask"),
    ("associated", "hpi", "must_ask"),
    ("review", "ros", "should_ask"),
    ("ros", "ros", "should_ask"),
    ("family", "family", "should_ask"),
    ("social", "social", "should_ask"),
    ("lifestyle", "social", "should_ask"),
    ("habit", "social", "should_ask"),
    ("substance", "social", "should_ask"),
    ("sexual", "social", "should_ask"),
    ("occupation", "social", "should_ask"),
    ("travel", "social", "should_ask"),
    ("interest", "social", "should_ask"),
    ("medication", "medication", "should_ask"),
    ("drug", "medication", "should_ask"),
    ("allerg", "allergy", "must_ask"),
    ("past", "pmh", "should_ask"),
    ("medical", "pmh", "should_ask"),
    ("surgical", "pmh", "should_ask"),
    ("obstetric", "pmh", "should_ask"),
    ("birth", "pmh", "should_ask"),
    ("immuni", "pmh", "should_ask"),
    ("vaccin", "pmh", "should_ask"),
    ("developmental", "pmh", "should_ask"),
    ("history", "hpi", "should_ask"),
    ("symptom", "hpi", "must_ask"),
)
"""Heading stem -> (fact category, salience); the first stem a heading contains wins."""
_SKIP = ("demograph", "age", "sex", "gender", "name")


def section_of(heading: str) -> tuple[str, str]:
    """The category and salience of a Patient_Actor heading ('Past_Medical_History' -> pmh)."""
    k = heading.lower()
    for stem, category, salience in SECTIONS:
        if stem in k:
            return category, salience
    return "hpi", "should_ask"


_NOTHING_SAID = {
    "pmh": "No significant past medical history.",
    "family": "No illnesses that run in the family.",
    "social": "Nothing much to say about my home life or habits.",
    "medication": "No regular medicines.",
    "allergy": "No known allergies.",
    "ros": "No other symptoms.",
}


def add_history(b: Any, actor: dict[str, Any], *, source: str = "agentclinic") -> int:
    """Every history sentence of a Patient_Actor object as facts on the CaseBuilder `b`; returns
    the number of source sentences (meta-text included, which gives no fact)."""
    n = 0
    for key, value in actor.items():
        if any(key.lower() == s or key.lower().startswith(s) for s in _SKIP):
            continue
        parts = value.items() if isinstance(value, dict) else [("", value)]
        for sub, v in parts:
            heading = sub if sub and section_of(sub) != ("hpi", "should_ask") else key
            where = f"{source}:Patient_Actor.{key}" + (f".{sub}" if sub else "")
            n += add_passage(b, v, heading=heading, source=where)
    return n


def add_passage(b: Any, value: Any, *, heading: str, source: str) -> int:
    """One section's sentences as facts; the first statement of a chief complaint section is
    the reason for the visit (said whole), later ones history of the present illness."""
    section, salience = section_of(heading)
    n = 0
    for sentence in sentences(value):
        n += 1
        sentence = expand_abbreviations(sentence)
        if section == "chief_complaint":
            _add_complaint(b, sentence, source)
            continue
        here, sentence = inline_label(sentence, section)
        for st in statements(sentence):
            if not st.text:  # 'Unremarkable' under a heading: the section as a whole is denied
                _add_nothing_said(b, here, salience, source)
                continue
            _add_statement(b, st, here, salience, source)
    return n


def _add_complaint(b: Any, sentence: str, source: str) -> None:
    """A chief complaint section's sentence said whole: the reason for the visit if the case has
    none yet, else history of the present illness; meta-text gives no fact."""
    has_cc = any(f["category"] == "chief_complaint" for f in b.facts)
    if is_meta(sentence):
        return
    b.add(
        category="hpi" if has_cc else "chief_complaint",
        concept="",
        text=speak(sentence, caregiver=bool(b.caregiver), sex=b.sex),
        present=True,
        salience="must_ask",
        how_revealed="ask",
        source=source,
        _link=sentence,
        _kind="history",
    )


def _add_nothing_said(b: Any, here: str, salience: str, source: str) -> None:
    """The section as a whole denied ('No known allergies.')."""
    b.add(
        category=here,
        concept=f"{here}.none",
        text=_NOTHING_SAID.get(here, "Nothing else."),
        present=False,
        salience=salience,
        how_revealed="ask",
        source=source,
        _link=None,
        _kind="history",
    )


def _add_statement(b: Any, st: Statement, here: str, salience: str, source: str) -> None:
    """One statement under section `here` as a fact in the patient's words, unless the same
    thing was said already; a medicine under a history heading is kept there too."""
    caregiver = bool(b.caregiver)
    drug = (
        None
        if st.negated
        else b.linker.drug(st.text)
        if here == "medication" or _ON_DRUG.search(st.text)
        else None
    )  # 'Atrial fibrillation on apixaban' under past history: a medicine too
    category = category_of(st.text, here, drug=bool(drug))
    said = speak(st.text, negated=st.negated, verbal=st.verbal, caregiver=caregiver, sex=b.sex)
    if here == "medication" and not st.negated and not said.startswith(("I ", "He ")):
        said = speak(f"takes {st.text}", caregiver=caregiver, sex=b.sex)
    concept, value, said = _concept(b, st, category, drug, said)
    fact = {
        "category": category,
        "concept": concept,
        "text": said,
        "present": not st.negated,
        "salience": salience if category == here else "should_ask",
        "how_revealed": "ask",
        "source": source,
        "value": value,
        "_link": None if st.verbal or concept else st.text,
        "_kind": "history",
    }
    key = (" ".join(said.lower().split()), fact["present"])
    if any((" ".join(f["text"].lower().split()), f["present"]) == key for f in b.facts):
        return  # said again under another heading: one fact, asked once
    history = fact  # a medicine found under a history heading is kept there too
    also_history = category == "medication" and here in ("pmh", "hpi", "ros")
    treated = _TREATED.match(st.text) if also_history else None
    if treated and b.linker.drug(treated["drugs"]):  # 'T2DM (metformin, gliclazide)'
        taken = f"takes {treated['drugs']} for {treated['problem']}"
        fact = {**fact, "text": speak(taken, caregiver=caregiver, sex=b.sex)}
    b.add(**fact)
    if also_history:
        cid = b.linker.comorbidity(st.text) if here == "pmh" else None
        if cid is not None and any(f["concept"] == cid for f in b.facts):
            cid = None
        b.add(**{**history, "category": here, "concept": cid or "", "_link": None})


def _concept(
    b: Any, st: Statement, category: str, drug: str | None, said: str
) -> tuple[str, str | None, str]:
    """The statement's concept (an empty list, an allergy group, a drug, a comorbidity, or ''
    to link later), its value (the allergy group) and its wording (an allergy said as one)."""
    concept = ""
    value = None
    if (
        st.negated
        and category in ("allergy", "medication", "pmh")
        and not any(f["concept"] == f"{category}.none" for f in b.facts)
    ):
        concept = f"{category}.none"  # "NKDA", "takes no medicines": the list is empty
    elif category == "allergy":
        value = b.linker.allergy_group(st.text)
        concept = f"allergy.{value or slug(st.text)[:40]}"
        if not said.lower().startswith(("i'm allergic", "he's allergic", "she's allergic")):
            caregiver = bool(b.caregiver)
            who = "I'm" if not caregiver else ("She's" if b.sex == "female" else "He's")
            said = f"{who} allergic to {st.text[:1].lower() + st.text[1:]}."
    elif category == "medication" and drug:
        concept = drug
    elif category == "pmh" and not st.negated:
        cid = b.linker.comorbidity(st.text)
        if cid is not None and all(f["concept"] != cid for f in b.facts):
            concept = cid
    return concept, value, said
