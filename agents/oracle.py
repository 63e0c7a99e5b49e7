"""The oracle baseline: reads the case, elicits every must-ask fact, escalates, diagnoses right.

It proves that scoring can reach its ceiling (accuracy 1.0, full inquiry coverage, required
escalations met); a model under test never gets the case.
"""

from __future__ import annotations

from typing import Any

from clinicgym.envs.action import Ask, Diagnose, Examine, OrderTest, RankedDiagnosis, Refer
from clinicgym.patients.case import Case
from clinicgym.patients.kb import KnowledgeBase

_CATEGORY_QUESTIONS = {
    "medication": "What medications do you take?",
    "allergy": "Do you have any allergies to medicines?",
    "pmh": "Do you have any long-term medical conditions?",
    "family": "Does anything run in your family?",
}


class OracleAgent:
    """Plays a perfect consultation for the case it was shown."""

    def __init__(self, kb: KnowledgeBase, agent_id: str = "oracle") -> None:
        self.agent_id = agent_id
        self.kb = kb
        self.case: Case | None = None
        self.plan: list[Any] = []

    def read_case(self, case: Case) -> None:
        self.case = case

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        case = self.case
        if case is None or case.id != info.get("case_id"):
            raise RuntimeError("the oracle must be shown the case (read_case) before reset")
        opening = set(info.get("result", {}).get("revealed", []))
        plan: list[Any] = []
        seen: set[str] = set()
        for f in case.facts:
            if f.salience != "must_ask" or f.id in opening:
                continue
            if f.how_revealed == "examine" and f.system and f.system not in seen:
                seen.add(f.system)
                plan.append(Examine(system=f.system))
            elif f.how_revealed == "order" and f.concept not in seen:
                seen.add(f.concept)
                plan.append(OrderTest(test=f.concept))
            elif f.how_revealed == "ask" and f.concept not in seen:
                seen.add(f.concept)
                finding = self.kb.findings.get(f.concept)
                question = finding.question if finding and finding.question else None
                question = question or _CATEGORY_QUESTIONS.get(
                    f.category, f"Tell me about {f.text}"
                )
                plan.append(Ask(question=question))
        for req in case.required_actions:
            plan.insert(0, Refer(to=req.to, urgency=req.level))
        plan.append(Diagnose(diagnoses=[RankedDiagnosis(name=case.diagnosis.name, confidence=1.0)]))
        turns = int(observation.get("turns_left", len(plan)))
        if len(plan) > turns:  # keep the referral and the diagnosis inside the budget
            head = [a for a in plan if isinstance(a, Refer)]
            middle = [a for a in plan if not isinstance(a, Refer | Diagnose)]
            plan = head + middle[: max(turns - len(head) - 1, 0)] + [plan[-1]]
        self.plan = plan

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> Any:
        return self.plan.pop(0) if self.plan else self.plan_end()

    def plan_end(self) -> Diagnose:
        assert self.case is not None
        return Diagnose(diagnoses=[RankedDiagnosis(name=self.case.diagnosis.name, confidence=1.0)])
