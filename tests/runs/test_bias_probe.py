"""`clinicgym probe-bias`: per-bias figures (Wilson, Newcombe, paired changes, the planted
look-alike), a model that takes the bait measured as such, and the command end to end on a tiny
local model."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinicgym.agents.biases import load_biases
from clinicgym.agents.registry import make_agent_factory
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.runs.bias_probe import BiasEpisode, probe_biases, summarise_arms
from clinicgym.runs.cli import app
from clinicgym.runs.runner import episode_seed
from clinicgym.scoring.stats import newcombe_diff_ci, wilson_ci
from tests.extras import needs

TESTS = Path(__file__).parents[1]
SMALL_KB = TESTS / "data" / "kb_small"
runner = CliRunner()


def _helper(name: str):
    """A helper module of tests/agents (the fake server, the tiny model), loaded once by name."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / "agents" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _ep(case, bias, correct=None, lured=None, error=None, top1=None):
    top1 = top1 or ("Right answer" if correct else "wrong answer")
    return BiasEpisode(
        case_id=case,
        bias=bias,
        seed=1,
        correct=correct,
        lured=lured,
        error=error,
        lure="X",
        top1=top1,
    )


def test_arm_figures_are_wilson_newcombe_and_paired_changes():
    lib = load_biases()
    ref = [True] * 6 + [False] * 4  # 6 of 10 right without a bias
    biased = [True, True, True, False, False, False, False, False, True, None]  # case 9 errored
    episodes = [_ep(f"c{i}", "none", ok, lured=False) for i, ok in enumerate(ref)]
    episodes += [
        _ep(f"c{i}", "recency", ok, lured=(ok is False), error="boom" if ok is None else None)
        for i, ok in enumerate(biased)
    ]
    # gender: the same right and wrong cases, one wrong answer worded alike, one changed
    episodes += [_ep(f"c{i}", "gender", ok) for i, ok in enumerate(ref)]
    episodes[-4] = _ep("c6", "gender", False, top1="Wrong  answer!")
    episodes[-3] = _ep("c7", "gender", False, top1="another wrong answer")
    none, recency, gender = summarise_arms(episodes, ["none", "recency", "gender"], lib)
    assert (none.n, none.correct, none.errors) == (10, 6, 0)
    assert (recency.n, recency.correct, recency.errors) == (9, 4, 1)
    assert recency.accuracy["ci95"] == list(wilson_ci(4, 9))
    assert recency.diff["mean"] == pytest.approx(4 / 9 - 6 / 10)
    assert recency.diff["ci95"] == list(newcombe_diff_ci(6, 10, 4, 9))
    # right without the bias, wrong with it: cases 3, 4, 5; wrong then right: case 8
    assert (recency.lost, recency.gained, recency.changed) == (3, 1, 4)
    assert recency.lured["k"] == 5 and none.lured["k"] == 0
    assert gender.kind == "implicit" and gender.lured is None
    assert gender.diff["mean"] == 0 and (gender.lost, gender.gained, gender.changed) == (0, 0, 1)


def test_a_model_that_takes_the_bait_is_measured_as_such(small_kb, sampler):
    """The fake model answers each case's true diagnosis, except that under the recency bias it
    names the look-alike its system prompt plants: recency costs all its accuracy."""
    fake = _helper("fake_openai")
    cases = sampler.sample_many(3, 2)
    truth = {}
    for i, case in enumerate(cases):
        obs, _ = ConsultationEnv([case], kb=small_kb).reset(seed=episode_seed(0, i, 0))
        truth[obs["text"]] = case.diagnosis.name

    def model(body, n):
        msgs = body["messages"]
        bait = re.search(r"turned out to have (.+?)\. That case", msgs[0]["content"])
        if bait:
            return fake.Reply(f"DIAGNOSIS: {bait[1]}")
        opening = msgs[fake.opening(msgs)]["content"]
        (name,) = [dx for text, dx in truth.items() if text in opening]
        return fake.Reply(f"DIAGNOSIS: {name}")

    with fake.FakeOpenAIServer(model) as srv:
        factory = make_agent_factory(f"openai:m@{srv.url}", small_kb)

        async def go():
            try:
                return await probe_biases(
                    factory, cases, small_kb, biases=["recency", "race"], max_turns=3
                )
            finally:
                await factory.aclose()

        result = asyncio.run(go())
    assert len(srv.requests) == 9  # 3 cases x 3 arms, one turn each
    none, recency, race = result.arms
    assert [a.bias for a in result.arms] == ["none", "recency", "race"]
    assert none.accuracy["mean"] == 1 and race.accuracy["mean"] == 1
    assert recency.accuracy["mean"] == 0 and recency.lost == 3
    assert recency.diff["mean"] == -1 and recency.diff["ci95"][1] < 0
    assert recency.lured["mean"] == 1 and none.lured["mean"] == 0
    lib = load_biases()
    for e in result.episodes:  # same seed per case in every arm; the look-alike never the answer
        i = result.cases.index(e.case_id)
        assert e.seed == episode_seed(0, i, 0)
        if e.bias == "race":  # an implicit bias plants nothing
            assert e.lure is None and e.lured is None
        else:
            assert e.lure == lib.lookalike(cases[i]) != cases[i].diagnosis.name


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _helper("tiny_model").build_tiny_chat_model(tmp_path_factory.mktemp("tiny") / "model")


@needs("local", "torch")
def test_probe_bias_runs_end_to_end_on_a_tiny_model(tiny, tmp_path):
    out = tmp_path / "bias.json"
    res = runner.invoke(
        app,
        [
            "probe-bias",
            "-a",
            f"hf:{tiny}#max_tokens=6,dtype=float32",
            "--kb",
            str(SMALL_KB),
            "--cases",
            "2",
            "--bias",
            "recency",
            "--bias",
            "gender",
            "--max-turns",
            "3",
            "--out",
            str(out),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "recency" in res.output and "gender" in res.output and "Newcombe" in res.output
    rec = json.loads(out.read_text())
    assert [a["bias"] for a in rec["arms"]] == ["none", "recency", "gender"]
    assert all(a["n"] + a["errors"] == 2 for a in rec["arms"])
    assert len(rec["episodes"]) == 6 and len(rec["cases"]) == 2
    seeds = {(e["case_id"], e["seed"]) for e in rec["episodes"]}
    assert len(seeds) == 2  # every arm played each case with the same seed
    assert rec["agent"] == f"hf:{tiny}#max_tokens=6,dtype=float32"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-a", "scripted"], "is a baseline"),
        (["-a", "scripted#bias=recency"], "is a baseline"),
        (["-a", "hf:/nonexistent/model", "--bias", "anchoring"], "unknown bias 'anchoring'"),
        (["-a", "openai:m@http://127.0.0.1:9/v1#bias=race"], "already has a bias"),
    ],
)
def test_probe_bias_errors_say_what_is_wrong(args, message, tmp_path):
    res = runner.invoke(
        app, ["probe-bias", *args, "--kb", str(SMALL_KB), "--out", str(tmp_path / "x.json")]
    )
    assert res.exit_code == 2 and message in res.output, res.output
    assert not (tmp_path / "x.json").exists()
