"""Test stewardship: necessary versus unnecessary tests, and their cost."""

from __future__ import annotations

import pytest

from clinicgym.scoring.stewardship import stewardship


def test_linked_or_abnormal_tests_are_necessary_and_costs_add_up(sampler, play):
    kb = sampler.kb
    case = sampler.sample(0, 0)  # migraine: CT head and urine dipstick are not its tests
    pneumonia = next(
        c
        for c in (sampler.sample(0, i) for i in range(30))
        if c.diagnosis.condition_id == "community_acquired_pneumonia"
    )
    ep, c = play(pneumonia, ["ORDER: chest x-ray", "ORDER: urine dipstick", "DIAGNOSIS: x"])
    s = stewardship(ep, c, kb)
    assert s["tests_ordered"] == 2 and s["unnecessary_test_share"] == pytest.approx(0.5)
    cost = kb.tests["chest_xray"].cost + kb.tests["urine_dipstick"].cost
    assert s["test_cost_usd"] == pytest.approx(cost)
    ep, c = play(case, ["ORDER: unicorn scan", "DIAGNOSIS: x"])  # not on the chart
    s = stewardship(ep, c, kb)
    assert s == {"tests_ordered": 0.0, "unnecessary_test_share": None, "test_cost_usd": 0.0}
