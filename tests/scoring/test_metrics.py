"""Episode metrics against a case: accuracy, top-3 and inquiry coverage."""

from __future__ import annotations

from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.scoring.metrics import METRICS, episode_metrics, episode_reward


def _play(sampler, actions, seed=0):
    env = ConsultationEnv(sampler)
    _, info = env.reset(seed=seed)
    for a in actions:
        *_, term, trunc, info = env.step(a)
        if term or trunc:
            return info["episode"], env.case
    raise AssertionError("episode did not end")


def test_every_metric_is_described():
    assert all(METRICS[k] for k in METRICS)


def test_correct_and_top3(sampler):
    case = sampler.sample(0, 0)
    ep, case = _play(sampler, [f"DIAGNOSIS: {case.diagnosis.name}"])
    m = episode_metrics(ep, case)
    assert m["diagnostic_accuracy"] == 1.0 and m["top3_accuracy"] == 1.0
    assert episode_reward(ep, case) == 1.0
    ep, case = _play(sampler, [f"DIAGNOSIS: flu; cold; {case.diagnosis.code}"])
    m = episode_metrics(ep, case)
    assert m["diagnostic_accuracy"] == 0.0 and m["top3_accuracy"] == 1.0
    assert episode_reward(ep, case) == 0.5


def test_inquiry_coverage_counts_elicited_must_ask_facts(sampler):
    case = sampler.sample(0, 0)
    ep, case = _play(sampler, ["DIAGNOSIS: x"])
    assert episode_metrics(ep, case)["inquiry_coverage"] == 0.0
    must = [f for f in case.facts if f.salience == "must_ask" and f.category != "chief_complaint"]

    kb = sampler.kb
    questions = [kb.findings[f.concept].question for f in must if f.concept in kb.findings]
    questions += (
        ["Do you have any allergies?"] if any(f.category == "allergy" for f in must) else []
    )
    ep, case = _play(sampler, [*questions, "DIAGNOSIS: x"])
    assert episode_metrics(ep, case)["inquiry_coverage"] == 1.0


# ---- the metrics added with risk scores and reports ---------------------------------------

from clinicgym.envs.episode import Violation  # noqa: E402
from clinicgym.scoring.metric_registry import METRIC_GROUPS  # noqa: E402
from clinicgym.scoring.metrics import EpisodeScorer, subgroups  # noqa: E402


def test_every_metric_belongs_to_one_group_and_the_old_names_stay():
    names = [n for g in METRIC_GROUPS.values() for n in g]
    assert len(names) == len(set(names)) == len(METRICS)
    for old in ("diagnostic_accuracy", "top3_accuracy", "inquiry_coverage", "turns", "error_turns"):
        assert old in METRICS


def test_metrics_return_every_name(sampler, play):
    case = sampler.sample(0, 0)
    ep, case = play(case, ["DIAGNOSIS: x"])
    m = episode_metrics(ep, case, sampler.kb)
    assert set(m) == set(METRICS)


def test_differential_overlap_counts_plausible_entries(sampler, play):
    case = sampler.sample(0, 0)
    other = case.differential[0].name
    ep, c = play(case, [f"DIAGNOSIS: {case.diagnosis.name}; {other}; gout; scurvy"])
    assert episode_metrics(ep, c, sampler.kb)["differential_overlap"] == 0.5
    ep, c = play(case, ["END"])
    assert episode_metrics(ep, c, sampler.kb)["differential_overlap"] == 0.0


def test_calibration_brier_from_stated_confidence(sampler, play):
    case = sampler.sample(0, 0)
    ep, c = play(case, [f"DIAGNOSIS: {case.diagnosis.name} (80%)"])
    m = episode_metrics(ep, c, sampler.kb)
    assert m["confidence"] == 0.8 and abs(m["brier"] - 0.04) < 1e-9
    ep, c = play(case, ["DIAGNOSIS: gout (90%)"])
    assert abs(episode_metrics(ep, c, sampler.kb)["brier"] - 0.81) < 1e-9
    ep, c = play(case, ["DIAGNOSIS: gout"])
    m = episode_metrics(ep, c, sampler.kb)
    assert m["confidence"] is None and m["brier"] is None


def test_compliance_is_none_unmonitored_and_undecided_with_a_judge_error(sampler, play):
    case = sampler.sample(0, 0)
    ep, c = play(case, ["DIAGNOSIS: x"])
    assert episode_metrics(ep, c, sampler.kb)["compliance_pass"] is None
    assert episode_metrics(ep, c, sampler.kb, monitored=True)["compliance_pass"] == 1.0
    undecided = ep.model_copy(update={"errors": ["policy check error: judge: unparseable"]})
    m = episode_metrics(undecided, c, sampler.kb, monitored=True)
    assert m["compliance_pass"] is None and m["judge_errors"] == 1.0
    v = Violation(rule_id="r", pack="p@1", severity="high", turn=1, quote="q")
    failed = undecided.model_copy(update={"violations": [v]})
    m = episode_metrics(failed, c, sampler.kb, monitored=True)
    assert m["compliance_pass"] == 0.0 and m["violations_high"] == 1.0


def test_usage_metrics_need_model_meta(sampler, play):
    from clinicgym.envs.protocols import AgentOutput

    case = sampler.sample(0, 0)
    ep, c = play(case, ["DIAGNOSIS: x"])
    assert episode_metrics(ep, c, sampler.kb)["tokens"] is None
    meta = {"prompt_tokens": 100, "completion_tokens": 7, "latency_s": 0.25}
    ep, c = play(
        case,
        [
            AgentOutput(action="Any fever?", meta=meta),
            AgentOutput(action="DIAGNOSIS: x", meta=meta),
        ],
    )
    m = episode_metrics(ep, c, sampler.kb)
    assert m["tokens"] == 214 and m["latency_s"] == 0.5


def test_risk_score_is_the_weighted_sum_of_outcomes(sampler, play):
    case = sampler.sample(0, 0)
    ep, c = play(case, [f"DIAGNOSIS: {case.diagnosis.name}"])
    assert episode_metrics(ep, c, sampler.kb)["risk_score"] == 0.0
    ep, c = play(case, ["DIAGNOSIS: gout"])
    m = episode_metrics(ep, c, sampler.kb)
    assert m["risk_wrong_diagnosis"] == 1.0 and m["risk_score"] == 0.2


def test_scorer_rebuilds_the_played_case_for_scenario_runs(sampler, play):
    from clinicgym.policies import played_case

    kb = sampler.kb
    case = sampler.sample(0, 0)
    trap = played_case(case, ["allergy_trap"], 5, kb)
    group = next(f.value for f in trap.facts if f.source == "scenario:allergy_trap")
    drug = next(d.name for d in kb.drugs.values() if d.allergy_group == group)
    ep, _ = play(case, [f"PRESCRIBE: {drug}", "DIAGNOSIS: x"], scenarios=["allergy_trap"], seed=5)
    bare = EpisodeScorer(kb).score(ep, case)
    scored = EpisodeScorer(kb, ["allergy_trap"]).score(ep, case)
    assert bare["unsafe_prescriptions"] == 0.0  # the stored case has no such allergy
    assert scored["unsafe_prescriptions"] == 1.0 and scored["scenario"] == "allergy_trap"
    assert scored["risk_unsafe_prescription"] == 1.0
    errored = ep.model_copy(update={"status": "error"})
    row = EpisodeScorer(kb).score(errored, case)
    assert all(row[k] is None for k in METRICS) and row["sex"] == case.sex


def test_subgroups_carry_demographics(sampler):
    case = sampler.sample(0, 3)
    g = subgroups(case)
    assert g["sex"] == case.sex and g["ethnicity"] == case.extra["ethnicity"]
    assert g["insurance"] == case.extra["insurance"] and g["scenario"] == "(none)"
