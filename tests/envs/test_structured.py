"""The structured env: Gymnasium and SB3 contracts, answers equal to the grounded patient's and
the chart's, seeds, vector envs, record mode."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import clinicgym  # noqa: F401  (registers the ids)
from clinicgym.envs.structured import StructuredConsultationEnv, catalogue_for, compile_case
from clinicgym.patients.patient.chart import Chart
from clinicgym.patients.patient.patient import GroundedPatient
from clinicgym.runs.factory import make_structured_env
from clinicgym.scoring.metrics import episode_metrics

STRUCTURED_ID = "clinicgym/Consultation-Structured-v0"


def _play(env: StructuredConsultationEnv, seed: int, actions: list[int]) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, _r, term, trunc, _info = env.step(a)
        out.append(obs)
        if term or trunc:
            break
    return out


def test_passes_gymnasium_check_env(sampler):
    env = StructuredConsultationEnv(sampler, n_cases=20)
    check_env(env, skip_render_check=True)


def test_passes_stable_baselines3_check_env(sampler):
    env_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    env_checker.check_env(StructuredConsultationEnv(sampler, n_cases=20), warn=True)


def test_registered_id_builds_the_env_with_scoring_reward():
    env = gym.make(STRUCTURED_ID, max_turns=7)
    assert isinstance(env.unwrapped, StructuredConsultationEnv)
    assert env.unwrapped.max_turns == 7
    assert env.unwrapped.reward is not None


def test_same_seed_same_case_and_trajectory(sampler):
    a = StructuredConsultationEnv(sampler, n_cases=50)
    b = StructuredConsultationEnv(sampler, n_cases=50)
    cat = a.cat
    actions = [cat.a_ask + 3, cat.a_exam + 2, cat.a_test + 1, cat.a_ask + 7, cat.a_diagnose]
    for seed in (0, 1, 17):
        ta, tb = _play(a, seed, actions), _play(b, seed, actions)
        assert a.case.content_hash() == b.case.content_hash()
        assert all(np.array_equal(x, y) for x, y in zip(ta, tb, strict=True))
    a.reset(seed=1)
    first = a.case.id
    a.reset(seed=2)
    assert a.case.id != first or a.n_cases == 1


def test_suite_cases_are_the_samplers_cases(sampler):
    env = StructuredConsultationEnv(sampler, suite_seed=5, n_cases=10)
    for i in (0, 3, 9):
        assert env.case_at(i).content_hash() == sampler.sample(5, i).content_hash()


def test_answers_equal_the_grounded_patient_and_chart(small_kb, sampler, matcher):
    """The compiled arrays are the patient replay cache: every status must be the patient's."""
    cat = catalogue_for(small_kb)
    checked = 0
    for i in range(12):
        case = sampler.sample(3, i)
        c = compile_case(case, cat)
        patient = GroundedPatient(case, matcher)
        for j, concept in enumerate(cat.ask):
            first = patient.answer_concept(concept, 1).answers[0].status
            want_first = (
                "withheld"
                if c.reluctant[j]
                else {1: "affirmed", -1: "denied", 0: "unknown"}[int(c.hist[j])]
            )
            assert first == want_first, (case.id, concept)
            if first == "withheld":
                again = patient.answer_concept(concept, 2).answers[0].status
                assert again == ("affirmed" if c.hist[j] > 0 else "denied")
            checked += 1
        chart = Chart(case, small_kb)
        for system, answers in c.exam_answers.items():
            assert chart.examine(system).answers == answers
        assert chart.examine("vitals").answers == c.vital_answers
        for k, tid in enumerate(cat.tests):
            res = chart.order(small_kb.tests[tid].name)
            if c.tests[k] == 0:
                assert not res.ok
            else:
                want = "abnormal" if c.tests[k] > 0 else "normal"
                assert res.answers == [{"concept": tid, "status": want}]
    assert checked == 12 * len(cat.ask)


def test_observation_records_what_was_learned(sampler):
    env = StructuredConsultationEnv(sampler, n_cases=30)
    cat = env.cat
    obs, info = env.reset(seed=4)
    c = env._c
    for concept, _ in c.opening_answers:
        if concept in cat.ask_index:
            assert obs[cat.o_hist][cat.ask_index[concept]] == 1.0
    i = next(j for j in range(len(cat.ask)) if j not in c.opening and not c.reluctant[j])
    obs, _r, _t, _tr, info = env.step(cat.a_ask + i)
    assert obs[cat.o_hist][i] == c.hist[i]
    assert obs[cat.o_asked][i] == 1.0
    assert info["result"]["answers"][0]["concept"] == cat.ask[i]
    obs, *_ = env.step(cat.a_exam)  # vital signs
    assert np.array_equal(obs[cat.o_vitals], c.vitals)
    assert obs[cat.o_turn] == pytest.approx(2 / env.max_turns)


def test_a_held_back_fact_needs_asking_twice(sampler):
    env = StructuredConsultationEnv(sampler, n_cases=400)
    cat = env.cat
    for idx in range(400):
        obs, _ = env.reset(seed=0, options={"case_index": idx})
        held = np.flatnonzero(env._c.reluctant)
        if held.size:
            break
    else:
        pytest.skip("no case in the suite holds a fact back")
    i = int(held[0])
    obs, _r, _t, _tr, info = env.step(cat.a_ask + i)
    assert info["result"]["answers"][0]["status"] == "withheld"
    assert obs[cat.o_hist][i] == 0.0 and obs[cat.o_asked][i] == 0.5
    assert env.action_masks()[cat.a_ask + i]
    obs, _r, _t, _tr, info = env.step(cat.a_ask + i)
    assert info["result"]["answers"][0]["status"] == "affirmed"
    assert obs[cat.o_hist][i] == 1.0


def test_diagnosis_ends_and_scores_against_the_hidden_case(sampler):
    env = make_structured_env(cases=sampler, n_cases=20)
    cat = env.cat
    env.reset(seed=2)
    truth = env.case.diagnosis.condition_id
    _o, reward, term, trunc, info = env.step(cat.a_diagnose + cat.condition_index[truth])
    assert term and not trunc
    assert info["outcome"]["correct"] is True
    assert reward == pytest.approx(1.0 - env.reward.spec.turn_cost)
    wrong = next(c for c in cat.conditions if c != truth)
    env.reset(seed=2)
    _o, reward, *_ = env.step(cat.a_diagnose + cat.condition_index[wrong])
    assert reward == pytest.approx(-env.reward.spec.turn_cost)


def test_turn_budget_truncates_without_a_diagnosis(sampler):
    env = make_structured_env(cases=sampler, n_cases=20, max_turns=3)
    env.reset(seed=0)
    for _ in range(3):
        _o, reward, term, trunc, info = env.step(env.cat.a_exam)
    assert trunc and not term
    assert info["outcome"]["diagnosis"] == ""
    assert reward == pytest.approx(-3 * env.reward.spec.turn_cost)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)


def test_bad_action_is_a_counted_error_turn(sampler):
    env = StructuredConsultationEnv(sampler, n_cases=5)
    env.reset(seed=0)
    _o, _r, _t, _tr, info = env.step(10_000)
    assert "outside" in info["error"]
    assert info["turn"] == 1


def test_encode_maps_text_actions(small_kb):
    from clinicgym.envs.action import Ask, Diagnose, Examine, OrderTest, RankedDiagnosis

    cat = catalogue_for(small_kb)
    fid = cat.ask[0]
    assert cat.encode(Ask(question=small_kb.findings[fid].question)) == cat.a_ask
    assert cat.encode(Examine(system="chest")) == cat.a_exam + cat.systems.index("respiratory")
    tid = cat.tests[0]
    assert cat.encode(OrderTest(test=small_kb.tests[tid].name)) == cat.a_test
    cid = cat.conditions[1]
    name = small_kb.conditions[cid].name
    assert cat.encode(Diagnose(diagnoses=[RankedDiagnosis(name=name)])) == cat.a_diagnose + 1
    assert cat.encode(Ask(question="How is the weather?")) is None


def test_record_mode_writes_the_episode_monitors_see(sampler, matcher):
    seen = []

    class Spy:
        name = "spy"

        def reset(self, case):
            seen.append(("reset", case.id))

        def observe(self, event, history):
            seen.append((event.actor, event.turn))
            return []

    fast = StructuredConsultationEnv(sampler, n_cases=10)
    rec = StructuredConsultationEnv(sampler, n_cases=10, monitors=[Spy()])
    assert rec.record
    cat = fast.cat
    actions = [cat.a_ask + 2, cat.a_exam + 1, cat.a_test, cat.a_diagnose]
    for env in (fast, rec):
        env.reset(seed=9)
    for a in actions:
        of, *_rest_f, info_f = fast.step(a)
        orec, *_rest_r, info_r = rec.step(a)
        assert np.array_equal(of, orec)
        assert info_f["result"].get("answers") == info_r["result"].get("answers")
    episode = info_r["episode"]
    assert episode.turns == 4
    assert [e.actor for e in episode.events][:3] == ["patient", "clinician", "patient"]
    metrics = episode_metrics(episode, rec.case)
    assert metrics["turns"] == 4.0
    assert ("clinician", 4) in seen and seen[0][0] == "reset"


@pytest.mark.slow
def test_sync_and_async_vector_envs_step_alike():
    fns = [lambda: gym.make(STRUCTURED_ID, n_cases=50) for _ in range(2)]
    sync = gym.vector.SyncVectorEnv(fns)
    asyn = gym.vector.AsyncVectorEnv(fns, shared_memory=True)
    try:
        o1, _ = sync.reset(seed=11)
        o2, _ = asyn.reset(seed=11)
        assert np.array_equal(o1, o2)
        rng = np.random.default_rng(0)
        ended = 0
        for _ in range(150):  # many episodes end: their infos must stack across the envs
            acts = rng.integers(sync.single_action_space.n, size=2)
            s = sync.step(acts)
            a = asyn.step(acts)
            assert np.array_equal(s[0], a[0])
            assert np.allclose(s[1], a[1])
            ended += int(s[2].sum() + s[3].sum())
        assert ended > 10
    finally:
        sync.close()
        asyn.close()


def test_lean_info_keeps_the_outcome_only(sampler):
    env = StructuredConsultationEnv(sampler, n_cases=5, lean_info=True)
    env.reset(seed=0)
    _o, _r, _t, _tr, info = env.step(env.cat.a_exam)
    assert set(info) == {"turn"}
    _o, _r, term, _tr, info = env.step(env.cat.a_diagnose)
    assert term and set(info) == {"turn", "outcome"}
