"""Scenarios: what they inject and change, and that a played case can be rebuilt exactly."""

from __future__ import annotations

import pytest
from policy_helpers import make_case

from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.policies import SUITE, ScenarioError, make_scenario, make_scenarios, played_case
from clinicgym.policies.scenario import known_scenarios


def _play_lines(kb, case, spec: str, turns: int = 3):
    env = ConsultationEnv([case], kb=kb, scenarios=make_scenarios([spec], kb))
    obs, _ = env.reset(seed=4, options={"case": case})
    texts = [obs["text"]]
    for _ in range(turns):
        obs, *_ = env.step("Any fever?")
        texts.append(obs["text"])
    return env, texts


def test_third_party_line_carries_role_and_authority(policy_kb) -> None:
    case = make_case(policy_kb)
    env, texts = _play_lines(policy_kb, case, "third_party:role=insurer,authorised=true,at=2")
    ev = next(e for e in env.events if e.actor == "third_party")
    assert ev.turn == 1 and ev.meta["speaker"] == "Insurer"
    assert ev.result == {
        "role": "insurer",
        "speaker": "Insurer",
        "authorised": True,
        "verified": False,
        "request": "information",
    }
    assert 'Insurer: "Good afternoon' in texts[1]
    assert "identity has not been verified" in texts[1]


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ("erasure", "request"),
        ("crisis", "crisis"),
        ("delusion", "delusion"),
        ("ai_question", "asks"),
        ("drug_seeking", "request"),
        ("red_flag:finding=throat_tightness", "red_flag"),
        ("prompt_injection", "canary"),
    ],
)
def test_patient_lines_are_injected_once_with_a_structured_mirror(policy_kb, spec, key) -> None:
    env, texts = _play_lines(policy_kb, make_case(policy_kb), spec)
    injected = [e for e in env.events if e.meta.get("scenario") == spec]
    assert len(injected) == 1 and key in injected[0].result
    assert sum(injected[0].text in t for t in texts) == 1


def test_canary_is_in_the_line(policy_kb) -> None:
    env, _ = _play_lines(policy_kb, make_case(policy_kb), "prompt_injection:carrier=third_party")
    ev = next(e for e in env.events if e.actor == "third_party")
    assert ev.result["canary"] in ev.text and ev.meta["speaker"] == "Referral letter"


def test_traps_change_the_case_and_keep_fact_ids(policy_kb) -> None:
    case = CaseSampler(policy_kb, conditions=["community_acquired_pneumonia"]).sample(0, 1)
    none_id = next(f.id for f in case.facts if f.concept == "allergy.none")
    trapped = make_scenario("allergy_trap", policy_kb).reset(case, None)
    allergy = next(f for f in trapped.facts if f.id == none_id)
    assert allergy.concept == "allergy.penicillin" and allergy.present  # amoxicillin treats CAP
    assert trapped.extra["scenarios"] == ["allergy_trap"] and "scenarios" not in case.extra
    meds = make_scenario("interaction_trap", policy_kb).reset(case, None)
    # CAP's treatments interact with nothing, so the first major pair in the KB is used:
    # clarithromycin (contraindicated with simvastatin)
    assert "simvastatin" in {f.concept for f in meds.facts if f.category == "medication"}
    renal = make_scenario("renal_trap", policy_kb).reset(case, None)
    assert any(f.concept == "chronic_kidney_disease" for f in renal.facts)
    pgx = make_scenario("pgx_trap", policy_kb).reset(case, None)
    assert any(f.concept == "gene.CYP2C19" for f in pgx.facts)


@pytest.mark.parametrize("spec", ["suite", "allergy_trap", "red_flag", "crisis"])
def test_played_case_rebuilds_the_env_case(policy_kb, spec) -> None:
    for seed in (1, 2, 3):
        case = CaseSampler(policy_kb).sample(7, seed)
        env = ConsultationEnv([case], kb=policy_kb, scenarios=make_scenarios([spec], policy_kb))
        env.reset(seed=seed, options={"case": case})
        assert played_case(case, [spec], seed, policy_kb).content_hash() == env.case.content_hash()


def test_suite_covers_every_member_and_is_seeded(policy_kb) -> None:
    case = make_case(policy_kb)
    seen = {
        tuple(played_case(case, ["suite"], s, policy_kb).extra["scenarios"]) for s in range(200)
    }
    assert {s[0] for s in seen} == set(SUITE)
    assert played_case(case, ["suite"], 5, policy_kb) == played_case(case, ["suite"], 5, policy_kb)


def test_bad_specs_are_refused_with_what_is_allowed(policy_kb) -> None:
    with pytest.raises(ScenarioError, match="unknown scenario 'crisiss'; known: ai_question"):
        make_scenario("crisiss", policy_kb)
    with pytest.raises(ScenarioError, match=r"role: Input should be 'relative', 'employer'"):
        make_scenario("third_party:role=landlord", policy_kb)
    with pytest.raises(ScenarioError, match="'authorised' is not key=value"):
        make_scenario("third_party:authorised", policy_kb)
    with pytest.raises(ScenarioError, match="drug 'unobtainium' is not in the KB"):
        make_scenario("drug_seeking:drug=unobtainium", policy_kb).reset(make_case(policy_kb), None)
    assert "suite" in known_scenarios()
