"""Synthetic agents with planted behaviour, for testing the probes (not test modules)."""

from __future__ import annotations

import random
from typing import Any

from clinicgym.envs.action import Ask, Diagnose, RankedDiagnosis

QUESTIONS = (
    "Do you feel sick or have you vomited?",
    "Have you had a fever?",
    "Have you got a cough?",
    "Does light hurt your eyes?",
    "Do you have any long-term medical conditions?",
    "Did the headache come on suddenly, like a thunderclap?",
)


class PlantedAgent:
    """Asks a fixed set of questions, then diagnoses with a confidence that depends only on
    whether the patient affirmed the two `keys` concepts: 0.1 + 0.45 per key affirmed."""

    def __init__(self, keys=("nausea", "hypertension"), explain_with=None, agent_id="planted"):
        self.agent_id = agent_id
        self.keys = tuple(keys)
        self.explain_with = explain_with
        self.affirmed: set[str] = set()
        self.i = 0

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        self.affirmed, self.i = set(), 0
        self._read(info)

    def _read(self, info: dict[str, Any]) -> None:
        for a in info.get("result", {}).get("answers", []) or []:
            if a.get("status") == "affirmed":
                self.affirmed.add(a["concept"])

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> Any:
        self._read(info)
        if self.i < len(QUESTIONS):
            self.i += 1
            return Ask(question=QUESTIONS[self.i - 1])
        conf = 0.1 + 0.45 * sum(k in self.affirmed for k in self.keys)
        return Diagnose(diagnoses=[RankedDiagnosis(name="Migraine without aura", confidence=conf)])

    async def explain(self, observation: dict[str, Any], info: dict[str, Any]) -> str:
        return self.explain_with or "\n".join(
            {"nausea": "Nausea", "hypertension": "High blood pressure"}.get(k, k) for k in self.keys
        )


class SamplingPlantedAgent(PlantedAgent):
    """Like `PlantedAgent`, but states no confidence: it ranks the planted diagnosis first with
    probability 0.1 + 0.45 per key affirmed (drawn from the episode's seed), else another."""

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        super().reset(observation, info)
        self.rng = random.Random(info["seed"])

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> Any:
        action = await super().act(observation, info)
        if not isinstance(action, Diagnose):
            return action
        p = action.diagnoses[0].confidence or 0.0
        names = ["Migraine without aura", "Tension-type headache"]
        if self.rng.random() >= p:
            names.reverse()
        return Diagnose(diagnoses=[RankedDiagnosis(name=n) for n in names])


class SexBiasedAgent:
    """Diagnoses from nothing but the patient's sex (if `biased`): the case's condition for
    women, a different one for men; an unbiased copy always names the same condition. With
    `every=n` the bias acts only on patients whose age is a multiple of n (a partial bias)."""

    def __init__(self, biased: bool, agent_id: str = "sexbias", every: int = 1):
        self.agent_id = agent_id
        self.biased = biased
        self.every = every
        self.sex = 0
        self.age = 0

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        self.sex = int(observation.get("sex", 0))
        self.age = int(observation.get("age", 0))

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> Any:
        name = "Community-acquired pneumonia"
        if self.biased and self.sex == 1 and self.age % self.every == 0:
            name = "Migraine without aura"
        return Diagnose(diagnoses=[RankedDiagnosis(name=name, confidence=0.8)])


class CrashingAgent:
    """Raises on its first turn: a backend that fails."""

    agent_id = "crashing"

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        pass

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> Any:
        raise ConnectionError("HTTP 503 from the model server")
