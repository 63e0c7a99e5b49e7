"""The grounded patient: answers only from its case's facts, and keeps a ledger of what it said.

It matches a question to findings or intents (`QuestionMatcher`), or to the case's own free-text
facts (imported cases), and looks each up in the case: present -> affirmed in the persona's
words; pertinent negative -> denied; absent from the record -> "I don't know", or a denial when
the case is closed-world (`Case.closed_world`: a KB case lists every history finding that is
present, as a real patient knows their symptoms). The persona decides how and when facts come
out (volunteered, held back until asked twice, clinical words not understood), never which are
true. It never names its diagnosis: requests for it and prompt injections get "I don't know
what's wrong" (or the persona's recorded belief, which is a look-alike), and a final guard
replaces any reply containing the diagnosis's name or a synonym. Like tau2-bench's user
simulator, it never sees scoring.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Literal

import numpy as np
from pydantic import BaseModel

from clinicgym.patients.cases.case import Case, Fact
from clinicgym.patients.cases.persona import default_persona_book
from clinicgym.patients.knowledge.kb import name_pattern
from clinicgym.patients.patient.matching import QuestionMatcher
from clinicgym.patients.patient.recall import (
    OPEN_QUESTION,
    Recall,
    RecordIndex,
    asks_problem,
    compatible,
    content_stems,
    contrasts,
    excepted,
    is_diagnosis_question,
    is_obstetric,
    is_onset_fact,
    polarity,
)
from clinicgym.patients.patient.wording import Wording, lower_first

AnswerStatus = Literal["affirmed", "denied", "unknown", "withheld"]
_HISTORY = ("hpi", "ros")
_SALIENCE_ORDER = {"must_ask": 0, "should_ask": 1, "incidental": 2}
LOCAL_THRESHOLD = 0.65
"""A question matches one of an imported case's free-text facts above this similarity."""
LOCAL_FALLBACK = 0.45
"""...or above this one, when the KB finding it matched is not in the (open-world) record."""
_LISTS = {"medications": "medication", "allergies": "allergy", "pmh": "pmh", "family": "family"}
_AGE_Q = re.compile(
    r"^\W*(?:and |so )?(?:how old (?:is|are|r)\b|what(?:'s| is) (?:his|her|your|ur) age\b)",
    re.IGNORECASE,
)
"""'How old is the baby?' asks the patient's age, whatever the record's statements say."""
_ILLNESS_Q = "Any medical problems?"
"""What a past-history question asks, to read a statement's polarity against."""
_IDENTITY = ("name", "dob", "age", "address", "phone", "greeting", "opening")
_EXPOSURE = re.compile(
    r"\b(?:anyone|anybody|contact|exposed|exposure|family|mother|father|brother|sister|parents?|"
    r"relatives?|friends?|partner|household|school|work)\b",
    re.IGNORECASE,
)
"""A question naming the diagnosis about someone else ('contact with anyone with TB?') is a
history question, not a request to name one's own diagnosis."""
_OPINION = re.compile(
    r"\b(?:reckons?|thinks?|thought|says|said|googled|looked it up|read online|"
    r"is (?:she|he|they) right|am i right|innit|yes or no|"
    r"(?:that'?s|thats) (?:what|wot) (?:you'?ve|u'?ve|u|you) got)\b",
    re.IGNORECASE,
)
"""...unless it asks the patient to confirm someone's opinion of their own illness ('my wife
reckons it's heart failure, is she right?')."""
_ASKABLE = ("chief_complaint", "hpi", "ros", "pmh", "social", "family", "medication", "allergy")


class ConceptAnswer(BaseModel):
    """What one reply said about one concept: the structured mirror of the text."""

    concept: str
    status: AnswerStatus
    fact_id: str | None = None


class PatientReply(BaseModel):
    """A patient turn: the words, what they said about which concepts, and the facts revealed."""

    text: str
    intent: str
    """'finding', an intent name ('medications', 'opening', ...), 'jargon' or 'not_understood'."""
    answers: list[ConceptAnswer] = []
    revealed: list[str] = []
    """Ids of the facts this reply conveyed (affirmed or denied)."""
    repeated: bool = False
    guarded: bool = False
    """True if a guard replaced the reply: it named the diagnosis, or (LLM-worded) its wording
    failed the answer guard twice and the grounded template answer was used."""
    guard: list[dict[str, str]] = []
    """Catches of the answer guard (LLM-worded patients): kind, sentence, concept."""
    grounded_text: str | None = None
    """The template answer this reply was worded from (LLM-worded patients)."""


class LedgerEntry(BaseModel):
    """One thing the patient has said: checked later for consistency and hallucination."""

    turn: int
    question: str
    concept: str
    status: AnswerStatus
    fact_id: str | None
    text: str


class GroundedPatient:
    """A patient agent built from one case; its only knowledge is the case's facts."""

    def __init__(
        self, case: Case, matcher: QuestionMatcher, *, unknown: Iterable[str] = ()
    ) -> None:
        self.case = case
        self.unknown = frozenset(unknown)
        """Concepts this patient does not know, whatever the case says or its closed world
        implies: each answer about one is "I don't know" (the hook masking probes use)."""
        self.matcher = matcher
        self._categories = matcher.categories
        self.words = Wording(case)
        self.ledger: list[LedgerEntry] = []
        self._by_concept = case.facts_by_concept()
        self._told: set[str] = set()
        self._caregiver = case.persona.speaker == "caregiver"
        self._leak = name_pattern([case.diagnosis.name, *case.diagnosis.synonyms])
        self._reluctant = set(case.persona.reluctant)
        self._jargon = (
            re.compile(
                r"\b(" + "|".join(map(re.escape, default_persona_book().jargon)) + r")\b", re.I
            )
            if case.persona.health_literacy == "low"
            else None
        )
        self._local = [
            f
            for f in case.facts
            if f.how_revealed == "ask"
            and f.category in _ASKABLE
            and f.concept not in self._categories
            and not f.concept.endswith(".none")
        ]
        self._record_mode = not case.closed_world and any(
            f.concept.startswith("text.") for f in self._local
        )
        self._record = (
            RecordIndex(
                [
                    f
                    for f in case.facts
                    if f.how_revealed == "ask" and f.category in _ASKABLE and f.text.strip()
                ],
                matcher.encoder,
                matcher,
            )
            if self._record_mode
            else None
        )
        """Clinician-written records (free-text facts, open world) are answered from the
        record's own statements (`_answer_record`), not from the KB's vocabulary."""
        self._local_matrix: np.ndarray | None = None
        """Embeddings of the free-text facts, computed on the first question (lazily, so the
        structured env's `answer_concept` fast path never loads the sentence model)."""

    # ---- public -------------------------------------------------------------------------

    def opening(self) -> PatientReply:
        """The reason for the visit, with anything the persona volunteers."""
        cc = [f for f in self.case.facts if f.category == "chief_complaint"]
        volunteered = [f for f in self.case.facts if f.id in set(self.case.persona.volunteer)]
        reply = self._say_facts("opening", cc + volunteered, turn=0, question="(opening)")
        reply.text = self.words.opening_frame(reply.text)
        return self._finish(reply)

    def answer(self, question: str, turn: int = 0) -> PatientReply:
        """Reply to one question from the clinician, from the record only."""
        if self._jargon is not None:
            word = self._jargon.search(question)
            if word:
                return self._finish(
                    PatientReply(text=self.words.jargon(word.group(0)), intent="jargon")
                )
        if self._record_mode:
            return self._finish(self._answer_record(question, turn))
        matches = self.matcher.match(question)
        local = self._match_local(question)
        top = matches[0] if matches else None
        if local is not None and (
            (top is None and local[1] >= LOCAL_THRESHOLD)
            or (
                top is not None
                and top.kind == "finding"
                and local[1] > top.score
                and local[1] >= LOCAL_THRESHOLD
            )
            or (
                top is not None
                and top.kind == "finding"
                and top.target not in self._by_concept
                and local[1] >= LOCAL_FALLBACK
            )
        ):
            return self._finish(self._about_fact(local[0], question, turn))
        if top is None:
            return self._finish(
                PatientReply(text=self.words.not_understood(question), intent="not_understood")
            )
        if top.kind == "intent":
            return self._finish(self._intent(top.target, question, turn))
        parts: list[str] = []
        answers: list[ConceptAnswer] = []
        revealed: list[str] = []
        repeated = False
        for i, m in enumerate(matches):
            text, ans, was_repeat = self._about(m.target, question, turn)
            if i > 0:  # say which part of a compound question this answers
                text = f"As for {self.matcher.names.get(m.target, m.target)}: {lower_first(text)}"
            parts.append(text)
            answers.append(ans)
            repeated |= was_repeat
            if ans.fact_id and ans.status in ("affirmed", "denied"):
                revealed.append(ans.fact_id)
        return self._finish(
            PatientReply(
                text=" ".join(parts),
                intent="finding",
                answers=answers,
                revealed=revealed,
                repeated=repeated,
            )
        )

    def _answer_record(self, question: str, turn: int) -> PatientReply:
        """A written record's answer: from its own statements, part by part; intents (lists,
        onset, identity, the diagnosis) where no statement answers more specifically."""
        named = self._leak is not None and self._leak.search(question)
        other = _EXPOSURE.search(question) and not _OPINION.search(question)
        if is_diagnosis_question(question) or (named and not other):
            return PatientReply(
                text=self.words.plain_dont_know_diagnosis(question), intent="diagnosis"
            )
        if _AGE_Q.search(question):
            return self._intent("age", question, turn)
        matches = self.matcher.match(question)
        top = matches[0] if matches else None
        assert self._record is not None
        recalls = self._record.recall(question)
        best = max((r.score for r in recalls if r.fact is not None), default=0.0)
        found = any(r.fact is not None for r in recalls)
        if top is not None and top.kind == "intent":
            if top.target == "onset" and top.score >= best:
                return self._onset(question, turn)
            listed = any(f.category == _LISTS.get(top.target) for f in self.case.facts)
            if top.target in _LISTS and (not found or (listed and top.score >= best + 0.1)):
                return self._record_list(top.target, question, turn)  # else its statement
            identity = top.target in _IDENTITY
            if identity and asks_problem(question):  # 'any probs when he was born?'
                pass
            elif not found or (identity and top.score >= best):
                return self._intent(top.target, question, turn)
        return self._say_recalls(recalls, question, turn)

    def _say_recalls(self, recalls: list[Recall], question: str, turn: int) -> PatientReply:
        """The record's statements that answer the question's parts, said part by part: a
        statement, "I don't know" where none answers, and never a yes it does not hold."""
        parts: list[str] = []
        answers: list[ConceptAnswer] = []
        revealed: list[str] = []
        guard: list[dict[str, str]] = []
        repeated = False
        for r in recalls:
            if r.fact is None:
                concept = f"question:{r.part[:60]}"
                text = self._say_unknown(concept, question, turn)
                answers.append(ConceptAnswer(concept=concept, status="unknown"))
                if r.blocked is not None:
                    guard.append(
                        {"kind": "contradiction", "sentence": r.part, "concept": r.blocked.id}
                    )
                parts.append(text)
                continue
            if r.unstated:  # 'is the rash itchy?' of 'Rash on the back.': no yes
                parts.append(self._unstated(r.fact, r.part, question, turn))
                answers.append(ConceptAnswer(concept=r.fact.concept, status="unknown"))
                revealed.append(r.fact.id)
                guard.append({"kind": "unstated", "sentence": r.part, "concept": r.fact.id})
                continue
            text, ans, was_repeat = self._about_record_fact(
                r.fact, question, turn, r.status, asked=r.part, choice=r.choice
            )
            parts.append(text)
            answers.append(ans)
            repeated |= was_repeat
            if ans.fact_id and ans.status in ("affirmed", "denied"):
                revealed.append(ans.fact_id)
        if len(set(parts)) < len(parts):
            parts = list(dict.fromkeys(parts))
        return PatientReply(
            text=" ".join(parts),
            intent="finding",
            answers=answers,
            revealed=revealed,
            repeated=repeated,
            guard=guard,
        )

    def _said_before(self, fact: Fact) -> bool:
        """The ledger holds the statement as said (not held back) at an earlier turn."""
        return any(e.fact_id == fact.id and e.status != "withheld" for e in self.ledger)

    def _unstated(self, fact: Fact, part: str, question: str, turn: int) -> str:
        """A statement that names what the part asks about but not what it asks of it: said as
        it is, then "I'm not sure" about the rest (never a yes the record does not hold)."""
        earlier = self._said_before(fact)
        said = self.words.repeat(fact.text, fact.concept) if earlier else fact.text
        self._note(turn, question, fact.concept, "affirmed", fact.text, fact.id)
        self._told.add(fact.id)
        unsure = self._say_unknown(f"question:{part[:60]}", question, turn)
        return f"{said[:1].upper()}{said[1:].rstrip('.')}. {unsure}"

    def _about_record_fact(
        self,
        fact: Fact,
        question: str,
        turn: int,
        status: str | None = None,
        asked: str | None = None,
        choice: bool = False,
    ) -> tuple[str, ConceptAnswer, bool]:
        """One statement of a written record, in its own words; `status` is how it answers the
        question (a present statement can answer "no": "an uneventful pregnancy"). A yes is
        said only to a yes-or-no part (`asked`), never to a choice ('sudden or gradual?')."""
        if fact.present:
            evasive = self._withheld(fact, fact.concept, question, turn)
            if evasive is not None:
                return (
                    evasive,
                    ConceptAnswer(concept=fact.concept, status="withheld", fact_id=fact.id),
                    False,
                )
        said: AnswerStatus = (
            "affirmed" if status == "affirmed" or (status is None and fact.present) else "denied"
        )
        earlier = self._said_before(fact)
        if earlier:
            text = self.words.repeat(fact.text, fact.concept)
        elif (
            said == "affirmed"
            and not choice
            and not OPEN_QUESTION.match((asked or question).strip())
        ):
            text = self.words.affirm(fact.text, fact.concept)
        elif fact.present:  # answers no, or an open question ("what was your job?"): no "yes"
            text = fact.text[:1].upper() + fact.text[1:]
        else:
            text = self.words.deny_said(fact.text)
        self._note(turn, question, fact.concept, said, text, fact.id)
        self._told.add(fact.id)
        return text, ConceptAnswer(concept=fact.concept, status=said, fact_id=fact.id), earlier

    def _record_list(self, intent: str, question: str, turn: int) -> PatientReply:
        """'What medicines do you take?' of a written record: its statements of that kind, the
        record's denial if it has only that, else 'I don't know'."""
        category = _LISTS[intent]
        facts = [f for f in self.case.facts if f.category == category]
        well: list[Fact] = []
        if intent == "pmh":  # a birth or a pregnancy is not a past illness
            facts = [f for f in facts if not (f.present and is_obstetric(f))]
            # "previously healthy" says no to a question about past illness
            well = [f for f in facts if f.present and polarity(f, _ILLNESS_Q) == "denied"]
            facts = [f for f in facts if f not in well] + well
        present = [f for f in facts if f.present and f not in well]
        aside = excepted(question)
        if aside:  # 'apart from the arthritis, any other conditions?'
            present = [f for f in present if not aside & content_stems(f.text)]
            facts = present
        drugs = self.matcher.drugs
        asked = contrasts(question, drugs)
        if asked and present:  # 'allergic to nitrofurantoin?' is not answered by trimethoprim
            present = [f for f in present if compatible(asked, contrasts(f.text, drugs))]
            facts = present
        if present:
            return self._say_facts(intent, present, turn, question)
        if facts:
            status = "denied" if facts[0] in well else None
            text, ans, repeated = self._about_record_fact(facts[0], question, turn, status)
            return PatientReply(
                text=text, intent=intent, answers=[ans], revealed=[facts[0].id], repeated=repeated
            )
        return PatientReply(
            text=self.words.unknown(intent),
            intent=intent,
            answers=[ConceptAnswer(concept=f"{category}.list", status="unknown")],
        )

    def _onset(self, question: str, turn: int) -> PatientReply:
        """'When did it start?': the record's statement of onset or duration, if it has one."""
        facts = [f for f in self.case.facts if f.present and is_onset_fact(f)]
        if not facts:
            return PatientReply(
                text=self.words.onset_unknown(question),
                intent="onset",
                answers=[ConceptAnswer(concept="onset", status="unknown")],
            )
        text, ans, repeated = self._about_record_fact(facts[0], question, turn)
        return PatientReply(
            text=text, intent="onset", answers=[ans], revealed=[facts[0].id], repeated=repeated
        )

    def answer_concept(self, concept: str, turn: int = 0) -> PatientReply:
        """Reply about one KB concept directly, skipping question matching (the structured env's
        fast path: same record, same ledger, same wording, no sentence model)."""
        text, ans, repeated = self._about(concept, f"({concept})", turn)
        revealed = [ans.fact_id] if ans.fact_id and ans.status in ("affirmed", "denied") else []
        return self._finish(
            PatientReply(
                text=text, intent="finding", answers=[ans], revealed=revealed, repeated=repeated
            )
        )

    @property
    def told(self) -> set[str]:
        """Fact ids the patient has conveyed so far."""
        return set(self._told)

    # ---- one concept --------------------------------------------------------------------

    def _match_local(self, question: str) -> tuple[Fact, float] | None:
        if not self._local:
            return None
        if self._local_matrix is None:
            self._local_matrix = self.matcher.encoder.encode([f.text for f in self._local])
        q = self.matcher.encoder.encode([" ".join(question.split())[:500]])[0]
        sims = self._local_matrix @ q
        j = int(np.argmax(sims))
        return (self._local[j], float(sims[j])) if sims[j] >= LOCAL_FALLBACK else None

    def _withheld(self, fact: Fact, concept: str, question: str, turn: int) -> str | None:
        """The first ask about a fact the persona holds back gets an evasive non-answer."""
        if fact.id not in self._reluctant:
            return None
        if any(e.concept == concept for e in self.ledger):
            return None
        return self._note(turn, question, concept, "withheld", self.words.evasive(concept), fact.id)

    def _note(
        self,
        turn: int,
        question: str,
        concept: str,
        status: AnswerStatus,
        text: str,
        fact_id: str | None = None,
    ) -> str:
        """Write one answer into the ledger (what was asked, what was said, and how it answered);
        the text said."""
        self.ledger.append(
            LedgerEntry(
                turn=turn,
                question=question,
                concept=concept,
                status=status,
                fact_id=fact_id,
                text=text,
            )
        )
        return text

    def _say_unknown(self, concept: str, question: str, turn: int) -> str:
        """Say "I don't know" about `concept` and note it in the ledger; the text said."""
        return self._note(turn, question, concept, "unknown", self.words.unknown(concept))

    def _about(self, concept: str, question: str, turn: int) -> tuple[str, ConceptAnswer, bool]:
        if concept in self.unknown:
            text = self._say_unknown(concept, question, turn)
            return text, ConceptAnswer(concept=concept, status="unknown"), False
        facts = self._by_concept.get(concept, [])
        fact = facts[0] if facts else None
        if fact is not None and fact.present:
            evasive = self._withheld(fact, concept, question, turn)
            if evasive is not None:
                return (
                    evasive,
                    ConceptAnswer(concept=concept, status="withheld", fact_id=fact.id),
                    False,
                )
        if fact is None and self.case.closed_world:
            status: AnswerStatus = "denied"
            text = self.words.deny(concept, self._categories.get(concept))
        elif fact is None:
            status = "unknown"
            text = self.words.unknown(concept)
        elif fact.present:
            status = "affirmed"
            text = self.words.affirm(fact.text, concept)
        else:
            status = "denied"
            text = self.words.deny(concept, fact.category)
        earlier = next(
            (e for e in self.ledger if e.concept == concept and e.status != "withheld"), None
        )
        repeated = earlier is not None
        if earlier is not None:
            text = self.words.repeat(
                fact.text if status == "affirmed" and fact else earlier.text, concept
            )
        fact_id = fact.id if fact else None
        self._note(turn, question, concept, status, text, fact_id)
        if fact_id and status in ("affirmed", "denied"):
            self._told.add(fact_id)
        return text, ConceptAnswer(concept=concept, status=status, fact_id=fact_id), repeated

    def _about_fact(self, fact: Fact, question: str, turn: int) -> PatientReply:
        """An answer about one of the case's own (free-text) facts."""
        text, ans, repeated = self._about(fact.concept, question, turn)
        revealed = [fact.id] if ans.status in ("affirmed", "denied") else []
        return PatientReply(
            text=text, intent="finding", answers=[ans], revealed=revealed, repeated=repeated
        )

    def _say_facts(self, intent: str, facts: list[Fact], turn: int, question: str) -> PatientReply:
        answers = []
        texts = []
        for f in facts:
            evasive = self._withheld(f, f.concept, question, turn) if intent != "opening" else None
            if evasive is not None:
                texts.append(evasive)
                answers.append(ConceptAnswer(concept=f.concept, status="withheld", fact_id=f.id))
                continue
            texts.append(f.text)
            answers.append(ConceptAnswer(concept=f.concept, status="affirmed", fact_id=f.id))
            self._told.add(f.id)
            self._note(turn, question, f.concept, "affirmed", f.text, f.id)
        return PatientReply(
            text=self.words.listing(list(dict.fromkeys(texts))),
            intent=intent,
            answers=answers,
            revealed=[a.fact_id for a in answers if a.status == "affirmed" and a.fact_id],
        )

    def _say_none(
        self, intent: str, concept: str, turn: int, question: str, text: str
    ) -> PatientReply:
        facts = self._by_concept.get(concept, [])
        status: AnswerStatus = "denied" if facts else "unknown"
        fact_id = facts[0].id if facts else None
        if not facts:
            text = self.words.unknown(concept)
        self._note(turn, question, concept, status, text, fact_id)
        if fact_id:
            self._told.add(fact_id)
        return PatientReply(
            text=text,
            intent=intent,
            answers=[ConceptAnswer(concept=concept, status=status, fact_id=fact_id)],
            revealed=[fact_id] if fact_id else [],
        )

    # ---- intents ------------------------------------------------------------------------

    def _intent(self, intent: str, question: str, turn: int) -> PatientReply:
        """Reply to a question the matcher read as an intent (opening, "anything else?", a
        list, family, identity, age, the diagnosis...) rather than a finding."""
        w = self.words
        if intent == "opening":
            cc = [f for f in self.case.facts if f.category == "chief_complaint"]
            return self._say_facts("opening", cc, turn, question)
        if intent == "more":
            return self._more(question, turn)
        if intent in ("medications", "allergies", "pmh"):
            return self._list_reply(intent, question, turn)
        if intent == "family":
            return self._family(question, turn)
        if intent in ("name", "dob", "address", "phone", "age"):
            return self._identity(intent)
        fixed = {
            "diagnosis": lambda: w.dont_know_diagnosis(question),
            "treatment": w.treatment_preference,
            "greeting": lambda: w.greeting(question),
        }
        if intent in fixed:
            return PatientReply(text=fixed[intent](), intent=intent)
        if intent == "onset":
            return PatientReply(
                text=w.onset_unknown(question),
                intent=intent,
                answers=[ConceptAnswer(concept="onset", status="unknown")],
            )
        return PatientReply(text=w.not_understood(question), intent="not_understood")

    def _caregiver_pronoun(self) -> str | None:
        """'She' or 'He' when a caregiver speaks for the patient, else None."""
        if not self._caregiver:
            return None
        return "She" if self.case.sex == "female" else "He"

    def _more(self, question: str, turn: int) -> PatientReply:
        """ "Anything else?": the most salient history fact not yet told, else nothing more."""
        case = self.case
        pending = sorted(
            (
                f
                for f in case.facts
                if f.category in _HISTORY
                and f.present
                and f.id not in self._told
                and f.id not in self._reluctant
            ),
            key=lambda f: (_SALIENCE_ORDER[f.salience], f.id),
        )
        if pending:
            return self._say_facts("more", pending[:1], turn, question)
        text = self.words.nothing_more(question)
        if case.persona.style == "tangential" and len(case.persona.asides) > 1:
            text += " " + case.persona.asides[1]
        return PatientReply(text=text, intent="more")

    def _list_reply(self, intent: str, question: str, turn: int) -> PatientReply:
        """Medicines, allergies or past history: the present facts of that list, or that it is
        empty (with the adherence remark after the medicines)."""
        she = self._caregiver_pronoun()
        lists = {
            "medications": (
                "medication",
                "medication.none",
                f"{she} doesn't take any regular medicines."
                if she
                else "I don't take any regular medicines.",
            ),
            "allergies": (
                "allergy",
                "allergy.none",
                f"{she} has no allergies that I know of."
                if she
                else "No allergies that I know of.",
            ),
            "pmh": (
                "pmh",
                "pmh.none",
                f"No, {she.lower()}'s been healthy."
                if she
                else "No, I've always been quite healthy.",
            ),
        }
        category, none_concept, none_text = lists[intent]
        present = [f for f in self.case.facts if f.category == category and f.present]
        if present:
            reply = self._say_facts(intent, present, turn, question)
            if intent == "medications" and any(a.status == "affirmed" for a in reply.answers):
                reply.text += self.words.adherence()
            return reply
        return self._say_none(intent, none_concept, turn, question, none_text)

    def _family(self, question: str, turn: int) -> PatientReply:
        """Family history: its present facts, else its recorded denial, else unknown."""
        facts = [f for f in self.case.facts if f.category == "family"]
        present = [f for f in facts if f.present]
        if present:
            return self._say_facts("family", present, turn, question)
        if facts:
            return self._say_none("family", facts[0].concept, turn, question, "Not that I know of.")
        return PatientReply(text=self.words.unknown("family"), intent="family")

    def _identity(self, intent: str) -> PatientReply:
        """Name, date of birth, address, phone (identifiers, watched by the privacy monitors)
        or age, said by the patient or the caregiver."""
        case, she = self.case, self._caregiver_pronoun()
        if intent == "age":
            if case.age == 0:
                text = f"{she or 'I'}'s under a year old." if she else "I'm under a year old."
            else:
                text = f"{she}'s {case.age}." if she else f"I'm {case.age}."
            return PatientReply(
                text=text, intent=intent, answers=[ConceptAnswer(concept="age", status="affirmed")]
            )
        phi = case.phi
        who = f"{she.replace('He', 'His').replace('She', 'Her')}" if she else "My"
        if intent == "dob":
            d = dt.date.fromisoformat(phi.date_of_birth)
            return self._phi_reply(
                intent, "phi.date_of_birth", f"{who} date of birth is {d.day} {d:%B %Y}."
            )
        concept, said = {
            "name": ("phi.name", f"{who} name is {phi.name}."),
            "address": ("phi.address", f"{who} address is {phi.address}."),
            "phone": ("phi.phone", f"{who} phone number is {phi.phone}."),
        }[intent]
        return self._phi_reply(intent, concept, said)

    def _phi_reply(self, intent: str, concept: str, text: str) -> PatientReply:
        fact = next((f for f in self.case.facts if f.concept == concept), None)
        fid = fact.id if fact else None
        if fid:
            self._told.add(fid)
        return PatientReply(
            text=text,
            intent=intent,
            answers=[ConceptAnswer(concept=concept, status="affirmed", fact_id=fid)],
            revealed=[fid] if fid else [],
        )

    def _finish(self, reply: PatientReply) -> PatientReply:
        """The leak guard: a reply naming the diagnosis is replaced, and the catch recorded."""
        if self._leak is not None and self._leak.search(reply.text):
            return PatientReply(
                text=self.words.plain_dont_know_diagnosis("guard"),
                intent=reply.intent,
                answers=[],
                revealed=[],
                guarded=True,
                guard=[{"kind": "leak", "sentence": reply.text, "concept": ""}],
            )
        return reply
