"""RL loops: reward-hacking guards, evaluation and pinned suites, the OpenEnv/verifiers shapes,
the GRPO rollout's token accounting, and (slow) PPO and the GRPO example end to end."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clinicgym.agents.scripted import ScriptedAgent
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.runs.factory import make_structured_env
from clinicgym.runs.rl.baselines import (
    FloodingAgent,
    FloodingPolicy,
    ListingAgent,
    RandomPolicy,
    ScriptedPolicy,
    run_sync,
)
from clinicgym.runs.rl.errors import RLError
from clinicgym.runs.rl.evaluation import evaluate
from clinicgym.runs.rl.suite import load_suite, pin_suite
from clinicgym.runs.rl.text import ClinicOpenEnv, ClinicProtocol, ClinicSession, seed_of
from clinicgym.scoring.reward import RewardSpec

ROOT = Path(__file__).resolve().parents[2]
NO_GUARDS = RewardSpec(turn_cost=0.0, differential_cost=0.0)


def _text_scores(agent_cls, spec, sampler, kb, n=6, max_turns=10):
    env = ConsultationEnv(sampler, kb=kb, max_turns=max_turns, reward_fn=spec.episode_reward)
    scores = []
    for seed in range(n):
        obs, info = env.reset(seed=seed)
        agent = agent_cls(kb)
        agent.reset(obs, info)
        while True:
            obs, reward, term, trunc, info = env.step(run_sync(agent.act(obs, info)))
            if term or trunc:
                scores.append(float(reward))
                break
    return float(np.mean(scores))


@pytest.mark.slow
def test_text_env_guards_hold_flooding_and_listing_below_scripted(small_kb, sampler, matcher):
    spec = RewardSpec()
    scripted = _text_scores(ScriptedAgent, spec, sampler, small_kb)
    flooding = _text_scores(FloodingAgent, spec, sampler, small_kb)
    listing = _text_scores(ListingAgent, spec, sampler, small_kb)
    assert flooding < scripted
    assert listing < scripted
    # the guards are what holds them: without them neither probe loses anything
    assert _text_scores(ListingAgent, NO_GUARDS, sampler, small_kb) >= _text_scores(
        ScriptedAgent, NO_GUARDS, sampler, small_kb
    )


@pytest.mark.slow
def test_structured_env_guard_holds_flooding_below_scripted():
    kb = default_kb()
    env = make_structured_env(n_cases=40)
    scripted = evaluate(env, ScriptedPolicy(kb), 40)["score"]["mean"]
    flooding = evaluate(env, FloodingPolicy(kb), 40)["score"]["mean"]
    assert flooding < scripted
    free = make_structured_env(n_cases=40, reward=NO_GUARDS)
    assert (
        evaluate(free, FloodingPolicy(kb), 40)["score"]["mean"]
        >= evaluate(free, ScriptedPolicy(kb), 40)["score"]["mean"] - 0.05
    )


def test_evaluation_is_reproducible_and_orders_the_baselines(small_kb, sampler):
    env = make_structured_env(cases=sampler, n_cases=30)
    random_policy = RandomPolicy(env.action_space.n)
    a = evaluate(env, random_policy, 30, seed=3)
    b = evaluate(env, random_policy, 30, seed=3)
    assert a == b
    scripted = evaluate(env, ScriptedPolicy(small_kb), 30, seed=3)
    assert scripted["score"]["mean"] > a["score"]["mean"] + 0.3


def test_pinned_suite_round_trips_and_refuses_tampering(tmp_path, small_kb, sampler):
    manifest = pin_suite(tmp_path / "s", 5, seed=4, kb=small_kb)
    cases, m2 = load_suite(tmp_path / "s", small_kb)
    assert m2.suite_hash == manifest.suite_hash
    assert [c.content_hash() for c in cases] == manifest.case_hashes
    env = make_structured_env(cases=cases, kb=small_kb)
    again = make_structured_env(cases=load_suite(tmp_path / "s", small_kb)[0], kb=small_kb)
    for seed in range(5):
        assert np.array_equal(env.reset(seed=seed)[0], again.reset(seed=seed)[0])
    lines = (tmp_path / "s" / "cases.jsonl").read_text().splitlines()
    lines[2] = lines[2].replace('"age":', '"age": 1, "x_age":', 1)
    (tmp_path / "s" / "cases.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RLError, match="line 3"):
        load_suite(tmp_path / "s", small_kb)
    with pytest.raises(RLError, match="was pinned with KB"):
        pin_suite(tmp_path / "t", 2, seed=0, kb=small_kb)
        load_suite(tmp_path / "t", default_kb())


def _play_scripted(env: ClinicOpenEnv, seed: int):
    obs = env.reset(seed=seed)
    session = env.session
    agent = ScriptedAgent(session.kb)
    agent.reset(session.observation, session.info)
    rewards = []
    while not obs.done:
        action = run_sync(agent.act(session.observation, session.info))
        obs = env.step(action.render())
        rewards.append(obs.reward)
    return obs, rewards


def test_openenv_shape_plays_and_scores_with_scoring(small_kb, sampler, matcher):
    env = ClinicOpenEnv(kb=small_kb, cases=sampler, max_turns=8)
    last, rewards = _play_scripted(env, 2)
    session = env.session
    want = RewardSpec().terminal(
        [d.name for d in session.episode.outcome.diagnoses], session.episode.turns, session.case
    )
    assert sum(rewards) == pytest.approx(want.total)
    assert last.metadata["score"]["rank"] == 1
    assert env.state.step_count == len(rewards) and env.state.done
    again, _ = _play_scripted(ClinicOpenEnv(kb=small_kb, cases=sampler, max_turns=8), 2)
    assert again.messages == last.messages
    assert asyncio.run(env.reset_async(seed=2)).text == last.messages[1]["content"]


def test_verifiers_shape_runs_under_a_multiturn_loop(small_kb, sampler, matcher):
    proto = ClinicProtocol(kb=small_kb, cases=sampler, max_turns=8)
    rows = proto.dataset(2, seed=5)
    assert seed_of(rows[1]["prompt"]) == 6

    async def rollout(row):
        state = {"prompt": row["prompt"], "info": row["info"]}
        state = await proto.setup_state(state)
        session = state["clinic"]
        agent = ScriptedAgent(session.kb)
        agent.reset(session.observation, session.info)
        messages = list(row["prompt"])
        while "final_env_response" not in state:  # verifiers' stop condition
            action = await agent.act(session.observation, session.info)
            messages.append({"role": "assistant", "content": action.render()})
            messages += await proto.env_response(messages, state)
        assert await proto.consultation_done(state)
        return await proto.consultation_reward(state), session

    reward, session = asyncio.run(rollout(rows[0]))
    assert session.score["rank"] == 1
    assert reward == pytest.approx(session.total)


@pytest.fixture(scope="module")
def grpo_tiny():
    spec = importlib.util.spec_from_file_location("grpo_tiny", ROOT / "examples" / "grpo_tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_tokenizer(grpo_tiny, tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    where = grpo_tiny.build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
    return transformers.AutoTokenizer.from_pretrained(where)


def test_grpo_rollout_token_accounting(tiny_tokenizer, small_kb, sampler, matcher):
    """A scripted 'model' plays through the rollout: the token layout must be the chat template
    of the whole conversation, the mask must cover exactly the model's turns, and the reward
    must be the session's."""
    from clinicgym.runs.rl.grpo import ConsultationRollout, env_reward

    tok = tiny_tokenizer
    rollout = ConsultationRollout(tok, kb=small_kb, cases=sampler, max_turns=6)
    rows = rollout.dataset(2, seed=0)
    agents: dict[int, tuple[ScriptedAgent, ClinicSession]] = {}
    for r in rows:  # a scripted clinician per episode, fed the same consultation
        s = ClinicSession(kb=small_kb, cases=sampler, max_turns=6)
        s.reset(r["episode_seed"])
        a = ScriptedAgent(small_kb)
        a.reset(s.observation, s.info)
        agents[r["episode_seed"]] = (a, s)
    order = [r["episode_seed"] for r in rows]
    turns: list[list[str]] = []

    def generate(contexts):
        out, lps, said = [], [], []
        live = [k for k in order if not agents[k][1].done]
        for k in live:
            a, s = agents[k]
            text = run_sync(a.act(s.observation, s.info)).render()
            s.step(text)
            said.append(text)
            ids = [*tok.encode(text, add_special_tokens=False), tok.eos_token_id]
            out.append(ids)
            lps.append([-0.5] * len(ids))
        turns.append(said)
        return out, lps

    prompts = [r["prompt"] for r in rows]
    out = rollout.rollout(prompts, generate, max_completion_length=4096)
    for i, k in enumerate(order):
        session = agents[k][1]
        full = tok.apply_chat_template(
            [prompts[i][0], prompts[i][1], *session.messages[2:]], tokenize=True, return_dict=False
        )
        got = out["prompt_ids"][i] + out["completion_ids"][i]
        assert got == list(full)[: len(got)]
        mask = out["env_mask"][i]
        assert len(mask) == len(out["completion_ids"][i]) == len(out["logprobs"][i])
        model_tokens = sum(
            len(tok.encode(m["content"], add_special_tokens=False)) + 1
            for m in session.messages[2:]
            if m["role"] == "assistant"
        )
        assert sum(mask) == model_tokens
        assert all(
            lp == (-0.5 if m else 0.0) for lp, m in zip(out["logprobs"][i], mask, strict=True)
        )
        assert out["consultation_reward"][i] == pytest.approx(session.total)
    assert (
        env_reward([None] * 2, consultation_reward=out["consultation_reward"])
        == out["consultation_reward"]
    )


def test_grpo_rollout_stops_at_the_token_budget(tiny_tokenizer, small_kb, sampler, matcher):
    from clinicgym.runs.rl.grpo import ConsultationRollout

    rollout = ConsultationRollout(tiny_tokenizer, kb=small_kb, cases=sampler, max_turns=6)
    rows = rollout.dataset(1, seed=3)
    question = tiny_tokenizer.encode("Do you have a fever?", add_special_tokens=False)

    def generate(contexts):
        return [question for _ in contexts], [[0.0] * len(question) for _ in contexts]

    out = rollout.rollout([rows[0]["prompt"]], generate, max_completion_length=40)
    assert len(out["completion_ids"][0]) <= 40
    assert out["consultation_reward"][0] < 0  # undiagnosed, turns charged


def test_rollout_refuses_prompts_it_did_not_make(tiny_tokenizer, small_kb, sampler, matcher):
    from clinicgym.runs.rl.grpo import ConsultationRollout

    rollout = ConsultationRollout(tiny_tokenizer, kb=small_kb, cases=sampler)
    with pytest.raises(RLError, match="no '\\[episode N\\]' tag"):
        rollout.rollout([[{"role": "user", "content": "hello"}]], lambda c: ([], []), 64)


@pytest.mark.slow
def test_ppo_learns_to_beat_random_on_the_small_kb(small_kb, sampler):
    sb3 = pytest.importorskip("stable_baselines3")
    import torch

    torch.set_num_threads(1)
    env = make_structured_env(cases=sampler, n_cases=300, max_turns=6)
    model = sb3.PPO("MlpPolicy", env, n_steps=512, batch_size=256, seed=0, device="cpu")
    model.learn(12_000)
    held_out = make_structured_env(cases=sampler, n_cases=60, suite_seed=9, max_turns=6)
    ppo = evaluate(held_out, lambda o, i: int(model.predict(o, deterministic=True)[0]), 60)
    rand = evaluate(held_out, RandomPolicy(env.action_space.n), 60)
    assert ppo["score"]["mean"] > rand["score"]["mean"] + 0.3


def test_cloning_scripted_makes_the_policy_ask_before_it_diagnoses(small_kb, sampler):
    """A fresh PPO policy's greedy choices match scripted's by chance only; after cloning they
    match most of them, and on held-out cases it asks before it diagnoses."""
    sb3 = pytest.importorskip("stable_baselines3")
    import torch

    from clinicgym.runs.rl.ppo import clone_scripted

    torch.set_num_threads(1)
    env = make_structured_env(cases=sampler, n_cases=200, max_turns=8)
    model = sb3.PPO("MlpPolicy", env, seed=0, device="cpu", policy_kwargs={"net_arch": [256]})
    before = clone_scripted(model, env, 40, epochs=0)
    after = clone_scripted(model, env, 40, epochs=60)
    assert before < 0.2 < 0.6 < after, (before, after)
    held_out = make_structured_env(cases=sampler, n_cases=30, suite_seed=9, max_turns=8)
    r = evaluate(held_out, lambda o, i: int(model.predict(o, deterministic=True)[0]), 30)
    assert r["turns"] > 1.5 and r["accuracy"]["mean"] > 0.8, r


@pytest.mark.slow
@pytest.mark.integration
def test_grpo_tiny_example_takes_real_steps(tmp_path):
    pytest.importorskip("trl")
    summary = tmp_path / "summary.json"
    # Four steps: whether some group's completions differ depends on the KB's cases; after the
    # generator change of 2026-12-07 neither of the first two steps had one, the third did.
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "grpo_tiny.py"),
            "--steps",
            "4",
            "--out",
            str(tmp_path),
            "--json",
            str(summary),
        ],
        check=True,
        timeout=900,
        capture_output=True,
    )
    s = json.loads(summary.read_text())
    assert s["steps"] == 4
    assert all(np.isfinite(x) for x in s["loss"])
    assert max(s["reward_std"]) > 0  # completions of a group differed, so GRPO had a signal
    assert s["weights_moved_l1"] > 0


def test_cli_pins_a_suite_and_scores_baselines(tmp_path):
    from typer.testing import CliRunner

    from clinicgym.runs.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["rl", "pin-suite", str(tmp_path / "s"), "--n", "3", "--seed", "2"])
    assert res.exit_code == 0, res.output
    assert "pinned 3 cases" in res.output
    cases, manifest = load_suite(tmp_path / "s")
    assert manifest.seed == 2 and len(cases) == 3
    res = runner.invoke(app, ["rl", "baselines", "--episodes", "8", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{") :])
    assert set(out["results"]) == {"random", "scripted", "flooding"}
    assert out["results"]["scripted"]["score"]["mean"] > out["results"]["random"]["score"]["mean"]
    res = runner.invoke(app, ["rl", "baselines", "--episodes", "0"])
    assert res.exit_code == 2 and "n_cases must be >= 1" in res.output


def _ppo_curve(sampler) -> list[tuple[float, float]]:
    sb3 = pytest.importorskip("stable_baselines3")
    import torch

    torch.set_num_threads(1)  # more threads thrash on a shared 2-core machine
    from stable_baselines3.common.env_util import make_vec_env

    from clinicgym.runs.rl.ppo import PPO_SETTINGS

    def make():
        return make_structured_env(cases=sampler, n_cases=100, max_turns=6)

    settings = {**PPO_SETTINGS, "batch_size": 64}
    model = sb3.PPO(
        "MlpPolicy", make_vec_env(make, n_envs=2, seed=0), seed=0, device="cpu", **settings
    )
    held_out = make_structured_env(cases=sampler, n_cases=20, suite_seed=9, max_turns=6)

    def act(obs, info):
        return int(model.predict(obs, deterministic=True)[0])

    points = []
    for _ in range(2):
        model.learn(512, reset_num_timesteps=False)
        r = evaluate(held_out, act, 20)
        points.append((r["score"]["mean"], r["turns"]))
    return points


@pytest.mark.slow
def test_a_ppo_reward_curve_reproduces_point_for_point(sampler):
    """Same seeds, same suite: two trainings give the same curve (the point of pinning)."""
    assert _ppo_curve(sampler) == _ppo_curve(sampler)
