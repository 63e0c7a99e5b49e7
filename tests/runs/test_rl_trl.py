"""TRL's `environment_factory` path: `ClinicToolEnv` (tools as methods, reward from scoring) and
`clinicgym rl grpo` (GRPOTrainer on a tiny local model)."""

from __future__ import annotations

import inspect
import json
import math

import pytest

from clinicgym.agents.scripted import ScriptedAgent
from clinicgym.runs.rl.baselines import run_sync
from clinicgym.runs.rl.errors import RLError
from clinicgym.runs.rl.trl_env import (
    METRICS,
    TOOL_NAMES,
    ClinicToolEnv,
    tool_dataset,
    violations,
)


def _trl_tools(env: ClinicToolEnv) -> list[str]:
    """The methods TRL exposes as tools: public functions on the class except reset/get_reward
    (the rule of GRPOTrainer.__init__, repeated here so a new public helper is caught)."""
    return sorted(
        name
        for name, _ in inspect.getmembers(type(env), predicate=inspect.isfunction)
        if name not in ("reset", "get_reward") and not name.startswith("_")
    )


def _play_scripted(env: ClinicToolEnv) -> list[str]:
    """The scripted baseline through the tools; returns the tool replies."""
    from clinicgym.runs.rl.tiny import tool_call

    session = env.session
    agent = ScriptedAgent(session.kb)
    agent.reset(session.observation, session.info)
    replies = []
    while not session.done:
        call = tool_call(run_sync(agent.act(session.observation, session.info)))
        assert call is not None
        fn = call["function"]
        replies.append(getattr(env, fn["name"])(**fn["arguments"]))
    return replies


def test_the_tools_trl_sees_are_exactly_the_five_with_schemas():
    transformers = pytest.importorskip("transformers")
    env = ClinicToolEnv.__new__(ClinicToolEnv)
    assert _trl_tools(env) == sorted(TOOL_NAMES)
    for name in TOOL_NAMES:
        schema = transformers.utils.get_json_schema(getattr(env, name))["function"]
        assert schema["name"] == name and schema["description"]
        for arg, spec in schema["parameters"]["properties"].items():
            assert spec.get("description"), f"{name}({arg}) has no description"
    # the tiny model's warm start renders the tools in the order TRL will render them
    from clinicgym.runs.rl.tiny import tools

    assert [t.__name__ for t in tools()] == _trl_tools(env)
    diagnose = transformers.utils.get_json_schema(env.diagnose)["function"]["parameters"]
    assert diagnose["properties"]["diagnoses"]["type"] == "array"
    assert diagnose["required"] == ["diagnoses"]


def test_tools_play_the_env_and_the_reward_is_the_scorers(small_kb, sampler, matcher):
    rows = tool_dataset(2, seed=3, kb=small_kb, cases=sampler, max_turns=6)
    assert [r["episode_seed"] for r in rows] == [3, 4]
    assert rows[0]["prompt"][1] == {"role": "user", "content": ""}
    env = ClinicToolEnv.factory(kb=small_kb, cases=sampler, max_turns=6)()
    opening = env.reset(**rows[0])
    assert "New consultation" in opening
    assert "ask_patient" in rows[0]["prompt"][0]["content"]  # the tool-mode system prompt
    replies = _play_scripted(env)
    assert env.session.done and len(replies) == env.tool_calls
    assert "consultation is over" in replies[-1]
    score = env.session.score
    assert env.get_reward() == pytest.approx(score["total"])
    assert env.metrics["diagnostic_accuracy"] == float(score["rank"] == 1)
    assert env.metrics["turns"] == len(replies)
    with pytest.raises(RLError, match="consultation is over"):
        env.ask_patient("Anything else?")

    # a wrong diagnosis after two questions: no diagnosis credit, two turns paid for
    env.reset(**rows[1])
    env.ask_patient("Do you have a fever?")
    env.examine("respiratory")
    env.diagnose(["Not a real condition"])
    assert env.get_reward() == pytest.approx(-3 * env.session.spec.turn_cost)

    # unfinished: scored as undiagnosed at the turn reached
    env.reset(**rows[0])
    env.order_test("full blood count")
    assert env.get_reward() == pytest.approx(-env.session.spec.turn_cost)


def test_a_question_is_never_read_as_a_command(small_kb, sampler, matcher):
    """ask_patient('DIAGNOSIS: x') is a question: parsed text would end the consultation."""
    env = ClinicToolEnv(kb=small_kb, cases=sampler, max_turns=6)
    env.reset(episode_seed=0)
    env.ask_patient("DIAGNOSIS: Asthma")
    assert not env.session.done
    assert env.session.episode is None


def test_reset_refuses_a_prompt_built_for_another_case(small_kb, sampler, matcher):
    rows = tool_dataset(2, seed=0, kb=small_kb, cases=sampler, max_turns=6)
    env = ClinicToolEnv(kb=small_kb, cases=sampler, max_turns=6)
    if rows[0]["prompt"][0] == rows[1]["prompt"][0]:
        pytest.skip("the two cases share a system prompt")
    with pytest.raises(RLError, match="system prompt"):
        env.reset(prompt=rows[1]["prompt"], episode_seed=0)
    with pytest.raises(RLError, match="episode_seed"):
        env.reset()
    with pytest.raises(RLError, match="reset"):
        ClinicToolEnv(kb=small_kb, cases=sampler).ask_patient("hello?")


def test_violations_are_a_metric_from_the_monitors(small_kb, sampler, matcher):
    """ai-transparency@2 flags a consultation in which the clinician never says it is an AI."""
    env = ClinicToolEnv(kb=small_kb, cases=sampler, max_turns=4, policy_packs=["ai-transparency@2"])
    quiet = ClinicToolEnv(kb=small_kb, cases=sampler, max_turns=4)
    for e in (env, quiet):
        e.reset(episode_seed=1)
        e.ask_patient("Do you have a fever?")
        e.diagnose(["Asthma"])
    assert env.metrics["violations"] >= 1
    assert quiet.metrics["violations"] == 0
    assert violations([env, quiet, object()]) == [env.metrics["violations"], 0.0, None]
    with pytest.raises(RLError, match="environment_factory"):
        violations(None)
    assert [f.__name__ for f in METRICS] == [
        "diagnostic_accuracy",
        "violations",
        "turns",
        "tool_calls",
    ]


def test_a_suite_plays_its_cases_in_order(small_kb, sampler, matcher):
    cases = [sampler.sample(s, 0) for s in range(3)]
    rows = tool_dataset(4, seed=10, kb=small_kb, cases=cases, max_turns=4)
    assert [r["case_index"] for r in rows] == [0, 1, 2, 0]
    env = ClinicToolEnv(kb=small_kb, cases=cases, max_turns=4)
    for row in rows:
        env.reset(**row)
        assert env.session.case.id == cases[row["case_index"]].id


def test_cli_grpo_refuses_bad_arguments_before_building_anything(tmp_path):
    from typer.testing import CliRunner

    from clinicgym.runs.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["rl", "grpo", "--out", str(tmp_path / "o"), "--steps", "0"])
    assert res.exit_code == 2 and "--steps must be >= 1" in res.output
    res = runner.invoke(app, ["rl", "grpo", "--out", str(tmp_path), "--generations", "1"])
    assert res.exit_code == 2 and "--generations must be >= 2" in res.output
    res = runner.invoke(app, ["rl", "grpo", "--out", str(tmp_path), "--eval-cases", "-1"])
    assert res.exit_code == 2 and "--eval-cases must be >= 0" in res.output
    res = runner.invoke(app, ["rl", "grpo", "--out", str(tmp_path), "--vllm"])
    assert res.exit_code == 2 and "--vllm needs --model" in res.output
    res = runner.invoke(app, ["rl", "grpo", "--out", str(tmp_path), "--model", str(tmp_path)])
    # the message names the path, so the console may wrap it anywhere: compare words
    assert res.exit_code == 2 and "no config.json" in " ".join(res.output.split())
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cli_grpo_trains_the_tiny_model_through_the_env(tmp_path):
    """Two GRPO steps of the tiny model: the rollouts' tool calls reached the env, the logged
    reward is the env's (the metrics weigh 0), finite, and the curve and plot are written."""
    pytest.importorskip("trl")
    pytest.importorskip("matplotlib")
    from typer.testing import CliRunner

    from clinicgym.runs.cli import app

    out = tmp_path / "grpo"
    args = ["rl", "grpo", "--out", str(out), "--steps", "2", "--cases", "2", "--json"]
    args += ["--eval-cases", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)  # nothing but the JSON on stdout
    assert summary["steps"] == 2
    for when in ("before", "after"):  # TRL's evaluation pass ran through the env too
        assert math.isfinite(summary["evaluation"][when]["reward"])
        assert summary["evaluation"][when]["reward"] == pytest.approx(
            summary["evaluation"][when]["env_reward"]
        )
    curve = json.loads((out / "reward_curve.json").read_text())
    assert [r["step"] for r in curve] == [1, 2]
    for r in curve:
        assert r["reward"] is not None and math.isfinite(r["reward"])
        assert r["reward"] == pytest.approx(r["env_reward"])
    assert sum(r["env_tool_calls"] for r in curve) > 0  # tool calls reached ClinicToolEnv
    assert sum(r["turns"] for r in curve) > 0  # and played turns of the consultation
    assert (out / "reward_curve.png").stat().st_size > 1000
    assert (out / "model" / "config.json").is_file()
    assert "step 2/2" in res.stderr


def test_the_plot_averages_over_one_pass_of_the_cases():
    from clinicgym.runs.rl.trl_grpo import curve_row, rolling

    assert rolling([1.0, 3.0, float("nan"), 5.0], 2) == [1.0, 2.0, 3.0, 5.0]
    row = curve_row({"reward": "0.5", "rewards/violations/mean": float("nan")}, 3)
    assert row["step"] == 3 and row["reward"] == 0.5
    assert row["violations"] is None and row["accuracy"] is None


def test_cli_grpo_refuses_a_model_whose_template_cannot_call_tools(tmp_path):
    """examples/grpo_tiny.py's model has a plain chat template (no tool calls): refused with the
    reason before any case or weight is loaded."""
    pytest.importorskip("trl")
    import importlib.util
    from pathlib import Path

    from typer.testing import CliRunner

    from clinicgym.runs.cli import app

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("grpo_tiny", root / "examples" / "grpo_tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build_tiny_model(tmp_path / "plain")
    res = CliRunner().invoke(
        app, ["rl", "grpo", "--out", str(tmp_path / "o"), "--model", str(model)]
    )
    assert res.exit_code == 2, res.output
    assert "cannot render tool calls" in res.output
    assert "building" not in res.output  # refused before the cases were built
