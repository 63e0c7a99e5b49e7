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
