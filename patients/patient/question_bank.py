"""The question bank: paraphrased clinician questions, each with the concept it should retrieve.

`evaluate_bank` asks every relevant question of a sample of cases and checks what the patient
answered against the record: the right concept with the right status (affirmed, denied, or "I
don't know" for an open-world record), the right intent for list and identity questions, and no
leak of the diagnosis, so the patient's understanding is measured, not assumed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from clinicgym.patients.cases.case import Case, Persona
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.errors import KBError
from clinicgym.patients.knowledge.kb import KNOWLEDGE_DIR, KnowledgeBase, name_pattern
from clinicgym.patients.patient.matching import INTENTS, matcher_for
from clinicgym.patients.patient.patient import GroundedPatient, PatientReply

BANK_FILE = KNOWLEDGE_DIR / "question_bank.yaml"
NEUTRAL = Persona(style="plain", health_literacy="high")
"""Retrieval is measured with a persona that neither holds back nor misunderstands."""


class QuestionBank(BaseModel):
    """Paraphrases by finding id and by intent."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1]
    findings: dict[str, list[str]]
    intents: dict[str, list[str]]

    def size(self) -> int:
        return sum(map(len, self.findings.values())) + sum(map(len, self.intents.values()))


def load_bank(kb: KnowledgeBase, path: Path | None = None) -> QuestionBank:
    """Load and cross-check the bank: every concept is a KB history finding, every intent known."""
    path = path or BANK_FILE
    try:
        bank = QuestionBank.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as e:
        raise KBError(path, [str(e)]) from None
    except ValidationError as e:
        raise KBError(
            path, [f"field '{'.'.join(map(str, x['loc']))}': {x['msg']}" for x in e.errors()]
        ) from None
    problems = [
        f"findings: '{c}' is not a KB history finding"
        for c in bank.findings
        if c not in kb.findings or kb.findings[c].category == "exam"
    ]
    problems += [
        f"intents: '{i}' is not a patient intent ({', '.join(INTENTS)})"
        for i in bank.intents
        if i not in INTENTS
    ]
    problems += [f"findings: '{c}' has no questions" for c, qs in bank.findings.items() if not qs]
    if problems:
        raise KBError(path, problems)
    return bank


class BankResult(BaseModel):
    """How the patient did on the bank."""

    cases: int
    questions: int
    answer_accuracy: float
    """Share answered with the record's status for the asked concept (or the right intent)."""
    retrieval_accuracy: float
    """Share where the asked concept itself was matched (stricter: near-synonyms count wrong)."""
    leaks: int
    by_expected: dict[str, dict[str, int]]
    failures: list[dict[str, Any]]


def _expected(case: Case, concept: str) -> str:
    facts = case.facts_by_concept().get(concept)
    if facts:
        return "affirmed" if facts[0].present else "denied"
    return "denied" if case.closed_world else "unknown"


def evaluate_bank(
    kb: KnowledgeBase, *, n_cases: int = 20, seed: int = 0, absent_per_case: int = 4
) -> BankResult:
    """Ask the bank's relevant questions of `n_cases` KB cases (closed and open world)."""
    bank = load_bank(kb)
    matcher = matcher_for(kb)
    cases = CaseSampler(kb).sample_many(n_cases, seed)
    rng = np.random.default_rng(seed)
    total = right = retrieved = leaks = 0
    tally: dict[str, Counter[str]] = {}
    failures: list[dict[str, Any]] = []
    for case in cases:
        case = case.model_copy(update={"persona": NEUTRAL})
        leak = name_pattern([case.diagnosis.name, *case.diagnosis.synonyms])
        for c, target, q in _plan(bank, case, rng, absent_per_case):
            reply = GroundedPatient(c, matcher).answer(q)
            total += 1
            if leak is not None and leak.search(reply.text):
                leaks += 1
            want, ok, hit = _graded(c, target, reply)
            tally.setdefault(want, Counter())["right" if ok else "wrong"] += 1
            right += ok
            retrieved += hit
            if not ok and len(failures) < 50:
                failures.append(
                    {
                        "case": c.id,
                        "asked": target,
                        "question": q,
                        "expected": want,
                        "got": [a.model_dump() for a in reply.answers],
                        "reply": reply.text,
                    }
                )
    return BankResult(
        cases=len(cases),
        questions=total,
        answer_accuracy=right / total if total else 0.0,
        retrieval_accuracy=retrieved / total if total else 0.0,
        leaks=leaks,
        by_expected={k: dict(v) for k, v in tally.items()},
        failures=failures,
    )


def _plan(
    bank: QuestionBank, case: Case, rng: np.random.Generator, absent_per_case: int
) -> list[tuple[Case, str, str]]:
    """One case's questions: every wording for each recorded finding, two for each of a few
    absent ones (one more of the same case in the open world) and every intent's."""
    recorded = [c for c in bank.findings if c in case.facts_by_concept()]
    absent = [c for c in bank.findings if c not in case.facts_by_concept()]
    picks = [
        absent[int(i)]
        for i in rng.choice(len(absent), size=min(absent_per_case, len(absent)), replace=False)
    ]
    plan: list[tuple[Case, str, str]] = [(case, c, q) for c in recorded for q in bank.findings[c]]
    plan += [(case, c, q) for c in picks for q in bank.findings[c][:2]]
    open_case = case.model_copy(update={"closed_world": False})
    plan += [(open_case, c, q) for c in picks for q in bank.findings[c][:1]]
    plan += [(case, f"intent:{i}", q) for i, qs in bank.intents.items() for q in qs]
    return plan


def _graded(case: Case, target: str, reply: PatientReply) -> tuple[str, bool, bool]:
    """What the reply should have said, whether it did, and whether it found the asked concept
    (for an intent: whether it read the intent)."""
    if target.startswith("intent:"):
        want = target.removeprefix("intent:")
        ok = reply.intent == want or (
            want == "diagnosis" and reply.intent == "not_understood"  # nothing given
        )
        return want, ok, ok
    want = _expected(case, target)
    got = {a.concept: a.status for a in reply.answers}
    hit = target in got
    ok = got.get(target) == want if hit else bool(got) and all(s == want for s in got.values())
    return want, ok, hit
