"""The scripted baseline: systematic history taking with Bayesian updating over the KB.

It reasons with the generator's own model (patients/cases/posterior.py): the prior for the opening
complaint, setting, age and sex, and every answer's likelihood under each condition. Each turn it
takes the question, examination or test with the largest expected information gain (tests the
setting cannot do, or whose result would come back too late, are skipped), and diagnoses the top
three once one condition passes `stop_at`, its question budget is spent, or the turns run out.
It refers first when the leading condition needs escalation. It reads only what the env shows
(the structured mirror of each reply in `info["result"]`), never the case.

`budget` caps the questions, examinations and tests it takes (`scripted#budget=4`); budget 0 is
the `opening` baseline, which diagnoses from the opening line alone: the floor of inquiry.
"""

from __future__ import annotations

import math
from typing import Any

from clinicgym.envs.action import Ask, Diagnose, Examine, OrderTest, RankedDiagnosis, Refer
from clinicgym.patients.cases.posterior import STOP_AT, Belief, model_for, opening_of
from clinicgym.patients.knowledge.kb import KnowledgeBase


class ScriptedAgent:
    """Bayesian history taker over the KB; deterministic."""

    def __init__(
        self,
        kb: KnowledgeBase,
        agent_id: str = "scripted",
        *,
        budget: int | None = None,
        stop_at: float = STOP_AT,
    ) -> None:
        self.agent_id = agent_id
        self.kb = kb
        self.model = model_for(kb)
        self.budget = budget
        """Most information-gathering actions (ask, examine, order) before diagnosing."""
        self.stop_at = stop_at
        self.belief = Belief.start(self.model, 40, "female")
        self.taken = 0
        self.referred = False

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        age, sex, setting, complaint = opening_of(info)
        self.belief = Belief.start(self.model, age, sex, setting, complaint)
        self.taken, self.referred = 0, False
        answers = info.get("result", {}).get("answers", []) or []
        self._update({"answers": [a for a in answers if a.get("concept") != complaint]})

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> Any:
        if info.get("turn", 0) > 0:
            self._update(info.get("result", {}))
        turns_left = int(observation.get("turns_left", 1))
        (lead, p_lead), *_ = self.belief.top(1)
        esc = self.kb.conditions[lead].escalation
        if not self.referred and p_lead >= 0.5 and esc is not None:
            self.referred = True
            return Refer(to=esc.to, urgency="emergency" if esc.level == "emergency" else "urgent")
        spent = self.budget is not None and self.taken >= self.budget
        if p_lead >= self.stop_at or turns_left <= 1 or spent:
            return self._diagnose()
        choice = self.belief.best(turns_left)
        if choice is None:
            return self._diagnose()
        self.taken += 1
        if choice.kind == "ask":
            self.belief.mark_asked(choice.target)  # even if the patient hears another concept
            question = self.kb.findings[choice.target].question or choice.target
            return Ask(question=question)
        if choice.kind == "examine":
            self.belief.examined.add(choice.target)
            return Examine(system=choice.target)
        self.belief.mark_ordered(choice.target)  # pending until its result comes back
        return OrderTest(test=self.kb.tests[choice.target].name)

    # ---- inference ----------------------------------------------------------------------

    def _update(self, result: dict[str, Any]) -> None:
        answers = [*(result.get("answers") or []), *(result.get("arrived") or [])]
        target = result.get("target")
        if target in self.model.systems and result.get("ok", True):
            present = [a["concept"] for a in answers if a.get("status") == "affirmed"]
            self.belief.system(target, present)
            return
        for ans in answers:
            concept, status = ans.get("concept"), ans.get("status")
            if status in ("affirmed", "denied"):
                self.belief.finding(concept, status == "affirmed")
            elif status in ("abnormal", "normal"):
                self.belief.test(concept, status == "abnormal")

    def _diagnose(self) -> Diagnose:
        return Diagnose(
            diagnoses=[
                RankedDiagnosis(name=self.kb.conditions[cid].name, confidence=round(p, 3))
                for cid, p in self.belief.top(3)
            ]
        )


def parse_options(name: str, text: str) -> dict[str, Any]:
    """`budget=4,stop=0.95` -> {'budget': 4, 'stop_at': 0.95}; `budget=inf` is no budget."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"'{name}#{text}': option '{part}' needs a value (key=value)")
        if key == "budget":
            if value in ("inf", "none", "unlimited"):
                out["budget"] = None
            elif value.isdigit():
                out["budget"] = int(value)
            else:
                raise ValueError(f"'{name}#{text}': budget must be a whole number or 'inf'")
        elif key == "stop":
            try:
                stop = float(value)
            except ValueError:
                stop = math.nan
            if not 0 < stop <= 1:
                raise ValueError(f"'{name}#{text}': stop must be a probability in (0, 1]")
            out["stop_at"] = stop
        else:
            raise ValueError(f"'{name}#{text}': unknown option '{key}'; known: budget, stop")
    return out
