"""The verifiers environment: verifiers' own evaluation loop plays clinicgym cases against a
loopback OpenAI-compatible server, with clinicgym's patient answering and scoring."""

from __future__ import annotations

import importlib
import sys

import pytest

vf = pytest.importorskip("verifiers")

from verifiers.types import ClientConfig  # noqa: E402

from clinicgym.errors import MissingExtra  # noqa: E402
from tests.agents.fake_openai import FakeOpenAIServer, Reply, clinician_turn  # noqa: E402

pytestmark = pytest.mark.slow  # ~10-20 s: two consultations plus building the env's prompts


def test_verifiers_evaluate_plays_cases_against_a_loopback_server(monkeypatch):
    env = vf.load_environment("clinicgym.runs.integrations.verifiers_env", cases=2, seed=0)
    first = env.cases[0].diagnosis.name

    def script(body, n):
        turn = clinician_turn(body.get("messages", []))
        return Reply("Do you have a fever?" if turn == 0 else f"DIAGNOSIS: {first}")

    monkeypatch.setenv("CLINICGYM_FAKE_KEY", "not-a-key")
    with FakeOpenAIServer(script) as server:
        assert server.url.startswith("http://127.0.0.1:")
        results = env.evaluate_sync(
            client=ClientConfig(
                api_base_url=server.url, api_key_var="CLINICGYM_FAKE_KEY", max_retries=0
            ),
            model="fake-clinician",
            num_examples=2,
            rollouts_per_example=1,
        )
    assert len(server.requests) == 4  # two turns per consultation
    # each second request carries the patient's answer to the question as the last user turn
    later = [r["messages"] for r in server.requests if clinician_turn(r["messages"]) == 1]
    assert len(later) == 2
    for messages in later:
        assert messages[-2]["content"] == "Do you have a fever?"
        assert messages[-1]["role"] == "user" and "Patient" in messages[-1]["content"]

    outputs = sorted(results["outputs"], key=lambda o: o["example_id"])
    for out, case in zip(outputs, env.cases, strict=True):
        correct = float(case.diagnosis.name == first)
        assert out["answer"] == case.diagnosis.name
        assert out["reward"] == out["metrics"]["diagnosis_reward"]
        assert out["metrics"]["top1_correct"] == correct
        assert out["reward"] >= correct
        # never said it is an AI: ai-transparency@2 flags it, a high-severity violation
        assert out["metrics"]["violations"] >= 1
        assert out["metrics"]["violations_high"] >= 1
    assert outputs[0]["reward"] == 1.0


def test_the_env_module_names_its_extra_when_verifiers_is_missing(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "verifiers" else real(name, *a),
    )
    monkeypatch.delitem(sys.modules, "clinicgym.runs.integrations.verifiers_env", raising=False)
    with pytest.raises(MissingExtra, match=r"'verifiers' extra .*clinicgym\[verifiers\]"):
        importlib.import_module("clinicgym.runs.integrations.verifiers_env")
