"""Running the probes for one agent over a sample of cases, and their record (`probes.json`).

`run_probes` plays fact attribution and, on the same cases, self-explanation faithfulness, and
the counterfactual flips; `ProbeResults` holds them with summaries whose means carry bootstrap
intervals, and every probe that failed (agent or backend errors) counted apart.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.kb import KnowledgeBase
from clinicgym.scoring.errors import ProbeError
from clinicgym.scoring.probes._play import DEFAULT_MAX_TURNS, AgentFactory
from clinicgym.scoring.probes.attribution import (
    DEFAULT_LIME_SAMPLES,
    DEFAULT_PERMUTATIONS,
    Attribution,
    ValueMode,
    attribute,
)
from clinicgym.scoring.probes.counterfactual import ATTRIBUTES, Counterfactual, counterfactual
from clinicgym.scoring.probes.self_explanation import SelfExplanation, self_explanation
from clinicgym.scoring.stats import mean_ci

PROBES_FORMAT_VERSION = 1
PROBE_KINDS = ("attribution", "self_explanation", "counterfactual")


class AgentProbes(BaseModel):
    """Every probe of one agent."""

    agent: str
    attribution: list[Attribution] = []
    self_explanation: list[SelfExplanation] = []
    counterfactual: Counterfactual | None = None
    summary: dict[str, Any] = {}


class ProbeResults(BaseModel):
    """The probes of a run (`probes.json` in the run directory)."""

    format_version: int = PROBES_FORMAT_VERSION
    run_id: str = ""
    created: str = ""
    settings: dict[str, Any] = {}
    agents: dict[str, AgentProbes] = {}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=1) + "\n", "utf-8")

    @classmethod
    def read(cls, path: Path) -> ProbeResults:
        return cls.model_validate_json(path.read_text(encoding="utf-8"))


def summarise_probes(p: AgentProbes) -> dict[str, Any]:
    """Means with intervals over cases; counts of each status (errors apart)."""
    out: dict[str, Any] = {}
    if p.attribution:
        ok = [a for a in p.attribution if a.status == "ok"]
        out["attribution"] = {
            "cases": len(p.attribution),
            "ok": len(ok),
            "errors": sum(a.status == "error" for a in p.attribution),
            "no_decision": sum(a.status == "no_decision" for a in p.attribution),
            "alignment": mean_ci([a.alignment for a in ok], proportion=False),  # Spearman's rho
            "kb_mass": mean_ci([a.kb_mass for a in ok]),
            "top_agreement": mean_ci([a.top_agreement for a in ok]),
        }
    if p.self_explanation:
        xs = p.self_explanation
        out["self_explanation"] = {
            "cases": len(xs),
            **{
                s: sum(x.status == s for x in xs)
                for s in ("ok", "error", "no_explanation", "unmapped", "no_attribution")
            },
            "faithfulness": mean_ci([x.faithfulness for x in xs if x.status == "ok"]),
            "precision": mean_ci([x.precision for x in xs if x.status == "ok"]),
        }
    if p.counterfactual is not None:
        out["counterfactual"] = {
            k: {kk: vv for kk, vv in v.items() if kk != "by_value"}
            for k, v in p.counterfactual.summary.items()
        }
    return out


async def _probe_case(
    factory: AgentFactory,
    case: Case,
    kb: KnowledgeBase,
    out: AgentProbes,
    kinds: Sequence[str],
    *,
    value: ValueMode,
    samples: int,
    permutations: int,
    lime_samples: int,
    seed: int,
    max_turns: int,
    concurrency: int,
) -> None:
    """Attribute one case's decision and test the agent's own explanation on it, as kinds asks."""
    a = await attribute(
        factory,
        case,
        kb,
        agent=out.agent,
        value=value,
        samples=samples,
        permutations=permutations,
        lime_samples=lime_samples,
        seed=seed,
        max_turns=max_turns,
        concurrency=concurrency,
    )
    if "attribution" in kinds:
        out.attribution.append(a)
    if "self_explanation" in kinds:
        out.self_explanation.append(
            await self_explanation(
                factory, case, kb, a, agent=out.agent, seed=seed, max_turns=max_turns
            )
        )


async def run_probes(
    factory: AgentFactory,
    cases: Sequence[Case],
    kb: KnowledgeBase,
    *,
    agent: str,
    kinds: Sequence[str] = PROBE_KINDS,
    value: ValueMode = "confidence",
    samples: int = 1,
    permutations: int = DEFAULT_PERMUTATIONS,
    lime_samples: int = DEFAULT_LIME_SAMPLES,
    attributes: Sequence[str] = ATTRIBUTES,
    header: bool = True,
    seed: int = 0,
    max_turns: int = DEFAULT_MAX_TURNS,
    concurrency: int = 4,
    on_case: Callable[[str, str], None] | None = None,
) -> AgentProbes:
    """The requested probes of one agent on these cases (see each probe's module)."""
    bad = [k for k in kinds if k not in PROBE_KINDS]
    if bad:
        raise ProbeError(f"unknown probe(s) {bad}; known: {', '.join(PROBE_KINDS)}")
    if not cases:
        raise ProbeError("no cases to probe")
    out = AgentProbes(agent=agent)
    if "attribution" in kinds or "self_explanation" in kinds:
        for i, case in enumerate(cases):
            await _probe_case(
                factory,
                case,
                kb,
                out,
                kinds,
                value=value,
                samples=samples,
                permutations=permutations,
                lime_samples=lime_samples,
                seed=seed + i,
                max_turns=max_turns,
                concurrency=concurrency,
            )
            if on_case is not None:
                on_case("attribution", case.id)
    if "counterfactual" in kinds:
        out.counterfactual = await counterfactual(
            factory,
            cases,
            kb,
            agent=agent,
            attributes=attributes,
            header=header,
            seed=seed,
            max_turns=max_turns,
            concurrency=concurrency,
        )
        if on_case is not None:
            on_case("counterfactual", "all")
    out.summary = summarise_probes(out)
    return out


def new_results(run_id: str, settings: dict[str, Any]) -> ProbeResults:
    """An empty record stamped with the time and the settings used."""
    return ProbeResults(
        run_id=run_id,
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        settings=settings,
    )
