"""Baselines and reward-hacking probes for RL: policies for the structured env, agents for the
text env.

Structured-env policies (`reset(obs, info)`, `act(obs, info) -> action id`):

* `RandomPolicy`: a uniformly random action each turn, seeded from the episode seed (the floor);
* `ScriptedPolicy`: the scripted baseline (`agents/scripted.py`: Bayesian history taking over
  the KB) fed the structured env's `info["result"]`, its actions mapped to action ids;
* `FloodingPolicy`: the scripted baseline that never stops asking until the last turn (a
  question-flooding probe: with the turn guard it must score below `ScriptedPolicy`).

Text-env agents (the `Agent` protocol): `FloodingAgent` (the same probe in words) and
`ListingAgent`, which lists twenty entries: its most likely diagnoses, each under every name
the KB knows for it (the differential-listing probe).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol

import numpy as np

from clinicgym.agents.scripted import ScriptedAgent
from clinicgym.envs.action import Ask, Diagnose, RankedDiagnosis
from clinicgym.envs.structured import Catalogue, catalogue_for
from clinicgym.patients.knowledge.kb import KnowledgeBase
from clinicgym.runs.rl.errors import RLError

LISTING_LENGTH = 20
"""How many diagnoses the listing probe names (the text env's largest differential)."""


class Policy(Protocol):
    """A structured-env policy: sees the numeric observation and `info`, returns an action id."""

    name: str

    def reset(self, obs: np.ndarray, info: dict[str, Any]) -> None: ...

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> int: ...


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never awaits anything real (the baselines' `act`) without a loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RLError("a baseline's act() awaited something; run it with asyncio instead")


class RandomPolicy:
    """A uniformly random action each turn; seeded from the episode seed, so reproducible."""

    name = "random"

    def __init__(self, n_actions: int) -> None:
        self.n_actions = n_actions
        self.rng = np.random.default_rng(0)

    def reset(self, obs: np.ndarray, info: dict[str, Any]) -> None:
        self.rng = np.random.default_rng([int(info.get("seed", 0)), 1])

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> int:
        return int(self.rng.integers(self.n_actions))


class ScriptedPolicy:
    """The scripted baseline on the structured env: same inference, same choices, as ids."""

    name = "scripted"

    def __init__(self, kb: KnowledgeBase, max_turns: int = 20) -> None:
        self.kb = kb
        self.cat: Catalogue = catalogue_for(kb)
        self.max_turns = max_turns
        self.agent = ScriptedAgent(kb)

    def reset(self, obs: np.ndarray, info: dict[str, Any]) -> None:
        self.agent = ScriptedAgent(self.kb)
        self.agent.reset({"turns_left": self.max_turns}, info)

    def _next(self, info: dict[str, Any]) -> Any:
        turns_left = self.max_turns - int(info.get("turn", 0))
        return run_sync(self.agent.act({"turns_left": turns_left}, info))

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> int:
        action = self._next(info)
        a = self.cat.encode(action)
        if a is None:
            raise RLError(f"scripted action {action!r} has no structured action id")
        return a


class FloodingPolicy(ScriptedPolicy):
    """The scripted baseline that asks on until the last turn, then diagnoses: the
    question-flooding probe (more answers, more turns)."""

    name = "flooding"

    def reset(self, obs: np.ndarray, info: dict[str, Any]) -> None:
        super().reset(obs, info)
        self._next_question = 0

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> int:
        a = super().act(obs, info)
        last = self.max_turns - int(info.get("turn", 0)) <= 1
        if a < self.cat.a_diagnose or last:
            return a
        asked = obs[self.cat.o_asked]
        while self._next_question < len(self.cat.ask) and asked[self._next_question] > 0:
            self._next_question += 1
        q = min(self._next_question, len(self.cat.ask) - 1)
        self._next_question += 1
        return self.cat.a_ask + q


# ---- text-env probes ------------------------------------------------------------------------


class FloodingAgent:
    """Text-env probe: the scripted baseline asking the KB's questions until the last turn."""

    def __init__(self, kb: KnowledgeBase, agent_id: str = "flooding") -> None:
        self.agent_id = agent_id
        self.inner = ScriptedAgent(kb)
        self.questions = [f.question for f in kb.findings.values() if f.question]
        self._i = 0

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        self.inner.reset(observation, info)
        self._i = 0

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> Any:
        action = await self.inner.act(observation, info)
        if not isinstance(action, Diagnose) or int(observation.get("turns_left", 1)) <= 1:
            return action
        question = self.questions[self._i % len(self.questions)]
        self._i += 1
        return Ask(question=question)


class ListingAgent:
    """Text-env probe: the scripted baseline that lists twenty entries, its most likely
    diagnoses in order, each under its name and every synonym."""

    def __init__(self, kb: KnowledgeBase, agent_id: str = "listing") -> None:
        self.agent_id = agent_id
        self.kb = kb
        self.inner = ScriptedAgent(kb)

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        self.inner.reset(observation, info)

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> Any:
        action = await self.inner.act(observation, info)
        if not isinstance(action, Diagnose):
            return action
        names: list[str] = []
        for cid, _p in self.inner.belief.top(len(self.inner.model.conditions)):
            cond = self.kb.conditions[cid]
            names += [cond.name, *cond.synonyms]
        return Diagnose(diagnoses=[RankedDiagnosis(name=n) for n in names[:LISTING_LENGTH]])
