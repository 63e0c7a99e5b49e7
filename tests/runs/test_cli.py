"""The command line: run, resume, summary, kb and cases commands; a killed run resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinicgym.runs.cli import app

SMALL_KB = str(Path(__file__).parents[1] / "data" / "kb_small")
runner = CliRunner()


def test_run_writes_the_run_directory_and_prints_a_table(tmp_path):
    out = tmp_path / "demo"
    args = [
        "run",
        "-a",
        "scripted",
        "-a",
        "random",
        "-a",
        "oracle",
        "--cases",
        "6",
        "--seed",
        "7",
        "--out",
        str(out),
        "--kb",
        SMALL_KB,
        "--quiet",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "top-1" in r.output and "oracle" in r.output
    summary = json.loads((out / "summary.json").read_text())
    for agent in ("scripted", "random", "oracle"):
        s = summary["agents"][agent]
        assert s["episodes"] == 6 and s["errors"] == 0
        for m in ("diagnostic_accuracy", "top3_accuracy", "inquiry_coverage", "turns"):
            assert set(s["metrics"][m]) >= {"mean", "ci95"}
    r2 = runner.invoke(app, args)
    assert r2.exit_code == 0 and "Resuming" in r2.output and "0 episodes run now" in r2.output
    r3 = runner.invoke(app, ["summary", str(out)])
    assert r3.exit_code == 0 and "scripted" in r3.output


def test_five_of_five_prints_an_interval_below_100_percent(tmp_path):
    out = tmp_path / "five"
    args = ["run", "-a", "oracle", "--cases", "5", "--out", str(out), "--kb", SMALL_KB]
    r = runner.invoke(app, [*args, "--weighting", "balanced", "--quiet"])
    assert r.exit_code == 0, r.output
    acc = json.loads((out / "summary.json").read_text())["agents"]["oracle"]["metrics"]
    assert acc["diagnostic_accuracy"]["mean"] == 1.0  # the oracle gets 5 of 5
    lo, hi = acc["diagnostic_accuracy"]["ci95"]
    assert lo == pytest.approx(0.5655, abs=1e-4) and hi == 1.0  # Wilson, 5 of 5
    row = next(line for line in r.output.splitlines() if line.startswith("│ oracle"))
    assert "100% [57-100]" in row and "[100-100]" not in row


def test_bad_input_gives_a_clear_error(tmp_path):
    r = runner.invoke(app, ["run", "-a", "nobody", "--out", str(tmp_path / "x"), "--kb", SMALL_KB])
    assert r.exit_code == 2 and "unknown agent spec 'nobody'" in r.output
    r = runner.invoke(app, ["run", "-a", "scripted", "--cases", "0", "--out", str(tmp_path / "y")])
    assert r.exit_code == 2 and "cases" in r.output
    r = runner.invoke(app, ["kb", "validate", str(tmp_path)])
    assert r.exit_code == 2 and "has" in r.output and "problem" in r.output


def test_kb_and_cases_commands():
    r = runner.invoke(app, ["kb", "validate", SMALL_KB])
    assert r.exit_code == 0 and "3 conditions" in r.output
    r = runner.invoke(app, ["kb", "list", "--kb", SMALL_KB])
    assert r.exit_code == 0 and "N39.0" in r.output
    r = runner.invoke(app, ["cases", "sample", "--n", "2", "--json", "--kb", SMALL_KB])
    assert r.exit_code == 0 and len(r.output.strip().splitlines()) == 2


SLOW_AGENT_MAIN = """
import asyncio, sys
from clinicgym.agents.registry import agent_builder
from clinicgym.agents.scripted import ScriptedAgent

class Slow(ScriptedAgent):
    async def act(self, observation, info):
        await asyncio.sleep(0.05)
        return await super().act(observation, info)

@agent_builder("slow")
def _slow(rest, kb, options):
    return lambda: Slow(kb, agent_id="slow")

from clinicgym.runs.cli import main
sys.argv[0] = "clinicgym"
main()
"""


@pytest.mark.slow
@pytest.mark.integration
def test_killed_run_resumes_with_every_episode_exactly_once(tmp_path):
    out = tmp_path / "killed"
    script = tmp_path / "slow_main.py"
    script.write_text(SLOW_AGENT_MAIN)
    cmd = [
        sys.executable,
        str(script),
        "run",
        "-a",
        "slow",
        "-a",
        "oracle",
        "--cases",
        "40",
        "--out",
        str(out),
        "--kb",
        SMALL_KB,
        "--concurrency",
        "4",
        "--quiet",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    episodes = out / "episodes.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if episodes.exists() and episodes.read_text().count("\n") >= 12:
            break
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be killed: {proc.stderr.read().decode()}")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = episodes.read_text().count("\n")
    assert 12 <= killed_at < 80, killed_at
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ids = [json.loads(line)["episode_id"] for line in episodes.read_text().splitlines()]
    assert len(ids) == 80 and len(set(ids)) == 80
    summary = json.loads((out / "summary.json").read_text())
    assert summary["agents"]["oracle"]["metrics"]["diagnostic_accuracy"]["mean"] == 1.0


def test_a_dead_server_stops_its_agent_and_the_run_names_the_cause(tmp_path):
    from tests.agents.fake_openai import FakeOpenAIServer, Status

    with FakeOpenAIServer(lambda body, n: Status(500)) as srv:
        args = ["run", "-a", f"openai:m@{srv.url}#retries=0", "-a", "scripted", "--cases", "6"]
        args += ["--retries", "0", "--stop-after-errors", "2", "--concurrency", "1"]
        args += ["--kb", SMALL_KB, "--out", str(tmp_path / "r"), "--quiet"]
        result = runner.invoke(app, args, env={"COLUMNS": "300"})
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 1, text  # a stopped agent: its numbers are incomplete
    assert "2 episodes ended in infrastructure errors" in text
    assert "2 x openai:m@" in text and "HTTP 500" in text  # one cause, counted twice
    assert "stopped openai:m@" in text and "its other 4 were not played" in text


def test_patients_ask_writes_every_answer_and_prints_the_grades(tmp_path):
    """`clinicgym patients ask` over the repository's unseen written cases (a bank's first rows):
    one answer row per question with its statuses, and the agreement with the bank printed."""
    unseen = Path(__file__).parents[2] / "bench" / "data" / "unseen"
    rows = (unseen / "questions.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    bank = tmp_path / "q.jsonl"
    bank.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "a.jsonl"
    args = ["patients", "ask", "--cases-from", str(unseen / "cases.jsonl")]
    result = runner.invoke(app, [*args, "--questions", str(bank), "--out", str(out)])
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [a["question"] for a in answers] == [json.loads(r)["question"] for r in rows]
    assert all(a["statuses"] and a["answer"] for a in answers)
    text = " ".join(result.output.split())
    assert "agreement with the bank's 'expect'" in text and "with the expected statement" in text
