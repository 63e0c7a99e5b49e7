"""Run-level aggregates that are not the mean of one per-episode metric: calibration error over
episodes, pass^k over repeated seeds, and the episodes kept apart (infrastructure errors,
checks that could not decide). Each comes with a 95% interval (`scoring/stats.py`: a scipy
bootstrap over episodes or cases, Wilson's where the values resampled are all 0 or 1)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from clinicgym.scoring.stats import ece_ci, pass_hat_k_ci

PASS_METRIC = "diagnostic_accuracy"
"""What counts as a success for pass^k: a correct first-ranked diagnosis."""


def calibration(rows: pd.DataFrame) -> dict[str, Any]:
    """Expected calibration error of the stated confidence of the first-ranked diagnosis,
    over the completed episodes that stated one."""
    columns = ["confidence", "diagnostic_accuracy"]  # only these copied: a run's rows can be many
    ok = rows.loc[(rows["status"] == "completed") & rows["confidence"].notna(), columns]
    pairs = [
        (float(c), float(a))
        for c, a in zip(ok["confidence"], ok["diagnostic_accuracy"], strict=True)
        if not pd.isna(a)
    ]
    return {"ece": ece_ci(pairs), "with_confidence": len(pairs)}


def pass_k(rows: pd.DataFrame, metric: str = PASS_METRIC) -> dict[str, Any]:
    """pass^k for k = 1 .. the most repeats any case has (tau2-bench's definition; a success
    is `metric` == 1), over the completed episodes, each with an interval over cases
    (`pass_hat_k_ci`); {} without repeats."""
    ok = rows.loc[(rows["status"] == "completed") & rows[metric].notna(), ["case_id", metric]]
    if ok.empty:
        return {}
    by_case = (ok[metric] == 1).groupby(ok["case_id"], sort=True)  # one pass, not one per case
    per_case = list(zip(by_case.size().tolist(), by_case.sum().astype(int).tolist(), strict=True))
    most = max(n for n, _ in per_case)
    if most < 2:
        return {}
    return {f"pass^{k}": pass_hat_k_ci(per_case, k) for k in range(1, most + 1)}


def agent_aggregates(rows: pd.DataFrame) -> dict[str, Any]:
    """The run-level extras of one agent's rows of a score table."""
    out: dict[str, Any] = {
        "judge_errors": int((rows.get("judge_errors", pd.Series(dtype=float)) > 0).sum()),
        "calibration": calibration(rows),
    }
    pk = pass_k(rows)
    if pk:
        out["pass_k"] = {"success": PASS_METRIC, **pk}
    return out
