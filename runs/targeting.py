"""A run's failures as the table targeted cohort generation reads.

`clinicgym cohort generate --target RUN_DIR` leans the next cohort towards where a model failed.
Reading the run store belongs here, in `runs`: `patients` never reads a run, so the table built
here is handed to `patients.cohorts.job.generate_cohort` (which passes it to
`patients.cohorts.targeting.target_mix`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def failures_from_run(
    run_dir: Path, agent: str | None = None, metric: str = "diagnostic_accuracy"
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per completed episode of `agent` in a run: condition, subgroup, findings, and
    `failed` = 1 - metric (top-1 diagnostic accuracy by default)."""
    import pandas as pd

    from clinicgym.patients.errors import SynthesisError
    from clinicgym.patients.knowledge.bands import age_band
    from clinicgym.runs.store import RunStore
    from clinicgym.runs.summary import score_table

    store = RunStore(run_dir)
    manifest = store.manifest()
    cases = {c.id: c for c in store.cases()}
    scores = score_table(store.iter_episodes(), cases)
    agents = list(manifest.spec.agents)
    if agent is None:
        if len(agents) > 1:
            raise SynthesisError(f"{run_dir} holds agents {agents}; pick one with --target-agent")
        agent = agents[0]
    elif agent not in agents:
        raise SynthesisError(f"--target-agent '{agent}' is not in {run_dir}; agents: {agents}")
    if metric not in scores.columns:
        raise SynthesisError(f"--target-metric '{metric}' is not a run metric")
    rows = []
    for _, r in scores[(scores["agent"] == agent) & (scores["status"] == "completed")].iterrows():
        case = cases[r["case_id"]]
        if case.diagnosis.condition_id is None or pd.isna(r[metric]):
            continue
        present = [
            f.concept
            for f in case.facts
            if f.source and f.source.startswith("kb:findings.") and f.present
        ]
        absent = [
            f.concept
            for f in case.facts
            if f.source and f.source.startswith("kb:findings.") and not f.present
        ]
        rows.append(
            {
                "condition_id": case.diagnosis.condition_id,
                "sex": case.sex,
                "age_band": age_band(case.age),
                "ethnicity": case.extra.get("ethnicity"),
                "failed": 1.0 - float(r[metric]),
                "present": present,
                "absent": absent,
            }
        )
    info = {"run": str(run_dir), "agent": agent, "metric": metric, "episodes": len(rows)}
    return pd.DataFrame(rows), info
