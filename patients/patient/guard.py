"""The answer guard: checks what a patient said against its record and what it already told.

Used two ways: live, on every LLM-worded answer before the clinician sees it; and as an audit,
over any stored transcript, so hallucination, contradiction and leak rates are measured rather
than hoped for. Each sentence is checked for

* `leak`: it names the diagnosis (or a synonym);
* `contradiction`: it asserts a KB finding the record says is absent, or denies one it says is
  present;
* `unsupported`: it asserts a finding the record does not hold (open-world case), or a number
  or duration that is not in the answer it was worded from;
* `overshare`: it conveys a true fact the answer was not built from and the patient has not told
  yet (the persona decides when facts come out);
* `omission`: (live check, given the expected answers) it drops what it was meant to say: an
  affirmed fact no sentence conveys, a denial that is not a first-person negation, an "I don't
  know" that claims to know;
* `role`: it steps out of the patient's role ("I'm a doctor", "you're a patient", "as an AI").

A sentence is first compared with the record's own fact texts and the persona's lines (beliefs,
asides, adherence): close to one of them, it says what the record says. Otherwise it is compared
with the KB's findings (their patient wording and their names); a clear match is a clinical
claim, checked against the record with a negation cue test. Sentences that match nothing
(feelings, greetings, "I'm not sure") make no clinical claim.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

import numpy as np
from pydantic import BaseModel

from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.kb import KnowledgeBase, name_pattern
from clinicgym.patients.patient.matching import QuestionMatcher
from clinicgym.patients.patient.wording import Wording

RECORD_THRESHOLD = 0.75
"""A sentence this close to a record fact's text (or a persona line) says that fact."""
CLAIM_THRESHOLD = 0.65
"""A sentence this close to a KB finding's wording asserts (or denies) that finding."""
CatchKind = Literal["leak", "contradiction", "unsupported", "overshare", "omission", "role"]
_ROLE_BREAK = re.compile(
    r"\b(?:I'?m|I am)\s+(?:a|an|the|your)\s+(?:doctor|nurse|clinician|physician|assistant|AI|"
    r"chatbot|language model)\b|\byou'?re\s+(?:a|the|my)\s+patient\b|\byou are\s+(?:a|the|my)\s+"
    r"patient\b|\bI'?m here to help\b|\bas an AI\b|\blanguage model\b|\bhow can I help\b|"
    r"\bassist you\b|\bhelp you with\b|\byour (?:medical|health) needs\b|"
    r"\bsorry for (?:your|the) (?:loss|confusion|misunderstanding)\b|\b(?:patient|doctor)\s*:",
    re.IGNORECASE,
)
_BARE_NO = re.compile(r"^\W*(?:no|nope|nah|not)\b", re.IGNORECASE)


_LEAD_IN = re.compile(
    r"^(?:\W*(?:yes|yeah|well|oh|um|hmm|actually|as i said|like i mentioned|doctor)\b\W*)+", re.I
)


def _leading_negation(sentence: str) -> bool:
    """A negation among the first three words: 'I'm not passing urine' denies; 'I keep
    coughing, it won't stop' does not (its negation qualifies, it does not deny)."""
    words = _LEAD_IN.sub("", sentence).split()
    return bool(_NEGATION.search(" ".join(words[:3])))


def _is_denial(text: str) -> bool:
    """A first-person negation ('No, I haven't'), or a bare 'No.' / 'Not that I know of'."""
    if _UNSURE.search(text):  # 'I'm not sure what to say' is not a denial
        return False
    return bool(_NEGATION.search(text) and (_SELF.search(text) or _BARE_NO.match(text)))


_SELF = re.compile(r"\b(?:I|I'm|I've|I'd|me|my|mine|myself|he|she|his|her|him)\b", re.IGNORECASE)
CONVEY_THRESHOLD = 0.6
"""A wording conveys an affirmed fact if some sentence is this close to it."""
_UNSURE = re.compile(r"not sure|don't know|do not know|couldn't (?:tell|say)|no idea|unsure", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_NEGATION = re.compile(r"\b(no|not|never|none|nope|nah|without|neither|nor)\b|n't\b", re.I)
_NUMBER = re.compile(
    r"\b\d+(?:[.,]\d+)?\b|\b(?:a few|a couple of|several|one|two|three|four|five|six|seven|eight|"
    r"nine|ten|twelve|twenty)\s+(?:minutes?|hours?|days?|nights?|weeks?|months?|years?|times)\b",
    re.IGNORECASE,
)


class Catch(BaseModel):
    """One problem the guard found in an answer."""

    kind: CatchKind
    sentence: str
    concept: str = ""


def sentences(text: str) -> list[str]:
    """Split an answer into sentences (keeps short ones: 'No.' is an answer)."""
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


_KB_ROWS: dict[str, tuple[list[str], np.ndarray]] = {}


def _kb_rows(kb: KnowledgeBase, matcher: QuestionMatcher) -> tuple[list[str], np.ndarray]:
    """KB history findings' patient wording and names, embedded once per KB."""
    hit = _KB_ROWS.get(kb.version)
    if hit is None:
        ids, texts = [], []
        for f in kb.findings.values():
            if f.category == "exam":
                continue
            for t in (f.text, f.name):
                ids.append(f.id)
                texts.append(t)
        hit = _KB_ROWS[kb.version] = (ids, matcher.encoder.encode(texts))
    return hit


class AnswerGuard:
    """Checks answers of one case's patient; build once per episode."""

    def __init__(self, case: Case, matcher: QuestionMatcher, kb: KnowledgeBase) -> None:
        self.case = case
        self.matcher = matcher
        self._leak = name_pattern([case.diagnosis.name, *case.diagnosis.synonyms])
        self._truth: dict[str, bool] = {}
        for f in case.facts:
            if f.how_revealed == "ask" and f.concept not in self._truth:
                self._truth[f.concept] = f.present
        said = [
            f
            for f in case.facts
            if f.present and f.how_revealed == "ask" and not f.concept.endswith(".none")
        ]
        texts: list[str] = []
        self._record_concepts: list[str] = []
        for f in said:  # each sentence of a fact counts ('I'm allergic to X. I came out in hives.')
            for piece in dict.fromkeys([f.text, *sentences(f.text)]):
                texts.append(piece)
                self._record_concepts.append(f.concept)
        persona = Wording(case).persona_lines()
        texts += persona
        self._record_concepts += [""] * len(persona)
        self._texts = texts
        self._record = matcher.encoder.encode(texts) if texts else None
        self._record_numbers = " ".join(texts).lower()
        self._kb_ids, self._kb_matrix = _kb_rows(kb, matcher)

    def truth(self, concept: str) -> bool | None:
        """What the record says: True present, False absent, None not recorded (open world)."""
        if concept in self._truth:
            return self._truth[concept]
        if self.case.closed_world and concept in self.matcher.categories:
            return False
        return None

    def check(
        self,
        text: str,
        *,
        grounded_text: str = "",
        allowed: Iterable[str] = (),
        told: Iterable[str] = (),
        expected: dict[str, str] | None = None,
    ) -> list[Catch]:
        """Problems in `text`, worded from `grounded_text` about concepts `allowed`, after the
        patient already told `told` (concepts). With `expected` ({concept: status}), also check
        that the wording still says what it was meant to (omissions)."""
        ok = set(allowed) | set(told) | set(expected or {})
        parts = sentences(text)
        if not parts:
            return []
        vecs = self.matcher.encoder.encode(parts)
        kb_sims = vecs @ self._kb_matrix.T
        rec_sims = vecs @ self._record.T if self._record is not None else None
        grounded = grounded_text.lower()
        catches: list[Catch] = []
        for i, sent in enumerate(parts):
            if self._leak is not None and self._leak.search(sent):
                catches.append(Catch(kind="leak", sentence=sent))
                continue
            if _ROLE_BREAK.search(sent):
                catches.append(Catch(kind="role", sentence=sent))
                continue
            for m in _NUMBER.finditer(sent):
                n = m.group(0).lower()
                if n not in grounded and n not in self._record_numbers:
                    catches.append(Catch(kind="unsupported", sentence=sent, concept=m.group(0)))
                    break
            if rec_sims is not None:
                j = int(rec_sims[i].argmax())
                if rec_sims[i, j] >= RECORD_THRESHOLD:
                    concept = self._record_concepts[j]
                    flipped = _leading_negation(sent) != _leading_negation(self._texts[j])
                    if concept and flipped:  # 'I'm not passing any urine' vs the record's 'I am'
                        catches.append(Catch(kind="contradiction", sentence=sent, concept=concept))
                    elif concept and concept not in ok:
                        catches.append(Catch(kind="overshare", sentence=sent, concept=concept))
                    continue
            j = int(kb_sims[i].argmax())
            if kb_sims[i, j] < CLAIM_THRESHOLD:
                continue
            concept = self._kb_ids[j]
            negated = bool(_NEGATION.search(sent))
            truth = self.truth(concept)
            if truth is None:
                if not negated:
                    catches.append(Catch(kind="unsupported", sentence=sent, concept=concept))
            elif truth == negated:
                catches.append(Catch(kind="contradiction", sentence=sent, concept=concept))
            elif truth and concept not in ok:
                catches.append(Catch(kind="overshare", sentence=sent, concept=concept))
        if expected:
            catches += self._omissions(text, vecs, expected)
        return catches

    def _omissions(self, text: str, vecs: np.ndarray, expected: dict[str, str]) -> list[Catch]:
        out: list[Catch] = []
        for concept, status in expected.items():
            if status == "affirmed":
                rows = [i for i, c in enumerate(self._record_concepts) if c == concept]
                kb_rows = [i for i, c in enumerate(self._kb_ids) if c == concept]
                sims = [0.0]
                if rows and self._record is not None:
                    sims.append(float((vecs @ self._record[rows].T).max()))
                if kb_rows:
                    sims.append(float((vecs @ self._kb_matrix[kb_rows].T).max()))
                best = max(sims)
                if best < CONVEY_THRESHOLD:
                    out.append(Catch(kind="omission", sentence=text, concept=concept))
            elif (status == "denied" and not _is_denial(text)) or (
                status == "unknown" and not _UNSURE.search(text)
            ):
                out.append(Catch(kind="omission", sentence=text, concept=concept))
        return out
