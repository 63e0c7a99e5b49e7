"""A run's policy, set up once: packs loaded, scenarios validated and the judge checked before any
episode, then a fresh monitor and fresh scenarios for each episode.

The registered env ids (`runs/factory.py`) and `clinicgym run` (`runs/runner.py`) both build
their policy here, so an env made with `gymnasium.make` refuses what a run refuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from clinicgym.patients.knowledge.kb import KnowledgeBase
from clinicgym.policies.check import Judge
from clinicgym.policies.library import load_packs
from clinicgym.policies.monitor import PolicyMonitor, build_monitor, require_judge
from clinicgym.policies.pack import PolicyPack
from clinicgym.policies.scenario import BaseScenario, make_scenarios, validate_specs


@dataclass(frozen=True)
class PolicySetup:
    """Packs by reference loaded, scenario specs validated against the KB, and the judge that
    the packs' judge checks need; `monitor()` and `scenarios()` build one episode's."""

    kb: KnowledgeBase
    packs: list[PolicyPack] = field(default_factory=list)
    scenario_specs: list[str] = field(default_factory=list)
    judge: Judge | None = None

    @classmethod
    def load(
        cls,
        packs: Sequence[str],
        scenarios: Sequence[str],
        kb: KnowledgeBase,
        judge: Judge | None = None,
    ) -> PolicySetup:
        """Load `packs` ("hipaa-privacy@2", ...) and check `scenarios` and `judge`: a bad pack,
        an unknown scenario or a judge check without a judge is an error here, not mid-run."""
        loaded = load_packs(list(packs))
        validate_specs(list(scenarios), kb)
        require_judge(loaded, judge)
        return cls(kb, loaded, list(scenarios), judge)

    def monitor(self) -> PolicyMonitor | None:
        """A fresh monitor for one episode (None without packs)."""
        return build_monitor(self.packs, self.kb, judge=self.judge)

    def scenarios(self) -> list[BaseScenario]:
        """Fresh scenario objects for one episode."""
        return make_scenarios(self.scenario_specs, self.kb)
