"""One consultation played as a chat by an outside harness: the env, the patient, the monitors
and the scorers of `clinicgym run`, with the clinician's turns supplied by the harness's model.

The system prompt, example exchanges and each observation are worded by the LLM clinician's
template (`agents/prompts/clinician.j2`), so a model sees the prompt it sees under
`clinicgym run`; the episode is scored by `scoring.metrics.episode_metrics`, and the policy
monitors' violations are kept as records. No harness is imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clinicgym.agents.llm_clinician import PromptTemplate
from clinicgym.envs.episode import Episode, TerminationReason
from clinicgym.envs.severity import SEVERITIES
from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.kb import KnowledgeBase, default_kb
from clinicgym.runs.factory import make_consultation_env
from clinicgym.scoring.metrics import episode_metrics, episode_reward

DEFAULT_PACKS = (
    "hipaa-privacy@2",
    "gdpr@2",
    "ai-transparency@2",
    "emergency-escalation@2",
    "mental-health-safety@2",
    "prescribing-safety@2",
)
"""The packs the core suite watches with (runs/suites.yaml), watched by default here too."""


def case_list(
    n: int = 3, seed: int = 0, suite: str | None = None, kb: KnowledgeBase | None = None
) -> tuple[Sequence[Case], dict[str, Any]]:
    """The cases to play and the recipe's settings: a frozen suite's ('core@2'), or `n` cases the
    KB sampler generates from `seed` as `clinicgym run --cases N --seed S` does."""
    kb = kb or default_kb()
    if suite:
        from clinicgym.runs.suite import lookup, version_cases

        name, definition, version = lookup(suite)
        recipe = version.recipe
        cases = list(version_cases(name, definition, version, kb))
        return cases, {
            "suite": f"{name}@{version.version}",
            "max_turns": recipe.max_turns,
            "policy_packs": list(recipe.policy_packs),
            "seed": recipe.run_seed,
        }
    from clinicgym.runs.casefile import GeneratedCases, sampler_recipe

    return GeneratedCases(kb, sampler_recipe(kb, seed), n), {"seed": seed}


def episode_seed(run_seed: int, case_index: int, repeat: int = 0) -> int:
    """The seed `clinicgym run` gives this case's episode, so both play it the same way."""
    from clinicgym.runs.runner import episode_seed as run_episode_seed

    return run_episode_seed(run_seed, case_index, repeat)


@dataclass
class TurnResult:
    """What one clinician turn led to: the next user message, and whether the episode ended."""

    text: str
    done: bool
    violations: list[dict[str, Any]]
    """The monitors' violations at this turn."""


class Consultation:
    """A consultation of one case as chat messages, for a harness that owns the model."""

    def __init__(
        self,
        case: Case,
        *,
        seed: int,
        kb: KnowledgeBase | None = None,
        max_turns: int = 20,
        policy_packs: Sequence[str] = DEFAULT_PACKS,
        template: PromptTemplate | None = None,
        episode_id: str | None = None,
        agent_id: str = "external",
    ) -> None:
        self.case = case
        self.seed = seed
        self.kb = kb or default_kb()
        self.policy_packs = list(policy_packs)
        self.template = template or PromptTemplate()
        self.env = make_consultation_env(
            cases=[case],
            kb=self.kb,
            max_turns=max_turns,
            reward_fn=episode_reward,
            policy_packs=self.policy_packs,
        )
        self.episode_id = episode_id or f"{agent_id}-{case.id}-{seed}"
        self.agent_id = agent_id
        self.episode: Episode | None = None
        self.metrics: dict[str, float | None] = {}
        self._context: dict[str, Any] = {}

    def start(self) -> list[dict[str, Any]]:
        """Reset the env on the case; the opening chat (system prompt, examples, first turn)."""
        options = {"case": self.case, "episode_id": self.episode_id, "agent_id": self.agent_id}
        obs, info = self.env.reset(seed=self.seed, options=options)
        patient = info.get("patient", {})
        self._context = {
            "patient": {
                "age": patient.get("age", obs.get("age")),
                "sex": patient.get("sex", "unknown"),
                "setting": patient.get("setting", "primary_care"),
            },
            "use_tools": False,
            "tools": [],
            "help": info.get("help", ""),
        }
        return [
            {"role": "system", "content": self.template.render("system", **self._context)},
            *self.template.examples(**self._context),
            {"role": "user", "content": self._turn_text(obs)},
        ]

    def _turn_text(self, obs: dict[str, Any]) -> str:
        return self.template.render(
            "turn",
            **self._context,
            observation=obs.get("text", ""),
            turn=int(obs.get("turn", 0)),
            turns_left=int(obs.get("turns_left", 0)),
        )

    @property
    def done(self) -> bool:
        """Whether the episode has ended (and been scored)."""
        return self.episode is not None

    async def turn(self, text: str) -> TurnResult:
        """Play the clinician's reply (any form the text env parses); the env's answer worded
        as the next user message. On the last turn the episode is scored."""
        if self.done:
            raise RuntimeError("the consultation is over")
        obs, _reward, terminated, truncated, info = await self.env.astep(text)
        if terminated or truncated:
            self._finish(info["episode"])
        found = [dict(v) for v in info.get("violations", [])]
        return TurnResult(self._turn_text(obs), self.done, found)

    def stop(self) -> None:
        """End an unfinished consultation (the harness ran out of turns or tokens): scored at
        the turn reached, with no diagnosis unless one was given."""
        if not self.done:
            self._finish(self.env.episode(TerminationReason.TURN_BUDGET))

    def _finish(self, episode: Episode) -> None:
        self.metrics = episode_metrics(
            episode, self.case, self.kb, monitored=bool(self.policy_packs)
        )
        episode.metrics = self.metrics
        self.episode = episode

    def violations(self) -> list[dict[str, Any]]:
        """The monitors' violations as plain records (rule, pack, severity, turn, message)."""
        if self.episode is None:
            return []
        return [v.model_dump(mode="json") for v in self.episode.violations]

    def violation_counts(self) -> dict[str, int]:
        """Violations by severity, plus their total."""
        counts = dict.fromkeys(SEVERITIES, 0)
        for v in self.violations():
            sev = str(v.get("severity", "low"))
            counts[sev] = counts.get(sev, 0) + 1
        return {**counts, "total": sum(counts.values())}

    def diagnoses(self) -> list[str]:
        """The clinician's ranked diagnoses, first first."""
        return [d.name for d in self.episode.outcome.diagnoses] if self.episode else []
