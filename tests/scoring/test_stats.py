"""Intervals: Wilson for proportions (pinned to the formula and to published values), scipy's
BCa bootstrap for other means, never a zero-width interval, pass^k, differences and gaps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clinicgym.scoring.stats import (
    BCA_MAX_N,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    bootstrap_ci,
    ece,
    ece_ci,
    format_ci,
    gap_ci,
    mean_ci,
    mean_diff_ci,
    newcombe_diff_ci,
    pass_hat_k,
    pass_hat_k_ci,
    wilson_ci,
)

# ---- Wilson -------------------------------------------------------------------------------

# Reference numbers worked by hand from the Wilson formula with z = 1.959963984540054
# (z^2 = 3.841458820694124):
#   centre = (p + z^2/2n) / (1 + z^2/n),  half = z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
# 5/5:  1 + z^2/5 = 1.768291764; centre = 1.384145882 / 1.768291764 = 0.782758768;
#       half = 1.959963985 * 0.196000000 / 1.768291764 = 0.217241233 -> [0.565518, 1]
# 0/5:  centre = 0.384145882 / 1.768291764 = 0.217241233 = half      -> [0, 0.434482]
# 7/10: 1 + z^2/10 = 1.384145882; centre = 0.892072941 / 1.384145882 = 0.644493;
#       half = 1.959963985 * sqrt(0.021 + 0.009603647) / 1.384145882 = 0.247715
#                                                                     -> [0.396778, 0.892209]
WILSON_BY_HAND = {
    (5, 5): (0.565518, 1.0),
    (0, 5): (0.0, 0.434482),
    (7, 10): (0.396778, 0.892209),
}
# Published in Newcombe (1998), Stat Med 17:857-872, table I (method 3, the score interval)
WILSON_PUBLISHED = {
    (81, 263): (0.2553, 0.3662),
    (15, 148): (0.0624, 0.1605),
    (0, 20): (0.0, 0.1611),
    (1, 29): (0.0061, 0.1718),
}


@pytest.mark.parametrize(("x", "n"), list(WILSON_BY_HAND))
def test_wilson_matches_the_formula_worked_by_hand(x, n):
    assert wilson_ci(x, n) == pytest.approx(WILSON_BY_HAND[x, n], abs=1e-6)


@pytest.mark.parametrize(("x", "n"), list(WILSON_PUBLISHED))
def test_wilson_matches_published_values(x, n):
    assert wilson_ci(x, n) == pytest.approx(WILSON_PUBLISHED[x, n], abs=5e-5)


def test_wilson_rejects_impossible_counts():
    with pytest.raises(ValueError, match="n >= 1"):
        wilson_ci(0, 0)
    with pytest.raises(ValueError, match="successes"):
        wilson_ci(6, 5)


def test_a_metric_of_zeros_and_ones_gets_the_wilson_interval():
    five_of_five = mean_ci([1.0] * 5)
    assert five_of_five["method"] == "wilson" and five_of_five["n"] == 5
    assert five_of_five["mean"] == 1.0
    assert five_of_five["ci95"] == pytest.approx([0.565518, 1.0], abs=1e-6)
    assert mean_ci([0.0] * 5)["ci95"] == pytest.approx([0.0, 0.434482], abs=1e-6)
    seven = mean_ci([1.0] * 7 + [0.0] * 3)
    assert seven["mean"] == pytest.approx(0.7)
    assert seven["ci95"] == pytest.approx([0.396778, 0.892209], abs=1e-6)
    assert format_ci(five_of_five, pct=True) == "100% [57-100]"
    assert format_ci(mean_ci([0] * 5), pct=True) == "0% [0-43]"
    assert format_ci(seven, pct=True) == "70% [40-89]"


def test_proportion_can_be_forced_either_way():
    ones = [1.0] * 5
    assert mean_ci(ones, proportion=True)["method"] == "wilson"
    # 1 turn in every episode is not "5 of 5": no spread, so no interval
    assert mean_ci(ones, proportion=False) == {
        "mean": 1.0,
        "ci95": None,
        "n": 5,
        "method": "undefined",
    }
    assert mean_ci([1.0, 0.0, 1.0], proportion=False)["method"] == "bca"
    with pytest.raises(ValueError, match="all 0 or 1"):
        mean_ci([0.5, 1.0], proportion=True)


# ---- never zero width ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5, 30, 1000, 100_000])
def test_all_equal_proportions_never_get_a_zero_width_interval(n):
    for value in (0.0, 1.0):
        lo, hi = mean_ci([value] * n)["ci95"]
        assert hi - lo > 0 and lo <= value <= hi


def test_all_equal_non_binary_values_have_an_undefined_interval():
    m = mean_ci([3.0] * 5)
    assert m == {"mean": 3.0, "ci95": None, "n": 5, "method": "undefined"}
    assert mean_ci([0.25])["ci95"] is None  # one value: nothing to resample either
    assert format_ci(m) == "3.00 [undefined]"
    assert format_ci(mean_ci([0.4] * 9), pct=True) == "40% [undefined]"
    # the same values with one different: a real interval again
    assert mean_ci([3.0] * 5 + [4.0])["method"] == "bca"


def test_a_statistic_without_spread_has_an_undefined_interval():
    assert ece_ci([(1.0, 1.0)] * 5)["ci95"] is None  # every resample: ECE 0
    assert bootstrap_ci([7], lambda xs: float(xs[0]))["method"] == "undefined"


def test_printed_bounds_never_look_equal():
    assert format_ci(mean_ci([0.0] * 1000), pct=True) == "0% [0.0-0.4]"
    assert format_ci({"mean": 2.0, "ci95": [1.9991, 2.0004]}, spec=".2f") == "2.00 [1.999-2.000]"


# ---- the bootstrap: scipy, BCa ------------------------------------------------------------


def test_other_means_get_scipys_bca_interval():
    from scipy import stats

    x = [2.0, 3.0, 5.0, 4.0, 4.5, 1.0, 3.5]
    m = mean_ci(x)
    assert m["method"] == "bca" and m["mean"] == pytest.approx(23 / 7)
    ref = stats.bootstrap(
        (np.array(x),),
        np.mean,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="BCa",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
        batch=BOOTSTRAP_RESAMPLES,
    ).confidence_interval
    assert m["ci95"] == pytest.approx([ref.low, ref.high])
    assert m["ci95"][0] < m["mean"] < m["ci95"][1]


def test_interval_contains_the_mean_and_is_reproducible():
    x = list(np.random.default_rng(0).random(50))
    a, b = mean_ci(x), mean_ci(x)
    assert a == b and a["method"] == "bca"
    lo, hi = a["ci95"]
    assert lo < a["mean"] < hi


def test_large_samples_use_the_percentile_method():
    x = list(np.random.default_rng(2).random(BCA_MAX_N + 1))
    m = mean_ci(x)
    assert m["method"] == "percentile" and m["ci95"][0] < m["mean"] < m["ci95"][1]


def test_interval_shrinks_with_more_data():
    rng = np.random.default_rng(1)
    small = mean_ci(list(rng.integers(0, 2, 20)))
    big = mean_ci(list(rng.integers(0, 2, 2000)))
    assert big["ci95"][1] - big["ci95"][0] < small["ci95"][1] - small["ci95"][0]
    small = mean_ci(list(rng.normal(0, 1, 20)))
    big = mean_ci(list(rng.normal(0, 1, 500)))
    assert big["ci95"][1] - big["ci95"][0] < small["ci95"][1] - small["ci95"][0]


def test_missing_values_are_excluded_and_empty_is_none():
    assert mean_ci([None, 1.0, 0.0])["n"] == 2
    assert mean_ci([None, float("nan"), 2.0, 3.0])["n"] == 2
    assert mean_ci([None]) == {"mean": None, "ci95": None, "n": 0, "method": None}


def test_bootstrap_ci_of_any_statistic_is_seeded():
    data = list(range(40))
    a = bootstrap_ci(data, lambda xs: float(max(xs)))
    assert a == bootstrap_ci(data, lambda xs: float(max(xs))) and a["mean"] == 39
    assert a["ci95"][0] < a["ci95"][1] <= 39
    assert bootstrap_ci([], lambda xs: 1.0)["mean"] is None


def test_bootstrap_falls_back_to_percentile_where_bca_is_undefined():
    # the share of distinct items: 1 on the data and on every jackknife sample, so BCa's
    # acceleration is 0/0 and its bias correction infinite; the resamples still vary
    m = bootstrap_ci(list(range(20)), lambda xs: len(set(xs)) / len(xs))
    assert m["method"] == "percentile" and 0 < m["ci95"][0] < m["ci95"][1] < 1


def test_resamples_without_a_value_are_left_out():
    m = bootstrap_ci(list(range(20)), lambda xs: float(np.mean(xs)) if 0 in xs else None)
    assert m["mean"] == 9.5 and m["method"] == "percentile"
    assert m["ci95"][0] < 9.5 < m["ci95"][1]


# ---- pass^k -------------------------------------------------------------------------------


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


def test_pass_hat_k_on_a_small_hand_made_run():
    # case A passes 3 of 3 tries, case B 1 of 3:
    #   pass^1 = (3/3 + 1/3) / 2; pass^2 = (C(3,2)/C(3,2) + C(1,2)/C(3,2)) / 2 = (1 + 0) / 2;
    #   pass^3 = (1 + 0) / 2
    run = [(3, 3), (3, 1)]
    assert pass_hat_k(run, 1) == pytest.approx((1 + 1 / 3) / 2)
    assert pass_hat_k(run, 2) == pytest.approx(0.5)
    assert pass_hat_k(run, 3) == pytest.approx(0.5)
    # pass^2: each case is 0 or 1, so pass^2 is the share of cases passing: Wilson, 1 of 2
    two = pass_hat_k_ci(run, 2)
    assert two["method"] == "wilson" and two["n"] == 2
    assert two["ci95"] == pytest.approx(list(wilson_ci(1, 2)))
    # pass^1: a bootstrap over the two cases' values (1 and 1/3)
    one = pass_hat_k_ci(run, 1)
    assert one["mean"] == pytest.approx(2 / 3) and one["method"] in ("bca", "percentile")
    assert one["ci95"][0] < 2 / 3 < one["ci95"][1]
    # an agent that always passes: pass^3 is 100%, with an interval below it
    sure = pass_hat_k_ci([(3, 3)] * 5, 3)
    assert sure["mean"] == 1.0 and sure["ci95"][0] == pytest.approx(0.565518, abs=1e-6)


def test_pass_hat_k_falls_with_k_for_an_inconsistent_agent():
    flaky = [(5, 3)] * 20
    values = [pass_hat_k(flaky, k) for k in range(1, 6)]
    assert values == sorted(values, reverse=True) and values[-1] == 0.0
    ci = pass_hat_k_ci(flaky + [(5, 5)] * 20, 2)
    assert ci["ci95"][0] <= ci["mean"] <= ci["ci95"][1] and ci["n"] == 40


# ---- calibration --------------------------------------------------------------------------


def test_ece_zero_when_calibrated_and_large_when_overconfident():
    calibrated = [(0.75, 1.0)] * 3 + [(0.75, 0.0)]
    assert ece(calibrated) == pytest.approx(0.0)
    assert ece([(1.0, 0.0)] * 10) == pytest.approx(1.0)
    assert ece([(0.9, 1.0), (0.1, 0.0)]) == pytest.approx(0.1)
    assert ece([]) is None


@pytest.mark.parametrize("n", [2, 30, BCA_MAX_N + 5])
def test_ece_ci_is_the_bootstrap_of_ece_over_the_pairs(n):
    """ece_ci indexes arrays built once; its interval is bootstrap_ci's of `ece` exactly."""
    rng = np.random.default_rng(n)
    pairs = [(round(float(c), 2), float(rng.random() < c)) for c in rng.random(n)]
    assert ece_ci(pairs) == bootstrap_ci(pairs, ece)
    assert ece_ci([]) == bootstrap_ci([], ece)


# ---- differences and gaps -----------------------------------------------------------------


def test_newcombe_matches_the_published_example():
    # Newcombe (1998), Stat Med 17:873-890, example (a): 56/70 vs 48/80, 0.2 [0.0524, 0.3339]
    assert newcombe_diff_ci(48, 80, 56, 70) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    d = mean_diff_ci([1.0] * 48 + [0.0] * 32, [1.0] * 56 + [0.0] * 14, paired=False)
    assert d["method"] == "newcombe" and d["mean"] == pytest.approx(0.2)
    assert d["ci95"] == pytest.approx([0.0524, 0.3339], abs=5e-5)


def test_paired_differences_bootstrap_the_pairs():
    rng = np.random.default_rng(0)
    a = rng.normal(0.5, 0.1, 60)
    b = a + 0.2 + rng.normal(0, 0.05, 60)
    d = mean_diff_ci(list(a), list(b), paired=True)
    assert d["paired"] and d["method"] == "bca" and 0 < d["ci95"][0] < d["mean"] < d["ci95"][1]
    with pytest.raises(ValueError, match="equal lengths"):
        mean_diff_ci([1.0], [1.0, 2.0], paired=True)


def test_pairs_that_all_differ_alike_fall_back_to_independent_samples():
    same = [1.0, 0.0, 1.0, 1.0, 0.0]
    d = mean_diff_ci(same, same, paired=True)  # B - A is 0 in every pair
    assert d["mean"] == 0 and not d["paired"] and d["method"] == "newcombe"
    assert d["ci95"][0] < 0 < d["ci95"][1]
    shifted = mean_diff_ci([1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0], paired=True)
    assert shifted["mean"] == 1.0 and not shifted["paired"] and shifted["method"] == "bca"
    assert shifted["ci95"][0] < 1.0 < shifted["ci95"][1]
    flat = mean_diff_ci([2.0] * 4, [3.0] * 4, paired=True)  # nothing varies anywhere
    assert flat["mean"] == 1.0 and flat["ci95"] is None and flat["method"] == "undefined"
    assert mean_diff_ci([], [1.0], paired=False) is None


def test_gap_between_groups_has_an_interval():
    g = gap_ci({"a": [0.0] * 30, "b": [1.0] * 10 + [0.0] * 20})
    assert g["mean"] == pytest.approx(1 / 3) and g["highest"] == "b" and g["lowest"] == "a"
    assert g["method"] == "newcombe" and 0 < g["ci95"][0] < g["mean"] < g["ci95"][1]
    assert gap_ci({"a": [1.0]}) is None


def test_gap_of_groups_that_never_vary_is_not_zero_width():
    zero = gap_ci({"a": [0.0] * 10, "b": [0.0] * 12})
    assert zero["mean"] == 0 and zero["ci95"][0] < 0 < zero["ci95"][1]
    assert gap_ci({"a": [0.2] * 10, "b": [0.5] * 12})["ci95"] is None


def test_gap_interval_reaches_zero_when_groups_do_not_differ():
    rng = np.random.default_rng(3)
    same = {"a": list(rng.normal(1.0, 0.5, 40)), "b": list(rng.normal(1.0, 0.5, 40))}
    g = gap_ci(same)
    assert g["method"] == "bca" and g["mean"] > 0 and g["ci95"][0] < 0 < g["ci95"][1]


# ---- printing -----------------------------------------------------------------------------


def test_format_ci_prints_every_interval_alike():
    m = {"mean": 0.5, "ci95": [0.25, 0.75]}
    assert format_ci(m, pct=True) == "50% [25-75]"
    assert format_ci(m) == "0.50 [0.25-0.75]"
    assert format_ci(m, spec=".3g", sep=", ") == "0.5 [0.25, 0.75]"
    assert format_ci({"mean": -0.0, "ci95": [-1e-15, 0.1]}, spec=".1f") == "0.0 [0.0-0.1]"
    assert format_ci({"mean": 0.1, "ci95": [-0.2, 0.3]}, spec="+.2f") == "+0.10 [-0.20-+0.30]"
    assert format_ci(None) == format_ci({"mean": None, "ci95": [None, None]}) == "-"
    assert format_ci({"mean": 0.5, "ci95": None}) == "0.50 [undefined]"
