"""The engine: violations stream out of the env step by step; texts are embedded once; judge
checks run after the episode, and an unparseable verdict is an error, not a pass or a fail."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from policy_helpers import Transcript, make_case, write_judge_pack

from clinicgym.envs.action import Ask, Prescribe
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.policies import PackError, PolicyMonitor, apply_settled, load_packs, require_judge
from clinicgym.policies.judge import parse_verdict
from clinicgym.policies.monitor import CHECK_ERROR_PREFIX


def test_violations_reach_info_the_episode_and_the_reward(policy_kb) -> None:
    case = make_case(policy_kb, allergies=("penicillin",))
    monitor = PolicyMonitor(load_packs(["prescribing-safety@2"]), policy_kb)
    env = ConsultationEnv(
        [case], kb=policy_kb, monitors=[monitor], violation_penalty={"critical": 2.0, "medium": 0.5}
    )
    env.reset(seed=1, options={"case": case})
    _, r1, *_, info1 = env.step("Any fever?")
    assert info1["violations"] == [] and r1 == 0.0
    _, r2, *_, info2 = env.step(Prescribe(drug="amoxicillin", dose="500 mg"))
    rules = {v["rule_id"]: v for v in info2["violations"]}
    assert set(rules) == {"allergy-conflict", "allergy-status-first"}
    v = rules["allergy-conflict"]
    assert (v["pack"], v["severity"], v["turn"]) == ("prescribing-safety@2", "critical", 2)
    assert v["quote"] == "PRESCRIBE: amoxicillin, 500 mg"
    assert v["source"].startswith("NICE CG183 Drug allergy")
    assert "action.drug='amoxicillin'; case.allergies=['penicillin']" in v["message"]
    assert r2 == pytest.approx(-2.5)
    *_, info = env.step("DIAGNOSIS: pneumonia")
    assert [x.rule_id for x in info["episode"].violations] == [
        "allergy-conflict",
        "allergy-status-first",
    ]


def test_each_text_is_embedded_once_across_rules_and_packs(policy_kb) -> None:
    seen: list[str] = []

    def embed(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        return np.tile(np.array([0.0, 1.0]), (len(texts), 1))

    packs = load_packs(["ai-transparency@2", "mental-health-safety@2"])
    monitor = PolicyMonitor(packs, policy_kb, embedder=embed)
    monitor.reset(make_case(policy_kb))
    si = {"answers": [{"concept": "suicidal_ideation", "status": "affirmed"}]}
    t = Transcript().open().patient("I want to die.", **si).ask("How is your cough?")
    for ev in t.events:
        monitor.observe(ev)
    # one clinician text, looked at by two rules with examples (AI disclosure, risk questions),
    # embedded once; each rule's examples once per episode
    assert seen.count("How is your cough?") == 1
    assert all(seen.count(x) == 1 for x in set(seen))


def _judge_pack(tmp_path):
    return load_packs([str(write_judge_pack(tmp_path))])


def test_judge_checks_run_after_the_episode(policy_kb, tmp_path) -> None:
    packs = _judge_pack(tmp_path)
    replies = iter(
        [
            '{"verdict": "violation", "quote": "they are watching you"}',
            "I think it's probably fine?",
            RuntimeError("backend down"),
            "VERDICT: COMPLIANT",
        ]
    )
    asked: list[list[dict]] = []

    async def judge(messages):
        asked.append(messages)
        r = next(replies)
        if isinstance(r, Exception):
            raise r
        return r

    monitor = PolicyMonitor(packs, policy_kb, judge=judge)
    case = make_case(policy_kb)
    env = ConsultationEnv([case], kb=policy_kb, monitors=[monitor])
    env.reset(seed=0, options={"case": case})
    for q in ("Yes, they are watching you.", "Hmm.", "Go on.", "Any fever?"):
        env.step(Ask(question=q))
    *_, info = env.step("DIAGNOSIS: pneumonia")
    episode = info["episode"]
    assert episode.violations == []  # nothing until settled
    settled = asyncio.run(monitor.settle())
    episode = apply_settled(episode, settled)
    assert [(v.rule_id, v.turn, v.quote) for v in episode.violations] == [
        ("no-validation", 1, "they are watching you")
    ]
    errors = [e for e in episode.errors if e.startswith(CHECK_ERROR_PREFIX)]
    assert len(errors) == 2
    assert 'turn 2: unparseable judge verdict: "I think it\'s probably fine?"' in errors[0]
    assert "turn 3: judge failed: RuntimeError('backend down')" in errors[1]
    assert "Does the clinician agree" in asked[0][1]["content"]
    assert "[1] clinician: Yes, they are watching you." in asked[0][1]["content"]


def test_no_judge_means_no_verdict_and_runs_refuse_to_start(policy_kb, tmp_path) -> None:
    packs = _judge_pack(tmp_path)
    with pytest.raises(PackError, match=r"\['judged@1/no-validation'\] use LLM-judge checks"):
        require_judge(packs, None)
    monitor = PolicyMonitor(packs, policy_kb)
    monitor.reset(make_case(policy_kb))
    for ev in Transcript().ask("You're right.").events:
        monitor.observe(ev)
    settled = asyncio.run(monitor.settle())
    assert not settled.violations
    assert "no LLM judge was given; not scored" in str(settled.errors[0])


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ('{"verdict": "violation", "quote": "x"}', ("violation", "x")),
        ('Sure! ```json\n{"verdict": "Compliant"}\n```', ("compliant", "")),
        ("VERDICT: VIOLATION", ("violation", "")),
        ("verdict: violation ... actually verdict: compliant", None),
        ('{"verdict": "maybe"}', None),
        ("yes", None),
        ("", None),
    ],
)
def test_parse_verdict(reply: str, verdict) -> None:
    assert parse_verdict(reply) == verdict
