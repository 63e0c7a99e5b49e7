"""Bootstrap intervals: seeded, cover the mean, shrink with n, skip missing values."""

from __future__ import annotations

import numpy as np

from clinicgym.scoring.stats import mean_ci


def test_interval_contains_the_mean_and_is_reproducible():
    x = list(np.random.default_rng(0).random(50))
    a, b = mean_ci(x), mean_ci(x)
    assert a == b
    lo, hi = a["ci95"]
    assert lo < a["mean"] < hi


def test_interval_shrinks_with_more_data():
    rng = np.random.default_rng(1)
    small = mean_ci(list(rng.integers(0, 2, 20)))
    big = mean_ci(list(rng.integers(0, 2, 2000)))
    assert big["ci95"][1] - big["ci95"][0] < small["ci95"][1] - small["ci95"][0]


def test_none_values_are_excluded_and_empty_is_none():
    assert mean_ci([None, 1.0, 0.0])["n"] == 2
    assert mean_ci([None]) == {"mean": None, "ci95": None, "n": 0}
    assert mean_ci([1.0, 1.0]) == {"mean": 1.0, "ci95": [1.0, 1.0], "n": 2}


# ---- pass^k, ECE, gaps, any statistic ------------------------------------------------------

import math  # noqa: E402

import pytest  # noqa: E402

from clinicgym.scoring.stats import (  # noqa: E402
    bootstrap_ci,
    ece,
    gap_ci,
    pass_hat_k,
    pass_hat_k_ci,
)


def test_pass_hat_k_is_tau2_benchs_combinatorial_estimate():
    # task A: 4 trials, 3 successes; task B: 4 trials, 1 success
    tasks = [(4, 3), (4, 1)]
    assert pass_hat_k(tasks, 1) == pytest.approx((3 / 4 + 1 / 4) / 2)
    assert pass_hat_k(tasks, 2) == pytest.approx((math.comb(3, 2) / math.comb(4, 2) + 0) / 2)
    assert pass_hat_k(tasks, 4) == 0.0
    assert pass_hat_k([(4, 4), (2, 2)], 3) == 1.0  # the task with 2 trials is left out
    assert pass_hat_k([(2, 2)], 3) is None
    with pytest.raises(ValueError, match="k >= 1"):
        pass_hat_k(tasks, 0)


def test_pass_hat_k_falls_with_k_for_an_inconsistent_agent():
    flaky = [(5, 3)] * 20
    values = [pass_hat_k(flaky, k) for k in range(1, 6)]
    assert values == sorted(values, reverse=True) and values[-1] == 0.0
    ci = pass_hat_k_ci(flaky + [(5, 5)] * 20, 2)
    assert ci["ci95"][0] <= ci["mean"] <= ci["ci95"][1] and ci["n"] == 40


def test_ece_zero_when_calibrated_and_large_when_overconfident():
    calibrated = [(0.75, 1.0)] * 3 + [(0.75, 0.0)]
    assert ece(calibrated) == pytest.approx(0.0)
    assert ece([(1.0, 0.0)] * 10) == pytest.approx(1.0)
    assert ece([(0.9, 1.0), (0.1, 0.0)]) == pytest.approx(0.1)
    assert ece([]) is None


def test_gap_between_groups_has_an_interval():
    g = gap_ci({"a": [0.0] * 30, "b": [1.0] * 10 + [0.0] * 20})
    assert g["mean"] == pytest.approx(1 / 3) and g["highest"] == "b" and g["lowest"] == "a"
    assert 0 < g["ci95"][0] < g["mean"] < g["ci95"][1]
    assert gap_ci({"a": [1.0]}) is None


def test_gap_interval_reaches_zero_when_groups_do_not_differ():
    rng = np.random.default_rng(3)
    same = {"a": list(rng.normal(1.0, 0.5, 40)), "b": list(rng.normal(1.0, 0.5, 40))}
    g = gap_ci(same)
    assert g["mean"] > 0 and g["ci95"][0] < 0 < g["ci95"][1]


def test_bootstrap_ci_of_any_statistic_is_seeded():
    data = list(range(40))
    a = bootstrap_ci(data, lambda xs: float(max(xs)))
    assert a == bootstrap_ci(data, lambda xs: float(max(xs))) and a["mean"] == 39
    assert bootstrap_ci([], lambda xs: 1.0)["mean"] is None


def test_format_ci_prints_every_interval_alike():
    from clinicgym.scoring.stats import format_ci

    m = {"mean": 0.5, "ci95": [0.25, 0.75]}
    assert format_ci(m, pct=True) == "50% [25-75]"
    assert format_ci(m) == "0.50 [0.25-0.75]"
    assert format_ci(m, spec=".3g", sep=", ") == "0.5 [0.25, 0.75]"
    assert format_ci({"mean": -0.0, "ci95": [-1e-15, 0.1]}, spec=".1f") == "0.0 [0.0-0.1]"
    assert format_ci(None) == format_ci({"mean": None, "ci95": [None, None]}) == "-"
