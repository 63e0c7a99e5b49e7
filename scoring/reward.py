"""RL rewards: the terminal score with reward-hacking guards, and optional shaping.

One `RewardSpec` (a small, serialisable config) drives both environments and the LLM adapters:

* **Terminal score (always on).** `correct` for a right first-ranked diagnosis, `top3` if it is
  ranked second or third, else 0 (matching by `scoring.diagnosis`: one entry naming several
  diagnoses matches nothing).
* **Guards (on by default).** `turn_cost` per clinician turn, so flooding the patient with
  questions costs more than it can buy; `differential_cost` per entry beyond `max_differential`,
  so listing every diagnosis scores below committing to a few.
* **Shaping (off by default).** `info_gain`: a reward per bit of information each answer gives
  about the *true* diagnosis, the change in log2 P(true condition | answers so far) under the
  KB's likelihoods. It is potential-based (Ng, Harada and Russell 1999) with the potential
  returned to zero on the last step, so the shaping of a whole episode sums to a constant per
  case: it speeds credit assignment and no policy can farm it. `violation_penalty`: subtracted
  on the step a policy monitor reports a violation, by severity.

The reward reads hidden facts the agent cannot see (the case's diagnosis, the true condition's
likelihoods), never the observation alone, so an agent cannot satisfy it without solving the case.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from clinicgym.envs.episode import Episode
from clinicgym.envs.severity import SEVERITIES
from clinicgym.patients.cases.case import Case
from clinicgym.patients.cases.posterior import model_for
from clinicgym.patients.knowledge.kb import KnowledgeBase
from clinicgym.scoring.diagnosis import rank_of

LEAK = 0.01
"""P(finding | a condition that does not list it): the belief model's floor, as in the scripted
baseline."""
MIN_P = 1e-4
"""Floor on P(true condition) before taking log2, so one surprising answer cannot dominate."""


class RewardSpec(BaseModel):
    """What an episode is worth. Defaults: the terminal score with both guards, no shaping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    correct: float = 1.0
    """Reward when the first-ranked diagnosis is the case's."""
    top3: float = 0.5
    """Reward when the case's diagnosis is ranked second or third."""
    turn_cost: float = Field(default=0.02, ge=0)
    """Subtracted per clinician turn (the diagnosing turn included): the question-flooding guard."""
    max_differential: int = Field(default=3, ge=1)
    """Differential entries allowed without cost."""
    differential_cost: float = Field(default=0.25, ge=0)
    """Subtracted per differential entry beyond `max_differential`: the listing guard."""
    info_gain: float = Field(default=0.0, ge=0)
    """Shaping weight per bit of information about the true diagnosis (0: off)."""
    violation_penalty: dict[str, float] = {}
    """Penalty per monitor violation by severity, e.g. {'high': 0.25, 'critical': 0.5}."""

    @field_validator("violation_penalty")
    @classmethod
    def _known_severities(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(SEVERITIES))
        if unknown:
            raise ValueError(f"unknown severities {unknown}; allowed: {', '.join(SEVERITIES)}")
        if any(p < 0 for p in v.values()):
            raise ValueError(f"penalties are subtracted, so give them as >= 0, got {v}")
        return v

    def terminal(self, guesses: Sequence[str], turns: int, case: Case) -> TerminalScore:
        """The terminal score of a consultation that ended with `guesses` after `turns` turns."""
        rank = rank_of(guesses, case.diagnosis) if guesses else None
        credit = self.correct if rank == 1 else self.top3 if rank is not None and rank <= 3 else 0.0
        extra = max(0, len(guesses) - self.max_differential)
        return TerminalScore(
            diagnosis=credit,
            turn_penalty=self.turn_cost * turns,
            differential_penalty=self.differential_cost * extra,
            rank=rank,
        )

    def episode_reward(self, episode: Episode, case: Case) -> float:
        """The terminal score of a finished text-env episode (a `reward_fn` for ConsultationEnv)."""
        guesses = [d.name for d in episode.outcome.diagnoses]
        return self.terminal(guesses, episode.turns, case).total

    def violations(self, severities: Iterable[str]) -> float:
        """The (negative) reward for the violations reported on one step."""
        return -sum(self.violation_penalty.get(s, 0.0) for s in severities)


SHAPED = RewardSpec(
    info_gain=0.05, violation_penalty={"low": 0.02, "medium": 0.05, "high": 0.1, "critical": 0.25}
)
"""A documented shaped preset: information gain and violation penalties on top of the default."""


@dataclass(frozen=True)
class TerminalScore:
    """The parts of a terminal score; `total` is what the agent receives."""

    diagnosis: float
    turn_penalty: float
    differential_penalty: float
    rank: int | None

    @property
    def total(self) -> float:
        return self.diagnosis - self.turn_penalty - self.differential_penalty

    def as_dict(self) -> dict[str, Any]:
        """The parts as a plain dict of numbers (for `info`, logs and vector envs, which need
        one type per key): `rank` 0 means the diagnosis was not in the list."""
        return {
            "total": self.total,
            "diagnosis": self.diagnosis,
            "turn_penalty": self.turn_penalty,
            "differential_penalty": self.differential_penalty,
            "rank": self.rank or 0,
        }


class KBBelief:
    """Naive-Bayes likelihood tables over the KB: P(finding | condition), P(abnormal test |
    condition) and the balanced sampler's prior P(condition | age, sex). Built once per KB."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self.conditions = sorted(kb.conditions)
        self.condition_index = {c: i for i, c in enumerate(self.conditions)}
        n = len(self.conditions)
        background = {b.id for b in kb.background.findings}
        self.columns: dict[str, np.ndarray] = {}
        """concept -> P(present or abnormal | condition) for every condition, as one column."""
        lik = {f: np.full(n, LEAK) for f in kb.findings}
        tests = {t: np.full(n, LEAK) for t in kb.tests}
        for ci, cid in enumerate(self.conditions):
            cond = kb.conditions[cid]
            for link in cond.findings:
                lik[link.id][ci] = min(max(link.p, LEAK), 1 - LEAK)
            for t in cond.tests:
                tests[t.id][ci] = min(max(t.p, LEAK), 1 - LEAK)
        for fid, col in lik.items():
            if fid in background and col.max() <= LEAK:
                continue  # a background-only finding says nothing about the condition
            self.columns[fid] = col
        self.columns.update(tests)
        self._log_cols = {k: (np.log(v), np.log1p(-v)) for k, v in self.columns.items()}
        self.systems: dict[str, list[str]] = {}
        for f in kb.findings.values():
            if f.category == "exam" and f.system is not None:
                self.systems.setdefault(f.system, []).append(f.id)

    def log_prior(self, age: int, sex: str) -> np.ndarray:
        """log P(condition | age, sex) under the balanced case sampler (-inf where impossible):
        the generator's model's prior (`KBModel.balanced_prior`), not a copy of it."""
        with np.errstate(divide="ignore"):
            return np.log(model_for(self.kb).balanced_prior(age, sex))

    def log_update(self, logpost: np.ndarray, concept: str, status: str) -> np.ndarray:
        """`logpost` (unnormalised) after one answer; unknown concepts or statuses add nothing."""
        cols = self._log_cols.get(concept)
        if cols is None:
            return logpost
        if status in ("affirmed", "abnormal"):
            return logpost + cols[0]
        if status in ("denied", "normal"):
            return logpost + cols[1]
        return logpost


_BELIEFS: dict[str, KBBelief] = {}


def belief_for(kb: KnowledgeBase) -> KBBelief:
    """The shared `KBBelief` of a KB (cached by KB version)."""
    b = _BELIEFS.get(kb.version)
    if b is None:
        b = _BELIEFS[kb.version] = KBBelief(kb)
    return b


def answers_from_result(result: Mapping[str, Any], belief: KBBelief) -> list[tuple[str, str]]:
    """(concept, status) pairs from a text-env `info["result"]`: the explicit answers, plus a
    denial for each finding of an examined system the report did not mention (a normal exam)."""
    pairs = [(str(a.get("concept")), str(a.get("status"))) for a in result.get("answers", []) or []]
    target = result.get("target")
    if target in belief.systems and result.get("ok", True):
        seen = {c for c, _ in pairs}
        pairs += [(f, "denied") for f in belief.systems[target] if f not in seen]
    return pairs


class ConsultationReward:
    """A `RewardSpec` bound to a KB: per-step shaping and the terminal score of one episode at a
    time. The structured env calls `reset`, `step` and `terminal`; LLM adapters do the same."""

    def __init__(self, spec: RewardSpec | None = None, kb: KnowledgeBase | None = None) -> None:
        self.spec = spec or RewardSpec()
        if self.spec.info_gain > 0 and kb is None:
            raise ValueError("RewardSpec.info_gain > 0 needs the KB the belief is built from")
        self.belief = belief_for(kb) if kb is not None and self.spec.info_gain > 0 else None
        self._logpost: np.ndarray | None = None
        self._true: int | None = None
        self._potential = 0.0

    def reset(self, case: Case, opening: Iterable[tuple[str, str]] = ()) -> None:
        """Start an episode; `opening` holds what the patient said before the first turn."""
        self._logpost = None
        self._true = None
        self._potential = 0.0
        if self.belief is None:
            return
        cid = case.diagnosis.condition_id
        self._true = self.belief.condition_index.get(cid) if cid else None
        if self._true is None:
            return  # a diagnosis outside the KB: no belief to shape with
        lp = self.belief.log_prior(case.age, case.sex)
        for concept, status in opening:
            lp = self.belief.log_update(lp, concept, status)
        self._logpost = lp
        self._potential = self._phi()

    def _phi(self) -> float:
        assert self.belief is not None and self._logpost is not None and self._true is not None
        lp = self._logpost
        top = lp.max()
        if not math.isfinite(top):
            return self.spec.info_gain * math.log2(MIN_P)
        log_z = top + math.log(float(np.exp(lp - top).sum()))
        p_true = math.exp(lp[self._true] - log_z)
        return self.spec.info_gain * math.log2(max(p_true, MIN_P))

    def step(
        self,
        answers: Iterable[tuple[str, str]] = (),
        severities: Iterable[str] = (),
        *,
        last: bool = False,
    ) -> float:
        """The shaping reward of one step: information gained from `answers`, minus violation
        penalties. On the `last` step the potential returns to zero (the sum stays constant)."""
        reward = self.spec.violations(severities) if self.spec.violation_penalty else 0.0
        if self._logpost is None:
            return reward
        assert self.belief is not None
        for concept, status in answers:
            self._logpost = self.belief.log_update(self._logpost, concept, status)
        new = 0.0 if last else self._phi()
        reward += new - self._potential
        self._potential = new
        return reward

    def terminal(self, guesses: Sequence[str], turns: int, case: Case) -> TerminalScore:
        """The terminal score (see `RewardSpec.terminal`)."""
        return self.spec.terminal(guesses, turns, case)
