"""`clinicgym run` with researchers' model specs: `--agent openai/gpt-4o` against a loopback server
named by OPENAI_BASE_URL, `--name`, and the errors for near misses and `--model`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinicgym.runs.cli import app
from tests.agents.fake_openai import FakeOpenAIServer, clinician_script

SMALL_KB = str(Path(__file__).parents[1] / "data" / "kb_small")
runner = CliRunner()


@pytest.fixture(autouse=True)
def no_provider_env(monkeypatch, tmp_path):
    for v in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the machine's


def _run(*args: str) -> object:
    return runner.invoke(app, ["run", *args, "--kb", SMALL_KB, "--quiet"], env={"COLUMNS": "200"})


def test_openai_slash_model_plays_a_run_against_openai_base_url(monkeypatch, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer(clinician_script(3, 0.0)) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        r = _run("--agent", "openai/gpt-4o", "--name", "GPT-4o", "-a", "scripted", "--name",
                 "baseline", "--cases", "2", "--out", str(out))  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(srv.requests) == 2 * 3 and {b["model"] for b in srv.requests} == {"gpt-4o"}
    assert set(srv.auth) == {"Bearer sk-test"}
    rows = [line for line in r.output.splitlines() if line.startswith("│")]
    assert any(line.startswith("│ GPT-4o ") for line in rows)
    assert any(line.startswith("│ baseline ") for line in rows)
    assert srv.url not in r.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spec"]["names"] == {"openai/gpt-4o": "GPT-4o", "scripted": "baseline"}
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert {e["agent_id"] for e in episodes} == {"openai/gpt-4o", "scripted"}
    assert all(e["status"] == "completed" for e in episodes)
    summary = runner.invoke(app, ["summary", str(out)], env={"COLUMNS": "200"})
    assert summary.exit_code == 0 and "│ GPT-4o " in summary.output


def test_without_name_an_agent_shows_as_its_spec_without_the_url(tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer(clinician_script(2, 0.0)) as srv:
        spec = f"openai:tiny@{srv.url}"
        r = _run("--agent", spec, "--cases", "1", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "│ openai:tiny " in r.output and srv.url not in r.output


def test_model_flag_points_to_agent_and_near_misses_get_a_suggestion(tmp_path):
    out = str(tmp_path / "x")
    r = _run("--model", "openai/gpt-4o", "--out", out)
    assert r.exit_code == 2 and "--agent openai/gpt-4o" in r.output
    r = _run("--agent", "scriptd", "--out", out)
    assert r.exit_code == 2 and "did you mean 'scripted'?" in r.output
    r = _run("--agent", "opneai/gpt-4o", "--out", out)
    assert r.exit_code == 2 and "did you mean 'openai/gpt-4o'?" in r.output
    assert "anthropic/" in r.output and "google/" in r.output  # the known forms are listed
    r = _run("--agent", "scripted", "--agent", "random", "--name", "only-one", "--out", out)
    assert r.exit_code == 2 and "one --name per --agent" in r.output
    r = _run("-a", "scripted", "-a", "random", "--name", "x", "--name", "x", "--out", out)
    assert r.exit_code == 2 and "shown twice" in r.output
    assert not Path(out).exists()  # every one failed before the run directory was made


def test_the_board_labels_an_agent_with_its_name():
    from clinicgym.runs.leaderboard import agent_label, bundle_info
    from clinicgym.runs.records import RunManifest

    assert agent_label("openai:m@http://127.0.0.1:9/v1") == "openai:m"
    manifest = {"spec": {"agents": ["openai/gpt-4o"], "names": {"openai/gpt-4o": "G"}}}
    info = bundle_info({}, RunManifest.model_validate(manifest))
    assert info["names"] == {"openai/gpt-4o": "G"}


def test_the_board_shows_no_server_url_and_reads_slash_specs():
    from clinicgym.runs.leaderboard import model_meta

    served = {"backend": ["openai:m@http://10.0.0.5:8000/v1"], "model": ["m-served"]}
    meta = model_meta(
        "openai:m@http://10.0.0.5:8000/v1", {"served": {"openai:m@http://10.0.0.5:8000/v1": served}}
    )
    assert meta["backend"] == "openai:m" and "10.0.0.5" not in str(meta)
    meta = model_meta("anthropic/claude-x#tools=1", {})
    assert meta["backend"] == "anthropic" and meta["model"] == "claude-x"
    assert model_meta("hf/smollm2", {})["parameters"] == "135M"
    assert model_meta("hf:smollm2", {})["parameters"] == "135M"
