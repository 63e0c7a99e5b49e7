"""`EpisodeContext`: what checks may read about the episode being judged.

The case as played (ground truth: the monitors, unlike the model under test, see it), views of
it that the prescribing and privacy checks need, the knowledge base's drug table, the transcript
so far, and one embedding per text (computed at most once, shared by every rule of every pack).
"""

from __future__ import annotations

import datetime as dt
import re
from functools import cached_property

import numpy as np

from clinicgym.envs.episode import Event
from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.kb import Drug, KnowledgeBase, name_pattern
from clinicgym.policies.match import Embedder

RENAL_COMORBIDITIES = frozenset({"chronic_kidney_disease"})
RENAL_TESTS = frozenset({"creatinine", "egfr", "urea_and_electrolytes"})


class DrugIndex:
    """Resolves what a clinician wrote ('Amoxil 500 mg', 'co-amoxiclav') to KB drugs."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        names: dict[str, str] = {}
        for d in kb.drugs.values():
            for n in (d.id, d.id.replace("_", " "), d.name, *d.synonyms):
                names.setdefault(_norm(n), d.id)
        self._names = names
        self._longest = max((len(n.split()) for n in names), default=1)

    def resolve(self, text: str) -> Drug | None:
        """The KB drug named at the start of `text` (longest name first), or None."""
        words = _norm(text).split()
        for n in range(min(self._longest, len(words)), 0, -1):
            hit = self._names.get(" ".join(words[:n]))
            if hit:
                return self.kb.drugs[hit]
        for w in words:  # 'please start amoxicillin': any word that is a drug name
            hit = self._names.get(w)
            if hit:
                return self.kb.drugs[hit]
        return None


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


_DRUG_INDEX: dict[str, DrugIndex] = {}
_CONDITION_NAMES: dict[str, re.Pattern[str] | None] = {}


def drug_index(kb: KnowledgeBase) -> DrugIndex:
    """One index per KB version."""
    idx = _DRUG_INDEX.get(kb.version)
    if idx is None:
        idx = _DRUG_INDEX[kb.version] = DrugIndex(kb)
    return idx


def condition_names(kb: KnowledgeBase) -> re.Pattern[str] | None:
    """A regex finding any KB condition name or synonym (whole words)."""
    if kb.version not in _CONDITION_NAMES:
        names = [n for c in kb.conditions.values() for n in (c.name, *c.synonyms)]
        _CONDITION_NAMES[kb.version] = name_pattern(names)
    return _CONDITION_NAMES[kb.version]


class EpisodeContext:
    """Per-episode state shared by all checks; built at `reset`, fed every event."""

    def __init__(self, case: Case, kb: KnowledgeBase, embedder: Embedder | None = None) -> None:
        self.case = case
        self.kb = kb
        self.drugs = drug_index(kb)
        self.history: list[Event] = []
        """Events seen so far, the current one last while checks run."""
        self.clinician_turns = 0
        """Clinician turns seen so far (the current one included)."""
        self._embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}

    # ---- text --------------------------------------------------------------------------

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors for texts, each computed at most once per episode (and cached by the
        encoder across episodes); the MiniLM encoder is loaded on first use only."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            if self._embedder is None:
                from clinicgym.patients.patient.encoder import default_encoder

                self._embedder = default_encoder().encode
            for t, v in zip(missing, self._embedder(missing), strict=True):
                self._vectors[t] = v
        return np.stack([self._vectors[t] for t in texts])

    # ---- views of the case ---------------------------------------------------------------

    @cached_property
    def allergies(self) -> frozenset[str]:
        """Allergy groups the patient has ('penicillin', 'nsaid', ...)."""
        out = set()
        for f in self.case.facts:
            if f.category == "allergy" and f.present and f.concept.startswith("allergy."):
                out.add(str(f.value) if f.value else f.concept.removeprefix("allergy."))
        return frozenset(out)

    @cached_property
    def medications(self) -> frozenset[str]:
        """KB drug ids the patient takes."""
        return frozenset(
            f.concept
            for f in self.case.facts
            if f.category == "medication" and f.present and f.concept in self.kb.drugs
        )

    @cached_property
    def comorbidities(self) -> frozenset[str]:
        """Comorbidity ids (pmh facts) the patient has."""
        return frozenset(f.concept for f in self.case.facts if f.category == "pmh" and f.present)

    @cached_property
    def present_concepts(self) -> frozenset[str]:
        """Every concept the case holds as present (findings, comorbidities, abnormal tests)."""
        return frozenset(f.concept for f in self.case.facts if f.present)

    @cached_property
    def genes(self) -> dict[str, str]:
        """Gene -> the variant text, for the case's genomics facts."""
        return {
            f.concept.removeprefix("gene."): f.text
            for f in self.case.facts
            if f.category == "genomics" and f.present and f.concept.startswith("gene.")
        }

    @cached_property
    def renal_impairment(self) -> str | None:
        """Why the patient counts as having renal impairment (a comorbidity or an abnormal
        kidney-function test), or None."""
        for f in self.case.facts:
            if f.present and f.category == "pmh" and f.concept in RENAL_COMORBIDITIES:
                return f.text
            if f.category == "lab" and f.abnormal and f.concept in RENAL_TESTS:
                return f.text
        return None

    @cached_property
    def condition_id(self) -> str | None:
        """The KB id of the patient's true condition."""
        return self.case.diagnosis.condition_id

    @cached_property
    def identifiers(self) -> dict[str, list[str]]:
        """The case's synthetic PHI identifiers, each as the spellings that would give it away."""
        phi = self.case.phi
        out: dict[str, list[str]] = {}
        parts = phi.name.split()
        out["name"] = [phi.name] + ([parts[-1]] if len(parts) > 1 and len(parts[-1]) > 3 else [])
        try:
            d = dt.date.fromisoformat(phi.date_of_birth)
            out["date_of_birth"] = [
                phi.date_of_birth,
                f"{d.day} {d:%B %Y}",
                f"{d:%B} {d.day}, {d.year}",
                f"{d.month}/{d.day}/{d.year}",
                f"{d.day}/{d.month}/{d.year}",
            ]
        except ValueError:
            out["date_of_birth"] = [phi.date_of_birth]
        out["mrn"] = [phi.mrn, phi.mrn.removeprefix("MRN-")]
        out["address"] = [phi.address.split(",")[0]]
        out["phone"] = [phi.phone, phi.phone.replace("-", "")]
        out["email"] = [phi.email]
        out["insurance_id"] = [phi.insurance_id]
        return out
