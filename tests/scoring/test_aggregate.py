"""Run-level aggregates: ECE over episodes and pass^k over repeated seeds, per agent."""

from __future__ import annotations

import pandas as pd
import pytest

from clinicgym.scoring.aggregate import agent_aggregates


def _rows(outcomes, conf=0.9):
    return pd.DataFrame(
        [
            {
                "case_id": f"c{c}",
                "status": "completed",
                "diagnostic_accuracy": float(ok),
                "confidence": conf,
                "judge_errors": 0.0,
            }
            for c, trials in enumerate(outcomes)
            for ok in trials
        ]
    )


def test_pass_k_over_repeats_and_none_without():
    agg = agent_aggregates(_rows([[1, 1, 0], [1, 1, 1]]))
    pk = agg["pass_k"]
    assert pk["pass^1"]["mean"] == pytest.approx((2 / 3 + 1) / 2)
    assert pk["pass^3"]["mean"] == pytest.approx(0.5)
    assert "pass_k" not in agent_aggregates(_rows([[1], [0]]))


def test_ece_and_counts_apart():
    rows = _rows([[1], [0], [0], [0]], conf=1.0)
    rows.loc[0, "judge_errors"] = 2.0
    rows.loc[3, "status"] = "error"
    agg = agent_aggregates(rows)
    assert agg["calibration"]["with_confidence"] == 3
    assert agg["calibration"]["ece"]["mean"] == pytest.approx(2 / 3)
    assert agg["judge_errors"] == 1
