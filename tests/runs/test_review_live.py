"""The live recorder: episodes in flight stream to RUN_DIR/live/, with the monitors' findings,
and vanish once stored; the run directory reader sees them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinicgym.agents.registry import agent_builder
from clinicgym.envs.episode import Event, Violation
from clinicgym.runs.review.live import LIVE_DIR, LiveRecorder, clear_live, episode_key
from clinicgym.runs.review.rundir import RunView
from tests.runs.review_support import make_run


class _Flagger:
    """A monitor that flags every clinician event."""

    name = "flagger"

    def __init__(self) -> None:
        self.resets = 0

    def reset(self, case):
        self.resets += 1

    def observe(self, event, history):
        if event.actor != "clinician":
            return []
        return [
            Violation(
                rule_id="r1", pack="p@1", severity="low", turn=event.turn, quote=event.text[:20]
            )
        ]


def test_the_recorder_writes_events_with_findings_and_removes_the_file(tmp_path, sampler):
    case = sampler.sample(1, 0)
    inner = _Flagger()
    rec = LiveRecorder(tmp_path, episode_id="a|c|r0", agent_id="a", monitors=[inner])
    rec.reset(case)
    assert inner.resets == 1
    history: list[Event] = []
    for turn, actor, text in [(0, "patient", "I feel hot."), (1, "clinician", "Any cough?")]:
        ev = Event(turn=turn, actor=actor, text=text)
        found = rec.observe(ev, history)
        history.append(ev.model_copy(update={"violations": found}))
    assert [len(e.violations) for e in history] == [0, 1]  # what the inner monitor reported
    path = tmp_path / LIVE_DIR / f"{episode_key('a|c|r0')}.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0]["type"] == "start" and lines[0]["case_id"] == case.id
    assert [x["index"] for x in lines[1:]] == [0, 1]
    assert lines[2]["event"]["violations"][0]["rule_id"] == "r1"
    view_dir = tmp_path
    (view_dir / "manifest.json").write_text(json.dumps({"run_id": "x", "spec": {}}))
    live = RunView(view_dir).live()
    assert [e.episode_id for e in live] == ["a|c|r0"]
    got = RunView(view_dir).read_live(live[0].key)
    assert [e.text for e in got.events] == ["I feel hot.", "Any cough?"]
    rec.close()
    assert not path.exists()
    assert RunView(view_dir).live() == []


def test_an_event_line_holds_the_event_as_stored_and_the_directory_comes_back(tmp_path, sampler):
    """The event is written as pydantic serialises it for episodes.jsonl (not re-encoded by
    json, which escapes non-ASCII); a recorder whose live directory went (a finished run's
    `remove_live_dir`) makes it again."""
    case = sampler.sample(1, 0)
    ev = Event(turn=0, actor="patient", text="I'm at 39.2°C — since Monday.")
    for _ in range(2):
        rec = LiveRecorder(tmp_path, episode_id="a|c|r0", agent_id="a")
        rec.reset(case)
        rec.observe(ev, [])
        text = rec.path.read_text(encoding="utf-8")
        assert ev.model_dump_json() in text
        assert Event.model_validate(json.loads(text.splitlines()[1])["event"]) == ev
        rec.close()
        (tmp_path / LIVE_DIR).rmdir()


SEEN: list[dict] = []


class _Peeker:
    """An agent that looks at its own live file on its second turn (as a viewer would)."""

    agent_id = "peeker"

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.turn = 0
        self.episode_id = ""

    def reset(self, observation, info):
        self.turn = 0

    async def act(self, observation, info):
        self.turn += 1
        if self.turn == 2:
            files = list((self.run_dir / LIVE_DIR).glob("*.jsonl"))
            lines = [json.loads(x) for f in files for x in f.read_text().splitlines()]
            SEEN.append({"files": len(files), "lines": lines})
            return "DIAGNOSIS: migraine"
        return "Do you have a headache?"


PEEK_DIR: list[Path] = []


@agent_builder("peeker")
def _peeker(rest, kb, options):
    return lambda: _Peeker(PEEK_DIR[-1])


@pytest.mark.slow
def test_a_run_streams_each_episode_while_it_plays(tmp_path):
    run = tmp_path / "r"
    PEEK_DIR.append(run)
    (run / LIVE_DIR).mkdir(parents=True)
    (run / LIVE_DIR / f"{'0' * 20}.jsonl").write_text("left by a crash\n")
    SEEN.clear()
    make_run(run, ["peeker"], cases=2, concurrency=1)
    assert len(SEEN) == 2
    for seen in SEEN:
        assert seen["files"] == 1  # the stale file was cleared; one episode in flight
        kinds = [x["type"] for x in seen["lines"]]
        assert kinds[0] == "start" and kinds.count("event") >= 3  # opening, question, answer
        texts = [x["event"]["text"] for x in seen["lines"][1:]]
        assert "Do you have a headache?" in texts
    assert not (run / LIVE_DIR).exists()  # everything stored: nothing left in flight
    rows = RunView(run).rows()
    assert len(rows) == 2 and {r.agent for r in rows} == {"peeker"}
    assert clear_live(run) == 0
