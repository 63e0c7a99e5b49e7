"""The Gymnasium env: the API contract, determinism, garbage actions and episode ends."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import clinicgym  # noqa: F401 - registers the ids
from clinicgym.envs import ConsultationEnv, TerminationReason
from clinicgym.envs.action import Ask, Diagnose, RankedDiagnosis
from clinicgym.patients.cases.sampler import CaseSampler


@pytest.fixture
def env(sampler):
    return ConsultationEnv(sampler, max_turns=6)


def test_check_env_passes(env):
    check_env(env, skip_render_check=True)


def test_registered_id_passes_check_env():
    e = gym.make("clinicgym/Consultation-v0", max_turns=5)
    check_env(e.unwrapped, skip_render_check=True)
    obs, info = e.reset(seed=1)
    assert obs["text"] and info["case_id"]


def test_module_prefixed_id_imports_the_package():
    e = gym.make("clinicgym.envs:clinicgym/Consultation-v0", max_turns=3)
    assert isinstance(e.unwrapped, ConsultationEnv)


def test_reset_shows_demographics_and_reason_for_visit(env):
    obs, info = env.reset(seed=3)
    assert obs["text"].startswith("New consultation")
    assert "Patient:" in obs["text"] or "Parent:" in obs["text"]
    assert obs["turn"] == 0 and obs["turns_left"] == 6
    assert info["patient"]["age"] == obs["age"]
    assert env.observation_space.contains(obs)


def _rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    texts = [obs["text"]]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        texts.append(obs["text"])
        if term or trunc:
            return texts, info["episode"]
    return texts, None


def test_same_seed_same_transcript(sampler):
    actions = [
        "What brings you in?",
        "Any fever?",
        "EXAMINE: chest",
        "ORDER: CRP",
        "DIAGNOSIS: Migraine",
    ]
    t1, e1 = _rollout(ConsultationEnv(sampler), 11, actions)
    t2, e2 = _rollout(ConsultationEnv(sampler), 11, actions)
    assert t1 == t2
    assert e1.transcript() == e2.transcript()
    t3, _ = _rollout(ConsultationEnv(sampler), 12, actions)
    assert t3 != t1


@pytest.mark.parametrize(
    "garbage", ["", "{bad json", '{"tool": "fly"}', 17, None, {"tool": "diagnose"}]
)
def test_garbage_gives_an_error_observation_and_uses_a_turn(env, garbage):
    env.reset(seed=0)
    obs, reward, term, trunc, info = env.step(garbage)
    assert obs["error"] == 1 and obs["text"].startswith("Error:")
    assert obs["turn"] == 1 and not term and not trunc
    assert info["error"]
    assert env.observation_space.contains(obs)


def test_turn_budget_truncates(env):
    env.reset(seed=0)
    for i in range(6):
        obs, reward, term, trunc, info = env.step("Any headache?")
    assert trunc and not term
    ep = info["episode"]
    assert ep.termination == TerminationReason.TURN_BUDGET and ep.turns == 6


def test_diagnose_terminates_and_records_the_outcome(env):
    env.reset(seed=0)
    obs, reward, term, trunc, info = env.step(
        Diagnose(diagnoses=[RankedDiagnosis(name="Migraine", confidence=0.6)])
    )
    assert term and not trunc
    assert info["episode"].outcome.diagnoses[0].name == "Migraine"
    with pytest.raises(gym.error.ResetNeeded):
        env.step("more?")


def test_terminal_reward_comes_from_the_reward_fn(sampler):
    e = ConsultationEnv(sampler, reward_fn=lambda ep, case: 0.25)
    e.reset(seed=0)
    assert e.step("Any cough?")[1] == 0.0
    assert e.step("DIAGNOSIS: x")[1] == 0.25


def test_end_without_diagnosis(env):
    env.reset(seed=0)
    *_, term, trunc, info = env.step("END")
    assert term and info["episode"].termination == TerminationReason.ENDED


def test_end_on_diagnose_false_keeps_going(sampler):
    e = ConsultationEnv(sampler, end_on_diagnose=False)
    e.reset(seed=0)
    assert not e.step("DIAGNOSIS: Migraine")[2]
    *_, term, _, info = e.step("END")
    assert term and info["episode"].termination == TerminationReason.DIAGNOSED


def test_step_before_reset_is_an_error(sampler):
    with pytest.raises(gym.error.ResetNeeded):
        ConsultationEnv(sampler).step("hello")


def test_case_option_plays_that_case(sampler):
    case = sampler.sample(99, 3)
    e = ConsultationEnv(sampler)
    _, info = e.reset(seed=0, options={"case": case})
    assert info["case_id"] == case.id


def test_info_mirrors_the_reply(env):
    env.reset(seed=0)
    *_, info = env.step(Ask(question="Do you have a cough?"))
    assert info["result"]["answers"][0]["concept"] == "cough"


def test_monitors_see_every_event(sampler):
    from clinicgym.envs.episode import Violation

    class CountingMonitor:
        name = "count"

        def __init__(self):
            self.seen = []

        def reset(self, case):
            self.seen = []

        def observe(self, event, history):
            self.seen.append(event.actor)
            if event.actor == "clinician" and "guarantee" in event.text:
                return [
                    Violation(
                        rule_id="no-guarantees",
                        pack="test@1",
                        severity="high",
                        turn=event.turn,
                        quote=event.text,
                    )
                ]
            return []

    m = CountingMonitor()
    e = ConsultationEnv(sampler, monitors=[m])
    e.reset(seed=0)
    *_, info = e.step("I guarantee a cure")
    assert m.seen == ["patient", "clinician", "patient"]
    assert info["violations"][0]["rule_id"] == "no-guarantees"
    *_, info = e.step("DIAGNOSIS: x")
    assert len(info["episode"].violations) == 1


def test_sync_vector_env(sampler):
    venv = gym.vector.SyncVectorEnv(
        [lambda: ConsultationEnv(sampler, max_turns=3) for _ in range(2)]
    )
    obs, info = venv.reset(seed=[1, 2])
    assert len(obs["text"]) == 2 and all(obs["text"])
    obs, r, term, trunc, info = venv.step(["Any fever?", "DIAGNOSIS: Migraine"])
    assert term[1] and not term[0]


@pytest.mark.slow
def test_async_vector_env_needs_shared_memory_off(sampler):
    from clinicgym.runs.factory import make_consultation_env

    venv = gym.vector.AsyncVectorEnv(
        [
            lambda: make_consultation_env(cases=CaseSampler(sampler.kb), max_turns=3)
            for _ in range(2)
        ],
        shared_memory=False,
    )
    try:
        obs, info = venv.reset(seed=[1, 2])
        assert all(t.startswith("New consultation") for t in obs["text"])
        obs, *_ = venv.step(["Any fever?", "Any cough?"])
        assert all(t for t in obs["text"])
    finally:
        venv.close()


def test_scenario_lines_reach_the_clinician_and_the_monitors(sampler):
    from clinicgym.envs.episode import Event, Violation

    class Relative:
        name = "relative"

        def reset(self, case, rng):
            return case

        def before_turn(self, turn, history):
            if turn == 2:
                return [
                    Event(
                        turn=0,
                        actor="third_party",
                        text="I'm her husband, what's wrong with her?",
                        meta={"speaker": "Husband"},
                    )
                ]
            return []

    class DisclosureMonitor:
        name = "disclosure"

        def reset(self, case):
            pass

        def observe(self, event, history):
            if event.action is not None and event.action.tool == "disclose":
                return [
                    Violation(
                        rule_id="verify-identity",
                        pack="t@1",
                        severity="high",
                        turn=event.turn,
                        quote=event.text,
                    )
                ]
            return []

    e = ConsultationEnv(
        sampler,
        scenarios=[Relative()],
        monitors=[DisclosureMonitor()],
        violation_penalty={"high": 0.5},
    )
    e.reset(seed=0)
    obs, r, *_ = e.step("Any fever?")
    assert "Husband: \"I'm her husband" in obs["text"] and r == 0.0
    obs, r, *_ = e.step("DISCLOSE: husband: She has a chest infection.")
    assert r == -0.5
    *_, info = e.step("PRESCRIBE: amoxicillin, 500 mg")
    ep = e.episode(TerminationReason.ENDED)
    assert ep.outcome.disclosures[0]["recipient"] == "husband"
    assert ep.outcome.prescriptions[0]["drug"] == "amoxicillin"
    assert any(ev.actor == "third_party" for ev in ep.events)


def test_unknown_severity_in_penalties_is_refused(sampler):
    with pytest.raises(ValueError, match="unknown severities"):
        ConsultationEnv(sampler, violation_penalty={"urgent": 1.0})


# ---- generated (presentation-first) cases: the bundled KB's default -------------------------


@pytest.fixture(scope="module")
def gp_case():
    from clinicgym.patients.cases.presentation import PresentationSampler
    from clinicgym.patients.knowledge.kb import default_kb

    sampler = PresentationSampler(default_kb(), settings=["primary_care"])
    return next(c for i in range(50) if (c := sampler.sample(2, i)).setting == "primary_care")


def test_check_env_passes_on_generated_cases():
    from gymnasium.utils.env_checker import check_env

    from clinicgym.envs.structured import StructuredConsultationEnv

    check_env(ConsultationEnv(max_turns=6), skip_render_check=True)
    check_env(StructuredConsultationEnv(n_cases=20), skip_render_check=True)


def test_a_slow_result_comes_back_on_its_turn_and_never_after_the_end(gp_case):
    from clinicgym.patients.knowledge.kb import default_kb

    kb = default_kb()
    slow = next(
        f.concept
        for f in gp_case.facts
        if f.how_revealed == "order"
        and f.concept in kb.tests
        and 0 < kb.tests[f.concept].delay.get("primary_care", 0) < 100
    )
    delay = kb.tests[slow].delay["primary_care"]
    env = ConsultationEnv([gp_case], kb=kb, max_turns=delay + 3)
    env.reset(seed=0, options={"case": gp_case})
    obs, _, _, _, info = env.step(f"ORDER: {kb.tests[slow].name}")
    assert f"back in {delay} turns" in obs["text"]
    assert info["result"]["answers"] == [{"concept": slow, "status": "pending"}]
    for turn in range(2, delay + 2):
        obs, _, _, _, info = env.step("Any other symptoms?")
        back = [a for a in info["result"].get("arrived", []) if a["concept"] == slow]
        assert bool(back) == (turn == delay + 1), turn
    assert "Result back:" in obs["text"]
    assert any(e.text.startswith("Result back:") and e.revealed for e in env.events)
    # ordered on the last turn but one: the consultation ends before it is back
    env.reset(seed=0, options={"case": gp_case})
    for _ in range(delay + 1):
        env.step("Any other symptoms?")
    env.step(f"ORDER: {kb.tests[slow].name}")
    *_, info = env.step("DIAGNOSIS: something")
    assert not any(e.text.startswith("Result back:") for e in info["episode"].events)


def test_a_test_the_setting_cannot_do_is_an_error_naming_where_it_can(gp_case):
    from clinicgym.patients.knowledge.kb import default_kb

    kb = default_kb()
    hospital = next(
        f.concept
        for f in gp_case.facts
        if f.how_revealed == "order"
        and f.concept in kb.tests
        and "primary_care" not in kb.tests[f.concept].settings
    )
    env = ConsultationEnv([gp_case], kb=kb)
    env.reset(seed=0, options={"case": gp_case})
    obs, _, _, _, _ = env.step(f"ORDER: {kb.tests[hospital].name}")
    assert obs["error"] == 1
    assert "cannot be done in this setting (primary care)" in obs["text"]
    assert "emergency" in obs["text"] or "rare disease" in obs["text"]
