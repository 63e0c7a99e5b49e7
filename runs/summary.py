"""Per-agent summaries of a run: episodes, errors, and every metric as mean with a 95% interval."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from clinicgym.envs.episode import Episode
from clinicgym.patients.case import Case
from clinicgym.scoring.metrics import METRICS, episode_metrics
from clinicgym.scoring.stats import mean_ci

SUMMARY_FORMAT_VERSION = 1


def score_table(episodes: Iterable[Episode], cases: dict[str, Case]) -> pd.DataFrame:
    """One row per episode: ids, status, condition and metrics (recomputed from the transcript)."""
    rows = []
    for ep in episodes:
        case = cases.get(ep.case_id)
        row: dict[str, Any] = {
            "episode_id": ep.episode_id,
            "agent": ep.agent_id,
            "case_id": ep.case_id,
            "repeat": ep.repeat,
            "status": ep.status,
            "termination": str(ep.termination),
            "condition": case.diagnosis.condition_id if case else None,
            "setting": case.setting if case else None,
        }
        metrics = episode_metrics(ep, case) if case is not None and ep.status == "completed" else {}
        for name in METRICS:
            row[name] = metrics.get(name)
        rows.append(row)
    columns = [
        "episode_id",
        "agent",
        "case_id",
        "repeat",
        "status",
        "termination",
        "condition",
        "setting",
        *METRICS,
    ]
    return pd.DataFrame(rows, columns=columns)


def summarise(table: pd.DataFrame, agents: list[str], run_id: str) -> dict[str, Any]:
    """The summary.json document: per agent spec, counts and metrics with bootstrap intervals.

    Errored episodes (infrastructure failures) are counted in `errors` and left out of every
    metric, so a flaky backend never shows up as a wrong diagnosis.
    """
    out: dict[str, Any] = {
        "format_version": SUMMARY_FORMAT_VERSION,
        "run_id": run_id,
        "metric_descriptions": METRICS,
        "agents": {},
    }
    for agent in agents:
        rows = table[table["agent"] == agent]
        ok = rows[rows["status"] == "completed"]
        metrics = {}
        for name in METRICS:
            values = [None if pd.isna(v) else float(v) for v in ok[name]]
            metrics[name] = mean_ci(values)
        out["agents"][agent] = {
            "episodes": len(rows),
            "completed": len(ok),
            "errors": int((rows["status"] == "error").sum()),
            "metrics": metrics,
        }
    return out
