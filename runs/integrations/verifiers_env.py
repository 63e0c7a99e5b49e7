"""A verifiers environment: `load_environment()` in the shape Medmarks' environments have.

`vf.load_environment("clinicgym.runs.integrations.verifiers_env", cases=10)` (or `vf-eval` with
that id) returns a `vf.MultiTurnEnv` whose dataset rows are clinicgym cases (the prompt is the
clinician's opening chat, the answer the case's diagnosis, kept out of the prompt), whose
environment turns are clinicgym's grounded patient and chart answering the model through
`ConsultationEnv`, with the policy monitors watching. The rubric's reward is clinicgym's
terminal reward (`scoring.metrics.episode_reward`: 1 for a correct first diagnosis, 0.5 within
the first three); `top1_correct`, `top3_correct`, `inquiry_coverage` and the monitors'
violations (in total and by severity) are weight-0 metrics. Written for verifiers' classic
`MultiTurnEnv` API (verifiers 0.3 keeps it beside its v1 stack).
"""

from __future__ import annotations

from typing import Any

from clinicgym.errors import require_extra

require_extra("verifiers", "the verifiers environment", "verifiers", "datasets")

import verifiers as vf  # noqa: E402
from datasets import Dataset  # noqa: E402

from clinicgym.patients.knowledge.kb import KnowledgeBase, default_kb  # noqa: E402
from clinicgym.runs.integrations.consultation import (  # noqa: E402
    DEFAULT_PACKS,
    Consultation,
    case_list,
    episode_seed,
)
from clinicgym.scoring.metrics import episode_reward  # noqa: E402

STATE_KEY = "clinicgym"
"""Where a rollout's `Consultation` lives in verifiers' per-rollout state."""


def _content(message: Any) -> str:
    """A chat message's text, whether verifiers hands a dict or a message object."""
    content = message.get("content") if isinstance(message, dict) else message.content
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


class ClinicGymEnv(vf.MultiTurnEnv):
    """clinicgym consultations as a verifiers multi-turn environment (module docstring)."""

    def __init__(
        self,
        cases: Any,
        *,
        run_seed: int = 0,
        kb: KnowledgeBase | None = None,
        max_turns: int = 20,
        policy_packs: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.cases = cases
        self.kb = kb or default_kb()
        self.consult_turns = max_turns
        self.policy_packs = list(DEFAULT_PACKS if policy_packs is None else policy_packs)
        rows = []
        for i, case in enumerate(cases):
            seed = episode_seed(run_seed, i)
            opening = self._consultation(i, seed).start()
            rows.append(
                {
                    "prompt": opening,
                    "answer": case.diagnosis.name,
                    "info": {"case_index": i, "seed": seed, "case_id": case.id},
                }
            )
        rubric = vf.Rubric(funcs=[self.diagnosis_reward], weights=[1.0])
        for metric in (
            self.top1_correct,
            self.top3_correct,
            self.inquiry_coverage,
            self.violations,
            self.violations_critical,
            self.violations_high,
        ):
            rubric.add_metric(metric)
        # the consultation ends itself (diagnosis, END or its turn budget); one spare turn
        super().__init__(
            dataset=Dataset.from_list(rows), rubric=rubric, max_turns=max_turns + 1, **kwargs
        )

    def _consultation(self, index: int, seed: int) -> Consultation:
        return Consultation(
            self.cases[index],
            seed=seed,
            kb=self.kb,
            max_turns=self.consult_turns,
            policy_packs=self.policy_packs,
            agent_id="verifiers",
        )

    async def setup_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """Start this rollout's consultation of the row's case (the same seed gives the same
        opening as the prompt)."""
        info = state.get("info") or {}
        play = self._consultation(int(info["case_index"]), int(info["seed"]))
        play.start()
        state[STATE_KEY] = play
        return state

    async def env_response(self, messages: Any, state: dict[str, Any], **kwargs: Any) -> list[Any]:
        """Play the model's last message; the patient's answer or the chart's result as the next
        user message. On the last turn it is also `final_env_response`, verifiers' stop signal."""
        play: Consultation = state[STATE_KEY]
        result = await play.turn(_content(messages[-1]))
        reply = [vf.UserMessage(content=result.text)]
        if result.done:
            state["final_env_response"] = reply
            state["clinicgym_result"] = {
                "diagnoses": play.diagnoses(),
                "metrics": play.metrics,
                "violations": play.violations(),
            }
        return reply

    @staticmethod
    def _finished(state: dict[str, Any]) -> Consultation | None:
        """The rollout's consultation, scored (an unfinished one ends at the turn reached)."""
        play: Consultation | None = state.get(STATE_KEY)
        if play is not None and not play.done:
            play.stop()
        return play

    async def diagnosis_reward(self, state: dict[str, Any], **kwargs: Any) -> float:
        """clinicgym's terminal reward: 1 for a correct first diagnosis, 0.5 within three."""
        play = self._finished(state)
        if play is None or play.episode is None:
            return 0.0
        return episode_reward(play.episode, play.case)

    def _metric(self, state: dict[str, Any], name: str) -> float:
        play = self._finished(state)
        value = play.metrics.get(name) if play is not None else None
        return float(value or 0.0)

    async def top1_correct(self, state: dict[str, Any], **kwargs: Any) -> float:
        """1 if the first-ranked diagnosis is the case's (clinicgym's diagnostic_accuracy)."""
        return self._metric(state, "diagnostic_accuracy")

    async def top3_correct(self, state: dict[str, Any], **kwargs: Any) -> float:
        """1 if the case's diagnosis is among the first three."""
        return self._metric(state, "top3_accuracy")

    async def inquiry_coverage(self, state: dict[str, Any], **kwargs: Any) -> float:
        """Share of must-ask facts elicited (0 where the case left none to ask: verifiers'
        metrics are numbers, where clinicgym says None)."""
        return self._metric(state, "inquiry_coverage")

    def _violations(self, state: dict[str, Any], severity: str = "total") -> float:
        play = self._finished(state)
        return float(play.violation_counts()[severity]) if play is not None else 0.0

    async def violations(self, state: dict[str, Any], **kwargs: Any) -> float:
        """Policy violations the monitors recorded in the episode."""
        return self._violations(state)

    async def violations_critical(self, state: dict[str, Any], **kwargs: Any) -> float:
        """Critical policy violations."""
        return self._violations(state, "critical")

    async def violations_high(self, state: dict[str, Any], **kwargs: Any) -> float:
        """High-severity policy violations."""
        return self._violations(state, "high")


def load_environment(
    cases: int = 10,
    seed: int = 0,
    suite: str | None = None,
    max_turns: int = 20,
    policy_packs: list[str] | None = None,
    **kwargs: Any,
) -> ClinicGymEnv:
    """The clinicgym consultation environment: `cases` generated from `seed`, or a frozen
    `suite` ('core@2', whose turn budget, packs and seed win); `policy_packs` default to the
    core suite's six ([] for none)."""
    kb = default_kb()
    played, recipe = case_list(cases, seed, suite, kb)
    return ClinicGymEnv(
        played,
        run_seed=int(recipe["seed"]),
        kb=kb,
        max_turns=int(recipe.get("max_turns", max_turns)),
        policy_packs=recipe.get("policy_packs", policy_packs) if suite else policy_packs,
        **kwargs,
    )
