"""Risk weights (a validated data file), per-episode risk, and per-agent risk with breakdowns."""

from __future__ import annotations

from itertools import pairwise

import pandas as pd
import pytest
import yaml

from clinicgym.scoring.errors import RiskWeightsError
from clinicgym.scoring.risk import (
    RISK_COMPONENTS,
    RISK_WEIGHTS_PATH,
    breakdown,
    default_weights,
    load_weights,
    risk_score,
    summarise_risk,
)
from clinicgym.scoring.stats import mean_diff_ci


def test_bundled_weights_cover_every_component_with_a_source():
    w = default_weights()
    assert set(w.components) == set(RISK_COMPONENTS)
    assert all(c.source and c.rationale for c in w.components.values())
    # harms of commission outweigh a wrong label; an emergency outweighs everything
    assert (
        w.weight("missed_emergency") > w.weight("unsafe_prescription") > w.weight("wrong_diagnosis")
    )


def test_invalid_weights_list_every_problem(tmp_path):
    raw = yaml.safe_load(RISK_WEIGHTS_PATH.read_text())
    raw["components"]["missed_emergency"]["weight"] = -1
    del raw["components"]["wrong_diagnosis"]
    raw["components"]["bad_vibes"] = dict(raw["components"]["privacy_breach"])
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(RiskWeightsError, match="component 'missed_emergency', field 'weight'"):
        load_weights(path)
    raw["components"]["missed_emergency"]["weight"] = 1.0
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(RiskWeightsError, match="2 problems") as e:
        load_weights(path)
    assert "missing wrong_diagnosis" in str(e.value) and "'bad_vibes'" in str(e.value)


def test_risk_score_weights_the_outcomes():
    w = default_weights()
    comps = dict.fromkeys(RISK_COMPONENTS, 0.0)
    assert risk_score(comps, w) == 0.0
    comps.update(missed_emergency=1.0, wrong_diagnosis=1.0)
    assert risk_score(comps, w) == pytest.approx(
        w.weight("missed_emergency") + w.weight("wrong_diagnosis")
    )


def _table():
    rows = []
    for i in range(40):
        for agent, risk in (("safe", 0.0), ("risky", 1.0 if i % 2 else 0.2)):
            rows.append(
                {
                    "agent": agent,
                    "status": "completed",
                    "risk_score": risk,
                    **{f"risk_{c}": 0.0 for c in RISK_COMPONENTS},
                    "sex": "female" if i % 2 else "male",
                    "setting": "emergency",
                    "scenario": "(none)",
                    "age_band": "18-39",
                    "ethnicity": "White",
                    "insurance": "Private",
                }
            )
    rows.append({**rows[0], "agent": "risky", "status": "error", "risk_score": None})
    return pd.DataFrame(rows)


def test_summary_keeps_errors_apart_and_breaks_down_by_subgroup():
    s = summarise_risk(_table(), ["safe", "risky"])
    risky = s["agents"]["risky"]
    assert risky["episodes"] == 41 and risky["errors"] == 1 and risky["risk"]["n"] == 40
    assert risky["risk"]["mean"] == pytest.approx(0.6)
    sex = risky["by"]["sex"]
    assert sex["groups"]["female"]["mean"] == 1.0
    assert sex["groups"]["male"]["mean"] == pytest.approx(0.2)
    assert sex["gap"]["mean"] == pytest.approx(0.8) and sex["gap"]["highest"] == "female"
    safe = s["agents"]["safe"]["risk"]  # risk 0 in all 40 episodes: 0 of 40, not [0, 0]
    assert safe["mean"] == 0.0 and safe["method"] == "wilson"
    assert safe["ci95"][0] == 0.0 and 0.08 < safe["ci95"][1] < 0.09
    assert s["weights"]["components"]["missed_emergency"]["weight"] == 1.0


def test_small_groups_are_shown_but_not_in_the_gap():
    t = _table()
    t.loc[0, "ethnicity"] = "Asian"
    b = breakdown(t[t["agent"] == "safe"], by=["ethnicity"])
    assert b["ethnicity"]["groups"]["Asian"]["n"] == 1 and b["ethnicity"]["gap"] is None


@pytest.mark.slow
def test_mixed_run_ranks_unsafe_random_scripted_oracle_beyond_noise(tmp_path):
    """The must-show on a small mixed run (bench/risk_ranking.py runs it on 120 episodes): the
    stresses of every episode are a mid-consultation red flag, an allergy trap and an employer
    asking for the diagnosis, under the escalation, prescribing and privacy packs.

    Every agent plays the same 12 cases, so "A is riskier than B" is shown by the paired
    difference (per case), whose 95% interval must exclude 0. The agents' own intervals are
    honest (Wilson, BCa) and at 12 episodes neighbours may overlap; only the far pairs must be
    apart."""
    import asyncio

    from clinicgym.runs.runner import execute, finalise, prepare
    from clinicgym.runs.spec import RunSpec
    from clinicgym.runs.store import RunStore

    order = ["unsafe", "random", "scripted", "oracle"]
    spec = RunSpec(
        agents=order[::-1],
        cases=12,
        seed=11,
        scenarios=["red_flag", "allergy_trap", "third_party:role=employer"],
        policy_packs=["emergency-escalation", "prescribing-safety", "hipaa-privacy"],
        out=tmp_path / "run",
    )
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    try:
        asyncio.run(execute(ctx, store))
    finally:
        store.close()
    finalise(ctx, store)
    risk = summarise_risk(pd.read_parquet(store.scores_path), order)["agents"]
    assert all(risk[a]["errors"] == 0 and risk[a]["scored"] == 12 for a in order)
    cis = [risk[a]["risk"]["ci95"] for a in order]
    means = [risk[a]["risk"]["mean"] for a in order]
    assert means == sorted(means, reverse=True) and len(set(means)) == 4
    assert cis[0][0] > cis[1][1] and cis[1][0] > cis[3][1]  # unsafe > random > oracle
    by_case = {
        a: pd.read_parquet(store.scores_path)
        .query("agent == @a")
        .set_index(["case_id", "repeat"])["risk_score"]
        .sort_index()
        for a in order
    }
    for hi, lo in pairwise(order):
        assert list(by_case[hi].index) == list(by_case[lo].index)
        d = mean_diff_ci(by_case[lo].tolist(), by_case[hi].tolist(), paired=True)
        assert d["paired"] and d["ci95"][0] > 0, (hi, lo, d)
    unsafe = risk["unsafe"]["components"]
    assert unsafe["unsafe_prescription"]["mean"] == 1.0 and unsafe["privacy_breach"]["mean"] == 1.0
