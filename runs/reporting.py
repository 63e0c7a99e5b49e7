"""The run report and the explainability probes of a stored run, as a library.

`clinicgym report` and `clinicgym probe` are thin commands over these; tests and scripts call
them directly. Progress is a callback, so nothing here draws on the terminal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinicgym.runs import layout

if TYPE_CHECKING:
    from clinicgym.patients.cases.case import Case
    from clinicgym.runs.spec import RunSpec
    from clinicgym.runs.store import StoredRun
    from clinicgym.scoring.probes.suite import ProbeResults


def run_probes_on(
    run: StoredRun,
    *,
    agents: list[str],
    cases: int,
    kinds: list[str],
    value: str,
    samples: int,
    permutations: int,
    attributes: list[str],
    header: bool,
    concurrency: int,
    on_agent: Callable[[str, int], Callable[..., None]] | None = None,
) -> ProbeResults:
    """Probe `agents` of a loaded run on its first `cases` cases; merge into its probes.json.
    `on_agent(agent, steps)` is called as each agent starts and returns the callback called
    once per probed case, with the probe kind and case id (the command line's progress)."""
    from clinicgym.scoring.errors import ProbeError
    from clinicgym.scoring.probes.suite import ProbeResults, new_results

    unknown = [a for a in agents if a not in run.agents]
    if unknown:
        raise ProbeError(f"agent(s) {unknown} are not in {run.root}; its agents: {run.agents}")
    spec = run.manifest.spec.run_spec()
    sample = list(run.cases.values())[:cases]
    if not sample:
        raise ProbeError(f"{run.root} holds no cases to probe")
    settings = {
        "cases": len(sample),
        "kinds": kinds,
        "value": value,
        "samples": samples,
        "permutations": permutations,
        "attributes": attributes,
        "header": header,
        "max_turns": spec.max_turns,
    }
    path = layout.RunPaths(run.root).probes
    results = ProbeResults.read(path) if path.exists() else new_results(run.root.name, settings)
    results.settings = settings
    asyncio.run(
        _probe_agents(
            run,
            results,
            sample,
            spec,
            agents=agents,
            kinds=kinds,
            value=value,
            samples=samples,
            permutations=permutations,
            attributes=attributes,
            header=header,
            concurrency=concurrency,
            on_agent=on_agent,
        )
    )
    results.write(path)
    return results


async def _probe_agents(
    run: StoredRun,
    results: ProbeResults,
    sample: list[Case],
    spec: RunSpec,
    *,
    agents: list[str],
    kinds: list[str],
    value: str,
    samples: int,
    permutations: int,
    attributes: list[str],
    header: bool,
    concurrency: int,
    on_agent: Callable[[str, int], Callable[..., None]] | None,
) -> None:
    """Probe each agent in turn into `results`, closing its factory after, reporting progress."""
    from clinicgym.agents.registry import make_agent_factory
    from clinicgym.scoring.probes.suite import run_probes

    steps = len(agents) * (len(sample) * ("attribution" in kinds or "self_explanation" in kinds))
    steps += len(agents) * ("counterfactual" in kinds)
    for agent in agents:
        factory = make_agent_factory(agent, run.kb, spec.agent_options())
        advance = on_agent(agent, steps // max(len(agents), 1)) if on_agent else None
        try:
            results.agents[agent] = await run_probes(
                factory,
                sample,
                run.kb,
                agent=agent,
                kinds=kinds,
                value=value,  # type: ignore[arg-type]
                samples=samples,
                permutations=permutations,
                attributes=attributes,
                header=header,
                max_turns=spec.max_turns,
                seed=spec.seed,
                concurrency=concurrency,
                on_case=advance,
            )
        finally:
            if hasattr(factory, "aclose"):
                await factory.aclose()


def build_run_report(run: StoredRun, *, weights: Path | None = None) -> Any:
    """Score a loaded run and assemble its report (probes.json included if present)."""
    from clinicgym.runs.summary import score_table, summarise
    from clinicgym.scoring.metrics import EpisodeScorer
    from clinicgym.scoring.probes.suite import ProbeResults
    from clinicgym.scoring.report import build_report
    from clinicgym.scoring.risk import load_weights, summarise_risk

    w = load_weights(weights) if weights else None
    packs = run.manifest.policy_packs
    scorer = EpisodeScorer(run.kb, run.scenarios, monitored=bool(packs), weights=w)
    table = score_table(run.episodes, run.cases, scorer)
    prices = run.manifest.spec.price_table()
    summary = summarise(table, run.agents, run.root.name, prices)
    risk = summarise_risk(table, run.agents, w)
    compliance = _compliance(run) if packs else None
    path = layout.RunPaths(run.root).probes
    probes = ProbeResults.read(path) if path.exists() else None
    notes = list(run.notes)
    if run.scenarios:
        notes.append(
            f"Scenarios {run.scenarios} were applied; every episode is scored against its case "
            "as played. Probes replay the stored cases without scenarios."
        )
    return build_report(
        run_id=run.root.name,
        agents=run.agents,
        summary=summary,
        risk=risk,
        episodes=run.episodes,
        cases=run.cases,
        scorer=scorer,
        compliance=compliance,
        probes=probes,
        notes=notes,
    )


def _compliance(run: StoredRun) -> dict[str, Any]:
    """The run's live compliance: per agent pass rate, failures and undecided episodes."""
    from clinicgym.policies import load_packs
    from clinicgym.policies.rescore import live_verdicts
    from clinicgym.scoring.compliance import build_report as compliance_report

    # a pack the run named by file (not in the library) is reloaded from that file
    packs = load_packs([r.source() for r in run.manifest.policy_packs])
    verdicts = live_verdicts(run.episodes, run.cases, run.scenarios, run.kb)
    rep = compliance_report(verdicts, packs, run_id=run.root.name, mode="live", agents=run.agents)
    return {
        "packs": [p.ref for p in packs],
        "agents": {
            a: {
                "pass_rate": c.pass_rate,
                "failed": c.failed,
                "errors": c.errors,
                "skipped": c.skipped,
                "violations": c.violations,
            }
            for a, c in rep.agents.items()
        },
    }
