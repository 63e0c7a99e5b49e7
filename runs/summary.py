"""Per-agent summaries of a run: episodes, errors, and every metric as mean with a 95% interval."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
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


USAGE = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "retries", "model_s")
"""Model usage per episode, summed over the clinician's turns from their Event meta."""


SCORE_COLUMNS: tuple[str, ...] = (
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
)
"""The score table's columns, in order (scores.parquet)."""


class ScoreColumns:
    """Score-table rows held column by column as they arrive: floats (and None) in typed arrays,
    other values in lists sharing each column's repeated strings. A row costs under 1 KB, not
    ~60 Python objects (2.4 KB): a run of 10,000 episodes holds them all until finalise."""

    def __init__(self) -> None:
        self.floats: dict[str, array[float]] = {c: array("d") for c in SCORE_COLUMNS}
        self.nones: dict[str, bytearray] = {c: bytearray() for c in SCORE_COLUMNS}
        """1 where a float column's value was None (held as NaN in `floats`)."""
        self.lists: dict[str, list[Any]] = {}
        """Columns that got a value neither float nor None, as lists of the values."""
        self.shared: dict[str, dict[str, str]] = {c: {} for c in SCORE_COLUMNS}
        """Each column's strings, one object per distinct value (agent, status: a few)."""
        self.rows = 0

    def __len__(self) -> int:
        return self.rows

    def append(self, row: Sequence[Any]) -> int:
        """Add one row (values in `SCORE_COLUMNS` order); its index."""
        for name, value in zip(SCORE_COLUMNS, row, strict=True):
            if name in self.floats:
                if value is None or isinstance(value, float):
                    self.floats[name].append(math.nan if value is None else value)
                    self.nones[name].append(value is None)
                    continue
                floats, nones = self.floats.pop(name), self.nones.pop(name)
                self.lists[name] = [None if n else v for v, n in zip(floats, nones, strict=True)]
            if isinstance(value, str):
                value = self.shared[name].setdefault(value, value)
            self.lists[name].append(value)
        self.rows += 1
        return self.rows - 1

    def frame(self, order: Sequence[int] | None = None) -> pd.DataFrame:
        """The rows (those at `order`, in that order, if given) as a DataFrame, each column
        typed as pandas types a list of the same values: floats and None as float64 with NaN
        for None, None alone as object."""
        import numpy as np
        import pandas as pd

        rows = np.asarray(range(self.rows) if order is None else order, dtype=np.intp)
        data: dict[str, Any] = {}
        for name in SCORE_COLUMNS:
            if name in self.lists:
                data[name] = [self.lists[name][i] for i in rows.tolist()]
            elif rows.size == 0 or np.frombuffer(self.nones[name], dtype=bool)[rows].all():
                data[name] = [None] * rows.size
            else:  # indexing copies: the array may grow on
                data[name] = np.frombuffer(self.floats[name])[rows]
        # copy=False: the frame takes these fresh arrays as they are, one block a column; a
        # consolidating copy left ~10 MB of freed heap behind at 10,000 rows (bench/run_scale.py)
        return pd.DataFrame(data, columns=list(SCORE_COLUMNS), copy=False)


class ScoreTable:
    """`score_table`'s rows gathered one episode at a time, so a caller that walks the
    episodes case by case (finalise) scores each with the case it already holds; into `rows`
    if given (finalise: the rows scored during play, then those it scores itself)."""

    def __init__(
        self, scorer: EpisodeScorer | None = None, rows: ScoreColumns | None = None
    ) -> None:
        if scorer is None:
            from clinicgym.patients.knowledge.kb import default_kb

            scorer = EpisodeScorer(default_kb())
        self.scorer = scorer
        self.rows = ScoreColumns() if rows is None else rows

    def row(self, ep: Episode, case: Case | None) -> tuple[Any, ...]:
        """One episode scored against its case (None: a case the run does not hold), as a row
        in `SCORE_COLUMNS` order."""
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
        return tuple(row.get(c, math.nan) for c in SCORE_COLUMNS)

    def add(self, ep: Episode, case: Case | None) -> int:
        """Score one episode against its case and add its row; the row's index in `rows`."""
        return self.rows.append(self.row(ep, case))

    def frame(self, order: Sequence[int] | None = None) -> pd.DataFrame:
        """The rows gathered so far (those at `order`, in that order) as a DataFrame."""
        return self.rows.frame(order)


class ScoredRows:
    """Rows of the score table computed where their episodes were played, held for finalise by
    episode id in typed columns (`ScoreColumns`), with the episodes' live verdicts."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Hold none."""
        self.table = ScoreColumns()
        self.index: dict[str, int] = {}
        self.verdicts: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.index)

    def keep(self, episode_id: str, row: Sequence[Any], verdict: Any = None) -> None:
        """Hold an episode's row (in `SCORE_COLUMNS` order) and its live verdict, if any."""
        self.index[episode_id] = self.table.append(row)
        if verdict is not None:
            self.verdicts[episode_id] = verdict

    def pop(self, episode_id: str) -> tuple[int, Any] | None:
        """The held episode's row index in `table` and its verdict, no longer held by id; None
        if it is not held."""
        index = self.index.pop(episode_id, None)
        return None if index is None else (index, self.verdicts.pop(episode_id, None))


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
        mine = table["agent"] == agent
        rows = table if mine.all() else table[mine]  # one agent's: no copy of the whole table
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
