"""summary.json from a score table: each metric's interval (Wilson for 0/1 outcomes, undefined
for measurements that never vary), the run's repeats and pass^k, and the printed table."""

from __future__ import annotations

import pandas as pd
import pytest
from rich.console import Console

from clinicgym.runs.console import summary_table
from clinicgym.runs.summary import SUMMARY_FORMAT_VERSION, summarise
from clinicgym.scoring.metric_registry import MEASUREMENTS, METRICS
from clinicgym.scoring.stats import wilson_ci


def _table(outcomes: dict[str, list[int]], agent: str = "a") -> pd.DataFrame:
    """One completed episode per try: case -> [1 if the try was right else 0, ...]."""
    rows = []
    for case, tries in outcomes.items():
        for r, ok in enumerate(tries):
            row = dict.fromkeys(METRICS, float("nan"))
            row.update(
                episode_id=f"{agent}-{case}-{r}",
                agent=agent,
                case_id=case,
                repeat=r,
                status="completed",
                diagnostic_accuracy=float(ok),
                top3_accuracy=1.0,
                turns=1.0,  # every episode took one turn: a measurement, not "n of n"
                judge_errors=0.0,
            )
            rows.append(row)
    return pd.DataFrame(rows)


def _printed(summary: dict) -> str:
    console = Console(width=200, record=True)
    console.print(summary_table(summary))
    return console.export_text()


def test_summary_has_pass_k_for_the_runs_repeats():
    # case A: 3 of 3 tries right; case B: 1 of 3
    s = summarise(_table({"A": [1, 1, 1], "B": [0, 1, 0]}), ["a"], "r")
    assert s["format_version"] == SUMMARY_FORMAT_VERSION == 2 and s["repeats"] == 3
    pk = s["agents"]["a"]["pass_k"]
    assert pk["success"] == "diagnostic_accuracy"
    assert pk["pass^1"]["mean"] == pytest.approx((1 + 1 / 3) / 2)
    assert pk["pass^2"]["mean"] == pytest.approx((1 + 0) / 2)
    assert pk["pass^3"]["mean"] == pytest.approx(0.5)
    assert pk["pass^3"]["n"] == 2 and pk["pass^3"]["ci95"] == pytest.approx(list(wilson_ci(1, 2)))
    text = _printed(s)
    assert "pass^3" in text and "50% [9-91]" in text


def test_one_repeat_has_no_pass_k_column():
    s = summarise(_table({c: [1] for c in "ABCDE"}), ["a"], "r")
    assert s["repeats"] == 1 and "pass_k" not in s["agents"]["a"]
    assert "pass^" not in _printed(s)


def test_metric_intervals_in_the_summary():
    s = summarise(_table({c: [1] for c in "ABCDE"}), ["a"], "r")
    m = s["agents"]["a"]["metrics"]
    acc = m["diagnostic_accuracy"]
    assert acc["method"] == "wilson" and acc["mean"] == 1.0
    assert acc["ci95"] == pytest.approx([0.565518, 1.0], abs=1e-6)  # 5 of 5: not [1, 1]
    assert "turns" in MEASUREMENTS
    assert m["turns"] == {"mean": 1.0, "ci95": None, "n": 5, "method": "undefined"}
    assert m["judge_errors"]["method"] == "wilson"  # a count of events, all 0: 0 of 5
    assert m["confidence"] == {"mean": None, "ci95": None, "n": 0, "method": None}
    text = _printed(s)
    assert "100% [57-100]" in text and "1.0 [undefined]" in text


def test_score_columns_frame_is_typed_as_lists_of_the_same_values_are():
    """Rows held in typed columns (runs/summary.py `ScoreColumns`, issue 22) make the frame a
    DataFrame of lists makes: floats with None as float64, None alone as object, a column
    that gets an int or a bool after floats as pandas types the mix; rows picked by `order`."""
    import math

    from clinicgym.runs.summary import SCORE_COLUMNS, ScoreColumns

    def row(i: int) -> tuple:
        values = {
            "episode_id": f"e{i}",
            "agent": "a",
            "repeat": i,
            "diagnostic_accuracy": [1.0, None, 0.0][i],  # floats and None
            "top3_accuracy": None,  # None alone
            "turns": [2.0, 3.0, 4][i],  # an int after floats
            "confidence": [0.5, math.nan, True][i],  # a bool after floats
            "brier": [None, 0.25, None][i],
        }
        return tuple(values.get(c, math.nan) for c in SCORE_COLUMNS)

    rows = [row(i) for i in range(3)]
    held = ScoreColumns()
    assert [held.append(r) for r in rows] == [0, 1, 2]
    for order in ([0, 1, 2], [2, 0], [1], []):
        lists = {c: [rows[i][k] for i in order] for k, c in enumerate(SCORE_COLUMNS)}
        expected = pd.DataFrame(lists, columns=list(SCORE_COLUMNS))
        got = held.frame(order)
        pd.testing.assert_frame_equal(got, expected)
    whole = held.frame()
    assert whole["top3_accuracy"].dtype == object and whole["brier"].dtype == float
