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
