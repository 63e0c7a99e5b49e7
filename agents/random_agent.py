"""The random baseline: random questions, examinations and tests, then a random diagnosis.

A floor for every metric. It guesses among the conditions the opening could mean (the members
of the presentations with that complaint, for this setting and age) when the KB has them, so its
accuracy is near 1 / cluster size: the chance level of the benchmark, not of the whole KB.
Seeded from the episode seed, so it is reproducible.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clinicgym.envs.action import Ask, Diagnose, Examine, OrderTest, RankedDiagnosis
from clinicgym.patients.cases.posterior import model_for, opening_of
from clinicgym.patients.knowledge.kb import EXAM_SYSTEMS, KnowledgeBase

DIAGNOSE_PROBABILITY = 0.15
"""Chance per turn of committing to a diagnosis (so episodes average ~6 turns)."""


class RandomAgent:
    """Uniformly random tool use over the KB's vocabulary."""

    def __init__(self, kb: KnowledgeBase, agent_id: str = "random") -> None:
        self.agent_id = agent_id
        self.kb = kb
        self.questions = sorted(f.question for f in kb.findings.values() if f.question)
        self.tests = sorted(t.name for t in kb.tests.values())
        self.names = sorted(c.name for c in kb.conditions.values())
        self.choices = self.names
        self.rng = np.random.default_rng(0)

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        self.rng = np.random.default_rng([int(info.get("seed", 0)), 1])
        model = model_for(self.kb)
        post, _ = model.prior(*opening_of(info))
        possible = sorted(
            self.kb.conditions[c].name
            for c, p in zip(model.conditions, post.tolist(), strict=True)
            if p > 0
        )
        self.choices = possible or self.names

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> Any:
        r = self.rng
        if int(observation.get("turns_left", 1)) <= 1 or r.random() < DIAGNOSE_PROBABILITY:
            names = self.choices
            picks = r.choice(len(names), size=min(3, len(names)), replace=False)
            return Diagnose(diagnoses=[RankedDiagnosis(name=names[int(i)]) for i in picks])
        kind = r.random()
        if kind < 0.6:
            return Ask(question=self.questions[int(r.integers(len(self.questions)))])
        if kind < 0.8:
            return Examine(system=EXAM_SYSTEMS[int(r.integers(len(EXAM_SYSTEMS)))])
        return OrderTest(test=self.tests[int(r.integers(len(self.tests)))])
