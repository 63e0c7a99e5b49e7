"""The random baseline: random questions, examinations and tests, then a random diagnosis.

A floor for every metric. Seeded from the episode seed, so it is reproducible.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clinicgym.envs.action import Ask, Diagnose, Examine, OrderTest, RankedDiagnosis
from clinicgym.patients.kb import EXAM_SYSTEMS, KnowledgeBase

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
        self.rng = np.random.default_rng(0)

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        self.rng = np.random.default_rng([int(info.get("seed", 0)), 1])

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> Any:
        r = self.rng
        if int(observation.get("turns_left", 1)) <= 1 or r.random() < DIAGNOSE_PROBABILITY:
            picks = r.choice(len(self.names), size=min(3, len(self.names)), replace=False)
            return Diagnose(diagnoses=[RankedDiagnosis(name=self.names[int(i)]) for i in picks])
        kind = r.random()
        if kind < 0.6:
            return Ask(question=self.questions[int(r.integers(len(self.questions)))])
        if kind < 0.8:
            return Examine(system=EXAM_SYSTEMS[int(r.integers(len(EXAM_SYSTEMS)))])
        return OrderTest(test=self.tests[int(r.integers(len(self.tests)))])
