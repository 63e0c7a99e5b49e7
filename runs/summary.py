"""Per-agent summaries of a run: episodes, errors, and every metric as mean with a 95% interval."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from clinicgym.envs.episode import Episode
from clinicgym.patients.cases.case import Case
from clinicgym.runs.records import SUMMARY_FORMAT_VERSION
from clinicgym.scoring.metric_registry import MEASUREMENTS, METRICS
from clinicgym.scoring.metrics import SUBGROUP_COLUMNS, EpisodeScorer
from clinicgym.scoring.stats import mean_ci

if TYPE_CHECKING:  # pandas is imported when a table is built (finalise), not at start-up
    import pandas as pd


def score_table(
    episodes: Iterable[Episode], cases: Mapping[str, Case], scorer: EpisodeScorer | None = None
) -> pd.DataFrame:
    """One row per episode: ids, status, condition, subgroups and metrics (recomputed from the
    transcript against the case as played; `scorer` knows the run's KB and scenarios)."""
    table = ScoreTable(scorer)
    for ep in episodes:
        table.add(ep, cases.get(ep.case_id))
    return table.frame()


class ScoreTable:
    """`score_table`'s rows gathered one episode at a time, so a caller that walks the
    episodes case by case (finalise) scores each with the case it already holds."""

    def __init__(self, scorer: EpisodeScorer | None = None) -> None:
        if scorer is None:
            from clinicgym.patients.knowledge.kb import default_kb

            scorer = EpisodeScorer(default_kb())
        self.scorer = scorer
        self.columns = [
            "episode_id",
            "agent",
            "case_id",
            "repeat",
            "status",
            "termination",
            "condition",
            "setting",
            *SUBGROUP_COLUMNS,
            *METRICS,
            *USAGE,
        ]
        # gathered column by column, not as a dict per row: a run of 10,000 episodes held
        # 10,000 row dicts (~5 KB each) at once before the frame was built (bench/run_scale.py)
        self.data: dict[str, list[Any]] = {c: [] for c in self.columns}

    def add(self, ep: Episode, case: Case | None) -> None:
        """Score one episode against its case (None: a case the run does not hold)."""
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
        row.update(self.scorer.score(ep, case))
        row.update(episode_usage(ep))
        for c in self.columns:
            self.data[c].append(row.get(c, math.nan))

    def frame(self) -> pd.DataFrame:
        """The rows gathered so far as a DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.data, columns=self.columns)


USAGE = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "retries", "model_s")
"""Model usage per episode, summed over the clinician's turns from their Event meta."""


def episode_usage(ep: Episode) -> dict[str, float]:
    """Requests, tokens, retries and model wall time (s) an episode's clinician turns recorded."""
    out = dict.fromkeys(USAGE, 0.0)
    for e in ep.events:
        if e.actor != "clinician" or "prompt_tokens" not in e.meta:
            continue
        out["requests"] += 1
        for k in ("prompt_tokens", "completion_tokens", "cached_tokens", "retries"):
            out[k] += float(e.meta.get(k) or 0)
        out["model_s"] += float(e.meta.get("latency_s") or 0)
    return out


def usage_summary(rows: pd.DataFrame, price: tuple[float, float] | None) -> dict[str, Any]:
    """Totals over every episode (errored ones cost tokens too); `cost_usd` when a price in USD
    per million prompt and completion tokens is given."""
    total = {k: float(rows[k].sum()) if k in rows else 0.0 for k in USAGE}
    out: dict[str, Any] = {k: (round(v, 3) if k == "model_s" else int(v)) for k, v in total.items()}
    out["cost_usd"] = (
        round((total["prompt_tokens"] * price[0] + total["completion_tokens"] * price[1]) / 1e6, 6)
        if price is not None
        else None
    )
    return out


def summarise(
    table: pd.DataFrame,
    agents: list[str],
    run_id: str,
    prices: dict[str, tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """The summary.json document: per agent spec, counts and metrics with 95% intervals
    (`scoring/stats.mean_ci`: Wilson where every value is 0 or 1, except for `MEASUREMENTS`;
    a scipy bootstrap otherwise), and pass^k over repeats (`scoring/aggregate.pass_k`).

    Errored episodes (infrastructure failures) are counted in `errors` and left out of every
    metric, so a flaky backend never shows up as a wrong diagnosis. `repeats` is the number of
    repeats per case in the table (the run's `--repeats` once every episode is stored).
    """
    import pandas as pd

    from clinicgym.scoring.aggregate import agent_aggregates  # pandas: finalise only

    repeats = int(table["repeat"].max()) + 1 if len(table) else 1
    out: dict[str, Any] = {
        "format_version": SUMMARY_FORMAT_VERSION,
        "run_id": run_id,
        "repeats": repeats,
        "metric_descriptions": METRICS,
        "agents": {},
    }
    table = table.sort_values("episode_id", kind="stable")  # intervals must not depend on
    for agent in agents:  # the order in which concurrent episodes reached the store
        rows = table[table["agent"] == agent]
        ok = rows[rows["status"] == "completed"]
        metrics = {}
        for name in METRICS:
            values = [None if pd.isna(v) else float(v) for v in ok[name]]
            metrics[name] = mean_ci(values, proportion=False if name in MEASUREMENTS else None)
        out["agents"][agent] = {
            "episodes": len(rows),
            "completed": len(ok),
            "errors": int((rows["status"] == "error").sum()),
            "metrics": metrics,
            "usage": usage_summary(rows, (prices or {}).get(agent)),
            **agent_aggregates(rows),
        }
    return out
