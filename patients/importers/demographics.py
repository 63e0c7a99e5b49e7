"""Age and sex from a written record's words: '45-year-old woman', 'Newborn, female',
'3-day-old', '1100-g newborn, 31 weeks' gestation', 'six hours post delivery'.

An infant's age is 0 whole years; the record's finer age (hours, days, weeks, months) and its
gestational age are kept as `AgeDetail`. A sex the demographics do not name is taken from how the
case refers to the patient anywhere (she/her, he/his/him, girl, boy, ...), leaving out sentences
about someone else (the mother, a brother); if nothing says, it is 'unspecified'.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from clinicgym.patients.cases.case import AgeDetail

Sex = Literal["female", "male", "unspecified"]

NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_NUM = r"(\d+(?:\.\d+)?|" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r")"
_GESTATION = re.compile(
    rf"{_NUM}(?:st|nd|rd|th)?\s*[- ]?\s*(?:weeks?|wks?)'?\s*(?:of\s+)?(?:gestation\w*)"
    rf"|(?:gestational\s+age\s*(?:of\s*)?){_NUM}\s*(?:weeks?|wks?)"
    rf"|{_NUM}(?:st|nd|rd|th)\s+gestational\s+week",
    re.IGNORECASE,
)
_AGE = re.compile(
    rf"\b{_NUM}\s*[- ]?\s*(years?|yrs?|y/o|yo|months?|mos?|weeks?|wks?|days?|hours?|hrs?)"
    r"(?:\s*[- ]?\s*old\b|\b)",
    re.IGNORECASE,
)
_POST_BIRTH = re.compile(
    rf"\b{_NUM}\s*[- ]?\s*(hours?|hrs?|days?|weeks?)\s+(?:post[- ]?(?:delivery|partum|natal)|"
    r"after (?:birth|delivery)|of life|ago)",
    re.IGNORECASE,
)
_SHORTHAND = re.compile(r"\b(\d{1,3})\s?(?:y(?:rs?|o|/o)?\.?\s?)?(?-i:([MF]))\b", re.IGNORECASE)
"""Clinical shorthand for age and sex: '52M', '29 F', '78 y/o M' (capital M or F only)."""
_AGE_LABEL = re.compile(r"\bage\D{0,3}(\d{1,3})\b", re.IGNORECASE)
_NEWBORN = re.compile(r"\b(new[- ]?born|neonate|neonatal)\b", re.IGNORECASE)
_INFANT = re.compile(r"\binfant\b", re.IGNORECASE)
_UNITS: dict[str, str] = {
    "y": "years",
    "m": "months",
    "w": "weeks",
    "d": "days",
    "h": "hours",
}
_FEMALE = re.compile(r"\b(female|woman|women|girl|lady|she|her|hers|herself)\b", re.IGNORECASE)
_MALE = re.compile(r"\b(male|man|men|boy|gentleman|he|his|him|himself)\b", re.IGNORECASE)
_SEX_NOUNS_F = re.compile(r"\b(female|woman|girl|lady)\b", re.IGNORECASE)
_SEX_NOUNS_M = re.compile(r"\b(male|man|boy|gentleman)\b", re.IGNORECASE)
_OTHER_PERSON = re.compile(
    r"\b(mother|father|mom|mum|dad|parents?|wife|husband|partner|spouse|sister|brother|"
    r"sibling|son|daughter|aunt|uncle|grand\w+|friend|boyfriend|girlfriend|colleague|"
    r"co-?worker|doctor|physician|nurse|teacher|roommate|cousin|neighbou?r|caregiver|carer)s?\b",
    re.IGNORECASE,
)


def _number(word: str) -> float:
    w = word.lower()
    return float(NUMBER_WORDS[w]) if w in NUMBER_WORDS else float(w)


def parse_age(text: str) -> tuple[int | None, AgeDetail | None]:
    """Whole years and, for a child under two, the finer age the record gives.

    '45-year-old' -> (45, None); '6-week-old' -> (0, 6 weeks); '18-month-old' -> (1, 18 months);
    'Newborn, female' -> (0, 0 days); 'Newborn, six hours post delivery' -> (0, 6 hours);
    '1100-g newborn, 31 weeks' gestation' -> (0, 0 days, gestation 31 weeks)."""
    gestation: float | None = None
    words = " ".join(text.split())
    g = _GESTATION.search(text)
    if g:
        gestation = _number(next(x for x in g.groups() if x))
        text = text[: g.start()] + " " + text[g.end() :]
    m = _AGE.search(text)
    post = _POST_BIRTH.search(text)
    newborn = bool(_NEWBORN.search(text))
    if m:
        n, unit = _number(m.group(1)), _UNITS[m.group(2)[0].lower()]
        if unit == "years":
            return int(n), None
        return _from_unit(n, unit, gestation, words)
    if post and (newborn or "deliver" in post.group(0).lower() or "birth" in post.group(0)):
        n, unit = _number(post.group(1)), _UNITS[post.group(2)[0].lower()]
        return _from_unit(n, unit, gestation, words)
    if newborn:
        return 0, AgeDetail(value=0, unit="days", gestational_weeks=gestation, text=words)
    m2 = _SHORTHAND.search(text) or _AGE_LABEL.search(text)
    if m2:
        return int(m2.group(1)), None
    if _INFANT.search(text):
        return 0, None
    if gestation is not None:  # a preterm baby described by gestation alone
        return 0, AgeDetail(value=0, unit="days", gestational_weeks=gestation, text=words)
    return None, None


_BORN = re.compile(
    rf"\b(?:born|delivered)\s+{_NUM}\s*(hours?|hrs?|days?|weeks?|months?)\s+ago\b"
    rf"|\b{_NUM}\s*[- ]\s*(hour|day|week|month)s?[- ]old\b"
    rf"|\b{_NUM}\s*[- ]?\s*(hours?|hrs?|days?)\s+(?:post[- ]?(?:delivery|partum|natal)|"
    r"after (?:birth|delivery)|of life)",
    re.IGNORECASE,
)


def age_from_history(text: str) -> tuple[int | None, AgeDetail | None]:
    """An infant's age told in a history ('The patient was born three days ago', 'a
    5-day-old'), never a duration ('cough for 3 days'); (None, None) if it tells none."""
    m = _BORN.search(text)
    if m is None:
        return None, None
    groups = [g for g in m.groups() if g]
    n, unit = _number(groups[0]), _UNITS[groups[1][0].lower()]
    return _from_unit(n, unit, None, " ".join(m.group(0).split()))


def _from_unit(
    n: float, unit: str, gestation: float | None, words: str
) -> tuple[int, AgeDetail | None]:
    days = n * {"months": 30.44, "weeks": 7.0, "days": 1.0, "hours": 1 / 24}[unit]
    years = int(days // 365.25)
    if years >= 2 and gestation is None:
        return years, None
    detail = AgeDetail(
        value=n,
        unit=unit,  # type: ignore[arg-type]
        gestational_weeks=gestation,
        text=words,
    )
    return years, detail


def sex_in_words(text: str) -> Sex | None:
    """The sex a demographic line names ('female', 'a 4-year-old boy brought by his mother',
    '52M'): the first word that says, leaving out other people."""
    short = _SHORTHAND.search(text)
    if short:  # '52M', '29 yo F'
        return "male" if short.group(2) == "M" else "female"
    f = _FEMALE.search(_OTHER_PERSON.sub(" ", text))
    m = _MALE.search(_OTHER_PERSON.sub(" ", text))
    if f and m:
        return "female" if f.start() < m.start() else "male"
    return "female" if f else "male" if m else None


def sex_from_pronouns(texts: Iterable[str]) -> Sex | None:
    """The sex the case's words refer to the patient by, counted over sentences that are not
    about someone else; None unless one side clearly wins (3 to 1 or better)."""
    female = male = 0
    for text in texts:
        for sentence in re.split(r"(?<=[.;!?])\s+|\n+", text):
            if _OTHER_PERSON.search(sentence):
                continue
            female += len(_FEMALE.findall(sentence)) + len(_SEX_NOUNS_F.findall(sentence))
            male += len(_MALE.findall(sentence)) + len(_SEX_NOUNS_M.findall(sentence))
    if female and female >= 3 * male:
        return "female"
    if male and male >= 3 * female:
        return "male"
    return None


def strings(node: Any) -> list[str]:
    """Every string in a JSON value, keys left out, in order."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list | tuple):
        return [s for v in node for s in strings(v)]
    return []
