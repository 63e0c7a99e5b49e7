"""Custom agents by spec: `module:Class#key=value` and names in the `clinicgym.agents`
entry-point group, checked against the Agent protocol before a run starts, and played by
`clinicgym run` from the working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clinicgym.agents.errors import AgentSpecError
from clinicgym.agents.registry import (
    ENTRY_POINT_GROUP,
    check_agent_spec,
    known_agents,
    make_agent_factory,
)

SMALL_KB = str(Path(__file__).parents[1] / "data" / "kb_small")

AGENTS_PY = textwrap.dedent(
    """
    class Cautious:
        agent_id = "cautious"

        def __init__(self, kb=None, questions: int = 1, label: str = "x"):
            self.kb, self.questions, self.label = kb, questions, label
            self.turn = 0

        def reset(self, observation, info):
            self.turn = 0

        async def act(self, observation, info):
            self.turn += 1
            if self.turn <= self.questions:
                return "Do you have a fever?"
            return "DIAGNOSIS: Community-acquired pneumonia (50%)"


    class SyncAct:
        agent_id = "sync"

        def reset(self, observation, info):
            pass

        def act(self, observation, info):
            return "Do you have a fever?"


    class NoId:
        def reset(self, observation, info):
            pass

        async def act(self, observation, info):
            return "x"


    class NoReset:
        agent_id = "noreset"

        async def act(self, observation, info):
            return "x"


    class Explodes:
        agent_id = "boom"

        def __init__(self):
            raise RuntimeError("no API key")

        def reset(self, observation, info):
            pass

        async def act(self, observation, info):
            return "x"


    NOT_A_CLASS = 3
    """
)


@pytest.fixture
def agents_module(tmp_path, monkeypatch):
    """A module of custom agents on the import path, under a name unique to the test."""
    name = f"custom_agents_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(AGENTS_PY)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def _dist_with_entry_point(where: Path, name: str, target: str) -> None:
    """An installed distribution (dist-info on sys.path) registering one agent by name."""
    info = where / "clinicgym_test_agents-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: clinicgym-test-agents\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {target}\n")


def test_module_class_spec_builds_fresh_agents_with_settings_and_the_kb(agents_module, small_kb):
    factory = make_agent_factory(f"{agents_module}:Cautious#questions=3,label=calm", small_kb)
    a, b = factory(), factory()
    assert a is not b  # one agent per episode
    assert (a.questions, a.label, a.kb) == (3, "calm", small_kb)
    check_agent_spec(f"{agents_module}:Cautious#questions=3")  # no error


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_xyz:Cautious", r"no module named 'no_such_module_xyz'"),
        ("{m}:Cautios", r"has no 'Cautios'; did you mean '{m}:Cautious'\?"),
        ("{m}:SyncAct", r"'act' is not async"),
        ("{m}:NoReset", r"no method 'reset'"),
        ("{m}:NOT_A_CLASS", r"is not a class \(it is int\)"),
        ("{m}:Cautious#qestions=2", r"takes no argument 'qestions'; it takes: questions, label"),
        ("{m}:Cautious#questions", r"is not 'key=value'"),
    ],
)
def test_a_wrong_custom_spec_is_refused_before_anything_is_built(
    agents_module, small_kb, target, message
):
    spec = target.format(m=agents_module)
    with pytest.raises(AgentSpecError, match=message.format(m=agents_module)):
        check_agent_spec(spec)
    with pytest.raises(AgentSpecError, match=message.format(m=agents_module)):
        make_agent_factory(spec, small_kb)


def test_an_object_without_the_protocol_or_a_failing_constructor_fails_when_the_run_builds_it(
    agents_module, small_kb
):
    with pytest.raises(AgentSpecError, match=r"NoId does not implement .*no attribute 'agent_id'"):
        make_agent_factory(f"{agents_module}:NoId", small_kb)
    with pytest.raises(AgentSpecError, match=r"building it raised RuntimeError: no API key"):
        make_agent_factory(f"{agents_module}:Explodes", small_kb)


def test_an_entry_point_registers_an_agent_by_name(agents_module, tmp_path, small_kb, monkeypatch):
    with pytest.raises(AgentSpecError, match=r"unknown agent spec 'steady'.*custom agents"):
        check_agent_spec("steady")
    _dist_with_entry_point(tmp_path / "site", "steady", f"{agents_module}:Cautious")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert "steady" in known_agents()
    check_agent_spec("steady#questions=2")
    agent = make_agent_factory("steady#questions=2", small_kb)()
    assert type(agent).__name__ == "Cautious" and agent.questions == 2


def test_a_builtin_name_wins_over_an_entry_point(agents_module, tmp_path, small_kb, monkeypatch):
    _dist_with_entry_point(tmp_path / "site", "scripted", f"{agents_module}:Cautious")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert type(make_agent_factory("scripted", small_kb)()).__name__ == "ScriptedAgent"


@pytest.mark.slow
def test_clinicgym_run_plays_a_module_class_from_the_working_directory_and_an_entry_point(
    tmp_path,
):
    script = Path(sys.executable).with_name("clinicgym")
    if not script.exists():
        pytest.skip("the clinicgym console script is not installed in this environment")
    work = tmp_path / "work"
    work.mkdir()
    (work / "my_agents.py").write_text(AGENTS_PY)
    site = tmp_path / "site"
    _dist_with_entry_point(site, "steady", "my_agents:Cautious")
    env = {**os.environ, "PYTHONPATH": str(site)}
    args = [
        str(script), "run", "-a", "my_agents:Cautious#questions=2", "-a", "steady",
        "--cases", "2", "--max-turns", "4", "--kb", SMALL_KB, "--out", "r", "--quiet",
    ]  # fmt: skip
    proc = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    episodes = [json.loads(x) for x in (work / "r" / "episodes.jsonl").read_text().splitlines()]
    turns = {(e["agent_id"], e["turns"]) for e in episodes}
    assert turns == {("my_agents:Cautious#questions=2", 3), ("steady", 2)}  # questions + diagnosis
    bad = subprocess.run(
        [str(script), "run", "-a", "my_agents:SyncAct", "--cases", "1", "--out", "r2"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "'act' is not async" in bad.stdout + bad.stderr
    assert not (work / "r2").exists()  # refused before the run directory was made
