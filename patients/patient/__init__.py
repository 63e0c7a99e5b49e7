"""The patient itself: `GroundedPatient` (answers only from its case), question matching
(`matching`, `encoder`: MiniLM in NumPy), recall over a written record's statements, persona
wording, the answer guard, the LLM-worded patient and the replay of its wordings, the chart
(what `examine` and `order` return), and asking a bank of questions of patients (`ask`,
`question_bank`).

Names load on first use (PEP 562), so importing one module of this package does not import the
others (the synthesizers need SDV, the patient's encoder its weights).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinicgym.patients._faces import lazy_exports

if TYPE_CHECKING:
    from clinicgym.patients.patient.ask import grade, read_questions
    from clinicgym.patients.patient.chart import SYSTEM_ALIASES, Chart, ChartResult
    from clinicgym.patients.patient.encoder import SentenceEncoder, default_encoder
    from clinicgym.patients.patient.guard import AnswerGuard, Catch
    from clinicgym.patients.patient.llm_patient import LLMWordedPatient
    from clinicgym.patients.patient.matching import (
        INTENTS,
        QuestionMatcher,
        cached_embeddings,
        matcher_for,
    )
    from clinicgym.patients.patient.patient import GroundedPatient, PatientReply
    from clinicgym.patients.patient.question_bank import QuestionBank, evaluate_bank, load_bank
    from clinicgym.patients.patient.recall import (
        AcceptanceScorer,
        RecordIndex,
        acceptance_scorer,
        load_lexicon,
    )
    from clinicgym.patients.patient.replay import ReplayCache, cache_key
    from clinicgym.patients.patient.wording import Wording

_EXPORTS = {
    "PatientReply": "patient",
    "GroundedPatient": "patient",
    "INTENTS": "matching",
    "QuestionMatcher": "matching",
    "matcher_for": "matching",
    "cached_embeddings": "matching",
    "SentenceEncoder": "encoder",
    "default_encoder": "encoder",
    "RecordIndex": "recall",
    "AcceptanceScorer": "recall",
    "acceptance_scorer": "recall",
    "load_lexicon": "recall",
    "Wording": "wording",
    "Catch": "guard",
    "AnswerGuard": "guard",
    "LLMWordedPatient": "llm_patient",
    "ReplayCache": "replay",
    "cache_key": "replay",
    "Chart": "chart",
    "ChartResult": "chart",
    "SYSTEM_ALIASES": "chart",
    "read_questions": "ask",
    "grade": "ask",
    "QuestionBank": "question_bank",
    "load_bank": "question_bank",
    "evaluate_bank": "question_bank",
}
__all__ = [
    "INTENTS",
    "SYSTEM_ALIASES",
    "AcceptanceScorer",
    "AnswerGuard",
    "Catch",
    "Chart",
    "ChartResult",
    "GroundedPatient",
    "LLMWordedPatient",
    "PatientReply",
    "QuestionBank",
    "QuestionMatcher",
    "RecordIndex",
    "ReplayCache",
    "SentenceEncoder",
    "Wording",
    "acceptance_scorer",
    "cache_key",
    "cached_embeddings",
    "default_encoder",
    "evaluate_bank",
    "grade",
    "load_bank",
    "load_lexicon",
    "matcher_for",
    "read_questions",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
