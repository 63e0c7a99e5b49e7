"""RewardSpec and ConsultationReward: the terminal score, its guards, and potential-based shaping."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from clinicgym.envs.action import RankedDiagnosis
from clinicgym.envs.episode import Episode, Outcome, TerminationReason
from clinicgym.scoring.reward import (
    MIN_P,
    SHAPED,
    ConsultationReward,
    RewardSpec,
    answers_from_result,
    belief_for,
)


@pytest.fixture(scope="module")
def case(sampler):
    return sampler.sample(0, 0)


def test_terminal_credit_by_rank(case):
    spec = RewardSpec(turn_cost=0.0)
    right, other = case.diagnosis.name, "Gout"
    assert spec.terminal([right], 5, case).total == 1.0
    assert spec.terminal([other, right], 5, case).total == 0.5
    assert spec.terminal([other, other, other, right], 5, case).diagnosis == 0.0
    assert spec.terminal([], 5, case).total == 0.0


def test_turn_guard_charges_every_turn(case):
    spec = RewardSpec(turn_cost=0.05)
    s = spec.terminal([case.diagnosis.name], 4, case)
    assert s.turn_penalty == pytest.approx(0.2)
    assert s.total == pytest.approx(0.8)


def test_differential_guard_charges_entries_beyond_the_allowance(case):
    spec = RewardSpec(turn_cost=0.0, max_differential=3, differential_cost=0.25)
    names = [case.diagnosis.name] + [f"other {i}" for i in range(9)]
    s = spec.terminal(names, 1, case)
    assert s.diagnosis == 1.0
    assert s.differential_penalty == pytest.approx(7 * 0.25)
    assert s.total < 0


def test_one_entry_listing_several_diagnoses_gets_nothing(case):
    spec = RewardSpec(turn_cost=0.0)
    assert spec.terminal([f"{case.diagnosis.name} / migraine"], 1, case).total == 0.0


def test_episode_reward_reads_the_outcome(case):
    ep = Episode(
        episode_id="e",
        case_id=case.id,
        agent_id="a",
        seed=0,
        termination=TerminationReason.DIAGNOSED,
        turns=3,
        outcome=Outcome(diagnoses=[RankedDiagnosis(name=case.diagnosis.name)]),
    )
    assert RewardSpec().episode_reward(ep, case) == pytest.approx(1.0 - 3 * 0.02)


def test_spec_refuses_unknown_severities():
    with pytest.raises(ValidationError, match=r"unknown severities \['urgent'\]"):
        RewardSpec(violation_penalty={"urgent": 1.0})
    with pytest.raises(ValidationError, match="turn_cost"):
        RewardSpec(turn_cost=-1)


def test_violation_penalties_by_severity(case, small_kb):
    r = ConsultationReward(RewardSpec(violation_penalty={"high": 0.3, "low": 0.1}), small_kb)
    r.reset(case)
    assert r.step((), ["high", "low", "medium"]) == pytest.approx(-0.4)


def _true_finding(case, kb, present=True):
    """A finding whose likelihood under the true condition is high (present) or low."""
    cond = kb.conditions[case.diagnosis.condition_id]
    links = sorted(cond.findings, key=lambda link: -link.p if present else link.p)
    return links[0].id


def test_information_gain_rewards_answers_that_point_to_the_truth(case, small_kb):
    r = ConsultationReward(RewardSpec(info_gain=1.0), small_kb)
    r.reset(case)
    fid = _true_finding(case, small_kb)
    gain = r.step([(fid, "affirmed")])
    assert gain > 0
    r.reset(case)
    assert r.step([(fid, "denied")]) < 0


def test_shaping_sums_to_a_constant_whatever_the_policy(case, small_kb):
    """Potential-based with the potential returned to zero at the end: flooding questions or
    answering anything gains nothing overall."""
    spec = RewardSpec(info_gain=0.5)
    concepts = list(belief_for(small_kb).columns)
    rng = np.random.default_rng(0)
    totals = []
    for n in (0, 1, 5, 20):
        r = ConsultationReward(spec, small_kb)
        r.reset(case)
        total = 0.0
        for _ in range(n):
            c = concepts[int(rng.integers(len(concepts)))]
            total += r.step([(c, "affirmed" if rng.random() < 0.5 else "denied")])
        total += r.step((), last=True)
        totals.append(total)
    assert np.allclose(totals, totals[0])
    r = ConsultationReward(spec, small_kb)
    r.reset(case)
    assert totals[0] == pytest.approx(-r._potential)
    assert 0.0 <= totals[0] <= -spec.info_gain * math.log2(MIN_P)


def test_normal_exam_denies_the_unmentioned_findings(small_kb):
    belief = belief_for(small_kb)
    system = next(iter(belief.systems))
    pairs = answers_from_result({"ok": True, "target": system, "answers": []}, belief)
    assert {c for c, _ in pairs} == set(belief.systems[system])
    assert {s for _, s in pairs} == {"denied"}


def test_shaped_preset_is_documented_and_valid():
    assert SHAPED.info_gain > 0
    assert set(SHAPED.violation_penalty) == {"low", "medium", "high", "critical"}


def test_info_gain_needs_the_kb():
    with pytest.raises(ValueError, match="needs the KB"):
        ConsultationReward(RewardSpec(info_gain=0.1))


def test_reward_prior_is_the_generator_models_prior(small_kb):
    """One demographic prior: the reward's is `KBModel.balanced_prior`, also for a record that
    does not say the patient's sex (weighed by age: the copy it replaces fell back to uniform)."""
    from clinicgym.patients.cases.posterior import model_for

    belief, model = belief_for(small_kb), model_for(small_kb)
    for age, sex in ((4, "female"), (40, "male"), (70, "unspecified")):
        expected = model.balanced_prior(age, sex)
        np.testing.assert_allclose(np.exp(belief.log_prior(age, sex)), expected, atol=1e-12)
    unspecified = np.exp(belief.log_prior(70, "unspecified"))
    assert not np.allclose(unspecified, 1 / len(unspecified))
