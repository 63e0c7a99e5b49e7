"""`clinicgym.evaluate(...)`: the Python API plays the same run as `clinicgym run` (same store,
scores and seeds), takes agent objects as well as spec strings, checks its arguments before any
work, keeps `import clinicgym` light, and its example runs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import clinicgym
from clinicgym.errors import ClinicGymError
from clinicgym.runs.cli import app

ROOT = Path(__file__).parents[2]
SMALL_KB = str(ROOT / "tests" / "data" / "kb_small")
CASE_FILE = ROOT / "tests" / "patients" / "data" / "agentclinic_cases.jsonl"
runner = CliRunner()


class Counting:
    """A custom agent with per-episode state: asks `questions` questions, then diagnoses. Shared
    across episodes, its counter would make every later episode diagnose at once."""

    agent_id = "counting"

    def __init__(self, questions: int = 2) -> None:
        self.questions = questions
        self.acts = 0

    def reset(self, observation, info) -> None:
        pass

    async def act(self, observation, info) -> str:
        self.acts += 1
        if self.acts <= self.questions:
            return "Do you have a fever?"
        return "DIAGNOSIS: Community-acquired pneumonia (50%)"


def _scores(run: Path) -> pd.DataFrame:
    t = pd.read_parquet(run / "scores.parquet").drop(columns=["latency_s", "model_s"])
    return t.sort_values("episode_id").reset_index(drop=True)


def test_import_clinicgym_stays_light_and_a_run_from_python_imports_no_heavy_library(tmp_path):
    probe = (
        "import sys, clinicgym\n"
        "before = sorted(m for m in sys.modules if m.startswith('clinicgym.'))\n"
        f"r = clinicgym.evaluate(['oracle'], cases=1, kb={SMALL_KB!r}, out={str(tmp_path / 'r')!r})\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'transformers', 'sdv', 'shap', 'sklearn', 'matplotlib'})\n"
        "print(before, r.episodes, heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True
    ).stdout.strip()
    assert out == "['clinicgym._registration', 'clinicgym.errors'] 1 []", out


def test_evaluate_and_the_cli_give_the_same_scores_in_the_same_store(tmp_path):
    args = ["-a", "scripted", "-a", "random", "--cases", "3", "--seed", "5", "--max-turns", "5"]
    r = runner.invoke(
        app,
        [
            "run",
            *args,
            "--pack",
            "hipaa-privacy@2",
            "--kb",
            SMALL_KB,
            "--out",
            str(tmp_path / "cli"),
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    result = clinicgym.evaluate(
        agents=["scripted", "random"],
        cases=3,
        seed=5,
        max_turns=5,
        packs=["hipaa-privacy@2"],
        kb=SMALL_KB,
        out=tmp_path / "api",
    )
    assert result.run_dir == tmp_path / "api" and result.episodes == 6
    pd.testing.assert_frame_equal(_scores(tmp_path / "cli"), _scores(tmp_path / "api"))
    cli = json.loads((tmp_path / "cli" / "summary.json").read_text())
    api = json.loads((tmp_path / "api" / "summary.json").read_text())
    assert (
        api["agents"] == cli["agents"]
        and api["compliance"]["agents"] == cli["compliance"]["agents"]
    )
    m_cli = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    m_api = json.loads((tmp_path / "api" / "manifest.json").read_text())
    assert m_api["cases_sha256"] == m_cli["cases_sha256"]
    # the typed result carries the summary's numbers
    top1 = cli["agents"]["scripted"]["metrics"]["diagnostic_accuracy"]
    s = result["scripted"]
    assert (s.accuracy, s.interval) == (top1["mean"], tuple(top1["ci95"]))
    assert s.episodes == 3 and s.violations == cli["compliance"]["agents"]["scripted"]["violations"]
    assert repr(s).startswith("AgentResult('scripted', accuracy=")
    assert "episodes=6" in repr(result) and "'random'" in repr(result)
    pd.testing.assert_frame_equal(
        result.scores(), pd.read_parquet(tmp_path / "api" / "scores.parquet")
    )
    # the CLI reads the API's run directory, and the same call again resumes it: nothing to play
    assert runner.invoke(app, ["summary", str(tmp_path / "api")]).exit_code == 0
    again = clinicgym.evaluate(
        agents=["scripted", "random"], cases=3, seed=5, max_turns=5,
        packs=["hipaa-privacy@2"], kb=SMALL_KB, out=tmp_path / "api",
    )  # fmt: skip
    assert again.episodes_run == 0 and again["random"].accuracy == result["random"].accuracy


def test_agent_objects_are_copied_per_episode_and_stored_under_their_agent_id(tmp_path):
    agent = Counting(questions=2)
    seen = []
    result = clinicgym.evaluate(
        [agent, "scripted"],
        cases=3,
        repeats=2,
        max_turns=6,
        kb=SMALL_KB,
        out=tmp_path / "r",
        names={"counting": "my agent"},
        on_episode=lambda e: seen.append(e.agent_id),
    )
    assert agent.acts == 0  # the object handed in was never played itself
    episodes = [json.loads(x) for x in (tmp_path / "r" / "episodes.jsonl").read_text().splitlines()]
    counting = [e for e in episodes if e["agent_id"] == "counting"]
    assert len(counting) == 6 and {e["turns"] for e in counting} == {3}  # fresh state each time
    assert sorted(seen) == sorted(e["agent_id"] for e in episodes)
    assert result["my agent"] is result["counting"] and result["counting"].violations is None
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["spec"]["agents"] == ["counting", "scripted"]


def test_a_builtin_agent_as_an_object_plays_as_its_spec_does_and_shares_the_kb(tmp_path):
    from clinicgym.agents.scripted import ScriptedAgent
    from clinicgym.patients.knowledge.kb import load_kb
    from clinicgym.runs.api import _copies

    kb = load_kb(SMALL_KB)
    obj = ScriptedAgent(kb, agent_id="scripted-object")
    copy1 = _copies(obj)()
    assert copy1 is not obj and copy1.kb is kb  # the KB is shared, the rest copied
    clinicgym.evaluate(
        [obj, "scripted"], cases=3, seed=2, max_turns=6, kb=SMALL_KB, out=tmp_path / "r"
    )
    t = _scores(tmp_path / "r").drop(columns=["episode_id"])
    by_agent = {a: g.drop(columns=["agent"]).reset_index(drop=True) for a, g in t.groupby("agent")}
    pd.testing.assert_frame_equal(by_agent["scripted-object"], by_agent["scripted"])


def test_a_case_file_plays_its_cases_and_cases_from_with_a_count_plays_the_first(tmp_path):
    every = clinicgym.evaluate(["scripted"], cases=CASE_FILE, max_turns=3, out=tmp_path / "all")
    assert every.episodes == len(CASE_FILE.read_text().splitlines())
    two = clinicgym.evaluate(
        ["scripted"], cases=2, cases_from=str(CASE_FILE), max_turns=3, out=tmp_path / "two"
    )
    assert two.episodes == 2


def test_evaluate_runs_where_an_event_loop_is_already_running(tmp_path):
    async def notebook_cell():
        return clinicgym.evaluate(["oracle"], cases=1, kb=SMALL_KB, out=tmp_path / "r")

    assert asyncio.run(notebook_cell())["oracle"].accuracy == 1.0


def test_progress_shows_the_cli_bars_on_stderr(tmp_path, capfd):
    clinicgym.evaluate(["oracle"], cases=2, kb=SMALL_KB, out=tmp_path / "r", progress=True)
    err = capfd.readouterr().err
    assert "oracle" in err and "2/2" in err, err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"agents": ["scriptd"]}, r"unknown agent spec 'scriptd'; did you mean 'scripted'\?"),
        ({"agents": []}, r"agents= is empty"),
        ({"agents": ["scripted"], "suite": "core", "cases": 3}, r"give suite= or cases=, not both"),
        ({"agents": ["scripted"], "cases": "no/such/file.jsonl"}, r"no such file exists"),
        (
            {"agents": ["scripted"], "cases": 0},
            r"cases: Input should be greater than or equal to 1",
        ),
        (
            {"agents": ["scripted"], "max_turn": 4},
            r"unknown argument 'max_turn'; did you mean 'max_turns'\?",
        ),
        (
            {"agents": ["scripted"], "packs": ["hipaa-privacy@99"]},
            r"pack 'hipaa-privacy' has no version '99'",
        ),
        ({"agents": ["scripted"], "suite": "nosuch"}, r"nosuch"),
        ({"agents": [Counting], "cases": 1}, r"is the class Counting; pass an instance"),
        ({"agents": [object()]}, r"does not implement the Agent protocol"),
        ({"agents": [Counting(), Counting()]}, r"two agents share the id \['counting'\]"),
        ({"agents": ["scripted", "random"], "names": ["a"]}, r"--name given 1 times for 2 agents"),
        (
            {"agents": [Counting()], "executor": "ray"},
            r"agent objects \(counting\) play in this process",
        ),
    ],
)
def test_bad_arguments_are_refused_before_any_work(tmp_path, kwargs, message):
    out = tmp_path / "r"
    with pytest.raises(ClinicGymError, match=message):
        clinicgym.evaluate(**kwargs, kb=SMALL_KB, out=out)
    assert not out.exists()  # nothing was written


@pytest.mark.slow
def test_a_suite_run_from_python_is_submitted_and_verified(tmp_path, monkeypatch):
    from clinicgym.runs.leaderboard import pack, verify
    from clinicgym.runs.suite import HIDDEN_SEED_ENV, HIDDEN_SEED_FILE_ENV, freeze

    registry = {
        "format_version": 1,
        "suites": {"tiny": {"description": "t", "recipe": {"cases": 2, "max_turns": 5}}},
    }
    (tmp_path / "reg.yaml").write_text(yaml.safe_dump(registry))
    monkeypatch.setenv("CLINICGYM_SUITES", str(tmp_path / "reg.yaml"))
    monkeypatch.delenv(HIDDEN_SEED_ENV, raising=False)
    monkeypatch.delenv(HIDDEN_SEED_FILE_ENV, raising=False)
    from clinicgym.patients.knowledge.kb import load_kb

    freeze("tiny", seed=3, kb=load_kb(SMALL_KB))
    result = clinicgym.evaluate(
        [Counting(), "scripted"], suite="tiny", kb=SMALL_KB, out=tmp_path / "r"
    )
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["suite"]["ref"] == "tiny@1" and manifest["spec"]["max_turns"] == 5
    assert result.episodes == 4
    verdict = verify(pack(tmp_path / "r", tmp_path / "b.zip"), kb=SMALL_KB)
    assert verdict.accepted, verdict.problems


@pytest.mark.slow
def test_the_example_runs_a_custom_agent_beside_a_baseline(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "evaluate_api.py"), "--out", str(tmp_path / "ex"), "--cases", "2"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "keywords: top-1" in proc.stdout and "scripted: top-1" in proc.stdout
    summary = json.loads((tmp_path / "ex" / "summary.json").read_text())
    assert list(summary["agents"]) == ["keywords", "scripted"]
    assert all(a["episodes"] == 2 and a["errors"] == 0 for a in summary["agents"].values())
    assert summary["compliance"]["agents"]["keywords"]["violations"] >= 2  # never says it is an AI
