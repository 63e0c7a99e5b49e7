"""How a persona words a grounded answer. Wording never adds a clinical claim.

Every template here is either a fact's own text or a content-free frame around it (affirmation,
denial, "I'm not sure", a repeat marker, an emotional aside), or something the persona record
itself holds (a belief, an aside, adherence), so the facts a reply asserts are exactly the facts
it was built from. Variants are chosen by a stable hash of (case, key), not by a random draw, so
a transcript does not depend on the order in which other cases were played.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from clinicgym.patients.cases.case import Case, Persona

_AFFIRM = {
    "terse": ("{text}",),
    "plain": ("Yes. {text}", "Yes, {text_lc}"),
    "talkative": (
        "Yes, actually. {text} I wasn't sure whether to mention it.",
        "Oh yes. {text} I've been meaning to ask about that.",
        "Yes, doctor. {text}",
    ),
}
_DENY = {
    "terse": ("No.",),
    "plain": ("No, {i_have_not} had that.", "No, not that I've noticed."),
    "talkative": (
        "No, nothing like that, doctor.",
        "No, {i_have_not} had anything like that, thankfully.",
    ),
}
_DENY_BY_CATEGORY = {
    "social": {
        "terse": ("No.",),
        "plain": ("No, {i_do_not}.",),
        "talkative": ("No, not at all, doctor.",),
    },
    "family": {
        "terse": ("No.",),
        "plain": ("Not that I know of.",),
        "talkative": ("No, nobody in the family that I know of.",),
    },
    "pmh": {
        "terse": ("No.",),
        "plain": ("No, never.",),
        "talkative": ("No, never, thankfully.",),
    },
}
_UNKNOWN = {
    "terse": ("Not sure.",),
    "plain": ("I'm not sure. I haven't really noticed.", "I don't know, to be honest."),
    "talkative": (
        "Hmm, I'm really not sure, doctor. I haven't paid attention to that.",
        "I honestly couldn't tell you. I haven't noticed either way.",
    ),
}
_NOT_UNDERSTOOD = {
    "terse": ("Sorry?",),
    "plain": ("Sorry, I'm not sure what you mean.",),
    "talkative": ("Sorry, doctor, I don't quite follow. Could you put it another way?",),
}
_JARGON = {
    "terse": ("Sorry, what's '{word}'?",),
    "plain": ("Sorry, I don't know what '{word}' means.",),
    "talkative": ("I'm sorry, doctor, I've never heard the word '{word}'. What does it mean?",),
}
_EVASIVE = {
    "reserved": ("I'd rather not go into that, if that's all right.", "I'd prefer not to say."),
    "distrust_of_clinicians": ("Why do you need to know that?", "I don't see why that matters."),
    "minimising": ("Oh, it's not really worth mentioning.",),
    "pleasing": ("Oh, I don't want to waste your time with little things.",),
}
_REPEAT = ("As I said, ", "Like I mentioned, ")
_DONT_KNOW_DIAGNOSIS = {
    "terse": ("I don't know. That's why I'm here.",),
    "plain": ("I don't know what's wrong. That's why I came to see you.",),
    "talkative": ("I really don't know, doctor. That's what I was hoping you could tell me.",),
}
_NOTHING_MORE = {
    "terse": ("No, that's it.",),
    "plain": ("No, I think that's everything.",),
    "talkative": ("No, I think I've told you everything I can think of.",),
}
_ONSET_UNKNOWN = {
    "terse": ("Not sure exactly.",),
    "plain": ("I'm not sure exactly when it started.",),
    "talkative": ("Oh, I couldn't say exactly when it started. It's all a bit of a blur.",),
}
_GREETING = {
    "terse": ("Hello.",),
    "plain": ("Hello, doctor.",),
    "talkative": ("Hello, doctor, thank you for seeing me.",),
}
_STYLE_AFFIRM_TAIL = {
    "anxious": (" Is that something serious?", " Should I be worried about that?"),
    "upset": (" I've already been waiting for ages, you know.", " Can we get on with it?"),
    "pleasing": (" I hope that helps, doctor.",),
}
_MINIMISING_HEAD = ("It's probably nothing, but ", "I'm sure it's nothing, but ")
_ADHERENCE = {
    "partial": " I do sometimes forget to take my tablets, though.",
    "poor": " To be honest, I haven't really been taking them.",
}
_ADHERENCE_CAREGIVER = {
    "partial": " I do sometimes forget to give them, though.",
    "poor": " To be honest, {she} hasn't really been taking them.",
}
_NO_PREFERENCE = "I'm happy to go with whatever you think is best."


def lower_first(text: str) -> str:
    """'It hurts' -> 'it hurts', but 'I've' and 'I'm' keep their capital."""
    if text[:2] in ("I ", "I'", "I’"):
        return text
    return text[:1].lower() + text[1:]


def pick(options: Sequence[str], *key: object) -> str:
    """A stable choice among options for this key (no global random state)."""
    digest = hashlib.blake2s("|".join(map(str, key)).encode(), digest_size=4).digest()
    return options[int.from_bytes(digest, "big") % len(options)]


class Wording:
    """Frames a case's facts in its persona's voice."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.persona: Persona = case.persona
        self.v = self.persona.verbosity
        caregiver = self.persona.speaker == "caregiver"
        pron = "she" if case.sex == "female" else "he"
        self._she = pron
        self._slots = {
            "i_have_not": f"{pron} hasn't" if caregiver else "I haven't",
            "i_do_not": f"{pron} doesn't" if caregiver else "I don't",
        }

    def _fill(self, table: dict[str, tuple[str, ...]], key: str, **extra: str) -> str:
        text = pick(table[self.v], self.case.id, key).format(**self._slots, **extra)
        return self._register(text)

    def _register(self, text: str) -> str:
        if self.persona.language_register == "colloquial" and text.startswith("Yes"):
            return "Yeah" + text[3:]
        return text

    def affirm(self, fact_text: str, key: str) -> str:
        """A present fact, said in the persona's voice."""
        text = self._fill(_AFFIRM, key, text=fact_text, text_lc=lower_first(fact_text))
        p = self.persona
        if "minimising" in p.biases:
            text = pick(_MINIMISING_HEAD, self.case.id, key) + lower_first(fact_text)
        tails = _STYLE_AFFIRM_TAIL.get(p.style)
        if tails and pick((True, False), self.case.id, key, "tail"):
            text += pick(tails, self.case.id, key)
        return text

    def deny(self, key: str, category: str | None = None) -> str:
        """A pertinent negative: the record says no (framed for the kind of question)."""
        return self._fill(_DENY_BY_CATEGORY.get(category or "", _DENY), key)

    def deny_said(self, fact_text: str) -> str:
        """A written record's own negative statement ('No fever.'), said as a denial."""
        return "No. " + fact_text if not fact_text.lower().startswith("no") else fact_text

    def unknown(self, key: str) -> str:
        """The record does not say: the patient does not know."""
        return self._fill(_UNKNOWN, key)

    def evasive(self, key: str) -> str:
        """The first time a held-back fact is asked about: a non-answer, never a denial."""
        p = self.persona
        for reason in ("distrust_of_clinicians", "minimising"):
            if reason in p.biases:
                return pick(_EVASIVE[reason], self.case.id, key)
        table = _EVASIVE["pleasing"] if p.style == "pleasing" else _EVASIVE["reserved"]
        return pick(table, self.case.id, key)

    def jargon(self, word: str) -> str:
        """A low-literacy patient does not understand a clinical word."""
        return self._fill(_JARGON, word, word=word)

    def not_understood(self, key: str) -> str:
        return self._fill(_NOT_UNDERSTOOD, key)

    def repeat(self, text: str, key: str) -> str:
        """A second answer on the same concept: the same content, marked as a repeat."""
        return pick(_REPEAT, self.case.id, key) + lower_first(text)

    def dont_know_diagnosis(self, key: str) -> str:
        """Asked what is wrong: their belief if the record holds one, else 'I don't know'."""
        belief = self.persona.belief
        if belief and any(b in self.persona.biases for b in ("internet_self_diagnosis", "recency")):
            return belief
        return self._fill(_DONT_KNOW_DIAGNOSIS, key)

    def plain_dont_know_diagnosis(self, key: str) -> str:
        """'I don't know' without the persona's belief (the leak guard's replacement)."""
        return self._fill(_DONT_KNOW_DIAGNOSIS, key)

    def treatment_preference(self) -> str:
        """Asked about treatment: a cultural or personal belief, if the record holds one."""
        if self.persona.belief and "cultural_treatment_beliefs" in self.persona.biases:
            return self.persona.belief
        return _NO_PREFERENCE

    def adherence(self) -> str:
        """Said after listing regular medicines when adherence is partial or poor."""
        table = _ADHERENCE_CAREGIVER if self.persona.speaker == "caregiver" else _ADHERENCE
        return table.get(self.persona.adherence, "").format(she=self._she)

    def nothing_more(self, key: str) -> str:
        return self._fill(_NOTHING_MORE, key)

    def onset_unknown(self, key: str) -> str:
        return self._fill(_ONSET_UNKNOWN, key)

    def greeting(self, key: str) -> str:
        return self._fill(_GREETING, key)

    def opening_frame(self, text: str) -> str:
        """The reason for the visit, framed by style (worry, frustration, an aside)."""
        p = self.persona
        if p.verbosity == "talkative":
            text = "Well, doctor, " + lower_first(text)
        if p.style == "anxious":
            text += " I'm really worried about it."
        elif p.style == "upset":
            text += " And I've been waiting ages to be seen."
        if p.style == "tangential" and p.asides:
            text += " " + p.asides[0]
        return text

    def persona_lines(self) -> list[str]:
        """Everything the persona itself may say beyond the facts (beliefs, asides, adherence,
        style frames): the guard accepts these as grounded in the persona record."""
        p = self.persona
        lines = [*p.asides, self.adherence().strip(), self.treatment_preference()]
        if p.belief:
            lines.append(p.belief)
        lines += [t.strip() for t in _STYLE_AFFIRM_TAIL.get(p.style, ())]
        lines += ["I'm really worried about it.", "And I've been waiting ages to be seen."]
        return [x for x in lines if x]

    def listing(self, texts: list[str]) -> str:
        """Several facts in one answer (medications, history)."""
        return " ".join(texts)
